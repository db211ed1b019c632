"""The benchmark's own pieces: the naive proxy relays faithfully (else its numbers mean nothing),
strangler's benchmark rule table is valid and sends the benchmark path to its last capability,
and the bars are judged from the ratios as the issue states them."""
from __future__ import annotations

import aiohttp
import yaml
from aiohttp import web

from benchmarks.naive_proxy import make_app
from benchmarks.proxy_bench import (BENCH_PATH, CAPABILITY_COUNTS, LAST_CAPABILITY, PeerResult,
                                    Sample, ratios, render, rules_document, verdicts)
from benchmarks.wrk import Load
from proxy.rules import check_rules
from tests.conftest import serve_app


async def echo(request: web.Request) -> web.Response:
    """Reflect what arrived so the test sees exactly what the proxy forwarded."""
    body = await request.read()
    return web.json_response(
        {"method": request.method, "path_qs": request.path_qs, "body": body.decode(),
         "x_trace": request.headers.get("X-Trace"), "keep_alive": request.headers.get("Keep-Alive")},
        status=201, headers={"X-Upstream": "yes"})


async def test_naive_proxy_relays_method_path_body_status_and_headers_but_not_hop_by_hop():
    upstream_app = web.Application()
    upstream_app.router.add_route("*", "/{tail:.*}", echo)
    upstream, upstream_url = await serve_app(upstream_app)
    proxy, proxy_url = await serve_app(make_app(upstream_url))
    try:
        async with aiohttp.ClientSession() as client:
            async with client.post(proxy_url + "/orders/9?x=1&y=2", data=b"hello",
                                   headers={"X-Trace": "abc", "Keep-Alive": "timeout=5"}) as resp:
                assert resp.status == 201
                assert resp.headers["X-Upstream"] == "yes"
                assert await resp.json() == {"method": "POST", "path_qs": "/orders/9?x=1&y=2",
                                             "body": "hello", "x_trace": "abc",
                                             "keep_alive": None}
    finally:
        await proxy.cleanup()
        await upstream.cleanup()


def test_benchmark_rules_load_and_route_the_bench_path_to_the_last_capability(tmp_path):
    for count in CAPABILITY_COUNTS:
        rules = tmp_path / f"rules-{count}.yaml"
        rules.write_text(yaml.safe_dump(rules_document("http://127.0.0.1:9", count)))
        report = check_rules(rules)
        assert report.errors == []
        assert len(report.table.capabilities) == count
        decision = report.table.decide("GET", BENCH_PATH, "", {})
        assert decision.capability == f"cap-{LAST_CAPABILITY:04d}"
        assert decision.backend.url == "http://127.0.0.1:9"
        assert report.table.decide("GET", "/elsewhere", "", {}).capability is None


def peer(name: str, rps: float, low_p50_ms: float, cpu: float | None) -> PeerResult:
    load = Load(requests=int(rps * 10), seconds=10.0, errors=0, rps=rps, p50_ms=1.0, p90_ms=2.0,
                p99_ms=5.0, mean_ms=1.2)
    calm = Load(requests=4000, seconds=2.0, errors=0, rps=2000, p50_ms=low_p50_ms, p90_ms=1.0,
                p99_ms=2.0, mean_ms=0.5)
    return PeerResult(name, Sample(load, cpu), Sample(calm, cpu))


def test_bars_compare_strangler_with_peers_of_the_same_run():
    results = [peer("direct", 80000, 0.05, None), peer("nginx", 30000, 0.10, 13),
               peer("naive aiohttp", 5000, 0.50, 90),
               peer("strangler (5 caps)", 16000, 0.30, 35),     # 0.53 of nginx, 3.2x naive
               peer("strangler (500 caps)", 14000, 1.20, 36)]   # 0.47 of nginx; +1.15 ms
    found = ratios(results)
    passed = verdicts(found)
    assert found["strangler/nginx (5 caps)"] == 16000 / 30000
    assert found["strangler 500/5 caps throughput"] == 14000 / 16000
    assert passed == {"strangler/nginx (5 caps)": True, "strangler/naive (5 caps)": True,
                      "added_p50_ms (5 caps)": True, "strangler/nginx (500 caps)": False,
                      "strangler/naive (500 caps)": True, "added_p50_ms (500 caps)": False}
    table = render(results, found, passed, connections=32, seconds=10)
    assert "strangler/nginx (500 caps)                     0.467   (bar >= 0.5: FAIL)" in table
