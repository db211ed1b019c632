import json
import re

import pytest

from proxy.shadow.formats import render
from proxy.shadow.report import build_report, gate
from proxy.shadow.store import ShadowStore
from strangler.cli import main

from tests.proxy.shadow.shadow_helpers import fill, observation

AT = 1_800_000_000.0


@pytest.fixture
def store(tmp_path):
    store = ShadowStore(f"sqlite:///{tmp_path / 'shadow.sqlite3'}")
    store.create_schema()
    yield store
    store.close()


def _route(report, route, capability="catalog"):
    cap = next(c for c in report["capabilities"] if c["name"] == capability)
    return next(r for r in cap["routes"] if r["route"] == route)


def test_bug_field_reported_and_noise_field_cancelled(store):
    fill(store, n=40)
    store.flush()
    report = build_report(store, now=AT + 100)
    products = _route(report, "/api/products/{id}")
    verdicts = {f["field"]: f["verdict"] for f in products["fields"]}
    assert verdicts == {"$.price": "reported", "$.generated_at": "noise"}
    assert products["fields"][0]["field"] == "$.price"  # regressions first
    assert (products["matched"], products["compared"], products["match_rate"]) == (0, 40, 0.0)
    categories = _route(report, "/api/categories")
    assert (categories["matched"], categories["match_rate"]) == (40, 100.0)
    assert report["capabilities"][0]["match_rate"] == 50.0
    assert [s["field"] for s in products["samples"]] == ["$.price", "$.price"]
    assert products["latency"]["legacy"]["p50"] == pytest.approx(10, rel=0.1)
    assert products["latency"]["service"]["p99"] == pytest.approx(20, rel=0.1)
    assert products["timeline"][0]["compared"] == 40
    legacy_hist = products["latency"]["legacy"]["histogram"]
    service_hist = products["latency"]["service"]["histogram"]
    assert [e for e, _ in legacy_hist] == [e for e, _ in service_hist]  # one shared axis
    assert legacy_hist[0][1] == 40 and service_hist[-1][1] == 40  # 10 ms vs 20 ms...
    assert all(c == 0 for _, c in legacy_hist[1:-1])  # ...with the empty bins between kept


def test_too_little_evidence_is_pending_and_counts_as_difference(store):
    fill(store, n=6)
    store.flush()
    r = _route(build_report(store, now=AT + 100), "/api/categories")
    assert {f["verdict"] for f in r["fields"]} == {"pending"}
    assert r["matched"] == 0


def test_status_mismatch_never_matches(store):
    for i in range(20):
        store.record(observation(route="/api/products/{id}", status_mismatch=i < 5,
                                 noise=set(), at=AT + i))
    store.flush()
    r = _route(build_report(store, now=AT + 100), "/api/products/{id}")
    assert (r["status_mismatch"], r["matched"], r["match_rate"]) == (5, 15, 75.0)


def test_filters_by_capability_and_window(store):
    fill(store, n=20)
    for i in range(20):
        store.record(observation(capability="search", route="/api/search", noise=set(),
                                 at=AT + 3600 + i))
    store.flush()
    only = build_report(store, capability="search", now=AT + 3700)
    assert [c["name"] for c in only["capabilities"]] == ["search"]
    recent = build_report(store, since_s=600, now=AT + 3700)
    assert [c["name"] for c in recent["capabilities"]] == ["search"]


def test_gate(store):
    fill(store, n=20)
    store.flush()
    report = build_report(store, now=AT + 100)
    assert gate(report, 99.5) == [
        "catalog: match rate 50.00 % < 99.5 % (20/40)",
        "catalog /api/products/{id}: match rate 0.00 % < 99.5 % (0/20)"]
    assert gate(report, 40) == ["catalog /api/products/{id}: match rate 0.00 % < 40 % (0/20)"]
    assert gate(report, 0) == []
    assert gate({"capabilities": []}, 50) != []  # no evidence never passes


def test_gate_judges_routes_only_with_enough_comparisons(store):
    fill(store, n=40)
    store.record(observation(route="/api/products", raw={"$.generated_at"}, at=AT))  # one write
    store.flush()
    report = build_report(store, now=AT + 100)
    # Too quiet for a verdict of its own: judged with its capability's evidence, where
    # generated_at is noise, so the one write matches instead of staying pending.
    quiet = _route(report, "/api/products")
    assert quiet["match_rate"] == 100.0 and quiet["fields"][0]["verdict_scope"] == "capability"
    assert gate(report, 40) == ["catalog /api/products/{id}: match rate 0.00 % < 40 % (0/40)"]
    # A real difference on a quiet route is not hidden: no noise anywhere backs it.
    store.record(observation(route="/api/products", raw={"$.sku"}, at=AT))
    store.flush()
    quiet = _route(build_report(store, now=AT + 100), "/api/products")
    assert quiet["match_rate"] == 50.0
    assert [f["verdict"] for f in quiet["fields"] if f["field"] == "$.sku"] == ["reported"]


def test_failed_shadows_count_against_the_rate_and_drops_keep_their_reason(store):
    """A service that times out on a route must not pass the gate on older comparisons."""
    fill(store, n=20)
    store.count("catalog", "/api/categories", "error:timeout", 20, at=AT)
    store.count("catalog", "/api/categories", "error:noise-timeout", 5, at=AT)  # legacy's, twice
    store.count("catalog", "/api/categories", "dropped:queue-full", 3, at=AT)
    store.flush()
    report = build_report(store, now=AT + 100)
    r = _route(report, "/api/categories")
    assert (r["compared"], r["failed"], r["matched"], r["match_rate"]) == (20, 20, 20, 50.0)
    assert (r["dropped"], r["dropped_by"]) == (3, {"queue-full": 3})
    assert "catalog /api/categories: match rate 50.00 % < 99 % (20/40, 20 failed)" in \
        gate(report, 99)
    assert "route /api/categories: match rate 50.00 % (20/40, 20 failed)" in render(report, "text")
    assert "dropped: queue-full 3" in render(report, "text")


def test_all_formats_show_route_fields_rates_and_curl(store):
    fill(store, n=20)
    store.flush()
    report = build_report(store, now=AT + 100)
    for fmt in ("text", "markdown", "html"):
        out = render(report, fmt)
        for expected in ("/api/products/{id}", "$.price", "$.generated_at", "0.00 %",
                         "100.00 %", "reported", "noise", "curl -sS -i -X GET"):
            assert expected in out, (fmt, expected)
    doc = json.loads(render(report, "json"))
    assert doc["capabilities"][0]["routes"][1]["fields"][0]["field"] == "$.price"


def test_html_is_self_contained_and_escaped(store):
    for i in range(12):
        store.record(observation(route="/api/<script>alert(1)</script>", raw={"$.x<y"},
                                 noise=set(), at=AT + i, sample_fields=("$.x<y",)))
    store.flush()
    page = render(build_report(store, now=AT + 100), "html")
    assert "<script>" not in page and "&lt;script&gt;" in page
    urls = re.findall(r"(?:https?:)?//[^\s'\"<>]+", page)
    assert urls and all(u.startswith("http://127.0.0.1:") for u in urls)  # only curl targets
    assert "<svg" in page and "<style>" in page and "<link" not in page and " src=" not in page


def test_cli_report_and_fail_under(store, tmp_path, capsys):
    fill(store, n=20)
    for i in range(20):
        store.record(observation(capability="search", route="/api/search", noise=set(),
                                 at=AT + i))
    store.flush()
    url = store.url
    assert main(["shadow", "report", "--store", url, "--format", "json",
                 "--fail-under", "99.5"]) == 1
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["gate"]["passed"] is False
    assert main(["shadow", "report", "--store", url, "--format", "html",
                 "--fail-under", "99.5"]) == 1
    page = capsys.readouterr().out
    assert "Gate (match rate &gt;= 99.5 %): FAILED" in page
    assert "<li>catalog /api/products/{id}: match rate 0.00 % &lt; 99.5 % (0/20)</li>" in page
    assert "shadow gate failed: catalog /api/products/{id}" in captured.err
    assert main(["shadow", "report", "--store", url, "--capability", "search",
                 "--fail-under", "99.5%"]) == 0          # written as the rule files write it
    assert "capability search: match rate 100.00 % (20/20)" in capsys.readouterr().out
    # A misspelt capability is an operator error, not "no results yet" and a failed gate.
    assert main(["shadow", "report", "--store", url, "--capability", "serach",
                 "--fail-under", "99.5"]) == 2
    err = capsys.readouterr().err
    assert "no shadow results for capability 'serach' in " in err
    assert err.rstrip().endswith("did you mean 'search'?")
    with pytest.raises(SystemExit):
        main(["shadow", "report", "--store", url, "--fail-under", "most"])
    assert "'most' is not a percentage; write e.g. 99.5" in capsys.readouterr().err
    out_file = tmp_path / "report.md"
    assert main(["shadow", "report", "--store", url, "--format", "markdown",
                 "-o", str(out_file)]) == 0
    assert out_file.read_text().startswith("# Shadow report")


def test_cli_operator_errors(tmp_path, capsys, store):
    assert main(["shadow", "report", "--store", f"sqlite:///{tmp_path / 'nope.db'}"]) == 2
    assert "no shadow store at" in capsys.readouterr().err
    assert main(["shadow", "report", "--store", store.url, "--since", "yesterday"]) == 2
    assert "15m" in capsys.readouterr().err
    assert main(["shadow", "report", "--store", "not a url"]) == 2
    assert main(["shadow", "report", "--store", "sqlite:///"]) == 2
    assert "names no file" in capsys.readouterr().err


def test_quiet_route_borrows_its_capabilitys_noise_evidence(store):
    fill(store, n=40)  # the capability learns generated_at is noise on its read routes
    for i in range(12):  # a write route: never replayed twice, so no noise samples of its own
        store.record(observation(route="/api/products", raw={"$.generated_at", "$.id"},
                                 at=AT + i))
    store.flush()
    report = build_report(store, now=AT + 100)
    r = _route(report, "/api/products")
    fields = {f["field"]: f for f in r["fields"]}
    assert fields["$.generated_at"]["verdict"] == "noise"
    assert fields["$.generated_at"]["noise_scope"] == "capability"
    assert fields["$.id"]["verdict"] == "reported"
    assert "100.0 % (40, capability-wide)" in render(report, "text")


def test_markdown_cells_survive_pipes_and_backticks(store):
    for i in range(12):
        store.record(observation(route="/api/a|b", raw={"$.x`y"}, noise=set(), at=AT + i,
                                 sample_fields=("$.x`y",)))
    store.flush()
    md = render(build_report(store, now=AT + 100), "markdown")
    assert "| `/api/a\\|b` | 0.00 % |" in md
    assert "| `` $.x`y `` | reported |" in md


def test_the_window_starts_at_a_bucket_and_fields_say_when_they_last_differed(store):
    """--since is widened to the store's bucket (and says so); a field fixed an hour ago shows
    its last bucket, so it can be told from a live one."""
    store.record(observation(raw={"$.price"}, at=AT))
    store.record(observation(raw=set(), at=AT + 3600))
    store.flush()
    report = build_report(store, since_s=10, now=AT + 3700)
    assert report["since"] == (AT + 3690) // 300 * 300 and report["format_version"] == 2
    everything = build_report(store, now=AT + 3700)
    [price] = [f for f in _route(everything, "/api/products/{id}")["fields"]
               if f["field"] == "$.price"]
    assert price["last_seen"] == AT // 300 * 300
    assert "last seen 2027-01-15 08:00 UTC" in render(everything, "text")
