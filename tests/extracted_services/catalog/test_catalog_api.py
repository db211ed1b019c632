"""The catalog service's public API, on SQLite and PostgreSQL, checked against the shared seed."""
from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timezone

from sqlalchemy import insert

from extracted_services.catalog.models import Product
from legacy_monolith import seed_data
from strangler.db import make_engine
from tests.extracted_services.catalog.conftest import SEEDED

SEED = list(seed_data.iter_products(SEEDED))


def expected(product: seed_data.ProductRow) -> dict:
    """A seeded product as the contract renders it (price from legacy's Decimal)."""
    names = {c["slug"]: c["name"] for c in seed_data.iter_categories()}
    return {"id": product["id"], "sku": product["sku"], "name": product["name"],
            "description": product["description"], "price": float(product["price"]),
            "currency": product["currency"],
            "category": {"slug": product["category"], "name": names[product["category"]]},
            "updated_at": product["updated_at"].strftime("%Y-%m-%dT%H:%M:%SZ")}


def without_noise(body: dict) -> dict:
    assert body.pop("generated_at").endswith("Z")
    assert body.pop("request_id")
    return body


async def get(http, url: str, status: int = 200, **kwargs) -> dict:
    async with http.get(url, **kwargs) as resp:
        assert resp.status == status, await resp.text()
        return without_noise(await resp.json())


async def test_list_defaults_to_the_first_twenty_by_id(base_url, http):
    body = await get(http, f"{base_url}/api/products")
    assert body == {"items": [expected(p) for p in SEED[:20]], "total": SEEDED,
                    "limit": 20, "offset": 0}


async def test_pagination_walks_every_product_once(base_url, http):
    seen = []
    for offset in range(0, SEEDED + 7, 7):
        body = await get(http, f"{base_url}/api/products?limit=7&offset={offset}")
        assert body["total"] == SEEDED and body["limit"] == 7 and body["offset"] == offset
        seen += [item["id"] for item in body["items"]]
    assert seen == [p["id"] for p in SEED]


async def test_search_is_a_case_insensitive_substring_of_the_name(base_url, http):
    word = SEED[0]["name"].split()[1]  # a material, e.g. "Bamboo"
    matches = [expected(p) for p in SEED if word.lower() in p["name"].lower()]
    body = await get(http, f"{base_url}/api/products", params={"q": word.upper(), "limit": 100})
    assert body["items"] == matches and body["total"] == len(matches) > 0
    # LIKE wildcards in the query are literal characters, not patterns.
    assert (await get(http, f"{base_url}/api/products", params={"q": "%"}))["total"] == 0


async def test_category_filter_and_categories_agree_with_the_seed(base_url, http):
    counts = Counter(p["category"] for p in SEED)
    categories = await get(http, f"{base_url}/api/categories")
    assert categories["items"] == sorted(
        ({"slug": c["slug"], "name": c["name"], "product_count": counts[c["slug"]]}
         for c in seed_data.iter_categories()), key=lambda c: c["slug"])
    slug = SEED[0]["category"]
    body = await get(http, f"{base_url}/api/products", params={"category": slug, "limit": 100})
    assert body["items"] == [expected(p) for p in SEED if p["category"] == slug]
    one = await get(http, f"{base_url}/api/categories/{slug}")
    assert one["product_count"] == counts[slug]


async def test_product_by_id_and_unknown_ids(base_url, http):
    assert await get(http, f"{base_url}/api/products/{SEED[4]['id']}") == expected(SEED[4])
    missing = await get(http, f"{base_url}/api/products/{SEEDED + 1000}", status=404)
    assert missing == {"error": {"code": "not_found",
                                 "message": f"product {SEEDED + 1000} does not exist"}}
    assert (await get(http, f"{base_url}/api/products/abc", status=404))["error"]["code"] \
        == "not_found"
    assert (await get(http, f"{base_url}/api/categories/nope", status=404))["error"] == {
        "code": "not_found", "message": "category 'nope' does not exist"}


async def test_request_id_is_echoed(base_url, http):
    async with http.get(f"{base_url}/api/categories", headers={"X-Request-Id": "abc-123"}) as r:
        assert (await r.json())["request_id"] == "abc-123"


async def test_create_update_delete_round_trip(base_url, http):
    new = {"sku": "NEW-1", "name": "Linen Lamp", "price": 12.5, "category": "lighting"}
    async with http.post(f"{base_url}/api/products", json=new) as resp:
        assert resp.status == 201
        created = without_noise(await resp.json())
    # The service's own sequence continues after the seeded ids (setval past the max).
    assert created["id"] == SEEDED + 1
    assert created | {"updated_at": None} == {
        "id": SEEDED + 1, "sku": "NEW-1", "name": "Linen Lamp", "description": "", "price": 12.5,
        "currency": "EUR", "category": {"slug": "lighting", "name": "Lighting"},
        "updated_at": None}
    assert await get(http, f"{base_url}/api/products/{created['id']}") == created

    async with http.post(f"{base_url}/api/products", json=new) as resp:
        assert resp.status == 409
        assert (await resp.json())["error"] == {"code": "conflict",
                                                "message": "sku 'NEW-1' already exists"}

    patch = {"price": 7, "category": "decor", "name": "Linen Vase"}
    async with http.patch(f"{base_url}/api/products/{created['id']}", json=patch) as resp:
        assert resp.status == 200
        patched = without_noise(await resp.json())
    assert (patched["price"], patched["category"], patched["name"]) == (
        7.0, {"slug": "decor", "name": "Decor"}, "Linen Vase")
    assert await get(http, f"{base_url}/api/products/{created['id']}") == patched

    async with http.delete(f"{base_url}/api/products/{created['id']}") as resp:
        assert resp.status == 204
    await get(http, f"{base_url}/api/products/{created['id']}", status=404)


async def test_health(base_url, http):
    async with http.get(f"{base_url}/healthz") as resp:
        assert resp.status == 200
        assert without_noise(await resp.json()) == {"status": "ok"}


async def test_new_ids_continue_after_rows_replicated_with_explicit_ids(base_url, http,
                                                                        database_url):
    """CDC inserts legacy's ids without moving the service's sequence; POST must not collide."""
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(insert(Product).values(
            id=SEEDED + 5, sku="CDC-1", title="Replicated", description="", price_cents=100,
            currency="EUR", category_slug="decor", updated_at=datetime.now(timezone.utc)))
    engine.dispose()
    new = {"sku": "NEW-2", "name": "Glass Vase", "price": 20, "category": "decor"}
    async with http.post(f"{base_url}/api/products", json=new) as resp:
        assert resp.status == 201
        assert (await resp.json())["id"] == SEEDED + 6


async def test_concurrent_creates_of_one_sku_make_one_product(base_url, http, snapshot):
    """The race between the sku check and the insert ends in 409s, never a 500 or a twin."""
    new = {"sku": "RACE-1", "name": "Copper Kettle", "price": 30, "category": "kitchen"}

    async def create() -> int:
        async with http.post(f"{base_url}/api/products", json=new) as resp:
            return resp.status

    statuses = await asyncio.gather(*(create() for _ in range(8)))
    assert sorted(statuses) == [201] + [409] * 7
    assert len([row for row in snapshot()["products"] if row[1] == "RACE-1"]) == 1


async def test_concurrent_creates_after_replicated_rows_get_distinct_ids(base_url, http,
                                                                        database_url):
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(insert(Product), [dict(
            id=SEEDED + i, sku=f"CDC-{i}", title="Replicated", description="", price_cents=100,
            currency="EUR", category_slug="decor", updated_at=datetime.now(timezone.utc))
            for i in range(1, 4)])
    engine.dispose()

    async def create(i: int) -> tuple[int, dict]:
        new = {"sku": f"NEW-{i}", "name": "Glass Vase", "price": 20, "category": "decor"}
        async with http.post(f"{base_url}/api/products", json=new) as resp:
            return resp.status, await resp.json()

    answers = await asyncio.gather(*(create(i) for i in range(6)))
    created = [body["id"] for status, body in answers if status == 201]
    # Every answer is a product or a clear "send it again"; no id is handed out twice.
    assert all(status == 201 or body["error"]["message"].endswith("send the request again")
               for status, body in answers)
    assert len(set(created)) == len(created) > 0 and min(created) > SEEDED + 3
