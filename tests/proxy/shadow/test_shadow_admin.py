"""GET /admin/shadow served by `shadow_routes` in a real aiohttp app on loopback."""
from __future__ import annotations

import time

import aiohttp
from aiohttp import web

from proxy.shadow.admin import shadow_routes
from proxy.shadow.store import ShadowStore
from tests.proxy.shadow.shadow_helpers import fill, serve


async def test_live_report_in_every_format(tmp_path):
    url = f"sqlite:///{tmp_path / 'shadow.sqlite3'}"
    store = ShadowStore(url)
    store.create_schema()
    fill(store, n=20, at=time.time() - 3600)
    store.flush()
    store.close()
    app = web.Application()
    app.add_routes(shadow_routes(url))
    runner, backend = await serve(app)
    base = backend.url + "/admin/shadow"
    try:
        async with aiohttp.ClientSession() as client:
            async with client.get(base) as resp:
                assert resp.status == 200 and resp.content_type == "application/json"
                doc = await resp.json()
            routes = {r["route"]: r for r in doc["capabilities"][0]["routes"]}
            assert routes["/api/products/{id}"]["fields"][0]["field"] == "$.price"
            assert routes["/api/categories"]["match_rate"] == 100.0
            for fmt, ctype, marker in (("html", "text/html", "<svg"),
                                       ("markdown", "text/markdown", "# Shadow report"),
                                       ("text", "text/plain", "capability catalog")):
                async with client.get(base, params={"format": fmt}) as resp:
                    assert resp.status == 200 and resp.content_type == ctype
                    assert marker in await resp.text()
            async with client.get(base, params={"capability": "nope"}) as resp:
                assert (await resp.json())["capabilities"] == []
            async with client.get(base, params={"since": "1m"}) as resp:
                assert (await resp.json())["capabilities"] == []  # written an hour ago
            for bad in ({"format": "pdf"}, {"since": "soon"}):
                async with client.get(base, params=bad) as resp:
                    assert resp.status == 400
                    assert "one of" in await resp.text() or "e.g." in await resp.text()
    finally:
        await runner.cleanup()


async def test_unreachable_store_is_a_clear_503():
    app = web.Application()
    app.add_routes(shadow_routes("postgresql://postgres:x@127.0.0.1:1/nowhere"))
    runner, backend = await serve(app)
    try:
        async with aiohttp.ClientSession() as client:
            async with client.get(backend.url + "/admin/shadow") as resp:
                assert resp.status == 503
                assert "shadow store unavailable" in await resp.text()
    finally:
        await runner.cleanup()
