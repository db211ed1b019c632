"""A client that pauses while uploading a body is the client's problem, not the backend's.

The upstream's read timeout (time to answer) starts once the whole request body has been
forwarded; while the client is still sending, only the client body timeout applies (idle time
between body bytes), which answers 408 and never counts as an upstream error, a breaker failure
or a fallback.
"""
from __future__ import annotations

import asyncio
import json
import re

import pytest

from proxy.settings import Limits
from tests.proxy.harness import client, read_all, rules_doc, running_proxy, write_rules
from tests.proxy.upstreams import upstream

BREAKER = {"failures": 3, "window": "30s", "cooldown": "60s"}


def rules_with_short_reads(legacy_url: str, service_url: str) -> dict:
    """Both backends answer-or-fail within 200 ms of the request being forwarded whole."""
    doc = rules_doc(legacy_url, service_url, breaker=BREAKER,
                    service_timeouts={"read_timeout": "200ms", "timeout": "2s"})
    doc["backends"]["legacy"].update({"read_timeout": "200ms", "timeout": "2s",
                                      "breaker": BREAKER})
    return doc



async def metrics_text(http, proxy) -> str:
    async with http.get(proxy.admin_url + "/metrics", headers=proxy.auth) as resp:
        assert resp.status == 200
        return await resp.text()


def head_and_body(raw: bytes) -> tuple[bytes, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize("path,backend", [("/api/products", "svc"), ("/echo", "legacy")])
async def test_client_stalling_mid_body_gets_408_and_the_backend_is_not_blamed(
        tmp_path, path, backend):
    async with upstream("legacy") as legacy, upstream("service") as service:
        rules = write_rules(tmp_path / "r.yaml", rules_with_short_reads(legacy.url, service.url))
        async with running_proxy(rules, limits=Limits(client_body_timeout_s=1.0)) as proxy, \
                client() as http:

            async def stalling_client() -> bytes:
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
                writer.write(f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 20\r\n"
                             "Content-Type: application/json\r\n\r\n".encode() + b'{"name": "')
                await writer.drain()              # ...and never sends the other 10 bytes
                try:
                    return await read_all(reader)
                finally:
                    writer.close()

            # More stalling clients than the breaker's failure threshold.
            answers = await asyncio.gather(*(stalling_client() for _ in range(5)))
            for raw in answers:
                head, body = head_and_body(raw)
                assert head.startswith(b"HTTP/1.1 408 "), raw
                assert b"Connection: close" in head and b"X-Request-Id: " in head
                assert b"client body timeout" in body
            metrics = await metrics_text(http, proxy)
            assert "strangler_upstream_errors_total" not in metrics
            assert "strangler_fallbacks_total" not in metrics
            assert f'strangler_breaker_open{{backend="{backend}"}} 0' in metrics
            assert re.search(r'strangler_requests_total\{backend="%s",[^}]*status="408"\} 5'
                             % backend, metrics), metrics
            # The backend's write path is still open, and reads still go to the service.
            async with http.post(proxy.url + path, data=b'{"name": "x"}') as resp:
                assert resp.status == 200
                assert (await resp.json())["server"] == ("service" if backend == "svc"
                                                         else "legacy")
            async with http.get(proxy.url + "/api/products/1") as resp:
                assert resp.status == 200 and (await resp.json())["server"] == "service"
            assert proxy.runtime.workers[0].engine.breaker_states() == {
                "svc": "closed", "legacy": "closed"}


@pytest.mark.parametrize("path,server", [("/api/products", "service"), ("/echo", "legacy")])
async def test_a_pause_shorter_than_the_body_timeout_but_longer_than_the_read_timeout_succeeds(
        tmp_path, path, server):
    async with upstream("legacy") as legacy, upstream("service") as service:
        rules = write_rules(tmp_path / "r.yaml", rules_with_short_reads(legacy.url, service.url))
        async with running_proxy(rules, limits=Limits(client_body_timeout_s=30.0)) as proxy, \
                client() as http:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 20\r\n"
                         "Connection: close\r\n\r\n".encode() + b"0123456789")
            await writer.drain()
            await asyncio.sleep(1.0)              # 5x the upstream's read timeout
            writer.write(b"abcdefghij")
            await writer.drain()
            raw = await read_all(reader)
            writer.close()
            head, body = head_and_body(raw)
            assert head.startswith(b"HTTP/1.1 200 "), raw
            answer = json.loads(body)
            assert answer["server"] == server and answer["body"] == "0123456789abcdefghij"
            metrics = await metrics_text(http, proxy)
            assert "strangler_upstream_errors_total" not in metrics


async def test_an_upstream_that_stops_reading_the_body_is_still_an_upstream_timeout(tmp_path):
    """Backpressure from the upstream pauses the client: that silence is the upstream's."""
    async def never_reads(reader, writer):
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            writer.close()

    server = await asyncio.start_server(never_reads, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        doc = rules_doc(f"http://127.0.0.1:{port}")
        doc["backends"]["legacy"].update({"read_timeout": "500ms", "breaker": BREAKER})
        rules = write_rules(tmp_path / "r.yaml", doc)
        # A client body timeout shorter than the read timeout: the client, paused by us while
        # the upstream is not reading, must not be the one blamed.
        async with running_proxy(rules, limits=Limits(client_body_timeout_s=0.2)) as proxy, \
                client() as http:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            size = 90 * 1024 * 1024
            writer.write(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)

            async def upload() -> None:
                block = b"x" * (1 << 20)
                try:
                    for _ in range(size // len(block)):
                        writer.write(block)
                        await writer.drain()
                except (ConnectionError, OSError):
                    pass

            sending = asyncio.create_task(upload())
            try:
                raw = await read_all(reader)
            except ConnectionResetError:
                # Closed with the client's body bytes unread, the kernel may send a reset that
                # overtakes the answer (no lingering close): the metrics tell what happened.
                raw = b""
            sending.cancel()
            writer.close()
            if raw:
                assert raw.startswith(b"HTTP/1.1 504 "), raw[:200]
                assert b"upstream legacy: timeout" in raw
            metrics = await metrics_text(http, proxy)
            assert 'strangler_upstream_errors_total{backend="legacy",kind="timeout"} 1' in metrics
            assert re.search(r'strangler_requests_total\{backend="legacy",[^}]*status="504"\} 1',
                             metrics), metrics
            assert 'status="408"' not in metrics
    finally:
        server.close()


def test_client_body_timeout_flag_reaches_the_settings(tmp_path, monkeypatch):
    import argparse

    from proxy.cli import register, settings_from
    from strangler.errors import OperatorError

    monkeypatch.setenv("STRANGLER_ADMIN_TOKEN", "t" * 32)
    rules = write_rules(tmp_path / "r.yaml", rules_doc("http://127.0.0.1:9"))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["proxy", "--rules", str(rules)])
    assert settings_from(args).limits.client_body_timeout_s == 10.0       # nginx's default
    args = parser.parse_args(["proxy", "--rules", str(rules), "--client-body-timeout", "2.5"])
    assert settings_from(args).limits.client_body_timeout_s == 2.5
    args = parser.parse_args(["proxy", "--rules", str(rules), "--client-body-timeout", "0"])
    with pytest.raises(OperatorError, match="--client-body-timeout"):
        settings_from(args)
