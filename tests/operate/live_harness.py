"""Real pieces for the live operator tests: upstream aiohttp apps on free ports (a legacy, a
service that can start failing), a rule file for one capability in canary, traffic, and
polling a proxy's admin status."""
from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.conftest import free_port
from tests.proxy.harness import RunningProxy

OVERRIDE_SECRET = "let-me-pin"
HEALTH = web.AppKey("health", dict)


async def _products(request: web.Request) -> web.Response:
    health = request.app[HEALTH]
    if health["delay_s"]:
        await asyncio.sleep(health["delay_s"])
    if health["failing"]:
        return web.json_response({"error": "broken release"}, status=500)
    return web.json_response({"items": [], "by": health["name"]})


@asynccontextmanager
async def upstream(name: str, failing: bool = False, delay_s: float = 0.0):
    """An HTTP server on a free port answering /api/products; yields (port, health dict):
    set health["failing"] = True to make it answer 500, health["delay_s"] to slow it down."""
    app = web.Application()
    app[HEALTH] = {"name": name, "failing": failing, "delay_s": delay_s}
    app.router.add_get("/api/products", _products)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port, app[HEALTH]
    finally:
        await runner.cleanup()


def write_rules(path: Path, legacy: int, service: int, percent: float,
                min_requests: int = 20, shadow: float = 0, max_p99_ratio: float = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""version: 1
backends:
  legacy:
    url: http://127.0.0.1:{legacy}
  catalog:
    url: http://127.0.0.1:{service}
capabilities:
  - name: catalog
    match:
      - path_prefix: /api/products
    legacy: legacy
    service: catalog
    stage: canary
    writes: legacy
    rollout:
      percent: {percent:g}
      steps: [10, 50, 100]
    shadow:
      percent: {shadow:g}
    gates:
      max_error_rate_delta: 5%
      max_p99_ratio: {max_p99_ratio:g}
      min_requests: {min_requests}
default: legacy
override:
  header: X-Strangler-Route
  secret_header: X-Strangler-Route-Secret
  secret_env: STRANGLER_OVERRIDE_SECRET
""")
    return path


async def traffic(proxy: RunningProxy, n: int, pin: str | None = None) -> list[int]:
    """N GETs through the proxy (PIN: pin each to that side with the override header)."""
    headers = {"X-Strangler-Route": pin, "X-Strangler-Route-Secret": OVERRIDE_SECRET} \
        if pin else {}
    async with aiohttp.ClientSession(headers=headers) as session:
        async def one() -> int:
            async with session.get(f"{proxy.url}/api/products") as resp:
                await resp.read()
                return resp.status
        statuses = []
        for _ in range(0, n, 10):
            statuses += await asyncio.gather(*(one() for _ in range(10)))
        return statuses


async def admin_status(proxy: RunningProxy) -> dict:
    async with aiohttp.ClientSession(headers=proxy.auth) as session:
        async with session.get(f"{proxy.admin_url}/admin/status") as resp:
            assert resp.status == 200
            return await resp.json()


async def wait_for(proxy: RunningProxy, predicate, what: str, timeout: float = 30) -> dict:
    """Poll /admin/status until PREDICATE(status) holds (the bound is generous; the watcher's
    own pace is about a second)."""
    deadline = time.monotonic() + timeout
    while True:
        status = await admin_status(proxy)
        if predicate(status):
            return status
        assert time.monotonic() < deadline, f"{what} did not happen: {status.get('gates')}"
        await asyncio.sleep(0.2)


def requests_on(status: dict, side: str) -> int:
    """Requests on SIDE in catalog's gate figures (0 before the watcher's first reading)."""
    entry = status["gates"]["capabilities"].get("catalog")
    return entry["figures"][side]["requests"] if entry else 0


def service_requests(status: dict) -> int:
    return requests_on(status, "service")


def token_file(tmp_path: Path, proxy: RunningProxy) -> str:
    """The proxy's admin token in a file, for the CLI's --token-file."""
    path = tmp_path / f"token-{proxy.port}"
    path.write_text(proxy.token + "\n")
    return str(path)
