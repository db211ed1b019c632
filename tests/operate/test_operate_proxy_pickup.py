"""Running `strangler proxy` processes pick up `strangler rollout`, and a rollback taken by one
of them, from the rule file within seconds: the file is the single source of truth they watch."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from operate.actions import set_percent
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


async def test_running_proxies_follow_rollout_and_a_rollback_taken_by_one(demo: Path,
                                                                           tmp_path: Path, cli):
    point_at_free_ports(demo)
    assert cli("stage", "catalog", "canary").code == 0
    async with proxy_process(demo, workers=1, log=tmp_path / "a.log") as (a, _), \
            proxy_process(demo, workers=1, log=tmp_path / "b.log") as (b, _):
        assert cli("rollout", "catalog", "50").code == 0
        version = load_table(demo, environ={}).version
        for proxy in (a, b):
            status = await wait_for_percent(proxy, 50, version)
            assert status["capabilities"][0]["stage"] == "canary"
        # Proxy a's automatic rollback, as the proxy will call it.
        change = await asyncio.get_running_loop().run_in_executor(
            None, lambda: set_percent(demo, "catalog", 0, who="proxy:a:1", why="gate broke",
                                      expected_version=version))
        assert change.changed
        for proxy in (a, b):
            await wait_for_percent(proxy, 0, change.after)
