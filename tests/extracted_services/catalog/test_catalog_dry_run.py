"""Writes with `X-Strangler-Dry-Run: 1` answer as the real write would, and leave no trace."""
from __future__ import annotations

import aiohttp
from aiohttp import web
from sqlalchemy import text

from extracted_services.catalog.app import create_app
from extracted_services.catalog.handlers import _write
from extracted_services.catalog.middleware import json_response
from tests.conftest import free_port

DRY = {"X-Strangler-Dry-Run": "1"}
NOISE = ("generated_at", "request_id", "updated_at")


def strip(body: dict) -> dict:
    return {k: v for k, v in body.items() if k not in NOISE}


async def call(http, method: str, url: str, headers: dict | None = None, **kwargs):
    async with http.request(method, url, headers=headers, **kwargs) as resp:
        body = await resp.json() if resp.status != 204 else None
        return resp.status, resp.headers.get("X-Strangler-Dry-Run"), body


async def test_dry_run_writes_leave_no_trace_and_match_the_real_write(base_url, http, snapshot):
    before = snapshot()
    new = {"sku": "DRY-1", "name": "Cork Mat", "price": 3.5, "category": "bathroom"}
    writes = [("POST", "/api/products", {"json": new}),
              ("PATCH", "/api/products/2", {"json": {"price": 1.99, "category": "garden"}}),
              ("DELETE", "/api/products/3", {})]
    rehearsed = []
    for method, path, kwargs in writes:
        status, marker, body = await call(http, method, base_url + path, DRY, **kwargs)
        assert marker == "rolled-back" and status in (200, 201, 204)
        rehearsed.append((status, body and strip(body)))
    assert snapshot() == before

    # The same writes for real give the answers the dry runs promised, except a new id on
    # PostgreSQL: sequences are not transactional, so the rolled-back insert used one up.
    for (method, path, kwargs), (status, body) in zip(writes, rehearsed):
        real_status, marker, real_body = await call(http, method, base_url + path, **kwargs)
        assert marker is None
        if method == "POST":
            assert real_body["id"] >= body.pop("id")
            real_body.pop("id")
        assert (real_status, real_body and strip(real_body)) == (status, body)
    assert snapshot() != before


async def test_a_failing_dry_run_is_an_ordinary_error(base_url, http, snapshot):
    before = snapshot()
    status, marker, body = await call(http, "PATCH", f"{base_url}/api/products/1", DRY,
                                      json={"category": "nope"})
    assert (status, marker, body["error"]["code"]) == (400, "rolled-back", "bad_request")
    assert snapshot() == before


async def test_every_refusal_of_a_dry_run_says_rolled_back(base_url, http, snapshot):
    # The proxy's shadow replay demands the marker on every answer to a rehearsed write; a
    # refusal before any handler ran (no route, no such method) wrote nothing, so it says so.
    before = snapshot()
    for method, path, kwargs, expected in [
            ("DELETE", "/api/categories/kids", {}, (405, "method_not_allowed")),
            ("PUT", "/api/products/1", {"json": {"price": 1}}, (405, "method_not_allowed")),
            ("POST", "/api/nothing/here", {"json": {}}, (404, "not_found")),
            ("DELETE", "/api/products/abc", {}, (404, "not_found")),
            ("POST", "/api/products", {"json": {"sku": "X"}}, (400, "bad_request")),
            ("POST", "/api/products", {"data": b"x" * (1024 * 1024 + 1),
                                       "headers": {"Content-Type": "application/json"}},
             (413, "payload_too_large"))]:
        headers = DRY | kwargs.pop("headers", {})
        status, marker, body = await call(http, method, base_url + path, headers, **kwargs)
        assert (status, body["error"]["code"], marker) == (*expected, "rolled-back"), \
            (method, path)
    assert snapshot() == before
    # Without the header, or with a refused value, no answer claims a rehearsal.
    status, marker, _ = await call(http, "DELETE", f"{base_url}/api/categories/kids")
    assert (status, marker) == (405, None)
    status, marker, _ = await call(http, "DELETE", f"{base_url}/api/categories/kids",
                                   {"X-Strangler-Dry-Run": "yes"})
    assert (status, marker) == (405, None)


async def test_a_write_that_was_not_rolled_back_never_says_rolled_back(database_url):
    # A handler that writes for real despite the header (a future bug) must not be covered by
    # the marker, whether it answers or fails after writing.
    async def write_anyway(request: web.Request) -> web.Response:
        await _write(request, lambda conn: conn.execute(
            text("UPDATE products SET title = 'Written' WHERE id = 1")), dry_run=False)
        if request.query.get("fail"):
            raise RuntimeError("failed after the write")
        return json_response(request, {"ok": True})

    app = create_app(database_url, seed_products=1)
    app.router.add_post("/test/write-anyway", write_anyway)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/test/write-anyway"
            assert (await call(http, "POST", url, DRY))[:2] == (200, None)
            assert (await call(http, "POST", url + "?fail=1", DRY))[:2] == (500, None)
            assert (await call(http, "POST", url + "/nope", DRY))[:2] == (404, "rolled-back")
            product = await call(http, "GET", f"http://127.0.0.1:{port}/api/products/1")
            assert product[2]["name"] == "Written"          # the writes were real
    finally:
        await runner.cleanup()
