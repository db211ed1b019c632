"""The shadow benchmark's own pieces: its two rule tables differ only in the shadow share, the
counters are read from the proxy's real /metrics rendering, paired ratios cancel the machine's
drift between rounds, and the verdicts apply the issue's bars to ratios of the same run."""
from __future__ import annotations

import dataclasses
import operator

import yaml

from benchmarks.shadow_bench import (BENCH_PATH, Figures, Sample, paired, render, rules_document,
                                     ruler, shadow_totals, verdicts)
from benchmarks.wrk import Load
from proxy.metrics import Metrics, render as render_metrics
from proxy.rules import check_rules
from proxy.shadow.dispatcher import DESCRIPTIONS


def test_rule_tables_shadow_every_request_or_none_to_the_other_upstream(tmp_path):
    plans = {}
    for percent in (0, 100):
        path = tmp_path / f"rules-{percent}.yaml"
        path.write_text(yaml.safe_dump(rules_document("http://127.0.0.1:9", "http://127.0.0.1:10",
                                                      percent)))
        report = check_rules(path)
        assert report.errors == []
        decision = report.table.decide("GET", BENCH_PATH, "", {})
        assert decision.capability == "catalog" and decision.backend.url == "http://127.0.0.1:9"
        plans[percent] = decision.shadow
    assert plans[0] is None
    assert plans[100].target.url == "http://127.0.0.1:10"
    assert plans[100].compare.noise_percent == 0


def test_shadow_totals_sum_each_counter_over_its_labels():
    metrics = Metrics()
    for name, text in DESCRIPTIONS.items():
        metrics.describe(name, text)
    metrics.inc("strangler_shadow_submitted_total", {"capability": "catalog"}, 7)
    metrics.inc("strangler_shadow_dropped_total",
                {"capability": "catalog", "reason": "queue-full"}, 2)
    metrics.inc("strangler_shadow_dropped_total", {"capability": "other", "reason": "shutdown"}, 1)
    metrics.inc("strangler_shadow_compared_total", {"capability": "catalog"}, 5)
    metrics.observe("strangler_shadow_latency_seconds",
                    {"capability": "catalog", "side": "service"}, 0.002)
    assert shadow_totals(render_metrics(metrics)) == {
        "submitted": 7, "compared": 5, "dropped": 3, "errors": 0, "skipped": 0}


def figures(name: str, p50: float, p99: float, dropped: float = 0) -> Figures:
    return Figures(name, 1000.0, p50, p99, 50.0, [],
                   {"submitted": 10, "compared": 10, "dropped": dropped, "errors": 0, "skipped": 0})


def timed(p50: float, p99: float) -> Sample:
    return Sample(Load(1000, 1.0, 0, 1000.0, p50, p50, p99, p50), 50.0)


def test_paired_ratios_hold_each_round_against_the_rounds_around_it():
    # The machine drifts: every round is slower than the one before; 100 % costs 10 % on top.
    before = [timed(1.0 * k, 4.0 * k) for k in (1, 2, 3)]
    after = [timed(1.2 * k, 4.8 * k) for k in (1, 2, 3)]
    during = [timed(1.21 * k, 5.5 * k) for k in (1, 2, 3)]
    found = paired(before, during, after)
    assert round(found["p50"], 6) == 1.1 and round(found["p99"], 6) == 1.25
    assert {k: round(v, 6) for k, v in ruler(before, after).items()} == {"p50": 1.2, "p99": 1.2}
    # A ratio of medians would read the drift as cost: (1.21*2)/(1.0*2) = 1.21.
    many = paired([timed(1.0, 4.0), timed(1.0, 4.0), timed(9.0, 9.0)],
                  [timed(1.0, 4.0), timed(1.5, 8.0), timed(1.0, 4.0)],
                  [timed(1.0, 4.0), timed(1.0, 4.0), timed(9.0, 9.0)])
    assert many == {"p50": 1.0, "p99": 1.0}       # the median: one bad round does not decide
    added = paired(before, during, after, operator.sub)     # ms the 100 % rounds add
    assert {k: round(v, 6) for k, v in added.items()} == {"p50": 0.22, "p99": 2.2}


def test_verdicts_hold_shadowing_to_the_bars_against_no_shadowing_of_the_same_run():
    paced = [figures("0% shadow", 1.0, 4.0), figures("100% shadow", 1.2, 4.4)]
    paced_paired = {"p50": 1.09, "p99": 1.30}
    overload = [figures("0% shadow", 2.0, 10.0), figures("100% shadow", 3.0, 20.0, dropped=50),
                figures("100% to a slow service", 2.3, 12.0, dropped=900)]
    passed = verdicts(paced_paired, overload)
    assert passed == {"paced p50": True, "paced p99": False,
                      "overload dropped (fast target)": True, "overload p50 (fast target)": False,
                      "overload p99 (fast target)": False,
                      "overload dropped (slow target)": True, "overload p50 (slow target)": False,
                      "overload p99 (slow target)": True}
    paced[1] = dataclasses.replace(paced[1], shadow_process_cpu_us_per_request=70.0)
    control = {"figures": [figures("0% shadow", 1.0, 4.0),
                           figures("0% + 70 us CPU/req burnt", 1.2, 4.4),
                           figures("0% + target asked by wrk", 1.05, 4.2)],
               "burnt": {"p50": 1.2, "p99": 1.1}, "target_load": {"p50": 1.05, "p99": 1.08}}
    table = render({"peak_rps": 9000.0, "pause_ms": 1, "paced": paced,
                    "paced_paired": paced_paired, "paced_ruler": {"p50": 1.01, "p99": 0.98},
                    "paced_added_ms": {"p50": 0.031, "p99": 0.12},
                    "overload": overload, "control": control}, passed)
    assert "paced 100%/0%                p50 1.090x  p99 1.300x  (paired; medians alone: p50 " \
        "1.200x p99 1.100x" in table
    assert "paced 0%/0% (the ruler)      p50 1.010x  p99 0.980x" in table
    assert "paced 100% - 0%              p50 +31 us  p99 +120 us" in table
    assert "  paced p99                       FAIL" in table
    assert "control burnt/plain          p50 1.200x  p99 1.100x  (the shadow process spent 70 us" \
        in table
    assert "control target load/plain    p50 1.050x  p99 1.080x" in table
