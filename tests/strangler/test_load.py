"""strangler.load against a small real shop server: what counts as a failed request, sticky
users, carts checked out, and that the load stops by itself."""
from __future__ import annotations

from collections import Counter

from aiohttp import web

from strangler.load import Load
from tests.conftest import serve_app

SEEN = web.AppKey("seen", Counter)


def shop(broken_product: int | None = None) -> web.Application:
    """The shop's routes the load uses; checkout answers 409 (short stock) every other time;
    BROKEN_PRODUCT answers 500 on its JSON read."""
    app = web.Application()
    app[SEEN] = Counter()
    carts: dict[int, list[int]] = {}

    async def ok(request: web.Request) -> web.Response:
        app[SEEN][request.headers.get("X-User-Id", "-")] += 1
        return web.json_response({"items": []})

    async def product(request: web.Request) -> web.Response:
        if int(request.match_info["id"]) == broken_product:
            return web.json_response({"error": {"code": "internal"}}, status=500)
        return await ok(request)

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html></html>", content_type="text/html")

    async def new_cart(request: web.Request) -> web.Response:
        cart = len(carts) + 1
        carts[cart] = []
        return web.json_response({"id": cart}, status=201)

    async def add(request: web.Request) -> web.Response:
        cart = carts[int(request.match_info["cart"])]
        cart.append((await request.json())["product_id"])
        return web.json_response({"items": cart})

    async def checkout(request: web.Request) -> web.Response:
        app[SEEN]["checkouts"] += 1
        if app[SEEN]["checkouts"] % 2:
            return web.json_response({"error": {"code": "conflict"}}, status=409)
        return web.json_response({"id": 1}, status=201)

    app.router.add_get("/api/products", ok)
    app.router.add_get("/api/categories", ok)
    app.router.add_get("/api/products/{id}", product)
    app.router.add_get("/products/{id}", page)
    app.router.add_post("/api/carts", new_cart)
    app.router.add_post("/api/carts/{cart}/items", add)
    app.router.add_post("/api/carts/{cart}/checkout", checkout)
    return app


async def test_short_stock_is_an_answer_and_the_load_stops_at_its_bound():
    app = shop()
    runner, url = await serve_app(app)
    try:
        report = await Load(url, users=5, concurrency=3, products=10, max_requests=400).run()
    finally:
        await runner.cleanup()
    assert report.failures == []
    assert 400 <= report.requests < 400 + 3 * 2      # in-flight visits finish their cart step
    assert report.count("checkout", 409) > 0 and report.count("checkout", 201) > 0
    users = {u for u in app[SEEN] if u.startswith("vu-")}
    assert users == {f"vu-{n:04d}" for n in range(5)}


async def test_a_5xx_and_a_dead_server_are_failures_with_what_was_asked():
    runner, url = await serve_app(shop(broken_product=3))
    try:
        report = await Load(url, users=2, concurrency=1, products=10, max_requests=60).run()
    finally:
        await runner.cleanup()
    assert report.failed > 0
    assert {(f.method, f.kind, f.path, f.status) for f in report.failures} == {
        ("GET", "product", "/api/products/3", 500)}

    gone = await Load(url, users=1, concurrency=1, duration_s=0.5).run()
    assert gone.failed == gone.requests > 0
    assert all(f.status is None and "Connect" in f.detail for f in gone.failures)
