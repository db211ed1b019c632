"""`strangler report CAP`: rollout state, live figures, history, CDC and the shadow report (from
the shadow results a real proxy wrote) as one document, in every format."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from proxy.shadow.store import STORE_ENV, ShadowStore
from tests.conftest import free_port
from tests.operate.live_harness import (OVERRIDE_SECRET, requests_on, token_file, traffic,
                                        upstream, wait_for, write_rules)
from tests.proxy.harness import proxy_process


@pytest.fixture(autouse=True)
def environment(monkeypatch):
    monkeypatch.setenv("STRANGLER_OVERRIDE_SECRET", OVERRIDE_SECRET)
    monkeypatch.setenv("STRANGLER_OPERATOR", "tester")
    monkeypatch.delenv("STRANGLER_PROXIES", raising=False)


async def test_report_is_one_document_in_every_format(tmp_path: Path, cli):
    async with upstream("legacy") as (legacy, _), \
            upstream("service", failing=True) as (service, _):
        # Canary at 0 %: legacy answers every read, a copy of each goes to the service.
        rules = write_rules(tmp_path / "rules" / "canary.yaml", legacy, service, percent=0,
                            shadow=50)
        assert cli("shadow", "on", "catalog", "--rules", str(rules),
                   "--reason", "first step").code == 0
        store = f"sqlite:///{tmp_path / 'shadow.sqlite3'}"     # where proxy_process writes
        async with proxy_process(rules, workers=2, log=tmp_path / "proxy.log") as (proxy, _):
            await traffic(proxy, 30)           # shadowed (pinned reads would not be)
            await wait_for(proxy, lambda s: requests_on(s, "legacy") >= 20, "figures")
            base = ("report", "catalog", "--rules", str(rules), "--store", store,
                    "--proxy", proxy.admin_url, "--token-file", token_file(tmp_path, proxy))
            doc = {}
            for _ in range(50):            # the shadow store flushes about once a second
                doc = json.loads(cli(*base, "--format", "json").out)
                if doc["shadow"]["capabilities"] and \
                        doc["shadow"]["capabilities"][0]["compared"] >= 20:
                    break
                await asyncio.sleep(0.2)
            assert doc["capability"] == "catalog"
            assert doc["rollout"]["stage"] == "canary" and doc["rollout"]["percent"] == 0
            assert doc["rollout"]["figures"]["legacy"]["requests"] >= 20
            assert [e["why"] for e in doc["history"]] == ["first step"]
            [shadow] = doc["shadow"]["capabilities"]
            assert shadow["compared"] >= 20 and shadow["matched"] == 0    # the service 500s

            # Without --store the proxy serves its own shadow results (/admin/shadow).
            via_proxy = json.loads(cli(*base[:4], *base[6:], "--format", "json",
                                       "--since", "1h").out)
            assert via_proxy["shadow"]["capabilities"][0]["compared"] >= shadow["compared"]

            # status shows the same shadow results, over its gate window.
            row = cli("status", *base[2:4], "--proxy", proxy.admin_url, "--token-file",
                      token_file(tmp_path, proxy)).out.splitlines()[1]
            assert "0.00%" in row.split(), row

            text = cli(*base).out
            assert text.startswith("Capability catalog (rules ")
            assert "stage canary, writes legacy, service answers 0 % of reads (next step 10 %)" in text
            assert "#1 " in text and "gates: wait" in text      # canary: judged
            assert "tester: catalog: shadow on, percent 50 -> 100 (first step)" in text
            assert "Shadow report" in text and "capability catalog: match rate 0.00 %" in text

            markdown = cli(*base, "--format", "markdown").out
            assert markdown.startswith("# Capability catalog") and "# Shadow report" in markdown

            out = tmp_path / "handover.html"
            written = cli(*base, "--format", "html", "--output", str(out))
            assert written.code == 0 and written.out == f"report written to {out}\n"
            html = out.read_text()
            assert html.count("<html") == 1
            assert html.index("<h1>Capability catalog") < html.index("<h1>Shadow report")


def test_report_without_proxies_or_shadow_results_still_hands_over(tmp_path: Path, cli,
                                                                    monkeypatch):
    rules = write_rules(tmp_path / "rules" / "canary.yaml", free_port(), free_port(), percent=10)
    missing = tmp_path / "none.sqlite3"
    monkeypatch.setenv(STORE_ENV, f"sqlite:///{missing}")     # the default store, not made yet
    result = cli("report", "catalog", "--rules", str(rules))
    assert result.code == 0, result.err
    assert "live figures: none (no proxy given: pass --proxy)" in result.out
    assert "history: no recorded change" in result.out
    assert f"No shadow results yet: no shadow store at {missing} (the default;" in result.out
    assert not missing.exists()                 # reading never creates a store
    bad = cli("report", "catalgo", "--rules", str(rules), "--store", f"sqlite:///{missing}")
    assert bad.code == 2 and "unknown capability" in bad.err
    window = cli("report", "catalog", "--rules", str(rules), "--since", "soon")
    assert window.code == 2 and "is not a duration" in window.err


def test_report_refuses_a_store_given_that_does_not_exist(tmp_path: Path, cli, monkeypatch):
    # A mistyped --store is an error, as in `strangler shadow report`, not "no results yet".
    monkeypatch.delenv(STORE_ENV, raising=False)
    rules = write_rules(tmp_path / "rules" / "canary.yaml", free_port(), free_port(), percent=10)
    typo = tmp_path / "shadw.db"
    for command in (("report", "catalog", "--rules", str(rules)), ("shadow", "report")):
        result = cli(*command, "--store", f"sqlite:///{typo}")
        assert (result.code, result.out) == (2, ""), command
        assert f"no shadow store at {typo}; pass --store or set {STORE_ENV}" in result.err
    assert not typo.exists()


def test_report_of_an_empty_window_does_not_say_yet(tmp_path: Path, cli):
    rules = write_rules(tmp_path / "rules" / "canary.yaml", free_port(), free_port(), percent=10)
    url = f"sqlite:///{tmp_path / 'shadow.sqlite3'}"
    store = ShadowStore(url)
    store.create_schema()
    store.engine.dispose()
    base = ("report", "catalog", "--rules", str(rules), "--store", url, "--since", "15m")
    for fmt in ("text", "markdown", "html"):
        result = cli(*base, "--format", fmt)
        assert result.code == 0, result.err
        assert "yet" not in result.out and "No shadow results since 20" in result.out, fmt
    doc = json.loads(cli(*base, "--format", "json").out)
    assert doc["shadow"]["capabilities"] == []
    assert doc["shadow_note"] is None and doc["shadow"]["since"] is not None   # says the window
    assert "No shadow results yet." in cli(*base[:6]).out      # no window: nothing ever


def test_gates_are_judged_in_canary_only_as_status_shows_them():
    """In cutover the shadow counts are not windowed (only a canary's are): a verdict there
    read 'gates: fail' on comparisons from before the cutover."""
    from operate.report import lines
    figures = {"window_s": 17, "legacy": {"requests": 5}, "service": {"requests": 9}}
    doc = {"rollout": {"stage": "cutover", "writes": "service", "percent": 100,
                       "service_percent": 100, "next_step": None, "gates": {},
                       "cdc_lag_s": None, "figures": figures,
                       "verdict": {"state": "fail", "checks": []}},
           "proxies": ["http://127.0.0.1:1"], "cdc": None, "history": []}
    text = "\n".join(lines(doc))
    assert "gates: not judged in stage cutover" in text and "gates: fail" not in text
    assert "service answers 100 % of reads" in text
