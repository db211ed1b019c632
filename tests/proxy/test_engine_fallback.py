"""Fallback to legacy, never replaying writes; circuit breaker; bounded pools."""
from __future__ import annotations

import asyncio

import aiohttp

from tests.proxy.harness import client, rules_doc, running_proxy, write_rules
from tests.proxy.upstreams import upstream

BREAKER = {"failures": 3, "window": "10s", "cooldown": "30s"}


async def admin_status(http: aiohttp.ClientSession, proxy) -> dict:
    async with http.get(proxy.admin_url + "/admin/status", headers=proxy.auth) as resp:
        assert resp.status == 200
        return await resp.json()


async def test_killed_service_zero_failed_reads(tmp_path):
    async with upstream("legacy") as legacy, upstream("service") as service:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url, service.url, breaker=BREAKER))
        async with running_proxy(rules) as proxy, client() as http:
            answered: list[tuple[int, str]] = []

            async def reader(n: int) -> None:
                for i in range(n):
                    async with http.get(f"{proxy.url}/api/products/{i}") as resp:
                        answered.append((resp.status, (await resp.json())["server"]))

            readers = [asyncio.create_task(reader(60)) for _ in range(4)]
            while len(answered) < 40:
                await asyncio.sleep(0.01)
            await service.stop()                  # kill the service mid-stream
            await asyncio.gather(*readers)
            status = await admin_status(http, proxy)
    assert len(answered) == 240
    assert all(code == 200 for code, _ in answered)           # zero failed idempotent requests
    servers = [server for _, server in answered]
    assert servers[:40] == ["service"] * 40 and servers[-1] == "legacy"
    assert status["capabilities"]["catalog"]["fallbacks"] > 0
    assert status["fallbacks"] > 0
    assert status["backends"]["svc"]["errors"] > 0
    assert status["backends"]["svc"]["breaker"] == {"open": 1}


async def test_post_is_never_replayed(tmp_path):
    async with upstream("legacy") as legacy, upstream("service") as service:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url, service.url))
        async with running_proxy(rules) as proxy, client() as http:
            # A write the service answers 5xx: the client gets the service's answer.
            async with http.post(proxy.url + "/api/fail/503", data=b"order") as resp:
                assert resp.status == 503
                assert (await resp.json())["server"] == "service"
            await service.stop()
            for method in ("POST", "PUT", "PATCH", "DELETE"):
                async with http.request(method, proxy.url + "/api/products/1", data=b"x") as resp:
                    assert resp.status == 502, method
            # A read still falls back.
            async with http.get(proxy.url + "/api/products/1") as resp:
                assert resp.status == 200 and (await resp.json())["server"] == "legacy"
    assert service.hits["POST /api/fail/503"] == 1
    assert not any(k.startswith(("POST", "PUT", "PATCH", "DELETE")) for k in legacy.hits)


async def test_a_failed_write_says_in_the_apps_error_shape_whether_it_may_have_applied(tmp_path):
    """A 504 on a POST the service got may have committed it (an operator found orders behind
    504s): the answer says "outcome: unknown"; one that never left the proxy says "not_sent"."""
    async with upstream("legacy") as legacy, upstream("service") as service:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(
            legacy.url, service.url, service_timeouts={"read_timeout": "200ms"}))
        async with running_proxy(rules) as proxy, client() as http:
            async with http.post(proxy.url + "/api/slow?delay=2", data=b"order") as resp:
                assert resp.status == 504 and resp.content_type == "application/json"
                error = (await resp.json())["error"]
            assert (error["code"], error["outcome"]) == ("gateway_timeout", "unknown")
            assert error["message"] == ("upstream svc: timeout; it may have been applied: check "
                                        "before retrying")
            assert error["request_id"] == resp.headers["X-Request-Id"]
            await service.stop()
            async with http.post(proxy.url + "/api/products", data=b"order") as resp:
                assert resp.status == 502
                error = (await resp.json())["error"]
            assert (error["code"], error["outcome"], error["message"]) == (
                "bad_gateway", "not_sent", "upstream svc: connect")


async def test_5xx_and_timeout_fall_back_and_breaker_opens(tmp_path):
    async with upstream("legacy") as legacy, upstream("service") as service:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(
            legacy.url, service.url, breaker=BREAKER, service_timeouts={"read_timeout": "200ms"}))
        async with running_proxy(rules) as proxy, client() as http:
            async with http.get(proxy.url + "/api/slow?delay=2") as resp:
                assert resp.status == 200
                assert (await resp.json())["server"] == "legacy"      # timed out -> legacy
            for _ in range(6):
                async with http.get(proxy.url + "/api/fail/500?on=service") as resp:
                    assert resp.status == 200
                    assert (await resp.json())["server"] == "legacy"
            status = await admin_status(http, proxy)
            async with http.get(proxy.admin_url + "/metrics", headers=proxy.auth) as resp:
                metrics = await resp.text()
    # 1 timeout + 2 5xx opened the breaker (3 failures); later reads skipped the service.
    assert service.hits["GET /api/fail/500"] == 2
    assert legacy.hits["GET /api/fail/500"] == 6
    assert status["backends"]["svc"]["breaker"] == {"open": 1}
    assert 'strangler_fallbacks_total{capability="catalog",reason="breaker-open"} 4' in metrics
    assert 'strangler_fallbacks_total{capability="catalog",reason="5xx"} 2' in metrics
    assert 'strangler_fallbacks_total{capability="catalog",reason="timeout"} 1' in metrics
    assert 'strangler_breaker_open{backend="svc"} 1' in metrics


async def test_slow_backend_cannot_take_every_connection(tmp_path):
    async with upstream("legacy") as legacy, upstream("service") as service:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(
            legacy.url, service.url, max_connections=2, prefixes=("/api/",)))
        async with running_proxy(rules) as proxy, client() as http:
            async def post(path: str) -> int:
                async with http.post(proxy.url + path, data=b"w") as resp:
                    await resp.read()
                    return resp.status
            # Two slow writes fill the service's pool; the third waits the connect timeout: 503.
            slow = [asyncio.create_task(post("/api/slow?delay=1.5")) for _ in range(2)]
            await asyncio.sleep(0.2)
            third = asyncio.create_task(post("/api/products"))
            # Legacy is unaffected meanwhile.
            for _ in range(5):
                async with http.get(proxy.url + "/echo") as resp:
                    assert resp.status == 200
            assert await third == 503
            assert await asyncio.gather(*slow) == [200, 200]


async def test_abandoned_waiters_do_not_leak_pool_slots(tmp_path):
    async with upstream("legacy") as legacy, upstream("service") as service:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(
            legacy.url, service.url, max_connections=1, prefixes=("/api/",)))
        async with running_proxy(rules) as proxy, client() as http:
            slow = asyncio.create_task(http.post(proxy.url + "/api/slow?delay=0.4", data=b"w"))
            await asyncio.sleep(0.1)
            # Clients that give up while waiting for the one service connection.
            for _ in range(3):
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
                writer.write(b"POST /api/products HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nw")
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.close()
            assert (await slow).status == 200
            for _ in range(3):                   # the slot is still there for later writes
                async with http.post(proxy.url + "/api/products", data=b"w") as resp:
                    assert resp.status == 200
            pool = proxy.runtime.workers[0].engine.state.pools["svc"]
            assert pool.size == 1 and not pool.waiters
