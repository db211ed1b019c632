"""operate.gates: pure judgement of figures against the rules' gates (wait, pass, fail)."""
from __future__ import annotations

import math
from statistics import NormalDist

import pytest

from operate.gates import FAIL, PASS, WAIT, Figures, SideFigures, combine, evaluate, percentile
from proxy.metrics import LATENCY_BUCKETS, Metrics
from proxy.rules.capability import Gates

GATES = Gates(max_error_rate_delta=0.5, max_p99_ratio=1.5, min_requests=200)


def latency(seconds: float, n: int) -> tuple[float, ...]:
    """A histogram row with N observations in the bucket holding SECONDS."""
    row = [0.0] * (len(LATENCY_BUCKETS) + 1)
    row[next(i for i, b in enumerate(LATENCY_BUCKETS) if seconds <= b)] = n
    return tuple(row)


def side(requests: int, errors: int = 0, p99: float = 0.01) -> SideFigures:
    return SideFigures(requests, errors, latency(p99, requests))


def test_low_traffic_waits_even_when_every_request_failed():
    verdict = evaluate(GATES, Figures(side(500), side(57, errors=57)))
    assert verdict.state == WAIT
    assert verdict.reasons == ["traffic: waiting: 57 of 200 requests on the service"]


def test_healthy_traffic_passes_every_gate():
    verdict = evaluate(GATES, Figures(side(1000, errors=1), side(300, errors=1)))
    assert verdict.state == PASS
    assert [c.gate for c in verdict.checks] == ["traffic", "error_rate", "p99"]


def test_error_rate_above_legacy_fails_with_the_figures():
    verdict = evaluate(GATES, Figures(side(1000), side(200, errors=20)))
    assert verdict.state == FAIL
    assert verdict.failed_gates == ["error_rate"]
    assert "service 10.00 % vs legacy 0.00 %" in verdict.reasons[0]


def test_slow_service_fails_the_p99_ratio():
    verdict = evaluate(GATES, Figures(side(1000, p99=0.01), side(200, p99=0.1)))
    assert verdict.failed_gates == ["p99"]
    assert "x10.00, max x1.5" in verdict.reasons[0]


def test_unmeasured_gates_wait_but_a_broken_one_still_fails():
    gates = Gates(max_error_rate_delta=0.5, min_shadow_match=99.5, max_cdc_lag_s=5, min_requests=10)
    waiting = evaluate(gates, Figures(side(100), side(100)))
    assert waiting.state == WAIT
    assert {c.gate for c in waiting.checks if c.state == WAIT} == {"shadow_match", "cdc_lag"}
    failing = evaluate(gates, Figures(side(100), side(100, errors=50)))
    assert failing.state == FAIL


def test_shadow_match_and_cdc_lag_are_judged_when_measured():
    gates = Gates(min_shadow_match=99.5, max_cdc_lag_s=5, min_requests=10)
    ok = evaluate(gates, Figures(side(10), side(10), 1000, 999, 1.0))
    assert ok.state == PASS
    bad = evaluate(gates, Figures(side(10), side(10), 1000, 900, 9.0))
    assert bad.failed_gates == ["shadow_match", "cdc_lag"]


def test_combine_adds_traffic_but_not_the_shared_shadow_store():
    a = Figures(side(100, 1), side(60, 2), 50, 49, None, 30.0)
    b = Figures(side(300, 0), side(90, 1), 52, 50, 2.5, 60.0)
    total = combine([a, b])
    assert (total.legacy.requests, total.legacy.errors) == (400, 1)
    assert (total.service.requests, total.service.errors) == (150, 3)
    assert (total.shadow_compared, total.shadow_matched) == (52, 50)
    assert total.cdc_lag_s == 2.5 and total.window_s == 60.0
    assert sum(total.service.latency) == 150


def test_figures_round_trip_through_the_status_document():
    f = Figures(side(10, 1), side(20, 2, p99=0.2), 5, 4, 1.5, 12.0)
    assert Figures.from_dict(f.as_dict()) == f


def test_percentile_interpolates_inside_the_bucket_like_histogram_quantile():
    row = [0.0] * (len(LATENCY_BUCKETS) + 1)
    ten = LATENCY_BUCKETS.index(0.01)
    row[ten], row[ten + 1] = 98, 2       # 98 in (7.5, 10] ms, 2 in (10, 15] ms
    assert percentile(row, 0.49) == pytest.approx(0.00875)
    assert percentile(row, 0.98) == pytest.approx(0.01)
    assert percentile(row, 0.99) == pytest.approx(0.0125)
    row[0] = 100                         # the first bucket starts at 0
    assert percentile(row, 0.25) == pytest.approx(LATENCY_BUCKETS[0] / 2)
    beyond = [0.0] * len(row)
    beyond[-1] = 5                       # only +Inf: the largest finite bound
    assert percentile(beyond, 0.99) == LATENCY_BUCKETS[-1]
    assert percentile([0.0] * len(row), 0.99) is None


def observed(p99_s: float, n: int = 2000) -> tuple[float, ...]:
    """A latency row from N log-normal latencies scaled so that their true (nearest-rank) p99
    is P99_S, observed through the proxy's own histogram."""
    shape = [math.exp(0.6 * NormalDist().inv_cdf((i + 0.5) / n)) for i in range(n)]
    scale = p99_s / sorted(shape)[math.ceil(0.99 * n) - 1]
    m = Metrics()
    for x in shape:
        m.observe("strangler_request_duration_seconds", (), x * scale)
    return tuple(m.histograms[("strangler_request_duration_seconds", ())][:-1])


def test_p99_ratio_is_judged_on_interpolated_p99s_not_bucket_bounds():
    """An operator's case: legacy p99 10 ms, service 13.6 ms (x1.36) was rolled back as
    "25 ms vs 10 ms (x2.50)" because both read as their bucket's upper bound."""
    gates = Gates(max_p99_ratio=1.5, min_requests=200)
    legacy = SideFigures(2000, 0, observed(0.010))
    near = evaluate(gates, Figures(legacy, SideFigures(2000, 0, observed(0.0136))))
    assert near.state == PASS, near.reasons
    slow = evaluate(gates, Figures(legacy, SideFigures(2000, 0, observed(0.020))))
    assert slow.failed_gates == ["p99"], slow.reasons


def test_figures_of_another_bucket_layout_are_refused_not_misread():
    doc = Figures(side(10), side(10)).as_dict()
    doc["service"]["latency"] = doc["service"]["latency"][:16]
    with pytest.raises(ValueError):
        Figures.from_dict(doc)
