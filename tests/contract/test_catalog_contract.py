"""The catalog contract: legacy and the catalog service answer the same requests the same way.

Both apps are seeded with the same N products from `legacy_monolith.seed_data`, then one list
of catalog requests goes to each over real HTTP. Status, the headers a client acts on
(content type, Allow, the dry-run marker) and every JSON field must match, except the
documented noise (`generated_at`, `request_id`). A written row's `updated_at` is "now" on
each side's own clock, so a timestamp from this run only has to be within a few seconds of
the other side's. A mismatch names the path of every differing field.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from extracted_services.catalog.app import create_app as create_catalog
from legacy_monolith import seed_data
from legacy_monolith.app import create_app as create_legacy
from strangler.db import sqlite_url
from tests.conftest import free_port

SEEDED = 60
NOISE = frozenset({"$.generated_at", "$.request_id"})
CLOCK_SKEW = timedelta(seconds=5)  # between two writes of the same row, one on each side
JSON = {"Content-Type": "application/json"}
DRY = {"X-Strangler-Dry-Run": "1"}
NEW = {"sku": "NEW-1", "name": "Oak Lantern", "description": "Warm light.", "price": 19.9,
       "category": "lighting"}

# (method, path, aiohttp request kwargs): reads, paging, search, filters, unknowns, bad
# parameters, bad bodies, and dry-run writes; the last reads prove the dry runs left no trace.
REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/api/products", {}),
    ("GET", "/api/products?limit=7&offset=14", {}),
    ("GET", f"/api/products?limit=100&offset={SEEDED - 3}", {}),
    ("GET", f"/api/products?offset={SEEDED + 10}", {}),
    ("GET", "/api/products?q=oak&limit=100", {}),
    ("GET", "/api/products?q=%20LAMP%20&limit=100", {}),
    ("GET", "/api/products?q=%25", {}),
    ("GET", "/api/products?q=_", {}),
    ("GET", "/api/products?category=lighting&limit=100", {}),
    ("GET", "/api/products?category=kitchen&q=a&limit=3&offset=1", {}),
    ("GET", "/api/products?category=nope", {}),
    ("GET", "/api/products?limit=", {}),
    ("GET", "/api/products?limit=0", {}),
    ("GET", "/api/products?limit=101", {}),
    ("GET", "/api/products?limit=ten", {}),
    ("GET", "/api/products?limit=%2B5", {}),
    ("GET", "/api/products?offset=-1", {}),
    ("GET", f"/api/products?offset={2**31}", {}),
    ("GET", "/api/products?q=" + "x" * 201, {}),
    ("GET", "/api/products/1", {}),
    ("GET", f"/api/products/{SEEDED}", {}),
    ("GET", f"/api/products/{SEEDED + 1}", {}),
    ("GET", "/api/products/0", {}),
    ("GET", "/api/products/abc", {}),
    ("GET", f"/api/products/{2**31}", {}),
    ("GET", "/api/products/1/extra", {}),
    ("GET", "/api/categories", {}),
    ("GET", "/api/categories/lighting", {}),
    ("GET", "/api/categories/nope", {}),
    ("GET", "/api/products", {"headers": {"X-Request-Id": "contract-1"}}),
    ("HEAD", "/api/products/1", {}),
    ("HEAD", f"/api/products/{SEEDED + 1}", {}),
    ("PUT", "/api/products/1", {"json": NEW}),
    # Writes, rehearsed: each side runs and rolls back, answering as the write would.
    ("POST", "/api/products", {"json": NEW, "headers": DRY}),
    ("POST", "/api/products", {"json": {k: v for k, v in NEW.items() if k != "description"}
                               | {"currency": "USD", "price": 5}, "headers": DRY}),
    ("PATCH", "/api/products/2", {"json": {"price": 0.1, "name": " Renamed "}, "headers": DRY}),
    ("PATCH", "/api/products/3", {"json": {"category": "garden", "description": ""},
                                  "headers": DRY}),
    ("DELETE", "/api/products/4", {"headers": DRY}),
    # Refused writes: the same code and message from both, nothing written.
    ("POST", "/api/products", {"json": NEW | {"sku": "SKU-000001"}, "headers": DRY}),
    ("POST", "/api/products", {"json": NEW | {"category": "nope"}, "headers": DRY}),
    ("POST", "/api/products", {"json": NEW | {"price": -1}}),
    ("POST", "/api/products", {"json": NEW | {"price": 1.999}}),
    ("POST", "/api/products", {"json": NEW | {"price": 100_000_000}}),
    ("POST", "/api/products", {"json": NEW | {"price": "1"}}),
    ("POST", "/api/products", {"json": NEW | {"currency": "eur"}}),
    ("POST", "/api/products", {"json": NEW | {"stock": 5}}),
    ("POST", "/api/products", {"json": {"name": "x", "price": 1, "category": "decor"}}),
    ("POST", "/api/products", {"json": NEW | {"name": "   "}}),
    ("POST", "/api/products", {"json": NEW | {"sku": "x" * 65}}),
    ("POST", "/api/products", {"json": [NEW]}),
    ("POST", "/api/products", {"data": b'{"sku": ', "headers": JSON}),
    ("POST", "/api/products", {"data": b'{"sku": "\xc3\x28"}', "headers": JSON}),
    ("POST", "/api/products", {"data": b"\xff\xfe{\x00}\x00", "headers": JSON}),
    ("POST", "/api/products", {"data": b'{"price": NaN}', "headers": JSON}),
    ("POST", "/api/products", {"data": b'{"sku": "A", "name": "B", "category": "decor", '
                                       b'"price": 1e999}', "headers": JSON}),
    ("POST", "/api/products", {"data": b'{"price": ' + b"9" * 5000 + b"}", "headers": JSON}),
    ("POST", "/api/products", {"data": b"", "headers": JSON}),
    ("POST", "/api/products", {"data": b"sku=1", "headers": {
        "Content-Type": "application/x-www-form-urlencoded"}}),
    ("POST", "/api/products", {"data": b"x" * (1024 * 1024 + 1), "headers": JSON}),
    ("POST", "/api/products", {"json": NEW, "headers": {"X-Strangler-Dry-Run": "true"}}),
    ("PATCH", f"/api/products/{SEEDED + 1}", {"json": {"price": 1}, "headers": DRY}),
    ("PATCH", "/api/products/1", {"json": {}}),
    ("PATCH", "/api/products/1", {"json": {"sku": "B"}}),
    ("PATCH", "/api/products/1", {"json": {"category": "nope"}, "headers": DRY}),
    ("DELETE", f"/api/products/{SEEDED + 1}", {"headers": DRY}),
    ("DELETE", "/api/products/abc", {"headers": DRY}),
    # After the rehearsals: both stores still hold exactly the seed.
    ("GET", "/api/products?limit=100", {}),
    ("GET", "/api/categories", {}),
    # Real writes, and what reads see afterwards.
    ("POST", "/api/products", {"json": NEW}),
    ("GET", f"/api/products/{SEEDED + 1}", {}),
    ("POST", "/api/products", {"json": NEW}),
    ("PATCH", f"/api/products/{SEEDED + 1}", {"json": {"price": 25, "category": "decor"}}),
    ("PATCH", "/api/products/5", {"json": {"name": "Renamed Five"}}),
    ("DELETE", "/api/products/6", {}),
    ("DELETE", "/api/products/6", {}),
    ("GET", "/api/products/6", {}),
    ("GET", "/api/products?limit=100", {}),
    ("GET", "/api/products?q=renamed", {}),
    ("GET", "/api/categories", {}),
]


def every_seeded_thing() -> list[tuple[str, str, dict[str, Any]]]:
    """Every product, every category, and a search for every word of every seeded name."""
    products = list(seed_data.iter_products(SEEDED))
    words = sorted({word for p in products for word in p["name"].split()})
    return ([("GET", f"/api/products/{p['id']}", {}) for p in products]
            + [("GET", f"/api/categories/{c['slug']}", {}) for c in seed_data.iter_categories()]
            + [("GET", f"/api/products?category={c['slug']}&limit=5&offset=1", {})
               for c in seed_data.iter_categories()]
            + [("GET", f"/api/products?q={word.lower()}&limit=100", {}) for word in words])


def differences(legacy: Any, service: Any, since: datetime,
                path: str = "$") -> Iterator[str]:
    """Every JSON path where the two values differ (type included: 5 and 5.0 render apart).

    An `updated_at` written during this run (at or after `since`) may differ by CLOCK_SKEW.
    """
    if path in NOISE or (path.endswith(".updated_at") and written_alike(legacy, service, since)):
        return
    if isinstance(legacy, dict) and isinstance(service, dict):
        for key in sorted(legacy.keys() | service.keys()):
            if key not in service or key not in legacy:
                yield f"{path}.{key}: only in {'legacy' if key in legacy else 'service'}"
            else:
                yield from differences(legacy[key], service[key], since, f"{path}.{key}")
    elif isinstance(legacy, list) and isinstance(service, list):
        if len(legacy) != len(service):
            yield f"{path}: {len(legacy)} items in legacy, {len(service)} in service"
        for index, (left, right) in enumerate(zip(legacy, service)):
            yield from differences(left, right, since, f"{path}[{index}]")
    elif type(legacy) is not type(service) or legacy != service:
        yield f"{path}: legacy {legacy!r} != service {service!r}"


def written_alike(legacy: Any, service: Any, since: datetime) -> bool:
    try:
        times = [datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
                 for value in (legacy, service)]
    except (TypeError, ValueError):
        return False
    return min(times) >= since and abs(times[0] - times[1]) <= CLOCK_SKEW


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture(params=["sqlite", "postgresql"])
async def urls(request, tmp_path) -> AsyncIterator[tuple[str, str]]:
    """Legacy and the catalog service, each on its own store seeded with the same products."""
    if request.param == "sqlite":
        legacy_db, catalog_db = (sqlite_url(tmp_path / f"{name}.db")
                                 for name in ("legacy", "catalog"))
    else:
        make = request.getfixturevalue("pg_database")
        legacy_db, catalog_db = make("contract_legacy"), make("contract_catalog")
    legacy, legacy_url = await _serve(create_legacy(legacy_db, seed_products=SEEDED))
    catalog, catalog_url = await _serve(create_catalog(catalog_db, seed_products=SEEDED))
    yield legacy_url, catalog_url
    await catalog.cleanup()
    await legacy.cleanup()


COMPARED_HEADERS = ("Content-Type", "Allow", "X-Strangler-Dry-Run")


async def _call(http: aiohttp.ClientSession, base: str, method: str, path: str,
                kwargs: dict[str, Any]) -> tuple[tuple, Any]:
    """(status and compared headers, JSON body or None)."""
    async with http.request(method, base + path, **kwargs) as resp:
        body = await resp.json() if resp.status != 204 and method != "HEAD" else None
        return (resp.status, *(resp.headers.get(name) for name in COMPARED_HEADERS)), body


async def test_legacy_and_service_answer_alike(urls):
    legacy_url, catalog_url = urls
    mismatches: list[str] = []
    statuses: set[int] = set()
    since = datetime.now(timezone.utc).replace(microsecond=0)
    async with aiohttp.ClientSession() as http:
        for method, path, kwargs in REQUESTS + every_seeded_thing():
            legacy_head, legacy_body = await _call(http, legacy_url, method, path, kwargs)
            service_head, service_body = await _call(http, catalog_url, method, path, kwargs)
            where = f"{method} {path[:80]}"
            statuses.add(service_head[0])
            if legacy_head != service_head:
                mismatches.append(f"{where}: status and {', '.join(COMPARED_HEADERS)}: legacy "
                                  f"{legacy_head} != service {service_head}")
            mismatches += [f"{where}: {d}"
                           for d in differences(legacy_body, service_body, since)]
    assert not mismatches, "catalog contract broken:\n" + "\n".join(mismatches)
    # The list really exercised every answer the contract defines, not just one kind.
    assert statuses == {200, 201, 204, 400, 404, 405, 409, 413, 415}


def test_the_comparison_names_the_differing_paths():
    """The differ itself: noise ignored, nesting, lengths and number types reported by path."""
    legacy = {"items": [{"price": 5.0, "category": {"slug": "a"}}], "total": 1,
              "generated_at": "x", "request_id": "1"}
    service = {"items": [{"price": 5, "category": {"slug": "b"}}, {}], "extra": True,
               "generated_at": "y", "request_id": "2"}
    assert list(differences(legacy, service, datetime.now(timezone.utc))) == [
        "$.extra: only in service",
        "$.items: 1 items in legacy, 2 in service",
        "$.items[0].category.slug: legacy 'a' != service 'b'",
        "$.items[0].price: legacy 5.0 != service 5",
        "$.total: only in legacy",
    ]


def test_only_this_runs_writes_may_disagree_on_the_clock():
    since = datetime(2026, 6, 1, tzinfo=timezone.utc)
    assert list(differences(  # written during the run, a couple of seconds apart: alike
        {"updated_at": "2026-06-01T10:00:00Z"}, {"updated_at": "2026-06-01T10:00:02Z"},
        since)) == []
    assert list(differences(  # seeded long before: must be identical
        {"updated_at": "2025-03-01T10:00:00Z"}, {"updated_at": "2025-03-01T10:00:01Z"},
        since)) == ["$.updated_at: legacy '2025-03-01T10:00:00Z' != "
                    "service '2025-03-01T10:00:01Z'"]
    assert list(differences(  # written, but too far apart to be the same write
        {"updated_at": "2026-06-01T10:00:00Z"}, {"updated_at": "2026-06-01T10:01:00Z"},
        since)) != []
