"""Request bodies up to `Limits.buffer_body_bytes` are read whole before an upstream connection
is taken (nginx's proxy_request_buffering on): a client trickling a small upload holds no pooled
connection, so a handful of slow uploaders cannot leave everyone else with 503 pool-full.
Bodies over the limit stream as before; `0` turns buffering off.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re

import pytest

from proxy.settings import Limits
from tests.proxy.harness import client, rules_doc, running_proxy, write_rules
from tests.proxy.test_engine_shadow_capture import RecordingSink
from tests.proxy.upstreams import upstream

WAIT = 15.0                                   # generous: how long a client waits for an answer


async def read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One Content-Length answer: (head, body)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    return head, await asyncio.wait_for(reader.readexactly(length), WAIT)


def upstream_headers(answer: dict) -> dict[str, str]:
    return {k.lower(): v for k, v in answer["headers"]}


def tiny_pool_rules(tmp_path, legacy_url: str):
    doc = rules_doc(legacy_url)
    doc["backends"]["legacy"]["max_connections"] = 2
    return write_rules(tmp_path / "r.yaml", doc)


async def test_slow_uploads_do_not_take_the_pool(tmp_path):
    """More trickling uploaders than the backend's max_connections: a normal request still gets
    through while they trickle, and each upload is answered with its whole body at the end."""
    async with upstream("legacy") as legacy:
        rules = tiny_pool_rules(tmp_path, legacy.url)
        async with running_proxy(rules) as proxy, client() as http:
            started = asyncio.Event()
            count = 6
            body = b"0123456789"
            heads_sent = 0

            async def trickle(i: int) -> tuple[bytes, bytes]:
                nonlocal heads_sent
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
                writer.write(b"POST /echo?u=%d HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n"
                             b"Content-Type: text/plain\r\n\r\n" % (i, len(body)))
                await writer.drain()
                heads_sent += 1
                if heads_sent == count:
                    started.set()
                try:
                    for byte in body:
                        await asyncio.sleep(0.25)  # 2.5 s per upload: longer than the pool wait
                        writer.write(bytes([byte]))
                        await writer.drain()
                    return await read_answer(reader)
                finally:
                    writer.close()

            uploads = [asyncio.create_task(trickle(i)) for i in range(count)]
            await asyncio.wait_for(started.wait(), WAIT)
            await asyncio.sleep(0.3)              # every upload is under way
            # Longer than legacy's connect timeout (the pool wait) while all of them trickle.
            for _ in range(3):
                async with http.post(proxy.url + "/api/carts", data=b'{"sku": 1}') as resp:
                    text = await resp.text()
                    assert resp.status == 200, text
                    assert json.loads(text)["body"] == '{"sku": 1}'
                await asyncio.sleep(0.5)
                assert not all(u.done() for u in uploads)   # they were still trickling
            for i, task in enumerate(uploads):
                head, raw = await task
                assert head.startswith(b"HTTP/1.1 200 "), head + raw
                answer = json.loads(raw)
                assert answer["target"] == f"/echo?u={i}" and answer["body"] == body.decode()
                assert upstream_headers(answer)["content-length"] == str(len(body))
            async with http.get(proxy.admin_url + "/metrics", headers=proxy.auth) as resp:
                metrics = await resp.text()
            assert "pool-full" not in metrics and 'status="503"' not in metrics


async def test_buffering_off_streams_as_before(tmp_path):
    """`buffer_body_bytes=0`: the upload is forwarded as its bytes arrive (the upstream has the
    head before the body is complete)."""
    async with upstream("legacy") as legacy:
        rules = tiny_pool_rules(tmp_path, legacy.url)
        async with running_proxy(rules, limits=Limits(buffer_body_bytes=0)) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab")
            await writer.drain()
            engine = proxy.runtime.workers[0].engine
            for _ in range(100):
                if any(f.conn is not None for f in engine.inflight):
                    break
                await asyncio.sleep(0.05)
            assert any(f.conn is not None for f in engine.inflight)   # holds a connection
            writer.write(b"cd")
            head, raw = await read_answer(reader)
            writer.close()
            assert head.startswith(b"HTTP/1.1 200 ") and json.loads(raw)["body"] == "abcd"


async def test_a_buffered_upload_holds_no_upstream_connection(tmp_path):
    async with upstream("legacy") as legacy:
        rules = tiny_pool_rules(tmp_path, legacy.url)
        async with running_proxy(rules) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab")
            await writer.drain()
            engine = proxy.runtime.workers[0].engine
            await asyncio.sleep(0.3)
            pool = engine.state.pools["legacy"]
            assert pool.size == 0 and legacy.hits == {}
            writer.write(b"cd")
            head, raw = await read_answer(reader)
            writer.close()
            assert head.startswith(b"HTTP/1.1 200 ") and json.loads(raw)["body"] == "abcd"


async def test_expect_100_continue_is_answered_by_the_proxy_when_buffering(tmp_path):
    async with upstream("legacy") as legacy:
        rules = tiny_pool_rules(tmp_path, legacy.url)
        async with running_proxy(rules) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                         b"Expect: 100-continue\r\n\r\n")
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            assert legacy.hits == {}              # answered without asking the upstream
            writer.write(b"ping")
            head, raw = await read_answer(reader)  # the final answer, no second 100
            writer.close()
            assert head.startswith(b"HTTP/1.1 200 "), head
            answer = json.loads(raw)
            assert answer["body"] == "ping"
            assert "expect" not in upstream_headers(answer)   # the body comes in one go


async def test_expect_100_continue_over_the_limit_is_relayed_from_the_upstream(tmp_path):
    async with upstream("legacy") as legacy:
        rules = tiny_pool_rules(tmp_path, legacy.url)
        async with running_proxy(rules, limits=Limits(buffer_body_bytes=2)) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                         b"Expect: 100-continue\r\n\r\n")
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
            assert interim.startswith(b"HTTP/1.1 100")
            writer.write(b"ping")
            head, raw = await read_answer(reader)
            writer.close()
            assert head.startswith(b"HTTP/1.1 200 "), head
            answer = json.loads(raw)
            assert answer["body"] == "ping"
            assert upstream_headers(answer)["expect"] == "100-continue"


@pytest.mark.parametrize("limit,framing", [(64 * 1024, "content-length"),
                                           (8, "transfer-encoding")])
async def test_chunked_uploads_buffered_or_streamed(tmp_path, limit, framing):
    """A chunked body within the limit goes upstream whole with a Content-Length; one that
    outgrows the limit is streamed, chunked, from where it is. Trailers go neither way."""
    async with upstream("legacy") as legacy:
        rules = tiny_pool_rules(tmp_path, legacy.url)
        async with running_proxy(rules, limits=Limits(buffer_body_bytes=limit)) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (b"hello", b" chunked", b" world"):
                writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                await writer.drain()
                await asyncio.sleep(0.1)
            writer.write(b"0\r\nX-Trailer: t\r\n\r\n")
            head, raw = await read_answer(reader)
            writer.close()
            assert head.startswith(b"HTTP/1.1 200 "), head
            answer = json.loads(raw)
            assert answer["body"] == "hello chunked world"
            headers = upstream_headers(answer)
            assert framing in headers and "x-trailer" not in headers   # trailers are dropped
            if framing == "content-length":
                assert headers["content-length"] == "19" and "transfer-encoding" not in headers


async def test_a_buffered_upload_that_stalls_gets_408(tmp_path):
    async with upstream("legacy") as legacy:
        rules = tiny_pool_rules(tmp_path, legacy.url)
        async with running_proxy(rules, limits=Limits(client_body_timeout_s=0.5)) as proxy, \
                client() as http:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
            await writer.drain()
            head, raw = await read_answer(reader)
            writer.close()
            assert head.startswith(b"HTTP/1.1 408 ") and b"Connection: close" in head
            assert b"client body timeout" in raw
            assert legacy.hits == {}
            async with http.get(proxy.admin_url + "/metrics", headers=proxy.auth) as resp:
                metrics = await resp.text()
            assert re.search(r'strangler_requests_total\{backend="legacy",[^}]*status="408"\} 1',
                             metrics), metrics
            assert "strangler_upstream_errors_total" not in metrics


async def test_a_buffered_body_is_captured_for_shadowing(tmp_path):
    RecordingSink.instances.clear()
    async with upstream("legacy") as legacy, upstream("service") as service:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(
            legacy.url, service.url, stage="shadow", shadow={"percent": 100, "max_body": "2KiB"}))
        async with running_proxy(rules, sink_factory=RecordingSink) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"GET /api/products/search HTTP/1.1\r\nHost: t\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(b"3\r\ndef\r\n0\r\n\r\n")
            head, raw = await read_answer(reader)
            writer.close()
            assert head.startswith(b"HTTP/1.1 200 ") and json.loads(raw)["body"] == "abcdef"
            sink = RecordingSink.instances[0]
            for _ in range(50):
                if sink.submitted:
                    break
                await asyncio.sleep(0.05)
    [ex] = sink.submitted
    assert ex.request_body == b"abcdef" and ex.target == "/api/products/search"
    assert ("Content-Length", "6") in ex.request_headers


def test_buffer_flag_reaches_the_settings(tmp_path, monkeypatch):
    from proxy.cli import register, settings_from
    from strangler.errors import OperatorError

    monkeypatch.setenv("STRANGLER_ADMIN_TOKEN", "t" * 32)
    rules = write_rules(tmp_path / "r.yaml", rules_doc("http://127.0.0.1:9"))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["proxy", "--rules", str(rules)])
    assert settings_from(args).limits.buffer_body_bytes == 64 * 1024
    args = parser.parse_args(["proxy", "--rules", str(rules), "--buffer-body-up-to", "0"])
    assert settings_from(args).limits.buffer_body_bytes == 0
    args = parser.parse_args(["proxy", "--rules", str(rules), "--buffer-body-up-to", "-1"])
    with pytest.raises(OperatorError, match="--buffer-body-up-to"):
        settings_from(args)
