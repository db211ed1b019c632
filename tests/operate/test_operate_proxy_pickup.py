"""A running `strangler proxy` (a real subprocess) picks up `strangler rollout` and `rollback`
from the rule file within seconds: the file is the single source of truth every proxy watches."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from proxy.rules import load_table
from tests.conftest import free_port
from tests.proxy.harness import RunningProxy, proxy_process


def point_at_free_ports(rules: Path) -> None:
    """The demo's upstreams on ports nobody uses (status needs no upstream)."""
    text = rules.read_text()
    for port in ("8001", "8002"):
        text = text.replace(f"127.0.0.1:{port}", f"127.0.0.1:{free_port()}")
    rules.write_text(text)


async def wait_for_percent(proxy: RunningProxy, percent: float, version: str) -> dict:
    """Poll /admin/status until the proxy serves VERSION (the test's bound is generous; how
    fast it happens is the watcher's poll interval, 1 s by default)."""
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession(headers=proxy.auth) as session:
        while True:
            async with session.get(f"{proxy.admin_url}/admin/status") as resp:
                assert resp.status == 200
                status = await resp.json()
            rules = status["rules"]
            if rules["version"] == version:
                assert status["capabilities"]["catalog"]["percent"] == percent
                return rules
            assert time.monotonic() < deadline, f"proxy still serves {rules['version']}"
            await asyncio.sleep(0.1)


async def test_a_running_proxy_follows_rollout_and_rollback(demo: Path, tmp_path: Path, cli):
    point_at_free_ports(demo)
    assert cli("stage", "catalog", "canary").code == 0
    async with proxy_process(demo, workers=1, log=tmp_path / "proxy.log") as (proxy, _):
        assert cli("rollout", "catalog", "50").code == 0
        status = await wait_for_percent(proxy, 50, load_table(demo, environ={}).version)
        assert status["capabilities"][0]["stage"] == "canary"
        assert cli("rollback", "catalog", "--reason", "test").code == 0
        await wait_for_percent(proxy, 0, load_table(demo, environ={}).version)
