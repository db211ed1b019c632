"""proxy.autorollback with real `strangler proxy` processes: a canary whose service starts
failing is set to 0 % by the proxy itself; with two proxies on the same rule file, both end at
0 % with exactly one history entry."""
from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from operate.history import entries, history_dir
from proxy.rules import load_table
from tests.operate.live_harness import (OVERRIDE_SECRET, admin_status, service_requests, token_file,
                                        traffic, upstream, wait_for, write_rules)
from tests.proxy.harness import proxy_process, running_proxy


def percent_in(rules: Path) -> float:
    return load_table(rules, environ={}).capability("catalog").percent


@pytest.fixture(autouse=True)
def override_secret(monkeypatch):
    monkeypatch.setenv("STRANGLER_OVERRIDE_SECRET", OVERRIDE_SECRET)


async def test_two_proxies_roll_a_failing_canary_back_once_and_both_follow(tmp_path: Path, cli):
    async with upstream("legacy") as (legacy, _), upstream("service") as (service, health):
        rules = write_rules(tmp_path / "rules" / "canary.yaml", legacy, service, percent=50)
        version = load_table(rules, environ={}).version
        async with proxy_process(rules, workers=2, log=tmp_path / "a.log") as (a, _), \
                proxy_process(rules, workers=2, log=tmp_path / "b.log") as (b, _):
            # Healthy traffic: the gates hold, nothing moves.
            assert set(await traffic(a, 80)) == {200}
            healthy = await wait_for(a, lambda s: service_requests(s) >= 20, "healthy figures")
            assert healthy["gates"]["capabilities"]["catalog"]["verdict"]["state"] == "pass"
            assert percent_in(rules) == 50
            # The release breaks: reads fall back to legacy (clients still get 200), the
            # service's failures count against it, and the gate breaks on both proxies.
            health["failing"] = True
            both = await asyncio.gather(traffic(a, 100), traffic(b, 100))
            assert set(both[0] + both[1]) == {200}
            for proxy in (a, b):
                await wait_for(proxy, lambda s: s["rules"]["version"] != version
                               and s["capabilities"]["catalog"]["percent"] == 0,
                               "rollback reaching every proxy")
            assert percent_in(rules) == 0
            log = entries(history_dir(rules))
            assert len(log) == 1, log
            assert log[0]["who"].startswith("proxy:")
            assert log[0]["summary"] == "catalog: rollout percent 50 -> 0"
            assert "automatic rollback: error_rate: service" in log[0]["why"]
            # The proxy that took it says so in its status and metrics; the CLI shows it.
            taken = [p for p in (a, b)
                     if (await admin_status(p))["gates"]["last_autorollback"] is not None]
            assert len(taken) == 1
            last = (await admin_status(taken[0]))["gates"]["last_autorollback"]
            assert last["capability"] == "catalog" and last["gates"] == ["error_rate"]
            assert last["history_id"] == log[0]["id"]
            async with aiohttp.ClientSession(headers=taken[0].auth) as session:
                async with session.get(f"{taken[0].admin_url}/metrics") as resp:
                    metrics = await resp.text()
            assert 'strangler_autorollback_total{capability="catalog",gate="error_rate"} 1' \
                in metrics
            shown = cli("status", "--rules", str(rules), "--proxy", taken[0].admin_url,
                        "--token-file", token_file(tmp_path, taken[0]))
            assert shown.code == 0, shown.err
            assert f"automatic rollback of catalog by {last['who']}" in shown.out
            # It never re-promotes on its own: more traffic leaves the percent at 0.
            health["failing"] = False
            await traffic(a, 40)
            assert percent_in(rules) == 0 and len(entries(history_dir(rules))) == 1



async def test_a_slow_service_breaks_the_p99_gate_and_the_proxy_rolls_it_back(tmp_path: Path):
    async with upstream("legacy") as (legacy, _), \
            upstream("service", delay_s=0.3) as (service, _):
        rules = write_rules(tmp_path / "rules" / "canary.yaml", legacy, service, percent=10,
                            max_p99_ratio=3)
        async with running_proxy(rules) as proxy:
            statuses = await asyncio.gather(traffic(proxy, 30, pin="service"),
                                            traffic(proxy, 30, pin="legacy"))
            assert set(statuses[0] + statuses[1]) == {200}
            status = await wait_for(proxy, lambda s: s["gates"]["last_autorollback"] is not None,
                                    "the p99 rollback")
            last = status["gates"]["last_autorollback"]
            assert last["gates"] == ["p99"] and last["who"].startswith("proxy:")
            assert "p99: service " in last["reasons"][0]
            assert percent_in(rules) == 0
            [entry] = entries(history_dir(rules))
            assert entry["id"] == last["history_id"] and "p99" in entry["why"]
            # Served at once (the proxy reloads after its own edit), never raised again.
            await wait_for(proxy, lambda s: s["capabilities"]["catalog"]["percent"] == 0,
                           "the reload")


def test_fallbacks_count_against_the_service_and_figures_are_windowed(tmp_path: Path):
    """The watcher's arithmetic on real worker metrics: a read the service failed and legacy
    answered is a service request and error, not a legacy one; figures are differences from
    the window's first reading."""
    from collections import deque

    from proxy.autorollback import _raw, _window
    from proxy.metrics import Metrics
    rules = write_rules(tmp_path / "rules.yaml", 1, 2, percent=50)
    table = load_table(rules, environ={})

    def reading(ok_service: int, fallbacks: int, legacy_ok: int) -> dict:
        m = Metrics()
        base = (("backend", "catalog"), ("capability", "catalog"))
        m.inc("strangler_requests_total", base + (("side", "service"), ("status", "200")),
              ok_service)
        m.inc("strangler_requests_total", (("backend", "legacy"), ("capability", "catalog"),
                                           ("side", "legacy"), ("status", "200")),
              legacy_ok + fallbacks)
        m.inc("strangler_fallbacks_total", (("capability", "catalog"), ("reason", "5xx")),
              fallbacks)
        for _ in range(ok_service):
            m.observe("strangler_request_duration_seconds", base, 0.004)
        return _raw(m, table)

    samples = deque([(100.0, reading(10, 0, 10)), (160.0, reading(40, 10, 50))])
    figures = _window(samples, "catalog", 100.0, (0, 0), None)
    assert (figures.service.requests, figures.service.errors) == (40, 10)
    assert (figures.legacy.requests, figures.legacy.errors) == (40, 0)
    assert figures.service.p99_s == pytest.approx(0.003 + 0.002 * 0.99)   # in (3, 5] ms
    assert figures.window_s == 60.0
    whole = _window(deque([(0.0, {})] + list(samples)), "catalog", 0.0, (3, 2), 1.5)
    assert whole.service.requests == 50 and whole.shadow_matched == 2 and whole.cdc_lag_s == 1.5


async def test_the_shadow_gate_counts_only_comparisons_after_the_rollout_change(tmp_path: Path):
    """The store counts in 5-minute buckets: comparisons of the previous step, in the same
    bucket as the change, must not decide the new step (they once rolled a canary back)."""
    from types import SimpleNamespace

    from proxy.autorollback import SLOW_FIGURES_S, GateWatch
    from proxy.metrics import Metrics
    from proxy.shadow.store import BUCKET_S, ShadowStore
    from tests.proxy.shadow.shadow_helpers import observation
    rules = write_rules(tmp_path / "rules.yaml", 1, 2, percent=50, min_requests=1)
    rules.write_text(rules.read_text().replace("      min_requests: 1",
                                               "      min_requests: 1\n      min_shadow_match: 99.5%"))
    table = load_table(rules, environ={})
    store = ShadowStore(f"sqlite:///{tmp_path / 'shadow.sqlite3'}")
    store.create_schema()
    bucket = 1_800_000_000 // BUCKET_S * BUCKET_S
    for i in range(40):                    # the step before: the service differed
        store.record(observation(raw={"$.price"}, noise=set(), at=bucket + 10 + i))
    store.flush()
    runtime = SimpleNamespace(rules=SimpleNamespace(table=table), started_at=bucket + 90,
                              merged_metrics=Metrics)
    watch = GateWatch(runtime)
    watch.shadow_store = store.url
    await watch.tick(now=bucket + 100)                  # the change: this step starts here
    assert watch._figures["catalog"].shadow_compared == 0
    for i in range(30):                    # this step: the fixed service matches
        store.record(observation(noise=set(), at=bucket + 110 + i))
    store.flush()
    await watch.tick(now=bucket + 150 + SLOW_FIGURES_S)
    figures = watch._figures["catalog"]
    assert (figures.shadow_compared, figures.shadow_matched) == (30, 30)
    assert "shadow_match" not in watch._verdicts["catalog"].failed_gates
    store.close()
