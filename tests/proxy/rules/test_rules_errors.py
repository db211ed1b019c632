"""A bad rule file is rejected with file, line and rule name; warnings do not reject."""
from __future__ import annotations

from pathlib import Path

import pytest

from proxy.rules import RulesError, RulesUnreadable, check_rules, load_table

HEAD = """\
version: 1
backends:
  legacy: {url: http://127.0.0.1:9001}
  svc: {url: http://127.0.0.1:9002, dry_run: true}
default: legacy
capabilities:
"""


def cap(name: str = "catalog", match: str = "[{path_prefix: /api/products}]",
        stage: str = "shadow", extra: str = "") -> str:
    text = (f"  - name: {name}\n    match: {match}\n    legacy: legacy\n    service: svc\n"
            f"    stage: {stage}\n    shadow: {{percent: 100}}\n")
    return text + "".join(f"    {line}\n" for line in extra.splitlines())


def errors(path: Path) -> list:
    with pytest.raises(RulesError) as info:
        load_table(path, environ={})
    problems = [p for p in info.value.problems if p.severity == "error"]
    assert problems, "a RulesError carries at least one error"
    return problems


def test_broken_yaml_cites_the_line(rules_file) -> None:
    path = rules_file(HEAD + "  - name: catalog\n    match: [{path: /a}\n    legacy: legacy\n")
    (problem,) = errors(path)
    assert problem.file == str(path) and problem.line == 9
    assert "YAML syntax" in problem.message and "started on line 8" in problem.message


def test_unknown_backend_names_the_rule_and_line(rules_file) -> None:
    path = rules_file(HEAD + cap().replace("service: svc", "service: catalgo"))
    (problem,) = errors(path)
    assert (problem.line, problem.rule) == (10, "catalog")
    assert "'catalgo' is not defined" in problem.message and "legacy, svc" in problem.message
    assert str(problem).startswith(f"{path}:10: [rule catalog] error: service: backend 'catalgo'")


def test_bad_regex_in_path_and_header_matchers(rules_file) -> None:
    path = rules_file(HEAD + cap(match="\n      - path_regex: '/api/(products'\n"
                                       "      - {path: /x, headers: {X-A: {regex: '[a-'}}}"))
    found = errors(path)
    assert [(p.line, p.rule) for p in found] == [(9, "catalog"), (10, "catalog")]
    assert "match[0].path_regex: the regex does not compile" in found[0].message
    assert "match[1].headers.X-A.regex" in found[1].message


@pytest.mark.parametrize("percent, why", [
    ("120", "120 is not valid"), ("'150%'", "outside 0..100"), ("-1", "-1 is not valid"),
    ("0.005", "finer than the bucket scale"), ("lots", "is not valid: expected a percentage")])
def test_bad_percentages(rules_file, percent: str, why: str) -> None:
    path = rules_file(HEAD + cap(stage="canary", extra=f"writes: legacy\nrollout: {{percent: {percent}}}"))
    (problem,) = errors(path)
    assert problem.line == 14 and problem.rule == "catalog"
    assert "rollout.percent" in problem.message and why in problem.message


def test_steps_must_increase(rules_file) -> None:
    path = rules_file(HEAD + cap(stage="canary", extra="writes: legacy\nrollout:\n  percent: 5\n"
                                                       "  steps: [1, 5, 5, 50]"))
    (problem,) = errors(path)
    assert problem.line == 16 and "must increase strictly" in problem.message


def test_unknown_key_suggests_the_right_one(rules_file) -> None:
    path = rules_file(HEAD + cap(extra="rollot: {percent: 5}"))
    (problem,) = errors(path)
    assert (problem.line, problem.rule) == (13, "catalog")
    assert problem.message == "rollot: unknown key 'rollot'; did you mean 'rollout'?"


def test_inline_secret_is_refused_with_advice(rules_file) -> None:
    path = rules_file(HEAD + cap() + "override: {secret: hunter2}\n")
    (problem,) = errors(path)
    assert problem.line == 13 and "secret_env" in problem.message
    assert "hunter2" not in problem.message


def test_a_capability_hidden_behind_an_earlier_prefix_never_matches(rules_file) -> None:
    path = rules_file(HEAD + cap("catalog", "[{path_prefix: /api}]")
                      + cap("products", "[{path_template: '/api/products/{id}'}]"))
    (problem,) = errors(path)
    assert (problem.line, problem.rule) == (14, "products")
    assert "never matches" in problem.message and "capability 'catalog'" in problem.message
    assert f"{path}:8" in problem.message


def test_partial_overlap_is_a_warning_and_the_table_loads(rules_file) -> None:
    path = rules_file(HEAD + cap("one", "[{path_template: '/api/{kind}/1'}]")
                      + cap("two", "[{path_prefix: /api/products}]"))
    report = check_rules(path, environ={})
    assert report.table is not None and report.errors == []
    (warning,) = report.warnings
    assert (warning.line, warning.rule, warning.severity) == (14, "two", "warning")
    assert "overlaps capability 'one'" in warning.message


def test_method_and_header_conditions_narrow_coverage(rules_file) -> None:
    path = rules_file(HEAD + cap("reads", "[{path_prefix: /api, methods: [GET]}]")
                      + cap("beta", "[{path_prefix: /api, headers: {X-Beta: '1'}}]")
                      + cap("writes", "[{path: /api/products, methods: [POST]}]"))
    report = check_rules(path, environ={})
    assert report.errors == []
    # beta only takes /api requests carrying X-Beta: 1; the POST matcher is disjoint from the
    # GET-only one but shares X-Beta requests with beta.
    assert [(w.rule, "overlaps capability 'beta'" in w.message) for w in report.warnings] == [
        ("beta", False), ("writes", True)]


def test_duplicate_names_and_keys(rules_file) -> None:
    path = rules_file(HEAD + cap("catalog") + cap("catalog", "[{path: /other}]"))
    (problem,) = errors(path)
    assert problem.line == 13 and "duplicate capability name" in problem.message
    path = rules_file(HEAD.replace("default: legacy\n", "default: legacy\ndefault: svc\n") + cap())
    (problem,) = errors(path)
    assert problem.line == 6 and "duplicate key 'default'" in problem.message


@pytest.mark.parametrize("stage, writes, ok", [
    ("legacy", "service", False), ("shadow", "service", False), ("shadow", "legacy", True),
    ("canary", "service", True), ("canary", "legacy", True), ("cutover", "legacy", False),
    ("retired", "legacy", False), ("retired", "service", True)])
def test_stage_and_write_owner_must_agree(rules_file, stage: str, writes: str, ok: bool) -> None:
    extra = f"writes: {writes}\nrollout: {{percent: 5, sticky: [header:X-User-Id]}}"
    report = check_rules(rules_file(HEAD + cap(stage=stage, extra=extra)), environ={})
    assert (report.table is not None) is ok
    if not ok:
        (problem,) = report.errors
        assert problem.line == 13 and f"stage {stage} requires writes" in problem.message


def test_canary_must_name_its_write_owner(rules_file) -> None:
    (problem,) = errors(rules_file(HEAD + cap(stage="canary", extra="rollout: {percent: 5}")))
    assert "explicit write owner" in problem.message


def test_malformed_template(rules_file) -> None:
    (problem,) = errors(rules_file(HEAD + cap(match="[{path_template: '/api/p{id}'}]")))
    assert problem.line == 8 and "not well-formed" in problem.message


def test_schema_errors_name_the_field(rules_file) -> None:
    path = rules_file(HEAD.replace("{url: http://127.0.0.1:9001}",
                                   "{url: http://127.0.0.1:9001, timeout: soon}")
                      + cap(match="[{path: /a, path_prefix: /b}]", stage="beta"))
    found = errors(path)
    assert [(p.line, p.rule) for p in found] == [(3, None), (8, "catalog"), (11, "catalog")]
    assert "backends.legacy.timeout: 'soon' is not valid: expected a duration" in found[0].message
    assert "exactly one of path, path_prefix" in found[1].message
    assert "stage: 'beta' is not one of legacy, shadow, canary" in found[2].message


def test_rules_error_reads_as_one_line_per_error(rules_file) -> None:
    path = rules_file(HEAD + cap().replace("legacy: legacy\n    service", "legacy: nope\n    service"))
    with pytest.raises(RulesError) as info:
        load_table(path, environ={})
    assert str(info.value) == (f"{path}:9: [rule catalog] error: legacy: backend 'nope' is not "
                               "defined under backends (known: legacy, svc)")


def test_missing_path_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(RulesUnreadable) as info:
        load_table(tmp_path / "nope.yaml")
    assert "no such file" in str(info.value)


def test_a_directory_loads_its_files_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "00-backends.yaml").write_text(HEAD.replace("capabilities:\n", ""))
    (tmp_path / "10-catalog.yaml").write_text("version: 1\ncapabilities:\n" + cap("catalog"))
    (tmp_path / "20-more.yaml").write_text("version: 1\ncapabilities:\n"
                                           + cap("inventory", "[{path_prefix: /api}]"))
    (tmp_path / "notes.txt").write_text("not rules")
    table = load_table(tmp_path, environ={})
    assert [c.name for c in table.capabilities] == ["catalog", "inventory"]
    assert table.decide("GET", "/api/products/1", "", {}).capability == "catalog"
    assert table.decide("GET", "/api/carts/1", "", {}).capability == "inventory"
    (tmp_path / "30-again.yaml").write_text("version: 1\ndefault: svc\n")
    (problem,) = errors(tmp_path)
    assert problem.file == str(tmp_path / "30-again.yaml") and "more than one file" in problem.message


def test_version_is_a_content_hash(rules_file) -> None:
    one = load_table(rules_file(HEAD + cap()), environ={})
    same = load_table(rules_file(HEAD + cap()), environ={})
    other = load_table(rules_file(HEAD + cap(match="[{path: /x}]")), environ={})
    assert one.version == same.version != other.version and len(one.version) == 12


def test_compiled_table_is_frozen(rules_file) -> None:
    table = load_table(rules_file(HEAD + cap()), environ={})
    with pytest.raises(AttributeError):
        table.version = "x"


def test_top_level_meaning_checks(rules_file) -> None:
    (problem,) = errors(rules_file("version: 1\nbackends: {legacy: {url: 'http://127.0.0.1:1'}}\n"))
    assert problem.line == 1 and "no default backend" in problem.message
    text = HEAD.replace("http://127.0.0.1:9002", "http://user:pw@127.0.0.1:9002/v1") + cap()
    found = errors(rules_file(text + "trusted_proxies: [10.0.0.0/8, not-an-ip]\n"))
    assert [p.line for p in found] == [4, 4, 13]
    assert "credentials do not belong" in found[0].message and "pw" not in found[0].message
    assert "remove the path" in found[1].message
    assert "'not-an-ip' is not an IP address" in found[2].message


def test_a_service_is_needed_beyond_stage_legacy(rules_file) -> None:
    text = HEAD + cap(stage="cutover").replace("    service: svc\n", "")
    (problem,) = errors(rules_file(text))
    assert problem.rule == "catalog" and "stage cutover needs a service backend" in problem.message
    legacy_only = HEAD + cap(stage="legacy").replace("    service: svc\n", "").replace(
        "    shadow: {percent: 100}\n", "")
    table = load_table(rules_file(legacy_only), environ={})
    assert table.decide("GET", "/api/products", "", {}).backend.name == "legacy"


def test_regex_overlaps_are_found_by_sample_paths(rules_file) -> None:
    report = check_rules(rules_file(HEAD
        + cap("a", "[{path_regex: '/api/products(/.*)?'}]")
        + cap("b", "[{path_template: '/api/products/{id}'}, {path_prefix: /api/orders}]")
        + cap("c", "[{path_regex: '/api/(orders|carts)/[0-9]+'}, {path: /api/carts}]")
        + cap("d", "[{path_regex: '/api/(carts|wishlists)'}]")), environ={})
    assert report.errors == []
    assert [(w.rule, w.line) for w in report.warnings] == [("b", 14), ("c", 20), ("d", 26)]
    assert "overlaps capability 'a'" in report.warnings[0].message
    assert "overlaps capability 'b' match[1]" in report.warnings[1].message
    assert "overlaps capability 'c' match[1]" in report.warnings[2].message
    path = rules_file(HEAD + cap("a", "[{path_regex: '/api/.*'}]") + cap("b", "[{path: /api/x}]"))
    (problem,) = errors(path)
    assert problem.rule == "b" and "never matches" in problem.message



@pytest.mark.parametrize("regex", [
    "/api/products/[0-9]+/reviews", "/api/products/7", "/api/products/.*",
    "^/api/products/(?:[0-9]+|new)$", "/api/products/(7|8)"])
def test_a_regex_wholly_under_an_earlier_prefix_never_matches(rules_file, regex: str) -> None:
    path = rules_file(HEAD + cap("catalog") + cap("reviews", f"[{{path_regex: '{regex}'}}]"))
    (problem,) = errors(path)
    assert (problem.line, problem.rule) == (14, "reviews")
    assert "never matches: capability 'catalog' match[0] (path_prefix /api/products)" \
        in problem.message and f"{path}:8" in problem.message
    assert "so capability 'reviews' never matches" in problem.message
    assert load_table(rules_file(HEAD + cap("catalog")), environ={}).decide(
        "GET", "/api/products/7/reviews", "", {}).capability == "catalog"


@pytest.mark.parametrize("regex, earlier", [
    ("/api/(products|carts)/.*", "[{path_prefix: /api/products}]"),   # carts lie outside
    ("/api/products.*", "[{path_prefix: /api/products}]"),            # so does /api/productsX
    ("(?i)/api/products/.*", "[{path_prefix: /api/products}]"),       # so does /API/products/1
    ("/api/products/[0-9]+/reviews", "[{path_prefix: /api/products, methods: [POST]}]"),
    ("/api/products/7", "[{path_template: '/api/products/{id}/x'}]"),
])
def test_a_regex_reaching_outside_an_earlier_matcher_only_overlaps(
        rules_file, regex: str, earlier: str) -> None:
    report = check_rules(rules_file(HEAD + cap("catalog", earlier)
                                    + cap("reviews", f"[{{path_regex: '{regex}'}}]")), environ={})
    assert report.errors == [] and report.table is not None
    assert [w.rule for w in report.warnings] == (
        [] if "/x" in earlier else ["reviews"])


def test_a_literal_regex_under_an_earlier_template_or_root_prefix_never_matches(rules_file) -> None:
    for earlier in ("[{path_template: '/api/products/{id}'}]", "[{path_prefix: /}]"):
        (problem,) = errors(rules_file(HEAD + cap("catalog", earlier)
                                       + cap("one", "[{path_regex: '/api/products/7'}]")))
        assert problem.rule == "one" and "never matches" in problem.message

def test_alias_bomb_is_refused(rules_file) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    (problem,) = errors(rules_file("\n".join(lines) + "\n"))
    assert "once aliases are expanded" in problem.message


def test_a_matcher_of_the_wrong_type_is_reported_once(rules_file) -> None:
    (problem,) = errors(rules_file(HEAD + cap(match="[/api/products]")))
    assert problem.line == 8
    assert problem.message.startswith("match[0]: '/api/products' is not of type 'object'; "
                                      "expected exactly one of path, path_prefix")


def test_tab_indentation_gets_a_hint(rules_file) -> None:
    (problem,) = errors(rules_file("version: 1\nbackends:\n\tlegacy: {url: 'http://a:1'}\n"))
    assert problem.line == 3 and problem.message.endswith("YAML indents with spaces, not tabs")


def test_trusted_proxies_compile_to_networks(rules_file) -> None:
    table = load_table(rules_file(HEAD + cap() + "trusted_proxies: [10.0.0.0/8, 192.168.1.7, '::1']\n"),
                       environ={})
    assert [str(n) for n in table.trusted_proxies] == ["10.0.0.0/8", "192.168.1.7/32", "::1/128"]


def test_malformed_shadow_compare_paths_cite_the_line(rules_file) -> None:
    path = rules_file(HEAD + cap().replace("    shadow: {percent: 100}\n", "") + (
        "    shadow:\n      percent: 100\n      compare:\n"
        "        ignore: ['$.updated_at', '$.a[']\n"
        "        unordered_arrays:\n          - '$.items[*'\n"))
    found = errors(path)      # the schema lets these through; the shadow's own parser does not
    assert [(p.line, p.rule) for p in found] == [(15, "catalog"), (17, "catalog")]
    assert found[0].message == ("shadow.compare.ignore[1]: path '$.a[': cannot read from "
                                "position 3 ('[')")
    assert found[1].message.startswith("shadow.compare.unordered_arrays[0]: path '$.items[*'")


@pytest.mark.parametrize("regex", [
    "/z/(a+)+b", "/z/(a*)*", "/z/(a|aa)+", r"(\w+\s?)*", "/z/(a{2,5})+b", "/([a-z]+-?)+/x"])
def test_a_regex_that_can_backtrack_exponentially_is_refused_with_advice(
        rules_file, regex: str) -> None:
    path = rules_file(HEAD + cap(match=(
        f"\n      - path_regex: '{regex}'\n"
        f"      - {{path: /x, headers: {{X-A: {{regex: '{regex}'}}}}, "
        f"query: {{q: {{regex: '{regex}'}}}}}}")).replace("    shadow: {percent: 100}\n", "")
        + f"    shadow:\n      percent: 100\n      compare:\n"
        f"        text_patterns:\n          - ok\n          - '{regex}'\n")
    found = errors(path)
    assert [(p.line, p.rule, p.message.split(":")[0]) for p in found] == [
        (9, "catalog", "match[0].path_regex"), (10, "catalog", "match[1].headers.X-A.regex"),
        (10, "catalog", "match[1].query.q.regex"),
        (19, "catalog", "shadow.compare.text_patterns[1]")]
    for problem in found:
        assert f"{regex!r} can take exponential time" in problem.message
        assert "(?>a+)+" in problem.message and "a++" in problem.message
    assert str(found[0]).startswith(f"{path}:9: [rule catalog] error: match[0].path_regex: ")


@pytest.mark.parametrize("regex", [
    "/api/v[0-9]+/orders(/.*)?", "/api/products/[0-9]+", "/api/(carts|wishlists)", "1|yes",
    r"\d{4}-\d\d-\d\dT[0-9:.]+Z", r"csrf=\w+", "/z/(?>a+)+b", "/z/a++b", "/z/(a+)++b",
    "/api(/[a-z0-9-]+)*", "/files/[^/]+(/[^/]+)*/edit", "/v(1|2)/(?:a|ab)/x"])
def test_ordinary_and_atomic_regexes_pass(rules_file, regex: str) -> None:
    report = check_rules(rules_file(HEAD + cap("only", (
        f"[{{path_regex: '{regex}', headers: {{X-A: {{regex: '{regex}'}}}}}}]"))), environ={})
    assert report.errors == [] and report.warnings == []

@pytest.mark.parametrize("stage, percent, warned", [
    ("shadow", 10, True), ("cutover", 50, True), ("cutover", 100, False),
    ("retired", 100, False), ("legacy", 0, False)])
def test_a_percent_its_stage_ignores_is_a_warning_unless_the_stage_implies_it(
        rules_file, stage: str, percent: int, warned: bool) -> None:
    writes = "service" if stage in ("cutover", "retired") else "legacy"
    extra = f"writes: {writes}\nrollout: {{percent: {percent}}}"
    report = check_rules(rules_file(HEAD + cap(stage=stage, extra=extra)), environ={})
    assert report.table is not None
    ignored = [w for w in report.warnings if "rollout.percent is ignored" in w.message]
    assert bool(ignored) is warned, report.warnings


def test_a_secret_pasted_as_secret_env_is_refused_and_never_echoed(rules_file) -> None:
    for pasted in ("9f3ac0ffee5ecret1234", "a9f3ac0ffee5ecret1234"):   # openssl rand -hex
        path = rules_file(HEAD + cap() + f"override: {{secret_env: '{pasted}'}}\n")
        (problem,) = errors(path)
        assert problem.line == 13 and pasted not in problem.message
        assert problem.message.startswith("override.secret_env: the value (not shown) is not "
                                          "valid: expected the NAME of the environment variable")
