"""Shared builders for the shadow tests (not fixtures: plain functions)."""
from __future__ import annotations

import asyncio
import json
import re
from contextlib import asynccontextmanager
from typing import AsyncIterator

from aiohttp import web

from proxy.decision import Backend
from proxy.shadow.store import Observation
from tests.conftest import serve_app

PRODUCT_ROUTE = re.compile(r"/api/products/\d+")


def observation(route="/api/products/{id}", raw=(), noise=None, status_mismatch=False,
                at=1_800_000_000.0, capability="catalog", legacy_s=0.010, service_s=0.020,
                sample_fields=()):
    sample = None
    if sample_fields:
        sample = json.dumps({
            "at": at, "method": "GET", "target": "/api/products/1",
            "request_headers": [], "request_body": "",
            "legacy": {"status": 200, "headers": [], "body": '{"price": 49.99}', "latency_ms": 10},
            "service": {"status": 200, "headers": [], "body": '{"price": 50.0}', "latency_ms": 20},
            "diffs": [{"path": f, "kind": "value", "left": 49.99, "right": 50.0}
                      for f in sample_fields],
            "curl": {"legacy": "curl -sS -i -X GET http://127.0.0.1:1/api/products/1",
                     "service": "curl -sS -i -X GET http://127.0.0.1:2/api/products/1"}})
    return Observation(capability=capability, route=route, at=at,
                       status_mismatch=status_mismatch, raw_fields=frozenset(raw),
                       noise_fields=None if noise is None else frozenset(noise),
                       legacy_latency_s=legacy_s, service_latency_s=service_s,
                       sample=sample, sample_fields=tuple(sample_fields))


def fill(store, n=40, noise_every=2, at=1_800_000_000.0):
    """n comparisons on one route: price always wrong, generated_at always noisy; plus a clean
    route whose only difference is the noise field."""
    for i in range(n):
        noisy = {"$.generated_at"} if i % noise_every == 0 else None
        store.record(observation(raw={"$.price", "$.generated_at"}, noise=noisy, at=at + i,
                                 sample_fields=("$.price",) if i < 2 else ()))
        store.record(observation(route="/api/categories", raw={"$.generated_at"}, noise=noisy,
                                 at=at + i))


@web.middleware
async def price_and_description_bug(request: web.Request, handler):
    """The deliberately introduced bug: prices rounded to one decimal, description dropped."""
    response = await handler(request)
    if request.method == "GET" and PRODUCT_ROUTE.fullmatch(request.path) \
            and response.status == 200:
        doc = json.loads(response.body)
        doc["price"] = round(doc["price"], 1)
        doc.pop("description")
        return web.json_response(doc)
    return response


async def serve(app: web.Application) -> tuple[web.AppRunner, Backend]:
    runner, url = await serve_app(app)
    return runner, backend_at(int(url.rsplit(":", 1)[1]))


def backend_at(port: int, *, name: str = "b", dry_run: bool = False) -> Backend:
    return Backend(name, f"http://127.0.0.1:{port}", "127.0.0.1", port, honours_dry_run=dry_run)


class Stuck:
    """A shadow target that takes requests and answers none until `release` is set."""

    def __init__(self) -> None:
        self.held: list[str] = []          # paths of the requests it is holding
        self.release = asyncio.Event()
        self.backend: Backend | None = None
        self.runner: web.AppRunner | None = None

    async def stop(self) -> None:
        """Release what it holds and stop answering at all (as a dead service)."""
        self.release.set()
        if self.runner is not None:
            runner, self.runner = self.runner, None
            await runner.cleanup()

    async def handle(self, request: web.Request) -> web.Response:
        self.held.append(request.path)
        await self.release.wait()
        return web.json_response({})


@asynccontextmanager
async def stuck_target() -> AsyncIterator[Stuck]:
    """A real server on loopback that holds every request; released and stopped on exit."""
    stuck = Stuck()
    app = web.Application()
    app.router.add_get("/{tail:.*}", stuck.handle)
    stuck.runner, stuck.backend = await serve(app)
    try:
        yield stuck
    finally:
        await stuck.stop()
