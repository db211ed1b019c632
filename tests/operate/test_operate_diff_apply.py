"""`strangler rules diff|apply`: what a rule change means for routing, and putting it in place."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from operate import history
from operate.render import paint, table


@pytest.fixture
def new_rules(demo: Path) -> Path:
    """The demo with routing changes of every kind, comments reworded too."""
    text = demo.read_text()
    for old, new in [
        ("stage: shadow", "stage: canary"),
        ("      percent: 0 ", "      percent: 5 "),
        ("      - path_prefix: /api/categories\n", "      - path: /api/brands\n"),
        ("url: http://127.0.0.1:8002", "url: http://127.0.0.1:9002"),
        ("max_p99_ratio: 1.5", "max_p99_ratio: 1.2"),
        ("# Requests no capability matches go here.",
         "  - name: search\n    match:\n      - path_prefix: /search\n    legacy: legacy\n"
         "    stage: legacy\n\n# Unmatched requests go here."),
    ]:
        assert old in text
        text = text.replace(old, new)
    path = demo.parent.parent / "demo.yaml"
    path.write_text(text)
    return path


EXPECTED = [
    "+ capability search (stage legacy, 1 matcher(s))",
    "~ capability catalog: stage: shadow -> canary",
    "~ capability catalog: percent: 0 -> 5",
    "~ capability catalog: gates.max_p99_ratio: 1.5 -> 1.2",
    "- capability catalog: matcher (path_prefix /api/categories)",
    "+ capability catalog: matcher (path /api/brands)",
    "~ backend catalog: url: http://127.0.0.1:8002 -> http://127.0.0.1:9002",
]


def test_diff_against_the_live_rules(demo: Path, new_rules: Path, cli):
    r = cli("rules", "diff", str(new_rules))
    assert r.code == 1
    lines = r.out.splitlines()
    assert lines[0] == f"{demo} -> {new_rules}: 7 routing change(s)"
    assert [ln.strip() for ln in lines[1:]] == EXPECTED


def test_diff_two_files_as_json(demo: Path, new_rules: Path, cli):
    r = cli("rules", "diff", str(demo), str(new_rules), "--json")
    assert r.code == 1
    doc = json.loads(r.out)
    assert doc["same"] is False and len(doc["differences"]) == 7
    assert {"change": "changed", "subject": "capability catalog", "field": "stage",
            "old": "shadow", "new": "canary"} in doc["differences"]


def test_a_comment_only_change_is_no_routing_change(demo: Path, cli):
    other = demo.parent.parent / "same.yaml"
    other.write_text(demo.read_text().replace("# Upstreams", "# The upstreams"))
    r = cli("rules", "diff", str(demo), str(other))
    assert (r.code, r.out.strip()) == (0, f"{demo} -> {other}: no routing change")


def test_capability_order_is_a_routing_change(tmp_path: Path, cli):
    base = ("version: 1\nbackends: {l: {url: 'http://127.0.0.1:1'}}\ncapabilities:\n"
            "  - {name: a, match: [{path: /a}], legacy: l, stage: legacy}\n"
            "  - {name: b, match: [{path: /b}], legacy: l, stage: legacy}\ndefault: l\n")
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text(base)
    two.write_text(base.replace("name: a", "name: X").replace("name: b", "name: a")
                   .replace("name: X", "name: b"))
    r = cli("rules", "diff", str(one), str(two))
    assert "~ order: capabilities: [a, b] -> [b, a]" in r.out


def test_diff_with_an_invalid_file_is_one_line_exit_2(demo: Path, cli):
    bad = demo.parent.parent / "bad.yaml"
    bad.write_text(demo.read_text().replace("percent: 100 ", "percent: 300 "))
    r = cli("rules", "diff", str(bad))
    assert r.code == 2 and r.out == "" and r.err.count("\n") == 1
    assert "do not validate" in r.err and "bad.yaml:" in r.err


def test_apply_puts_the_file_in_place_records_it_and_undo_restores(demo: Path, new_rules: Path,
                                                                   cli):
    original = demo.read_bytes()
    r = cli("rules", "apply", str(new_rules), "--reason", "add search")
    assert r.code == 0, r.err
    assert r.out.splitlines()[0].startswith(
        f"rules apply {new_rules}: 7 routing change(s) (capability search, capability catalog, "
        "backend catalog) (rules ")
    assert "  ~ capability catalog: stage: shadow -> canary" in r.out
    assert demo.read_bytes() == new_rules.read_bytes()
    [entry] = history.entries(history.history_dir(demo))
    assert entry["why"] == "add search" and entry["capability"] is None
    assert entry["rule_diff"] == EXPECTED
    assert "already has this content" in cli("rules", "apply", str(new_rules)).out
    assert cli("undo").code == 0
    assert demo.read_bytes() == original


def test_apply_refuses_an_invalid_file_and_changes_nothing(demo: Path, cli, snapshot):
    bad = demo.parent.parent / "bad.yaml"
    bad.write_text(demo.read_text().replace("writes: legacy", "writes: service"))
    before = snapshot(demo)
    r = cli("rules", "apply", str(bad))
    assert r.code == 2 and r.err.count("\n") == 1
    assert "would make the rules invalid" in r.err and "stage shadow requires writes: legacy" \
        in r.err and "nothing was written" in r.err
    assert snapshot(demo) == before


def test_apply_can_repair_a_broken_live_file(demo: Path, cli):
    good = demo.read_bytes()
    demo.write_text("version: 1\nbackends: [\n")
    fixed = demo.parent.parent / "demo.yaml"
    fixed.write_bytes(good)
    assert cli("rules", "apply", str(fixed)).code == 0
    assert demo.read_bytes() == good


def test_tables_fit_their_width_and_colour_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    rows = [[str(i), "x" * 40, "y" * 60] for i in range(3)]
    out = table(["#", "A", "B"], rows, width=80)
    assert all(len(line) <= 80 for line in out.splitlines()) and "…" in out
    # Free text gives way first, so the column that says what changed stays whole.
    out = table(["#", "CHANGE", "WHY"], [["1", "c" * 40, "w" * 60]], width=80, cut_first=(2,))
    assert "c" * 40 in out and all(len(line) <= 80 for line in out.splitlines())

    class Terminal:
        def isatty(self) -> bool:
            return True

    class Pipe:
        def isatty(self) -> bool:
            return False
    assert paint("x", "red", Pipe()) == "x"
    assert paint("x", "red", Terminal()) == "\033[31mx\033[0m"


def test_apply_into_a_rules_directory_replaces_the_file_of_that_name(tmp_path: Path, demo: Path,
                                                                     cli):
    live = tmp_path / "live"
    live.mkdir()
    (live / "demo.yaml").write_bytes(demo.read_bytes())
    new = tmp_path / "demo.yaml"
    new.write_text(demo.read_text().replace("percent: 100 ", "percent: 20  "))
    r = cli("rules", "apply", str(new), "--rules", str(live))
    assert r.code == 0, r.err
    assert "~ capability catalog: shadow_percent: 100 -> 20" in r.out
    assert (live / "demo.yaml").read_bytes() == new.read_bytes()
    other = tmp_path / "other.yaml"
    other.write_bytes(new.read_bytes())
    r = cli("rules", "apply", str(other), "--rules", str(live))
    assert r.code == 2 and "has no file named other.yaml; name the new file after the one it " \
                           "replaces" in r.err
