"""Shadowing inside the real proxy runtime: clients talk to the proxy, legacy answers, the
dispatcher (built by `sink_factory`) shadows to the catalog service and writes the store."""
from __future__ import annotations

import asyncio
import json
import secrets
import time

import aiohttp
import pytest
from aiohttp import web

from extracted_services.catalog.app import create_app as catalog_app
from legacy_monolith.app import create_app as legacy_app
from proxy.runtime import Runtime
from proxy.settings import ProxySettings
from proxy.shadow.dispatcher import sink_factory
from proxy.shadow.report import build_report
from proxy.shadow.store import ShadowStore
from tests.conftest import free_port
from tests.proxy.harness import rules_doc, running_proxy, write_rules
from tests.proxy.shadow.shadow_helpers import price_and_description_bug, serve, stuck_target

PRODUCTS = 20


def shadow_rules(path, legacy_url: str, service_url: str, timeout: str = "15s"):
    doc = rules_doc(legacy_url, service_url, stage="shadow",
                    prefixes=("/api/products", "/api/categories"))
    doc["capabilities"][0]["shadow"] = {"percent": 100, "noise_percent": 50, "timeout": timeout}
    return write_rules(path / "rules.yaml", doc)


async def wait_for_comparisons(store: ShadowStore, route: str, n: int) -> dict:
    """Poll the shared store until the proxy's writer has flushed `n` outcomes for `route`."""
    deadline = time.monotonic() + 30
    while True:
        report = await asyncio.to_thread(build_report, store)
        for cap in report["capabilities"]:
            for r in cap["routes"]:
                done = r["compared"] + sum(r["errors"].values()) + r["dropped"]
                if r["route"] == route and done >= n:
                    return r
        assert time.monotonic() < deadline, f"{route}: fewer than {n} outcomes: {report}"
        await asyncio.sleep(0.2)


@pytest.fixture
async def legacy(tmp_path):
    runner, backend = await serve(legacy_app(f"sqlite:///{tmp_path / 'legacy.db'}",
                                             seed_products=PRODUCTS))
    yield backend
    await runner.cleanup()


async def test_proxy_shadows_and_the_client_gets_legacys_answer(tmp_path, legacy):
    catalog = catalog_app(f"sqlite:///{tmp_path / 'catalog.db'}", seed_products=PRODUCTS)
    catalog.middlewares.append(price_and_description_bug)
    runner, service = await serve(catalog)
    store_url = f"sqlite:///{tmp_path / 'shadow.sqlite3'}"
    rules = shadow_rules(tmp_path, legacy.url, service.url)
    try:
        async with running_proxy(rules, sink_factory=sink_factory(store_url)) as proxy, \
                aiohttp.ClientSession() as client:
            for i in range(1, PRODUCTS + 1):
                async with client.get(f"{proxy.url}/api/products/{i}") as via_proxy:
                    got = await via_proxy.json()
                async with client.get(f"{legacy.url}/api/products/{i}") as direct:
                    expected = await direct.json()
                assert "description" in got and got["price"] == expected["price"]
            store = ShadowStore(store_url)
            r = await wait_for_comparisons(store, "/api/products/{id}", PRODUCTS)
    finally:
        await runner.cleanup()
    verdicts = {f["field"]: f["verdict"] for f in r["fields"]}
    assert verdicts["$.description"] == "reported" and verdicts["$.price"] == "reported"
    assert verdicts.get("$.generated_at") == "noise"
    assert r["compared"] == PRODUCTS and r["match_rate"] == 0.0
    store.engine.dispose()


async def test_stuck_or_dead_service_never_holds_up_the_client(tmp_path, legacy):
    store_url = f"sqlite:///{tmp_path / 'shadow.sqlite3'}"
    async with stuck_target() as stuck:
        service = stuck.backend
        async with running_proxy(shadow_rules(tmp_path, legacy.url, service.url, "1s"),
                                 sink_factory=sink_factory(store_url)) as proxy, \
                aiohttp.ClientSession() as client:
            for i in range(1, 6):
                async with client.get(f"{proxy.url}/api/products/{i}") as resp:
                    assert resp.status == 200 and (await resp.json())["id"] == i
            # every client answered while the service still holds its shadow copies
            assert not stuck.release.is_set()
            store = ShadowStore(store_url)
            r = await wait_for_comparisons(store, "/api/products/{id}", 5)
            assert r["errors"] == {"timeout": 5} and stuck.held
            # and with the service gone altogether
            await stuck.stop()
            for _ in range(3):
                async with client.get(f"{proxy.url}/api/categories") as resp:
                    assert resp.status == 200 and json.loads(await resp.text())["items"]
            r = await wait_for_comparisons(store, "/api/categories", 3)
            assert r["errors"] == {"connect": 3} and r["compared"] == 0
            store.engine.dispose()


async def test_cutover_reverse_shadows_to_legacy(tmp_path, legacy):
    catalog = catalog_app(f"sqlite:///{tmp_path / 'catalog.db'}", seed_products=PRODUCTS)
    catalog.middlewares.append(price_and_description_bug)
    runner, service = await serve(catalog)
    store_url = f"sqlite:///{tmp_path / 'shadow.sqlite3'}"
    doc = rules_doc(legacy.url, service.url, stage="cutover", prefixes=("/api/products",))
    doc["capabilities"][0]["shadow"] = {"percent": 100, "noise_percent": 50, "timeout": "15s"}
    try:
        async with running_proxy(write_rules(tmp_path / "rules.yaml", doc),
                                 sink_factory=sink_factory(store_url)) as proxy, \
                aiohttp.ClientSession() as client:
            for i in range(1, PRODUCTS + 1):
                async with client.get(f"{proxy.url}/api/products/{i}") as resp:
                    assert "description" not in await resp.json()  # the service answers
            store = ShadowStore(store_url)
            r = await wait_for_comparisons(store, "/api/products/{id}", PRODUCTS)
            store.engine.dispose()
    finally:
        await runner.cleanup()
    verdicts = {f["field"]: f["verdict"] for f in r["fields"]}
    assert verdicts["$.description"] == "reported" and verdicts["$.generated_at"] == "noise"
    assert r["noise_samples"] == PRODUCTS // 2
    diff = next(d for s in r["samples"] for d in s["diffs"] if d["path"] == "$.description")
    assert diff["kind"] == "missing" and diff["left"] and diff["right"] is None


@pytest.mark.parametrize("unsafe", [True, False])
async def test_post_through_the_proxy_is_a_dry_run_or_skipped(tmp_path, legacy, unsafe):
    runner, service = await serve(catalog_app(f"sqlite:///{tmp_path / 'catalog.db'}",
                                              seed_products=PRODUCTS))
    store_url = f"sqlite:///{tmp_path / 'shadow.sqlite3'}"
    doc = rules_doc(legacy.url, service.url, stage="shadow", prefixes=("/api/products",))
    doc["backends"]["svc"]["dry_run"] = True
    doc["capabilities"][0]["shadow"] = {"percent": 100, "unsafe": unsafe, "timeout": "15s"}
    body = {"sku": "NEW-1", "name": "New lamp", "price": 12.5, "category": "lighting"}
    try:
        async with running_proxy(write_rules(tmp_path / "rules.yaml", doc),
                                 sink_factory=sink_factory(store_url)) as proxy, \
                aiohttp.ClientSession() as client:
            async with client.post(f"{proxy.url}/api/products", json=body) as resp:
                assert resp.status == 201
            store = ShadowStore(store_url)
            deadline = time.monotonic() + 30
            while True:
                report = await asyncio.to_thread(build_report, store)
                routes = {r["route"]: r for c in report["capabilities"] for r in c["routes"]}
                r = routes.get("/api/products")
                if r and (r["compared"] or r["skipped"]):
                    break
                assert time.monotonic() < deadline, report
                await asyncio.sleep(0.2)
            store.engine.dispose()
            async with client.get(f"{service.url}/api/products?limit=1") as resp:
                service_total = (await resp.json())["total"]
    finally:
        await runner.cleanup()
    assert service_total == PRODUCTS  # the service never kept the shadowed write
    if unsafe:
        assert r["compared"] == 1 and r["skipped"] == {} and r["errors"] == {}
    else:
        assert r["compared"] == 0 and r["skipped"] == {"unsafe-method": 1}


async def test_two_worker_processes_write_one_postgresql_store(tmp_path, legacy, pg_url):
    catalog = catalog_app(f"sqlite:///{tmp_path / 'catalog.db'}", seed_products=PRODUCTS)
    catalog.middlewares.append(price_and_description_bug)
    runner, service = await serve(catalog)
    settings = ProxySettings(rules_path=shadow_rules(tmp_path, legacy.url, service.url),
                             listen_port=free_port(), admin_port=free_port(),
                             admin_token=secrets.token_hex(16), workers=2, shutdown_grace_s=2.0)
    runtime = Runtime(settings, sink_factory=sink_factory(pg_url))
    await runtime.start()
    try:
        pids = {w.pid for w in runtime.workers}
        assert len(pids) == 2 and None not in pids
        # a fresh connection per request, so the kernel spreads them over both workers
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True)) as client:
            for i in range(2 * PRODUCTS):
                url = f"http://127.0.0.1:{settings.listen_port}/api/products/{i % PRODUCTS + 1}"
                async with client.get(url) as resp:
                    assert resp.status == 200
        store = ShadowStore(pg_url)
        r = await wait_for_comparisons(store, "/api/products/{id}", 2 * PRODUCTS)
        store.engine.dispose()
        deadline = time.monotonic() + 30
        while True:  # workers report their metrics to the supervisor once a second
            per_worker = [_submitted(w.latest) for w in runtime.workers]
            if sum(per_worker) == 2 * PRODUCTS:
                break
            assert time.monotonic() < deadline, per_worker
            await asyncio.sleep(0.2)
        assert all(per_worker)  # both processes shadowed, and wrote, their share
    finally:
        await runtime.stop()
        await runner.cleanup()
    assert r["compared"] == 2 * PRODUCTS and r["errors"] == {}
    verdicts = {f["field"]: f["verdict"] for f in r["fields"]}
    assert verdicts["$.description"] == "reported" and verdicts["$.generated_at"] == "noise"


def _submitted(latest: dict | None) -> float:
    """Shadows a worker submitted, from the metrics it last sent its supervisor."""
    counters = ((latest or {}).get("metrics") or {}).get("counters", [])
    return sum(v for name, _, v in counters if name == "strangler_shadow_submitted_total")
