"""A client that half-closes (FIN) after sending a whole request still reads: it gets its answer.

`shutdown(SHUT_WR)` after a complete request is legal HTTP/1.1; only EOF in the middle of a
request (or a real disconnect) means the client is gone (499, the upstream dropped).
Run on asyncio's loop and on uvloop (what the workers use): their EOF handling differs.
"""
from __future__ import annotations

import asyncio
import json
import re
import socket
import struct

import pytest
import uvloop

from tests.proxy.harness import client, eventually, rules_doc, running_proxy, write_rules
from tests.proxy.upstreams import upstream

WAIT = 15.0


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request):
    """Runs a scenario on a fresh loop of each kind (the tests themselves are plain functions)."""
    return uvloop.run if request.param == "uvloop" else asyncio.run


async def half_closing_exchange(port: int, data: bytes) -> bytes:
    """Send `data`, shut our sending side (FIN), read until the proxy closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    writer.write_eof()                            # shutdown(SHUT_WR): still reading
    chunks = []
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), WAIT)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        writer.close()
    return b"".join(chunks)


async def metrics_text(http, proxy) -> str:
    async with http.get(proxy.admin_url + "/metrics", headers=proxy.auth) as resp:
        return await resp.text()


def answers(raw: bytes) -> list[tuple[int, bytes, dict]]:
    """Split a byte stream of Content-Length answers into (status, head, json body)."""
    out = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        assert sep, raw
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        out.append((int(head.split()[1]), head, json.loads(rest[:length])))
        raw = rest[length:]
    return out


def test_a_write_then_half_close_gets_its_answer(tmp_path, run):
    run(write_then_half_close(tmp_path))


async def write_then_half_close(tmp_path):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        log = tmp_path / "access.log"
        async with running_proxy(rules, access_log=str(log)) as proxy, client() as http:
            body = b'{"card": "tok_1"}'
            # The upstream takes a while, so the FIN surely arrives before its answer.
            raw = await half_closing_exchange(proxy.port, (
                b"POST /api/slow?delay=0.3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%b"
                % (len(body), body)))
            [(status, head, answer)] = answers(raw)
            assert status == 200 and answer == {"server": "legacy", "slow": True}
            assert b"Connection: close" in head
            # And one whose body the upstream reads and echoes back.
            raw = await half_closing_exchange(proxy.port, (
                b"POST /api/carts/7/checkout HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%b" % (len(body), body)))
            [(status, _, answer)] = answers(raw)
            assert status == 200 and answer["body"] == body.decode()
            metrics = await metrics_text(http, proxy)
            assert 'status="499"' not in metrics
            assert re.search(r'strangler_requests_total\{[^}]*status="200"\} 2', metrics), metrics
        entries = [json.loads(line) for line in log.read_text().splitlines()]
        assert [(e["path"], e["status"], e["upstream_status"]) for e in entries] == [
            ("/api/slow", 200, 200), ("/api/carts/7/checkout", 200, 200)]
    assert legacy.hits["POST /api/slow"] == 1 and legacy.hits["POST /api/carts/7/checkout"] == 1


def test_half_close_on_a_keep_alive_connection_answers_then_closes(tmp_path, run):
    """Nothing is read after the EOF: the requests sent before it are answered in order (the
    last with Connection: close), then the proxy closes instead of waiting for more."""
    run(keep_alive_half_close(tmp_path))


async def keep_alive_half_close(tmp_path):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules) as proxy:
            raw = await half_closing_exchange(
                proxy.port, b"GET /slow?delay=0.3 HTTP/1.1\r\nHost: t\r\n\r\n")
            [(status, head, answer)] = answers(raw)
            assert status == 200 and answer["slow"] is True
            assert b"Connection: close" in head
            raw = await half_closing_exchange(proxy.port, (
                b"GET /slow?delay=0.3 HTTP/1.1\r\nHost: t\r\n\r\n"
                b"POST /echo?n=2 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"))
            got = answers(raw)
            assert [status for status, _, _ in got] == [200, 200]
            assert got[0][2]["slow"] is True
            assert got[1][2]["target"] == "/echo?n=2" and got[1][2]["body"] == "abc"
            assert b"Connection: close" in got[1][1]
            engine = proxy.runtime.workers[0].engine

            async def all_closed() -> None:
                assert not engine.connections and not engine.inflight

            await eventually(all_closed)


@pytest.mark.parametrize("partial", [
    b"POST /slow?delay=0.3 HTTP/1.1\r\nHost: t\r\nContent-Length: 20\r\n\r\n0123456789",
    b"POST /slow?delay=0.3 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",
    b"GET /slow?delay=0.3 HTTP/1.1\r\nHost: t\r\n\r\nGET /echo HTTP/1.1\r\nHo",
])
def test_eof_in_the_middle_of_a_request_is_still_client_gone(tmp_path, run, partial):
    run(eof_mid_request(tmp_path, partial))


async def eof_mid_request(tmp_path, partial):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules) as proxy, client() as http:
            raw = await half_closing_exchange(proxy.port, partial)
            assert raw == b""                     # no answer: the connection is closed
            engine = proxy.runtime.workers[0].engine

            async def upstream_freed() -> None:
                assert not engine.inflight and engine.state.pools["legacy"].size == 0

            await eventually(upstream_freed)
            metrics = await metrics_text(http, proxy)
            assert re.search(r'strangler_requests_total\{[^}]*status="499"\} 1', metrics), metrics


def test_a_half_closed_client_that_then_disconnects_is_gone(tmp_path, run):
    run(half_close_then_reset(tmp_path))


async def half_close_then_reset(tmp_path):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules) as proxy, client() as http:
            engine = proxy.runtime.workers[0].engine
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"GET /slow?delay=5 HTTP/1.1\r\nHost: t\r\n\r\n")
            writer.write_eof()

            async def waiting_on_upstream() -> None:
                assert engine.inflight and legacy.hits["GET /slow"] == 1

            await eventually(waiting_on_upstream)
            # Now it really goes away (a reset): connection_lost aborts the request as before.
            writer.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

            async def upstream_freed() -> None:
                assert not engine.inflight and engine.state.pools["legacy"].size == 0
                assert not engine.connections

            await eventually(upstream_freed)
            metrics = await metrics_text(http, proxy)
            assert re.search(r'strangler_requests_total\{[^}]*status="499"\} 1', metrics), metrics
