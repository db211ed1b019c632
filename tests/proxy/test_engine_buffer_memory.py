"""A buffered request body costs about its payload in memory, however tiny its pieces.

A chunked body of 2-byte chunks reaches the flight as thousands of 2-byte pieces; kept as a
list of bytes objects it cost ~28x the payload. While buffering (and in the replay copy kept
for a retry) the flight holds one growing buffer, and the upstream still gets the exact body.
"""
from __future__ import annotations

import asyncio
import hashlib
import json

from proxy.settings import Limits
from tests.proxy.harness import eventually, read_all, rules_doc, running_proxy, write_rules
from tests.proxy.upstreams import upstream

PAYLOAD = bytes(range(256)) * 234                # 59904 bytes: fits the 64 KiB buffer


def tiny_chunks(data: bytes) -> bytes:
    return b"".join(b"2\r\n%b\r\n" % data[i:i + 2] for i in range(0, len(data), 2))



async def test_a_buffered_body_of_tiny_chunks_is_held_in_one_buffer(tmp_path):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules, limits=Limits(client_body_timeout_s=30.0)) as proxy:
            engine = proxy.runtime.workers[0].engine
            # POST: buffered only; GET: buffered and kept for a retry (the replay copy).
            for method, path in (("POST", "/upload"), ("GET", "/echo")):
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
                writer.write(f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n".encode()
                             + tiny_chunks(PAYLOAD))  # ...not terminated yet: still buffering
                await writer.drain()

                async def all_arrived():
                    flights = [f for f in engine.inflight if f.awaiting_body]
                    assert len(flights) == 1 and flights[0].body_len == len(PAYLOAD)
                    return flights[0]

                flight = await eventually(all_arrived)
                assert len(flight.body_parts) <= 2, len(flight.body_parts)
                assert sum(map(len, flight.body_parts)) == len(PAYLOAD)
                if method == "GET":
                    assert flight.replay is not None and len(flight.replay) <= 2
                    assert b"".join(flight.replay) == PAYLOAD
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                raw = await read_all(reader)
                writer.close()
                head, _, body = raw.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 "), raw[:300]
                answer = json.loads(body)
                if method == "POST":
                    assert answer["size"] == len(PAYLOAD)
                    assert answer["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
                else:
                    assert answer["body_len"] == len(PAYLOAD)
