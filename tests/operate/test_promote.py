"""`strangler promote CAP` against a real `strangler proxy` (2 workers) and real upstreams:
low traffic waits, healthy traffic promotes one step, 0 % without pinned reads says what moves it
on, a failing service is refused, --force needs a reason and is recorded; bad input changes
nothing."""
from __future__ import annotations

from pathlib import Path

import pytest

from operate.history import entries, history_dir
from proxy.rules import load_table
from tests.operate.live_harness import (OVERRIDE_SECRET, requests_on, service_requests, token_file,
                                        traffic, upstream, wait_for, write_rules)
from tests.proxy.harness import proxy_process


def percent_in(rules: Path) -> float:
    return load_table(rules, environ={}).capability("catalog").percent


@pytest.fixture(autouse=True)
def override_secret(monkeypatch):
    monkeypatch.setenv("STRANGLER_OVERRIDE_SECRET", OVERRIDE_SECRET)
    monkeypatch.setenv("STRANGLER_OPERATOR", "tester")
    monkeypatch.delenv("STRANGLER_PROXIES", raising=False)


async def test_promote_waits_on_low_traffic_then_moves_one_step_on_healthy_traffic(
        tmp_path: Path, cli):
    async with upstream("legacy") as (legacy, _), upstream("service") as (service, _):
        rules = write_rules(tmp_path / "rules" / "canary.yaml", legacy, service, percent=10)
        async with proxy_process(rules, workers=2, log=tmp_path / "proxy.log") as (proxy, _):
            args = ("promote", "catalog", "--rules", str(rules), "--proxy", proxy.admin_url,
                    "--token-file", token_file(tmp_path, proxy))
            await traffic(proxy, 10, pin="service")
            await wait_for(proxy, lambda s: service_requests(s) >= 10, "first figures")
            waiting = cli(*args)
            assert waiting.code == 3, waiting.err
            assert "traffic: wait: waiting: " in waiting.out and "of 20 requests" in waiting.out
            assert percent_in(rules) == 10 and entries(history_dir(rules)) == []

            await traffic(proxy, 30, pin="service")
            await traffic(proxy, 30, pin="legacy")
            await wait_for(proxy, lambda s: service_requests(s) >= 20, "enough traffic")
            judged = cli(*args, "--dry-run")
            assert judged.code == 0 and "gates: pass" in judged.out
            assert "catalog: rollout percent 10 -> 50" in judged.out and "dry run" in judged.out
            assert percent_in(rules) == 10 and entries(history_dir(rules)) == []
            done = cli(*args)
            assert done.code == 0, done.out + done.err
            assert "gates: pass" in done.out
            assert "catalog: rollout percent 10 -> 50" in done.out
            assert percent_in(rules) == 50
            [entry] = entries(history_dir(rules))
            assert entry["who"] == "tester" and entry["why"].startswith("gates pass: traffic: ")

            # The figures start again at the new step: no second step on the same traffic.
            again = cli(*args, "--json")
            assert again.code == 3
            assert percent_in(rules) == 50


async def test_a_gate_that_cannot_be_measured_is_named_not_blamed_on_traffic(
        tmp_path: Path, cli, monkeypatch):
    for store in ("STRANGLER_LEGACY_DB", "STRANGLER_CATALOG_DB"):   # CDC never ran: no lag
        monkeypatch.setenv(store, f"sqlite:///{tmp_path / 'never' / 'ran.db'}")
    async with upstream("legacy") as (legacy, _), upstream("service") as (service, _):
        rules = write_rules(tmp_path / "rules" / "canary.yaml", legacy, service, percent=10)
        rules.write_text(rules.read_text().replace("      min_requests: 20",
                                                   "      min_requests: 20\n      max_cdc_lag: 5s"))
        async with proxy_process(rules, workers=2, log=tmp_path / "proxy.log") as (proxy, _):
            await traffic(proxy, 30, pin="service")
            await traffic(proxy, 30, pin="legacy")
            await wait_for(proxy, lambda s: service_requests(s) >= 20
                           and requests_on(s, "legacy") >= 20, "enough traffic")
            waiting = cli("promote", "catalog", "--rules", str(rules), "--proxy",
                          proxy.admin_url, "--token-file", token_file(tmp_path, proxy))
            assert waiting.code == 3, waiting.err
            assert "traffic: pass" in waiting.out and "cdc_lag: wait" in waiting.out
            assert waiting.err.strip() == (
                "waiting: catalog stays at its current step; waiting on cdc_lag (reasons above)")


async def test_promote_at_0_percent_without_pinned_reads_says_what_moves_it_on(
        tmp_path: Path, cli):
    async with upstream("legacy") as (legacy, _), upstream("service") as (service, _):
        rules = write_rules(tmp_path / "rules" / "canary.yaml", legacy, service, percent=0)
        async with proxy_process(rules, workers=2, log=tmp_path / "proxy.log") as (proxy, _):
            await traffic(proxy, 30)                  # every read goes to legacy
            waiting = cli("promote", "catalog", "--rules", str(rules), "--proxy",
                          proxy.admin_url, "--token-file", token_file(tmp_path, proxy))
            assert waiting.code == 3, waiting.err
            assert waiting.out.splitlines()[0] == (
                "catalog is at 0 %: only reads pinned to the service (the override header) "
                "reach it, so its traffic will not come by itself; pin test reads to it, or take "
                "the first step by hand: `strangler rollout catalog 10`")
            assert "traffic: wait: waiting: 0 of 20 requests" in waiting.out
            assert percent_in(rules) == 0 and entries(history_dir(rules)) == []


async def test_promote_refuses_a_failing_service_and_force_needs_a_reason(tmp_path: Path, cli):
    async with upstream("legacy") as (legacy, _), \
            upstream("service", failing=True) as (service, _):
        # Canary at 0 %: testers pin reads to the service, which answers 500.
        rules = write_rules(tmp_path / "rules" / "canary.yaml", legacy, service, percent=0)
        async with proxy_process(rules, workers=2, log=tmp_path / "proxy.log") as (proxy, _):
            token = token_file(tmp_path, proxy)
            args = ("promote", "catalog", "--rules", str(rules), "--proxy", proxy.admin_url,
                    "--token-file", token)
            assert set(await traffic(proxy, 30, pin="service")) == {500}
            await traffic(proxy, 30, pin="legacy")
            await wait_for(proxy, lambda s: service_requests(s) >= 20, "enough traffic")
            refused = cli(*args)
            assert refused.code == 1
            assert "gates: fail" in refused.out
            assert "error_rate: fail: service 100.00 % vs legacy 0.00 %" in refused.out
            assert "refused: catalog stays at its current step" in refused.err
            assert percent_in(rules) == 0 and entries(history_dir(rules)) == []

            no_reason = cli(*args, "--force")
            assert no_reason.code == 2
            assert no_reason.err.strip() == ("strangler: error: --force needs --reason TEXT: a "
                                             "forced promotion is recorded with why")
            (tmp_path / "wrong").write_text("not-the-token")
            wrong = cli(*args[:-1], str(tmp_path / "wrong"))
            assert wrong.code == 2
            assert f"the admin token was refused by {proxy.admin_url}" in wrong.err
            assert percent_in(rules) == 0 and entries(history_dir(rules)) == []

            forced = cli(*args, "--force", "--reason", "TICKET-7 errors are a known test stub")
            assert forced.code == 0, forced.err
            last_line = forced.out.splitlines()[-1]
            assert last_line.startswith("forced: catalog: rollout percent 0 -> 10")
            [entry] = entries(history_dir(rules))
            assert entry["why"].startswith("forced (fail): TICKET-7 errors are a known test stub;")
            assert percent_in(rules) == 10


def test_bad_input_gets_one_line_and_changes_nothing(tmp_path: Path, cli, snapshot):
    from tests.conftest import free_port
    rules = write_rules(tmp_path / "rules" / "canary.yaml", free_port(), free_port(), percent=10)
    before = snapshot(rules)
    dead = f"http://127.0.0.1:{free_port()}"
    token = tmp_path / "token"
    token.write_text("t")
    cases = {
        ("promote", "catalgo", "--proxy", dead, "--token-file", str(token)):
            "unknown capability",
        ("promote", "catalog", "--proxy", dead, "--token-file", str(token)):
            f"proxy at {dead} is unreachable (connection refused)",
        ("promote", "catalog"): "no proxy to read live figures from; pass --proxy URL",
        ("status", "--proxy", dead, "--token-file", str(token)): f"proxy at {dead} is unreachable",
    }
    for args, expected in cases.items():
        result = cli(*args, "--rules", str(rules))
        assert result.code == 2, (args, result.out)
        assert len(result.err.strip().splitlines()) == 1, result.err
        assert expected in result.err, result.err
    broken = tmp_path / "broken" / "rules.yaml"
    broken.parent.mkdir()
    broken.write_text(rules.read_text().replace("stage: canary", "stage: sideways"))
    result = cli("promote", "catalog", "--rules", str(broken), "--force", "--reason", "x")
    assert result.code == 2 and "sideways" in result.err
    assert snapshot(rules) == before
    # --force is the way through when no proxy answers: recorded with why it was not judged.
    forced = cli("promote", "catalog", "--rules", str(rules), "--proxy", dead, "--token-file",
                 str(token), "--force", "--reason", "proxies down, canary verified by hand")
    assert forced.code == 0, forced.err
    [entry] = entries(history_dir(rules))
    assert entry["why"].startswith("forced (unjudged): proxies down, canary verified by hand; "
                                   f"no live figures (proxy at {dead} is unreachable")
    assert percent_in(rules) == 50
