"""What the engine hands the shadow side: complete exchanges after the client is answered,
skips when bodies are too large or the method is unsafe. The sink here records calls (it
stands in for proxy.shadow's dispatcher, not for any HTTP server)."""
from __future__ import annotations

import asyncio

from proxy.exchange import Capture, Exchange
from proxy.metrics import Metrics
from tests.proxy.harness import client, rules_doc, running_proxy, write_rules
from tests.proxy.upstreams import upstream


class RecordingSink:
    instances: list["RecordingSink"] = []

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.submitted: list[Exchange] = []
        self.skipped: list[tuple[str, str]] = []
        self.closed = False
        RecordingSink.instances.append(self)

    def admit(self, decision) -> bool:
        return True

    def submit_capture(self, capture: Capture) -> None:
        exchange = capture.exchange()
        self.submitted.append(exchange)
        self.metrics.inc("strangler_shadow_submitted_total",
                         {"capability": exchange.decision.capability})

    def skip(self, decision, reason: str) -> None:
        self.skipped.append((decision.capability, reason))

    async def close(self) -> None:
        self.closed = True


async def test_exchanges_captured_for_shadowing(tmp_path):
    RecordingSink.instances.clear()
    async with upstream("legacy") as legacy, upstream("service") as service:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(
            legacy.url, service.url, stage="shadow", shadow={"percent": 100, "max_body": "2KiB"}))
        async with running_proxy(rules, sink_factory=RecordingSink) as proxy, client() as http:
            async with http.get(proxy.url + "/api/products/7?x=1",
                                headers={"X-Request-Id": "r-7"}) as resp:
                answered = await resp.read()
            async with http.get(proxy.url + "/api/products/big", data=b"q" * 5000) as resp:
                assert resp.status == 200          # too big to compare, still answered
            async with http.post(proxy.url + "/api/products", data=b"{}") as resp:
                assert resp.status == 200          # a write: not shadowed (unsafe)
            async with http.get(proxy.admin_url + "/metrics", headers=proxy.auth) as resp:
                metrics = await resp.text()
            sink = RecordingSink.instances[0]
            await asyncio.sleep(0)
        assert sink.closed
    assert len(sink.submitted) == 1
    ex = sink.submitted[0]
    assert ex.method == "GET" and ex.target == "/api/products/7?x=1"
    assert ex.status == 200 and ex.response_body == answered
    assert ex.decision.side == "legacy" and ex.decision.shadow.target.name == "svc"
    assert ("X-Request-Id", "r-7") in ex.request_headers
    assert ("Via", "1.1 strangler") in ex.request_headers
    assert any(name.lower() == "content-type" for name, _ in ex.response_headers)
    assert ex.request_body == b"" and ex.latency_s > 0 and ex.started_at > 0
    assert ("catalog", "body-too-large") in sink.skipped
    assert ("catalog", "unsafe-method") in sink.skipped
    assert 'strangler_shadow_submitted_total{capability="catalog"} 1' in metrics
    assert service.hits == {}                  # the engine itself never sends the copy
