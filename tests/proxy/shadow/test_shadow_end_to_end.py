"""The dispatcher against the real legacy shop and the real catalog service on loopback.

Each primary exchange is captured by a real HTTP call to the side that answers the client;
the dispatcher replays it to the other side exactly as it does inside the proxy.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import replace

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import text

from extracted_services.catalog.app import create_app as catalog_app
from legacy_monolith.app import create_app as legacy_app
from proxy.decision import LEGACY, SERVICE, Backend, Decision, ShadowPlan
from proxy.exchange import Exchange
from proxy.shadow.dispatcher import ShadowDispatcher
from proxy.shadow.formats import render
from proxy.shadow.report import build_report
from proxy.shadow.store import ShadowStore, metadata
from proxy.shadow_settings import CompareSettings, ShadowSettings
from tests.conftest import free_port
from tests.proxy.shadow.shadow_helpers import (backend_at, price_and_description_bug, serve,
                                               stuck_target)

PRODUCTS = 30
# A generous timeout: these tests are about comparisons, and the suite shares two busy cores.
SETTINGS = ShadowSettings(percent=100, noise_percent=50, timeout_s=15.0)


@pytest.fixture
async def shop(tmp_path):
    """Real legacy + real (buggy) catalog, and a dispatcher writing to a SQLite store."""
    legacy = legacy_app(f"sqlite:///{tmp_path / 'legacy.db'}", seed_products=PRODUCTS)
    catalog = catalog_app(f"sqlite:///{tmp_path / 'catalog.db'}", seed_products=PRODUCTS)
    catalog.middlewares.append(price_and_description_bug)
    legacy_runner, legacy_b = await serve(legacy)
    catalog_runner, catalog_b = await serve(catalog)
    store = ShadowStore(f"sqlite:///{tmp_path / 'shadow.sqlite3'}")
    store.create_schema()
    dispatcher = ShadowDispatcher(store, workers=4)
    dispatcher.start()
    session = aiohttp.ClientSession(auto_decompress=False)
    shop = Shop(session, dispatcher, store,
                replace(legacy_b, name="legacy", honours_dry_run=True),
                replace(catalog_b, name="catalog", honours_dry_run=True))
    yield shop
    await session.close()
    await dispatcher.close()
    store.close()
    await catalog_runner.cleanup()
    await legacy_runner.cleanup()


class Shop:
    def __init__(self, session, dispatcher, store, legacy: Backend, catalog: Backend) -> None:
        self.session, self.dispatcher, self.store = session, dispatcher, store
        self.legacy, self.catalog = legacy, catalog

    def decision(self, route: str, *, primary: str = LEGACY, target: Backend | None = None,
                 dry_run: bool = False, settings: ShadowSettings = SETTINGS) -> Decision:
        answering = self.legacy if primary == LEGACY else self.catalog
        if target is None:
            target = self.catalog if primary == LEGACY else self.legacy
        plan = ShadowPlan(target=target, target_side=SERVICE if primary == LEGACY else LEGACY,
                          max_body_bytes=settings.max_body_bytes, dry_run=dry_run,
                          compare=settings)
        return Decision("catalog", route, primary, answering, None, "stage", shadow=plan)

    async def call(self, decision: Decision, method: str, target: str, *,
                   headers: tuple[tuple[str, str], ...] = (), body: bytes = b"") -> Exchange:
        """The client's request answered by the primary, captured as the engine captures it."""
        started, t0 = time.time(), time.perf_counter()
        async with self.session.request(method, decision.backend.url + target,
                                        headers=list(headers), data=body or None) as resp:
            answer = await resp.read()
            return Exchange(decision, method, target, headers, body, resp.status,
                            tuple(resp.headers.items()), answer, time.perf_counter() - t0,
                            started)

    async def shadow(self, decision: Decision, method: str, target: str, **kw) -> Exchange:
        exchange = await self.call(decision, method, target, **kw)
        self.dispatcher.submit(exchange)
        return exchange

    async def report(self) -> dict:
        await self.dispatcher.drain()
        self.store.flush()
        return build_report(self.store)

    async def product_total(self, backend: Backend) -> int:
        async with self.session.get(backend.url + "/api/products?limit=1") as resp:
            return (await resp.json())["total"]


def route_of(report: dict, route: str) -> dict:
    cap = next(c for c in report["capabilities"] if c["name"] == "catalog")
    return next(r for r in cap["routes"] if r["route"] == route)


async def test_introduced_bug_found_at_route_and_field_noise_cancelled(shop):
    products = shop.decision("/api/products/{id}")
    categories = shop.decision("/api/categories")
    for i in range(1, PRODUCTS + 1):
        await shop.shadow(products, "GET", f"/api/products/{i}")
        await shop.shadow(categories, "GET", "/api/categories")
    report = await shop.report()

    r = route_of(report, "/api/products/{id}")
    verdicts = {f["field"]: f["verdict"] for f in r["fields"]}
    assert verdicts["$.price"] == "reported" and verdicts["$.description"] == "reported"
    # legacy's noise fields cancel by themselves: no ignore rule is configured
    assert SETTINGS.compare.ignore == ()
    assert verdicts["$.generated_at"] == "noise" and verdicts["$.request_id"] == "noise"
    assert set(verdicts) == {"$.price", "$.description", "$.generated_at", "$.request_id"}
    assert r["compared"] == PRODUCTS and r["match_rate"] == 0.0
    assert r["noise_samples"] == PRODUCTS // 2
    kinds = {d["path"]: d["kind"] for s in r["samples"] for d in s["diffs"]}
    assert kinds["$.description"] == "missing" and kinds["$.price"] == "value"
    sample = next(s for s in r["samples"] if s["field"] == "$.price")
    assert sample["legacy"]["status"] == sample["service"]["status"] == 200
    assert shop.catalog.url + sample["target"] in sample["curl"]["service"]
    assert r["latency"]["legacy"]["count"] == r["latency"]["service"]["count"] == PRODUCTS
    assert r["latency"]["service"]["p50"] > 0
    histogram = shop.dispatcher.metrics.histograms[(
        "strangler_shadow_latency_seconds", (("capability", "catalog"), ("side", "service")))]
    assert sum(histogram[:-1]) == 2 * PRODUCTS  # one per shadow call, both routes

    clean = route_of(report, "/api/categories")
    assert clean["match_rate"] == 100.0 and clean["compared"] == PRODUCTS
    text_report = render(report, "text")
    assert "route /api/products/{id}: match rate 0.00 %" in text_report
    assert re.search(r"reported +\$\.price", text_report)
    assert re.search(r"noise +\$\.generated_at", text_report)


async def test_reverse_shadow_keeps_legacy_on_the_left(shop):
    products = shop.decision("/api/products/{id}", primary=SERVICE)
    for i in range(1, 21):
        await shop.shadow(products, "GET", f"/api/products/{i}")
    r = route_of(await shop.report(), "/api/products/{id}")
    verdicts = {f["field"]: f["verdict"] for f in r["fields"]}
    assert verdicts["$.description"] == "reported" and verdicts["$.generated_at"] == "noise"
    assert r["noise_samples"] == 10  # legacy asked twice, though the service answered
    diff = next(d for s in r["samples"] for d in s["diffs"] if d["path"] == "$.description")
    assert diff["kind"] == "missing" and diff["left"] and diff["right"] is None


async def test_post_is_not_shadowed_without_dry_run(shop):
    no_dry_run = replace(shop.catalog, honours_dry_run=False)
    before = await shop.product_total(shop.catalog)
    decision = shop.decision("/api/products", target=no_dry_run, dry_run=True)
    body = json.dumps({"sku": "NEW-1", "name": "New", "price": 5, "category": "lighting"})
    await shop.shadow(decision, "POST", "/api/products", body=body.encode(),
                      headers=(("Content-Type", "application/json"),))
    r = route_of(await shop.report(), "/api/products")
    assert r["skipped"] == {"unsafe-method": 1} and r["compared"] == 0
    assert await shop.product_total(shop.catalog) == before
    assert await shop.product_total(shop.legacy) == before + 1  # the client's write happened


async def test_post_is_shadowed_as_a_dry_run_without_side_effects(shop):
    before = await shop.product_total(shop.catalog)
    decision = shop.decision("/api/products", dry_run=True)
    for i in range(3):
        body = json.dumps({"sku": f"NEW-{i}", "name": "New", "price": 5, "category": "lighting"})
        await shop.shadow(decision, "POST", "/api/products", body=body.encode(),
                          headers=(("Content-Type", "application/json"),))
    r = route_of(await shop.report(), "/api/products")
    assert r["compared"] == 3 and r["errors"] == {} and r["skipped"] == {}
    assert r["status_mismatch"] == 0 and r["noise_samples"] == 0  # writes are never replayed twice
    assert await shop.product_total(shop.catalog) == before
    assert await shop.product_total(shop.legacy) == before + 3
    assert "X-Strangler-Dry-Run: 1" in r["samples"][0]["curl"]["service"]


SECRETS = ["s3cr3t-bearer", "cookie-value-42", "hunter2", "query-token-7",
           "4111111111111111", "4111 1111 1111 1111", "XAUTH_HHH888", "QSECRET_DDD444"]


async def send_secrets(shop, dispatcher: ShadowDispatcher) -> None:
    """A write and a read carrying credentials, a password and a card number."""
    body = json.dumps({"sku": "SEC-1", "name": "Card 4111 1111 1111 1111", "price": 5,
                       "category": "lighting", "description": "password=hunter2",
                       "password": "hunter2"})
    headers = (("Content-Type", "application/json"), ("Authorization", "Bearer s3cr3t-bearer"),
               ("Cookie", "sid=cookie-value-42"), ("X-Auth-Token", "XAUTH_HHH888"))
    dispatcher.submit(await shop.call(shop.decision("/api/products", dry_run=True), "POST",
                                      "/api/products?token=query-token-7",
                                      body=body.encode(), headers=headers))
    dispatcher.submit(await shop.call(shop.decision("/api/products/{id}"), "GET",
                                      "/api/products/1?token=query-token-7&api_key=QSECRET_DDD444",
                                      headers=headers))
    await dispatcher.drain()


async def test_sensitive_values_never_reach_the_sqlite_file(shop, tmp_path):
    await send_secrets(shop, shop.dispatcher)
    r = route_of(await shop.report(), "/api/products")
    assert r["compared"] == 1 and r["samples"]  # a sample was stored
    shop.store.engine.dispose()
    with shop.store.engine.connect() as conn:
        conn.execute(text("PRAGMA wal_checkpoint(FULL)"))
    raw_db = b"".join(p.read_bytes() for p in tmp_path.glob("shadow.sqlite3*"))
    for secret in SECRETS:
        assert secret.encode() not in raw_db, secret
    assert b"[REDACTED]" in raw_db


async def test_sensitive_values_never_reach_postgresql(shop, pg_url):
    store = ShadowStore(pg_url)
    store.create_schema()
    async with ShadowDispatcher(store) as dispatcher:
        await send_secrets(shop, dispatcher)
    store.flush()
    with store.engine.connect() as conn:
        stored = "\n".join(
            str(tuple(row)) for table in metadata.sorted_tables
            for row in conn.execute(table.select()))
    store.close()
    assert "[REDACTED]" in stored and "curl" in stored
    for secret in SECRETS:
        assert secret not in stored, secret


async def test_failed_comparison_is_an_error_not_a_crash(shop):
    async def broken_gzip(request):
        return web.Response(body=b"not gzip at all", headers={
            "Content-Type": "application/json", "Content-Encoding": "gzip"})
    app = web.Application()
    app.router.add_get("/api/products/{id}", broken_gzip)
    runner, broken = await serve(app)
    try:
        decision = shop.decision("/api/products/{id}", target=broken)
        exchange = await shop.shadow(decision, "GET", "/api/products/1")
        await shop.shadow(shop.decision("/api/categories"), "GET", "/api/categories")
        report = await shop.report()
    finally:
        await runner.cleanup()
    assert route_of(report, "/api/products/{id}")["errors"] == {"compare": 1}
    assert route_of(report, "/api/categories")["compared"] == 1  # the dispatcher lives on
    assert exchange.status == 200 and b'"price"' in exchange.response_body


async def test_slow_or_dead_targets_only_cost_shadow_capacity(shop):
    dead = backend_at(free_port())
    fast = ShadowSettings(percent=100, noise_percent=0, timeout_s=0.3)
    small = ShadowDispatcher(shop.store, queue_size=2, workers=1)
    small.start()
    async with stuck_target() as stuck:
        slow_decision = shop.decision("/slow/{id}", target=stuck.backend, settings=fast)
        answered = [await shop.call(slow_decision, "GET", f"/api/products/{i + 1}")
                    for i in range(10)]
        for exchange in answered:
            small.submit(exchange)  # a plain function: it cannot wait for the shadow
        dropped = small.metrics.counter_value("strangler_shadow_dropped_total",
                                              {"capability": "catalog", "reason": "queue-full"})
        assert dropped == 8  # two fit the queue; the rest are dropped and counted at once
        await small.drain()
        dead_decision = shop.decision("/dead/{id}", target=dead, settings=fast)
        small.submit(await shop.call(dead_decision, "GET", "/api/products/1"))
        await small.drain()
        assert stuck.held and not stuck.release.is_set()  # it never answered a shadow
        await small.close()
    shop.store.flush()
    report = build_report(shop.store)
    slow_route = route_of(report, "/slow/{id}")
    assert slow_route["dropped"] == 8 and slow_route["errors"] == {"timeout": 2}
    assert slow_route["dropped_by"] == {"queue-full": 8}
    # The timeouts count against the rate and show in the target's latency at their deadline.
    assert (slow_route["failed"], slow_route["match_rate"]) == (2, 0.0)
    assert slow_route["latency"]["service"]["count"] == 2
    assert slow_route["latency"]["service"]["p50"] >= 300
    assert route_of(report, "/dead/{id}")["errors"] == {"connect": 1}


async def test_large_answers_are_read_whole_and_oversized_ones_skipped(shop):
    """A big answer streamed in many small chunks must be compared whole."""
    items = [{"id": i, "name": f"item {i}", "price": i / 100} for i in range(5000)]

    async def big(request):
        doc = {"items": items, "generated_at": time.time()}
        payload = json.dumps(doc).encode()
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        for i in range(0, len(payload), 4096):
            await resp.write(payload[i:i + 4096])
        await resp.write_eof()
        return resp
    runners, backends = [], []
    for _ in range(2):
        app = web.Application()
        app.router.add_get("/big", big)
        runner, backend = await serve(app)
        runners.append(runner)
        backends.append(backend)
    try:
        legacy, service = backends
        plan = ShadowPlan(target=service, target_side=SERVICE, max_body_bytes=1 << 20,
                          dry_run=False, compare=SETTINGS)
        decision = Decision("catalog", "/big", LEGACY, legacy, None, "stage", shadow=plan)
        for _ in range(20):
            exchange = await shop.shadow(decision, "GET", "/big")
        assert len(exchange.response_body) > 100_000
        tight = replace(plan, max_body_bytes=len(exchange.response_body) // 2)
        shop.dispatcher.submit(replace(exchange, decision=replace(
            decision, route="/big-tight", shadow=tight)))
        report = await shop.report()
    finally:
        for runner in runners:
            await runner.cleanup()
    r = route_of(report, "/big")
    assert r["compared"] == 20 and r["errors"] == {}
    assert [(f["field"], f["verdict"]) for f in r["fields"]] == [("$.generated_at", "noise")]
    assert r["match_rate"] == 100.0
    assert route_of(report, "/big-tight")["errors"] == {"response-too-large": 1}


async def test_status_mismatch_is_counted_and_sampled(shop):
    async def unavailable(request):
        return web.json_response({"error": {"code": "down", "message": "maintenance"}},
                                 status=503)
    app = web.Application()
    app.router.add_get("/{tail:.*}", unavailable)
    runner, down = await serve(app)
    try:
        decision = shop.decision("/api/categories", target=down)
        for _ in range(12):
            await shop.shadow(decision, "GET", "/api/categories")
        report = await shop.report()
    finally:
        await runner.cleanup()
    r = route_of(report, "/api/categories")
    assert (r["compared"], r["status_mismatch"], r["matched"]) == (12, 12, 0)
    sample = next(s for s in r["samples"] if s["field"] == "status")
    assert (sample["legacy"]["status"], sample["service"]["status"]) == (200, 503)
    assert {"path": "status", "kind": "status", "left": 200, "right": 503} in sample["diffs"]
    text_report = render(report, "text")
    assert "status mismatches 12" in text_report
    assert "sample for status: GET /api/categories" in text_report
    assert "status: legacy 200 | service 503" in text_report


async def test_queue_is_bounded_by_the_bytes_it_holds(shop):
    """Many big bodies cannot pile up in memory, whatever the count limit allows."""
    bounded = ShadowDispatcher(shop.store, queue_size=1000, queue_bytes=100_000, workers=1)
    bounded.start()
    try:
        exchange = await shop.call(shop.decision("/api/products"), "GET",
                                   "/api/products?limit=100")
        assert 5_000 < len(exchange.response_body) < 20_000
        for _ in range(50):
            bounded.submit(exchange)
        accepted = 100_000 // len(exchange.response_body)
        assert bounded.metrics.counter_value(
            "strangler_shadow_dropped_total",
            {"capability": "catalog", "reason": "queue-full"}) == 50 - accepted
        await bounded.drain()
        bounded.submit(exchange)  # room again once the held bodies are done
        await bounded.drain()
    finally:
        await bounded.close()
    shop.store.flush()
    r = route_of(build_report(shop.store), "/api/products")
    assert r["compared"] == accepted + 1 and r["dropped"] == 50 - accepted


async def test_html_page_change_found_while_its_footer_time_is_noise(shop, tmp_path):
    """Legacy's real product pages against a copy whose headings are upper-cased."""
    @web.middleware
    async def shouting_headings(request, handler):
        response = await handler(request)
        if response.content_type == "text/html":
            page = re.sub(r"<h1>(.*?)</h1>", lambda m: f"<h1>{m.group(1).upper()}</h1>",
                          response.text)
            return web.Response(text=page, status=response.status, content_type="text/html")
        return response
    copy = legacy_app(f"sqlite:///{tmp_path / 'legacy-copy.db'}", seed_products=PRODUCTS)
    copy.middlewares.append(shouting_headings)
    runner, service = await serve(copy)
    try:
        decision = shop.decision("/products/{id}", target=service)
        for i in range(1, 21):
            await shop.shadow(decision, "GET", f"/products/{i}")
        r = route_of(await shop.report(), "/products/{id}")
    finally:
        await runner.cleanup()
    verdicts = {f["field"]: f["verdict"] for f in r["fields"]}
    assert verdicts["html:html>body>main>h1"] == "reported"
    assert verdicts["html:html>body>footer>p"] == "noise"
    assert [f for f, v in verdicts.items() if v != "noise"] == ["html:html>body>main>h1"]
    assert r["match_rate"] == 0.0


async def test_unusable_compare_settings_are_one_clear_error(shop, caplog):
    broken = replace(SETTINGS, compare=CompareSettings(ignore=("$.items[",)))
    decision = shop.decision("/api/categories", settings=broken)
    for _ in range(3):
        await shop.shadow(decision, "GET", "/api/categories")
    r = route_of(await shop.report(), "/api/categories")
    assert r["errors"] == {"bad-compare-settings": 3} and r["compared"] == 0
    said = [m for m in caplog.messages if "compare settings unusable" in m]
    assert len(said) == 1 and "$.items[" in said[0]


async def test_in_flight_shadows_shrink_for_a_fast_target_and_open_up_for_a_stalled_one(shop):
    """A few at a time while the catalog answers in milliseconds (no bursts on the machine); as
    many as the work waiting needs, past the four consumers this once had, when it stalls."""
    dispatcher = ShadowDispatcher(shop.store)
    dispatcher.start()
    async with stuck_target() as stuck:
        fast = shop.decision("/api/products/{id}")
        for i in range(60):
            dispatcher.submit(await shop.call(fast, "GET", f"/api/products/{i % PRODUCTS + 1}"))
        await dispatcher.drain()
        deadline = time.monotonic() + 10
        while dispatcher._in_flight.limit > 4:
            assert time.monotonic() < deadline, dispatcher._in_flight.limit
            await asyncio.sleep(0.05)
        stalled = shop.decision("/slow/{id}", target=stuck.backend)
        for i in range(20):
            dispatcher.submit(await shop.call(stalled, "GET", f"/api/products/{i + 1}"))
        while len(stuck.held) < 20:
            assert time.monotonic() < deadline, f"{len(stuck.held)} in flight"
            await asyncio.sleep(0.05)
        assert dispatcher._in_flight.limit == dispatcher.workers
        stuck.release.set()
        await dispatcher.drain()
    await dispatcher.close()
