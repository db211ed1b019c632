"""Pure parts of the engine: breaker state machine, metrics exposition, header rewriting."""
from __future__ import annotations

import os
import time

from proxy.breaker import CLOSED, HALF_OPEN, OPEN, Breaker
from proxy.decision import BreakerSpec
from proxy.headers import (TrustedProxies, client_response_head, split_response_headers,
                           upstream_request_head)
from proxy.metrics import Metrics, merge, render
from proxy.reload import fingerprint
from proxy.settings import parse_networks


def test_breaker_opens_after_failures_and_half_opens_after_cooldown():
    breaker = Breaker(BreakerSpec(failures=3, window_s=10, cooldown_s=0.05))
    for _ in range(2):
        breaker.failure()
    assert breaker.state == CLOSED and breaker.allow()
    breaker.failure()
    assert breaker.state == OPEN and not breaker.allow() and breaker.shown() == OPEN
    time.sleep(0.06)
    assert breaker.shown() == HALF_OPEN       # untried (no traffic at 0 %), yet no longer shut
    assert breaker.allow()                    # the one trial
    assert breaker.state == HALF_OPEN and not breaker.allow()
    breaker.failure()                         # trial failed: open again
    assert breaker.state == OPEN and breaker.opened_total == 2
    time.sleep(0.06)
    assert breaker.allow()
    breaker.success()
    assert breaker.state == CLOSED and breaker.allow()


def test_metrics_render_and_merge():
    a, b = Metrics(), Metrics()
    a.inc("strangler_requests_total", {"backend": "legacy", "status": "200"})
    b.inc("strangler_requests_total", {"status": "200", "backend": "legacy"}, 2)
    a.observe("strangler_request_duration_seconds", {"backend": "legacy"}, 0.003)
    b.observe("strangler_request_duration_seconds", {"backend": "legacy"}, 50)
    b.set("strangler_breaker_open", {"backend": "svc"}, 1)
    text = render(merge([a.snapshot(), b.snapshot()]))
    assert 'strangler_requests_total{backend="legacy",status="200"} 3' in text
    assert "# TYPE strangler_requests_total counter" in text
    assert "# TYPE strangler_request_duration_seconds histogram" in text
    assert 'strangler_request_duration_seconds_bucket{backend="legacy",le="0.002"} 0' in text
    assert 'strangler_request_duration_seconds_bucket{backend="legacy",le="0.003"} 1' in text
    assert 'strangler_request_duration_seconds_bucket{backend="legacy",le="30.0"} 1' in text
    assert 'strangler_request_duration_seconds_bucket{backend="legacy",le="+Inf"} 2' in text
    assert 'strangler_request_duration_seconds_count{backend="legacy"} 2' in text
    assert 'strangler_breaker_open{backend="svc"} 1' in text


def test_upstream_head_and_response_head():
    head = upstream_request_head(
        b"GET", b"/a?b=1", [(b"Host", b"shop"), (b"Connection", b"close, X-Hop"),
                            (b"X-Hop", b"1"), (b"X-Strangler-Route", b"service"),
                            (b"Content-Length", b"9"), (b"Cookie", b"s=1")],
        peer="10.0.0.7", trusted=False, strip=frozenset({b"x-strangler-route"}), upgrade=None,
        framing=b"Content-Length: 3\r\n", fallback_host=b"up:1", request_id=b"rid")
    assert head.startswith(b"GET /a?b=1 HTTP/1.1\r\nHost: shop\r\nCookie: s=1\r\n")
    assert b"X-Hop" not in head and b"Connection" not in head and b"X-Strangler" not in head
    assert head.count(b"Content-Length") == 1 and b"Content-Length: 3\r\n" in head
    assert b"X-Forwarded-For: 10.0.0.7\r\n" in head and b"X-Request-Id: rid\r\n" in head
    assert head.endswith(b"\r\n\r\n")
    parts, cl, te, via = split_response_headers([
        b"Transfer-Encoding: chunked", b"Connection: keep-alive, X-Secret", b"X-Secret: s",
        b"Content-Length: 5", b"X-A: 1", b"Via: 1.1 app", b"Keep-Alive: timeout=5",
        b"x-request-id: upstream-made"])
    assert (cl, te, via) == (b"5", True, b"1.1 app")
    resp = client_response_head(200, parts, via, framing=b"Content-Length: 5\r\n", keep_alive=False,
                                request_id=b"rid")
    assert resp == (b"HTTP/1.1 200 OK\r\nX-A: 1\r\nVia: 1.1 app, 1.1 strangler\r\n"
                    b"X-Request-Id: rid\r\nContent-Length: 5\r\nConnection: close\r\n\r\n")


def test_trusted_proxies():
    trusted = TrustedProxies(parse_networks(["10.0.0.0/8", "::1"]))
    assert "10.1.2.3" in trusted and "::1" in trusted
    assert "192.168.1.1" not in trusted and "not-an-ip" not in trusted


def test_fingerprint_sees_an_atomic_replace_with_same_size_and_mtime(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\n")
    before = fingerprint(rules)
    stat = rules.stat()
    tmp = tmp_path / "rules.tmp"
    tmp.write_text("version: 2\n")                    # same size
    os.utime(tmp, ns=(stat.st_atime_ns, stat.st_mtime_ns))   # same mtime (coarse clocks)
    keep_alive = tmp_path / "old"                     # the old inode stays allocated,
    os.link(rules, keep_alive)                        # so the new file cannot reuse its number
    os.replace(tmp, rules)
    assert rules.stat().st_mtime_ns == stat.st_mtime_ns and rules.stat().st_size == stat.st_size
    assert fingerprint(rules) != before


def test_latency_histogram_exposition_is_cumulative_over_increasing_bounds():
    """Prometheus rejects a histogram whose `le` bounds do not increase or whose buckets are
    not cumulative; the bucket list is long now, so check the whole series."""
    m = Metrics()
    for ms in (0.3, 0.6, 4, 9, 13.6, 120, 45_000):
        m.observe("strangler_request_duration_seconds", {"backend": "svc"}, ms / 1000)
    lines = [ln for ln in render(m).splitlines() if ln.startswith("strangler_request_duration")]
    buckets = [ln for ln in lines if "_bucket{" in ln]
    bounds = [ln.split('le="')[1].split('"')[0] for ln in buckets]
    counts = [float(ln.rsplit(" ", 1)[1]) for ln in buckets]
    assert bounds[-1] == "+Inf" and bounds[:-1] == [repr(float(b)) for b in bounds[:-1]]
    assert [float(b) for b in bounds[:-1]] == sorted({float(b) for b in bounds[:-1]})
    assert counts == sorted(counts) and counts[-1] == 7
    assert 'strangler_request_duration_seconds_count{backend="svc"} 7' in lines
