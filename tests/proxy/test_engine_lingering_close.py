"""An answer sent before the request was read whole (413, 408, 504 mid-upload) reaches a client
that keeps sending: the proxy shuts its sending side (FIN) and reads and discards what the
client still sends for a while before closing (nginx's lingering close). Closing at once with
the client's bytes unread makes the kernel send a reset, which can destroy the answer before
the client has read it.

The clients here are plain blocking sockets that, like many real ones (http.client, requests),
send the whole body before reading anything, and give up on a send that fails (such a client
never sees the answer). Linux keeps received bytes readable after a reset, so the tests also
require that every send succeeds and that the reading ends with a clean EOF, not a reset.
"""
from __future__ import annotations

import asyncio
import socket
import time

import pytest
import uvloop

from proxy.settings import Limits
from tests.proxy.harness import eventually, rules_doc, running_proxy, write_rules
from tests.proxy.upstreams import upstream

ROUNDS = 5
WAIT = 15.0
BLOCK = b"x" * 65536


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request):
    """Runs a scenario on a fresh loop of each kind (the workers use uvloop): write_eof and
    EOF handling differ between them."""
    return uvloop.run if request.param == "uvloop" else asyncio.run


def send_then_read(port: int, parts: list[tuple[float, bytes]]) -> tuple[bytes, str]:
    """Send each part after its pause, then read until EOF: (bytes read, how it ended:
    "eof", "reset", "timeout", or "send failed: ..." when a send failed first)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    try:
        for pause, data in parts:
            if pause:
                time.sleep(pause)
            try:
                sock.sendall(data)
            except OSError as exc:
                return b"", f"send failed: {exc!r}"
        got = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return b"".join(got), "reset"
            except socket.timeout:
                return b"".join(got), "timeout"
            if not chunk:
                return b"".join(got), "eof"
            got.append(chunk)
    finally:
        sock.close()


async def exchange(port: int, parts: list[tuple[float, bytes]]) -> tuple[bytes, str]:
    return await asyncio.get_running_loop().run_in_executor(None, send_then_read, port, parts)


def assert_whole_answer(raw: bytes, ended: str, status: bytes, text: bytes) -> None:
    assert ended == "eof", (ended, raw[:300])
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep and head.startswith(b"HTTP/1.1 " + status + b" "), raw
    assert b"Connection: close" in head
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    assert len(body) == length and text in body, raw


async def no_connections_left(proxy) -> None:
    engine = proxy.runtime.workers[0].engine

    async def check():
        assert not engine.connections
    await eventually(check, timeout=WAIT)


def test_413_by_content_length_reaches_a_client_that_keeps_sending(tmp_path, run):
    run(_413_by_content_length_reaches_a_client_that_keeps_sending(tmp_path))


async def _413_by_content_length_reaches_a_client_that_keeps_sending(tmp_path):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules, limits=Limits(max_body_bytes=100_000)) as proxy:
            head = (b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5000000\r\n\r\n")
            for _ in range(ROUNDS):
                raw, ended = await exchange(proxy.port, [(0, head)] + [(0, BLOCK)] * 16)
                assert_whole_answer(raw, ended, b"413", b"request body over 100000 bytes")
            await no_connections_left(proxy)
            assert legacy.hits == {}


def test_413_mid_chunked_body_reaches_a_client_that_keeps_sending(tmp_path, run):
    run(_413_mid_chunked_body_reaches_a_client_that_keeps_sending(tmp_path))


async def _413_mid_chunked_body_reaches_a_client_that_keeps_sending(tmp_path):
    chunk = b"%x\r\n%b\r\n" % (len(BLOCK), BLOCK)
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules, limits=Limits(max_body_bytes=100_000)) as proxy:
            head = b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            for _ in range(ROUNDS):
                raw, ended = await exchange(proxy.port, [(0, head)] + [(0, chunk)] * 16)
                assert_whole_answer(raw, ended, b"413", b"request body over 100000 bytes")
            await no_connections_left(proxy)


def test_408_reaches_a_client_that_sends_more_after_it(tmp_path, run):
    run(_408_reaches_a_client_that_sends_more_after_it(tmp_path))


async def _408_reaches_a_client_that_sends_more_after_it(tmp_path):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        limits = Limits(client_body_timeout_s=0.2)
        async with running_proxy(rules, limits=limits) as proxy:
            head = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\nabc"
            for _ in range(ROUNDS):
                # Silent past the body timeout (the 408 is sent meanwhile), then sends more.
                raw, ended = await exchange(proxy.port, [(0, head), (0.7, BLOCK)]
                                            + [(0.01, BLOCK)] * 4)
                assert_whole_answer(raw, ended, b"408", b"client body timeout")
            await no_connections_left(proxy)


def test_the_lingering_ends_when_the_client_keeps_sending_past_the_cap(tmp_path, run):
    run(_the_lingering_ends_when_the_client_keeps_sending_past_the_cap(tmp_path))


async def _the_lingering_ends_when_the_client_keeps_sending_past_the_cap(tmp_path):
    """A client that never stops is not read forever: the connection ends."""
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules, limits=Limits(max_body_bytes=100_000)) as proxy:
            head = b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 500000000\r\n\r\n"
            raw, ended = await exchange(proxy.port, [(0, head)] + [(0, BLOCK)] * 2000)
            assert ended != "timeout"             # the proxy let go
            await no_connections_left(proxy)


def test_a_complete_request_answered_with_close_does_not_linger(tmp_path, run):
    run(_a_complete_request_answered_with_close_does_not_linger(tmp_path))


async def _a_complete_request_answered_with_close_does_not_linger(tmp_path):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules) as proxy:
            raw, ended = await exchange(proxy.port, [(0, (
                b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                b"Content-Length: 2\r\n\r\nhi"))])
            assert ended == "eof" and raw.startswith(b"HTTP/1.1 200 ")
            engine = proxy.runtime.workers[0].engine
            assert not any(getattr(c, "lingering", False) for c in engine.connections)
            await no_connections_left(proxy)


def test_a_client_that_trickles_forever_is_let_go_after_the_linger_time(tmp_path, run,
                                                                         monkeypatch):
    import proxy.server
    monkeypatch.setattr(proxy.server, "LINGER_S", 0.5)
    run(_trickles_forever(tmp_path))


async def _trickles_forever(tmp_path):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules, limits=Limits(max_body_bytes=100_000)) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 500000\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
            assert head.startswith(b"HTTP/1.1 413 ")
            engine = proxy.runtime.workers[0].engine

            async def let_go():
                assert not engine.connections
            try:
                for _ in range(int(WAIT / 0.1)):      # still sending, never closing
                    writer.write(b"x")
                    await writer.drain()
                    if not engine.connections:
                        break
                    await asyncio.sleep(0.1)
            except (ConnectionError, OSError):
                pass
            await eventually(let_go, timeout=WAIT)
            writer.close()
