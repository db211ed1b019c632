"""Hot reload under load, invalid rules kept out of traffic, the admin API's token."""
from __future__ import annotations

import asyncio
import json

import pytest
from yarl import URL

from tests.proxy.harness import client, rules_doc, running_proxy, write_rules
from tests.proxy.upstreams import upstream


@pytest.mark.parametrize("method, path", [("GET", "/admin/status"), ("POST", "/admin/reload"),
                                          ("GET", "/metrics")])
async def test_admin_refuses_without_the_token(tmp_path, method, path):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules) as proxy, client() as http:
            for headers in ({}, {"Authorization": "Bearer wrong"},
                            {"Authorization": proxy.token}, {"Authorization": "Basic " + proxy.token}):
                async with http.request(method, proxy.admin_url + path, headers=headers) as resp:
                    assert resp.status == 401, headers
                    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            async with http.request(method, proxy.admin_url + path, headers=proxy.auth) as resp:
                assert resp.status == 200


async def test_hot_reload_under_load_fails_nothing(tmp_path):
    async with upstream("legacy") as legacy, upstream("service") as service:
        path = tmp_path / "r.yaml"
        write_rules(path, rules_doc(legacy.url, service.url, stage="legacy"))
        async with running_proxy(path) as proxy, client() as http:
            results: list[tuple[int, str]] = []
            stop = asyncio.Event()

            async def load() -> None:
                i = 0
                while not stop.is_set():
                    i += 1
                    async with http.get(f"{proxy.url}/api/products/{i}") as resp:
                        body = await resp.read()
                        results.append((resp.status, json.loads(body)["server"]))

            loaders = [asyncio.create_task(load()) for _ in range(4)]
            for round_ in range(6):
                stage = "cutover" if round_ % 2 == 0 else "legacy"
                write_rules(path, rules_doc(legacy.url, service.url, stage=stage))
                if round_ % 3 == 0:              # the file watcher picks up the others
                    async with http.post(proxy.admin_url + "/admin/reload",
                                         headers=proxy.auth) as resp:
                        assert resp.status == 200
                await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*loaders)
            async with http.get(proxy.admin_url + "/admin/status", headers=proxy.auth) as resp:
                status = await resp.json()
    assert len(results) > 100
    assert all(code == 200 for code, _ in results)
    assert {server for _, server in results} == {"legacy", "service"}
    assert status["rules"]["reloads"]["ok"] >= 6
    assert status["rules"]["last_reload_error"] is None


async def test_reload_moves_a_backend_to_a_new_address(tmp_path):
    async with upstream("legacy") as old, upstream("legacy-2") as new:
        path = write_rules(tmp_path / "r.yaml", rules_doc(old.url))
        async with running_proxy(path) as proxy, client() as http:
            async with http.get(proxy.url + "/echo") as resp:
                assert (await resp.json())["server"] == "legacy"
            old_pool = proxy.runtime.workers[0].engine.state.pools["legacy"]
            write_rules(path, rules_doc(new.url))
            async with http.post(proxy.admin_url + "/admin/reload", headers=proxy.auth) as resp:
                assert resp.status == 200
            async with http.get(proxy.url + "/echo") as resp:
                assert (await resp.json())["server"] == "legacy-2"
    assert old_pool.retired and not old_pool.idle


async def test_invalid_rules_rejected_old_rules_keep_serving(tmp_path):
    async with upstream("legacy") as legacy, upstream("service") as service:
        path = tmp_path / "r.yaml"
        good = rules_doc(legacy.url, service.url, stage="cutover")
        write_rules(path, good)
        async with running_proxy(path) as proxy, client() as http:
            async with http.get(proxy.admin_url + "/admin/status", headers=proxy.auth) as resp:
                version = (await resp.json())["rules"]["version"]
            bad = rules_doc(legacy.url, service.url, stage="cutover")
            bad["capabilities"][0]["service"] = "no-such-backend"
            write_rules(path, bad)
            async with http.post(proxy.admin_url + "/admin/reload", headers=proxy.auth) as resp:
                assert resp.status == 422
                problems = (await resp.json())["problems"]
            assert any("no-such-backend" in p and f"{path}:" in p for p in problems), problems
            async with http.get(proxy.url + "/api/products/1") as resp:
                assert (await resp.json())["server"] == "service"      # old table serving
            async with http.get(proxy.admin_url + "/admin/status", headers=proxy.auth) as resp:
                status = await resp.json()
            assert status["rules"]["version"] == version
            assert any("no-such-backend" in p for p in status["rules"]["last_reload_error"])
            # Broken YAML through the file watcher: still the old table, error visible.
            path.write_text("version: 1\nbackends: [unclosed\n")
            await asyncio.sleep(0.8)
            async with http.get(proxy.admin_url + "/admin/status", headers=proxy.auth) as resp:
                status = await resp.json()
            assert status["rules"]["version"] == version
            assert status["rules"]["last_reload_error"]
            async with http.get(proxy.url + "/api/products/1") as resp:
                assert (await resp.json())["server"] == "service"
            # Fixed: served at once, error cleared.
            write_rules(path, rules_doc(legacy.url, service.url, stage="legacy"))
            async with http.post(proxy.admin_url + "/admin/reload", headers=proxy.auth) as resp:
                assert resp.status == 200
            async with http.get(proxy.url + "/api/products/1") as resp:
                assert (await resp.json())["server"] == "legacy"
            async with http.get(proxy.admin_url + "/admin/status", headers=proxy.auth) as resp:
                assert (await resp.json())["rules"]["last_reload_error"] is None


async def test_access_log_json_lines(tmp_path):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        log = tmp_path / "access.log"
        async with running_proxy(rules, access_log=str(log)) as proxy, client() as http:
            async with http.get(proxy.url + "/echo?token=s3cret&page=2", headers={
                    "Authorization": "Bearer topsecret", "Cookie": "session=abc",
                    "X-Request-Id": "rid-1"}) as resp:
                assert resp.status == 200
            async with http.get(URL(proxy.url + "/echo/4111-1111-1111-1111?cc=4111111111111111&"
                                    "pan2=4111%201111%201111%201111&%74oken=PCT1&q=shoes",
                                    encoded=True)) as resp:
                assert resp.status == 404           # no such page upstream; logged all the same
        lines = log.read_text().splitlines()
    entry = json.loads(lines[-2])
    assert entry["request_id"] == "rid-1" and entry["status"] == 200
    assert entry["method"] == "GET" and entry["path"] == "/echo" and entry["backend"] == "legacy"
    assert entry["query"] == "token=***&page=2"
    cards = json.loads(lines[-1])      # card numbers in path and values, an encoded secret name
    assert (cards["path"], cards["query"]) == ("/echo/***", "cc=***&pan2=***&%74oken=***&q=shoes")
    assert entry["ts"].endswith("+00:00") and "T" in entry["ts"]
    for key in ("ts", "capability", "side", "duration_ms", "bytes", "fallback", "upstream_status"):
        assert key in entry
    assert log.stat().st_mode & 0o777 == 0o600
    text = log.read_text()
    assert "topsecret" not in text and "s3cret" not in text and "session=abc" not in text
    assert "4111" not in text and "PCT1" not in text


async def test_operator_mistakes_refused_at_start(tmp_path):
    import socket

    from proxy.runtime import Runtime, _loopback
    from proxy.settings import ProxySettings
    from strangler.errors import OperatorError
    from tests.conftest import free_port

    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        base = dict(rules_path=rules, admin_port=free_port(), admin_token="t", workers=1)
        try:
            taken = Runtime(ProxySettings(listen_port=busy.getsockname()[1], **base))
            with pytest.raises(OperatorError, match="cannot listen"):
                await taken.start()
        finally:
            busy.close()
        remote = Runtime(ProxySettings(listen_port=free_port(), admin_host="0.0.0.0", **base),
                         in_process=True)
        with pytest.raises(OperatorError, match="--admin-allow-remote"):
            await remote.start()
        assert [_loopback(h) for h in ("127.0.0.2", "::1", "localhost", "0.0.0.0", "10.0.0.1",
                                       "example.org")] == [True, True, True, False, False, False]
        bad = tmp_path / "bad.yaml"
        bad.write_text("version: 1\nbackends: {}\n")
        with pytest.raises(OperatorError, match="rules have errors"):
            await Runtime(ProxySettings(listen_port=free_port(), **{**base, "rules_path": bad}),
                          in_process=True).start()
