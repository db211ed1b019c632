"""The duration histogram (what the p99 gate reads) is the backend's latency, not the client's.

Only requests a backend answered are observed, from the moment the request was forwarded whole:
a 408 for a stalled upload never reaches it, and a slow-but-complete upload counts only the
backend's time. The access log's duration_ms stays the client's whole time.
"""
from __future__ import annotations

import asyncio
import json

from proxy.metrics import LATENCY_BUCKETS
from proxy.settings import Limits
from tests.proxy.harness import client, read_all, rules_doc, running_proxy, write_rules
from tests.proxy.upstreams import upstream

HIST = ("strangler_request_duration_seconds", (("backend", "svc"), ("capability", "catalog")))



def svc_row(proxy) -> list[float]:
    row = proxy.runtime.workers[0].engine.metrics.histograms.get(HIST)
    return list(row) if row is not None else [0.0] * (len(LATENCY_BUCKETS) + 2)


def count(row: list[float]) -> float:
    return sum(row[:-1])


async def test_stalled_uploads_answered_408_leave_the_backend_histogram_alone(tmp_path):
    async with upstream("legacy") as legacy, upstream("service") as service:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url, service.url))
        log = tmp_path / "access.log"
        async with running_proxy(rules, limits=Limits(client_body_timeout_s=0.5),
                                 access_log=str(log)) as proxy, client() as http:
            for _ in range(20):
                async with http.get(proxy.url + "/api/products/1") as resp:
                    assert resp.status == 200 and (await resp.json())["server"] == "service"
            before = svc_row(proxy)
            assert count(before) == 20

            async def stalled() -> bytes:
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
                writer.write(b"GET /api/products/2 HTTP/1.1\r\nHost: t\r\n"
                             b"Content-Length: 5\r\n\r\n")          # the body never comes
                await writer.drain()
                try:
                    return await read_all(reader)
                finally:
                    writer.close()

            for raw in await asyncio.gather(*(stalled() for _ in range(4))):
                assert raw.startswith(b"HTTP/1.1 408 "), raw
            assert svc_row(proxy) == before     # not one observation, let alone a 0.5 s one
            counters = proxy.runtime.workers[0].engine.metrics.counters
            assert counters[("strangler_requests_total", (
                ("backend", "svc"), ("capability", "catalog"), ("side", "service"),
                ("status", "408")))] == 4


async def test_a_slow_but_complete_upload_counts_only_the_backends_time(tmp_path):
    async with upstream("legacy") as legacy, upstream("service") as service:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url, service.url))
        log = tmp_path / "access.log"
        for buffer in (64 * 1024, 0):            # buffered whole, and streamed as it comes
            limits = Limits(client_body_timeout_s=30.0, buffer_body_bytes=buffer)
            async with running_proxy(rules, limits=limits, access_log=str(log)) as proxy:
                before = svc_row(proxy)
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
                writer.write(b"POST /api/products HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n"
                             b"X-Request-Id: slow-upload-%d\r\nConnection: close\r\n\r\n01234"
                             % buffer)
                await writer.drain()
                await asyncio.sleep(1.0)         # the client stalls (not the backend)...
                writer.write(b"56789")           # ...then finishes; the backend answers at once
                await writer.drain()
                raw = await read_all(reader)
                writer.close()
                head, _, body = raw.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 "), raw
                assert json.loads(body)["body"] == "0123456789"
                after = svc_row(proxy)
                added = [a - b for a, b in zip(after[:-1], before[:-1])]
                assert sum(added) == 1, added
                bucket = next(i for i, n in enumerate(added) if n)
                # Observed in a bucket whose upper bound is under the 1 s stall.
                assert bucket < len(LATENCY_BUCKETS) and LATENCY_BUCKETS[bucket] < 1.0, \
                    (bucket, added)
            entries = [json.loads(line) for line in log.read_text().splitlines()]
            mine = [e for e in entries if e["request_id"] == "slow-upload-%d" % buffer]
            assert len(mine) == 1 and mine[0]["duration_ms"] >= 500.0   # the client's whole time
