"""Forwarding through a real proxy to real upstreams: headers, methods, bodies, upgrades."""
from __future__ import annotations

import asyncio
import gzip
import re
import socket
import struct

import aiohttp

from tests.proxy.harness import client, raw_exchange, rules_doc, running_proxy, write_rules
from tests.proxy.upstreams import upstream


def header(echoed: dict, name: str) -> list[str]:
    return [v for k, v in echoed["headers"] if k.lower() == name.lower()]


async def test_request_headers_rewritten(tmp_path):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules) as proxy, client() as http:
            trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            async with http.get(proxy.url + "/echo?x=1", headers={
                "Connection": "X-Drop-Me, keep-alive", "X-Drop-Me": "1", "Keep-Alive": "timeout=1",
                "TE": "trailers", "Proxy-Authorization": "Basic eA==",
                "X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "evil.example", "Forwarded": "for=6.6.6.6",
                "traceparent": trace, "tracestate": "a=b,c=d", "X-Kept": "yes",
                "X-Real-IP": "6.6.6.6", "True-Client-IP": "6.6.6.6",
                "X-Original-URL": "/admin"}) as resp:
                assert resp.status == 200
                assert resp.headers["Via"] == "1.1 strangler"
                echoed = await resp.json()
                answered_id = resp.headers.getall("X-Request-Id")
    assert echoed["target"] == "/echo?x=1"
    for gone in ("X-Drop-Me", "Keep-Alive", "TE", "Proxy-Authorization", "Forwarded",
                 "X-Real-IP", "True-Client-IP", "X-Original-URL"):
        assert header(echoed, gone) == [], gone
    # Not a trusted peer: the client's X-Forwarded-* are replaced, not appended to.
    assert header(echoed, "X-Forwarded-For") == ["127.0.0.1"]
    assert header(echoed, "X-Forwarded-Proto") == ["http"]
    assert header(echoed, "X-Forwarded-Host") == [f"127.0.0.1:{proxy.port}"]
    assert header(echoed, "Via") == ["1.1 strangler"]
    assert header(echoed, "traceparent") == [trace]
    assert header(echoed, "tracestate") == ["a=b,c=d"]
    assert header(echoed, "X-Kept") == ["yes"]
    assert re.fullmatch(r"[0-9a-f]{32}", header(echoed, "X-Request-Id")[0])
    assert answered_id == header(echoed, "X-Request-Id")   # the client learns the id too


async def test_trusted_proxy_headers_appended_and_request_id_kept(tmp_path):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url, trusted=["127.0.0.1/32"]))
        async with running_proxy(rules) as proxy, client() as http:
            async with http.get(proxy.url + "/echo", headers={
                    "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https",
                    "X-Forwarded-Host": "shop.example", "X-Request-Id": "req-42",
                    "Via": "1.1 edge", "X-Real-IP": "203.0.113.9"}) as resp:
                echoed = await resp.json()
                assert resp.headers.getall("X-Request-Id") == ["req-42"]
    assert header(echoed, "X-Forwarded-For") == ["203.0.113.9, 127.0.0.1"]
    assert header(echoed, "X-Forwarded-Proto") == ["https"]
    assert header(echoed, "X-Forwarded-Host") == ["shop.example"]
    assert header(echoed, "X-Request-Id") == ["req-42"]
    assert header(echoed, "Via") == ["1.1 edge, 1.1 strangler"]
    assert header(echoed, "X-Real-IP") == ["203.0.113.9"]          # a trusted peer's, kept


async def test_only_websocket_upgrades_are_tunnelled(tmp_path):
    """An h2c (or any other) upgrade is forwarded as a plain request: a tunnel would carry
    later requests past the rules."""
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules) as proxy, client() as http:
            async with http.get(proxy.url + "/echo", headers={
                    "Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c",
                    "HTTP2-Settings": "AAMAAABkAAQAAP__"}) as resp:
                assert resp.status == 200
                echoed = await resp.json()
    for gone in ("Upgrade", "HTTP2-Settings", "Connection"):
        assert header(echoed, gone) == [], gone


async def test_response_hop_by_hop_removed_redirect_and_gzip_untouched(tmp_path):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules) as proxy, client() as http:
            async with http.get(proxy.url + "/hop") as resp:
                assert await resp.text() == "hop"
                assert "X-Private" not in resp.headers and "Keep-Alive" not in resp.headers
                assert "Proxy-Authenticate" not in resp.headers
                assert resp.headers["X-Public"] == "yes"
            async with http.get(proxy.url + "/redirect", allow_redirects=False) as resp:
                assert resp.status == 302
                assert resp.headers["Location"] == "/echo?redirected=1"
                assert resp.headers["Set-Cookie"].startswith("a=1")
            async with http.get(proxy.url + "/gzip") as resp:
                assert resp.headers["Content-Encoding"] == "gzip"
                assert gzip.decompress(await resp.read()) == b'{"compressed": true}'


async def test_head_and_keep_alive_on_one_connection(tmp_path):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"HEAD /big?size=5000&length=1 HTTP/1.1\r\nHost: t\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert b"Content-Length: 5000" in head
            # No body followed the HEAD answer: the next answer starts right away.
            writer.write(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
            head2 = await reader.readuntil(b"\r\n\r\n")
            assert head2.startswith(b"HTTP/1.1 200"), head2
            length = int(re.search(rb"Content-Length: (\d+)", head2).group(1))
            assert b'"method": "GET"' in await reader.readexactly(length)
            writer.close()


async def test_chunked_request_in_and_chunked_response_out(tmp_path):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules) as proxy:
            answer = await raw_exchange(proxy.port, (
                b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"))
            assert answer.startswith(b"HTTP/1.1 200"), answer
            assert b'"body": "hello world"' in answer
            async with client() as http:
                async with http.get(proxy.url + "/big?size=300000") as resp:
                    assert resp.headers["Transfer-Encoding"] == "chunked"
                    assert len(await resp.read()) == 300000


async def test_expect_100_continue(tmp_path):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                         b"Expect: 100-continue\r\n\r\n")
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert interim.startswith(b"HTTP/1.1 100")
            writer.write(b"ping")
            final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert final.startswith(b"HTTP/1.1 200")
            length = int(re.search(rb"Content-Length: (\d+)", final).group(1))
            assert b'"body": "ping"' in await reader.readexactly(length)
            writer.close()


async def test_websocket_upgrade_passes_through(tmp_path):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules) as proxy, aiohttp.ClientSession() as http:
            async with http.ws_connect(proxy.url + "/ws") as ws:
                await ws.send_str("hi")
                assert (await ws.receive(timeout=5)).data == "echo:hi"
                await ws.send_bytes(b"\x00\x01" * 50000)
                assert (await ws.receive(timeout=5)).data == b"\x00\x01" * 50000


async def test_routes_by_rules_and_never_elsewhere(tmp_path):
    async with upstream("legacy") as legacy, upstream("service") as service:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url, service.url))
        async with running_proxy(rules) as proxy, client() as http:
            async with http.post(proxy.url + "/api/products", data=b"x" * 1000) as resp:
                assert (await resp.json())["server"] == "service"
            async with http.get(proxy.url + "/echo") as resp:
                assert (await resp.json())["server"] == "legacy"
            # The Host header names some other site: still only the rules' backends are used.
            async with http.get(proxy.url + "/echo", headers={"Host": "example.com:80"}) as resp:
                assert (await resp.json())["server"] == "legacy"


async def test_http10_client_gets_a_close_delimited_body(tmp_path):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules) as proxy:
            raw = await raw_exchange(proxy.port, b"GET /big?size=100000 HTTP/1.0\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" in head
    assert b"Transfer-Encoding" not in head and len(body) == 100000


async def test_client_gone_mid_request_is_logged_and_frees_the_upstream(tmp_path):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules) as proxy, client() as http:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"GET /slow?delay=0.5 HTTP/1.1\r\nHost: t\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)
            # The client gives up: a reset. (A plain close() sends only a FIN, which after a
            # complete request reads as a half-close: the client still gets its answer.)
            writer.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            await asyncio.sleep(0.1)
            engine = proxy.runtime.workers[0].engine
            assert not engine.inflight and engine.state.pools["legacy"].size == 0
            async with http.get(proxy.admin_url + "/metrics", headers=proxy.auth) as resp:
                assert 'status="499"} 1' in await resp.text()
            async with http.get(proxy.url + "/echo") as resp:
                assert resp.status == 200
