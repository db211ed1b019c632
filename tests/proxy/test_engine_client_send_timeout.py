"""A client that does not read its answer is the client's problem, not the backend's.

While the client's transport has paused writing (it reads slower than the upstream sends) the
upstream's read timeout does not run; the client send timeout does, and it cuts the client
off as a 499 with no upstream error, breaker failure or fallback.
"""
from __future__ import annotations

import asyncio
import json
import socket

from proxy.settings import Limits
from tests.proxy.harness import client, eventually, rules_doc, running_proxy, write_rules
from tests.proxy.upstreams import upstream

BREAKER = {"failures": 3, "window": "30s", "cooldown": "60s"}
SIZE = 30 * 1024 * 1024


async def non_reading_client(port: int, path: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # before connect: small window
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return sock                                   # ...and never reads


async def test_a_client_that_stops_reading_is_cut_by_the_send_timeout_not_blamed_on_upstream(
        tmp_path):
    async with upstream("legacy") as legacy, upstream("service") as service:
        doc = rules_doc(legacy.url, service.url, breaker=BREAKER, prefixes=("/big",),
                        service_timeouts={"read_timeout": "300ms", "timeout": "1s"})
        rules = write_rules(tmp_path / "r.yaml", doc)
        log = tmp_path / "access.log"
        limits = Limits(client_send_timeout_s=1.5)
        async with running_proxy(rules, limits=limits, access_log=str(log)) as proxy, \
                client() as http:
            engine = proxy.runtime.workers[0].engine
            socks = [await non_reading_client(proxy.port, f"/big?size={SIZE}&length=1")
                     for _ in range(5)]
            try:
                async def all_cut():
                    assert not engine.connections and not engine.inflight
                    counters = engine.metrics.counters
                    assert counters.get(("strangler_requests_total", (
                        ("backend", "svc"), ("capability", "catalog"), ("side", "service"),
                        ("status", "499")))) == 5, counters
                await eventually(all_cut, timeout=30)
                # Each client is cut: after what the kernel buffered, a reset or an EOF.
                loop = asyncio.get_running_loop()
                for sock in socks:
                    got = 0
                    try:
                        while True:
                            chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 10)
                            if not chunk:
                                break
                            got += len(chunk)
                    except ConnectionResetError:
                        pass
                    assert got < SIZE
            finally:
                for sock in socks:
                    sock.close()
            counters = engine.metrics.counters
            assert not [k for k in counters if k[0] in ("strangler_upstream_errors_total",
                                                        "strangler_fallbacks_total")], counters
            assert engine.breaker_states() == {"svc": "closed"}
            async with http.post(proxy.url + "/big", data=b"x") as resp:
                assert resp.status != 503                  # the write path is open
            async with http.get(proxy.url + "/big?size=10&length=1") as resp:
                assert resp.status == 200 and len(await resp.read()) == 10
        entries = [json.loads(line) for line in log.read_text().splitlines()]
        cut = [e for e in entries if e["status"] == 499]
        assert len(cut) == 5
        assert all(e["error"].startswith("client stopped reading its answer") and
                   e["upstream_status"] == 200 for e in cut), cut
        # Cut by the send timeout (1.5 s of not reading), never before it.
        assert all(e["duration_ms"] >= 1450 for e in cut), cut
