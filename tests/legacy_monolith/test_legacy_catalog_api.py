"""Catalog routes per docs/catalog-api.md, on SQLite and PostgreSQL (see conftest `database_url`)."""
from __future__ import annotations

import uuid

from sqlalchemy import insert, select, text

from legacy_monolith.models import Inventory, Product
from legacy_monolith.seed_data import iter_categories, iter_products, product
from tests.legacy_monolith.legacy_shop import (DRY_RUN, GENERATED_AT, SEEDED_PRODUCTS,
                                               without_noise)

NEW_PRODUCT = {"sku": "NEW-1", "name": "Teak Garden Bench", "description": "Weatherproof.",
               "price": 149.5, "currency": "EUR", "category": "garden"}


def expected_product(i: int) -> dict:
    """The contract's Product shape for seeded product i, built from the pure generator."""
    row = product(i)
    names = {c["slug"]: c["name"] for c in iter_categories()}
    return {"id": i, "sku": row["sku"], "name": row["name"], "description": row["description"],
            "price": float(row["price"]), "currency": row["currency"],
            "category": {"slug": row["category"], "name": names[row["category"]]},
            "updated_at": row["updated_at"].strftime("%Y-%m-%dT%H:%M:%SZ")}


async def test_product_list_pages_in_id_order(shop):
    response = await shop.get("/api/products")
    assert response.status == 200
    body = without_noise(await response.json())
    assert body["total"] == SEEDED_PRODUCTS and body["limit"] == 20 and body["offset"] == 0
    assert body["items"] == [expected_product(i) for i in range(1, 21)]

    body = await (await shop.get("/api/products", params={"limit": 7, "offset": 55})).json()
    assert [p["id"] for p in body["items"]] == [56, 57, 58, 59, 60]
    assert body["total"] == SEEDED_PRODUCTS


async def test_product_search_by_name_and_category(shop):
    seeded = list(iter_products(SEEDED_PRODUCTS))
    wanted = [p["id"] for p in seeded if "oak" in p["name"].lower()]
    assert wanted, "the seed should contain oak products"
    body = await (await shop.get("/api/products", params={"q": "oAK", "limit": 100})).json()
    assert [p["id"] for p in body["items"]] == wanted and body["total"] == len(wanted)

    wanted = [p["id"] for p in seeded if p["category"] == "lighting"]
    body = await (await shop.get("/api/products", params={"category": "lighting", "limit": 100})).json()
    assert [p["id"] for p in body["items"]] == wanted

    # LIKE wildcards in q are literal characters, not patterns.
    body = await (await shop.get("/api/products", params={"q": "%"})).json()
    assert body["total"] == 0 and body["items"] == []


async def test_product_list_refuses_bad_paging(shop):
    for params in ({"limit": "0"}, {"limit": "101"}, {"limit": "ten"}, {"offset": "-1"}):
        response = await shop.get("/api/products", params=params)
        assert response.status == 400, params
        error = (await response.json())["error"]
        assert error["code"] == "bad_request"
        assert next(iter(params)) in error["message"]


async def test_product_by_id(shop):
    response = await shop.get("/api/products/17")
    assert response.status == 200
    assert without_noise(await response.json()) == expected_product(17)
    for missing in ("999999", "abc", "0", "99999999999999999999"):
        response = await shop.get(f"/api/products/{missing}")
        assert response.status == 404, missing
        assert (await response.json())["error"]["code"] == "not_found"
    assert (await (await shop.get("/api/products/999999")).json())["error"]["message"] == \
        "product 999999 does not exist"


async def test_categories(shop):
    body = without_noise(await (await shop.get("/api/categories")).json())
    slugs = [c["slug"] for c in body["items"]]
    assert slugs == sorted(c["slug"] for c in iter_categories())
    assert sum(c["product_count"] for c in body["items"]) == SEEDED_PRODUCTS
    counts = {c["slug"]: c["product_count"] for c in body["items"]}

    response = await shop.get("/api/categories/lighting")
    assert without_noise(await response.json()) == {
        "slug": "lighting", "name": "Lighting", "product_count": counts["lighting"]}
    response = await shop.get("/api/categories/nope")
    assert response.status == 404
    assert (await response.json())["error"] == {"code": "not_found",
                                                "message": "category 'nope' does not exist"}


async def test_noise_fields_on_every_json_object(shop):
    given = "req-" + uuid.uuid4().hex
    for path in ("/api/products/1", "/api/categories", "/api/products/424242", "/healthz"):
        response = await shop.get(path, headers={"X-Request-Id": given})
        body = await response.json()
        assert body["request_id"] == given == response.headers["X-Request-Id"]
        assert GENERATED_AT.match(body["generated_at"])
        assert response.headers["X-Generated-At"] == body["generated_at"]
    # A request id too long to be a sane token is replaced, not echoed.
    body = await (await shop.get("/api/products/1", headers={"X-Request-Id": "x" * 500})).json()
    uuid.UUID(body["request_id"], version=4)
    first = await (await shop.get("/api/products/1")).json()
    second = await (await shop.get("/api/products/1")).json()
    assert first["request_id"] != second["request_id"]
    uuid.UUID(first["request_id"], version=4)


async def test_create_update_delete_product(shop, engine):
    response = await shop.post("/api/products", json=NEW_PRODUCT)
    assert response.status == 201
    created = without_noise(await response.json())
    assert created["id"] == SEEDED_PRODUCTS + 1
    assert {k: created[k] for k in ("sku", "name", "description", "price", "currency")} == \
        {k: NEW_PRODUCT[k] for k in ("sku", "name", "description", "price", "currency")}
    assert created["category"] == {"slug": "garden", "name": "Garden"}
    assert without_noise(await (await shop.get(f"/api/products/{created['id']}")).json()) == created
    stock = await (await shop.get(f"/api/inventory/{created['id']}")).json()
    assert stock["quantity"] == 0

    response = await shop.patch(f"/api/products/{created['id']}",
                                json={"price": 99.99, "category": "seating", "name": "Teak Bench"})
    assert response.status == 200
    patched = without_noise(await response.json())
    assert patched["price"] == 99.99 and patched["name"] == "Teak Bench"
    assert patched["category"] == {"slug": "seating", "name": "Seating"}
    assert patched["sku"] == "NEW-1" and patched["description"] == "Weatherproof."

    response = await shop.delete(f"/api/products/{created['id']}")
    assert response.status == 204
    assert (await shop.get(f"/api/products/{created['id']}")).status == 404
    assert (await shop.delete(f"/api/products/{created['id']}")).status == 404
    with engine.connect() as connection:
        assert connection.scalar(select(Inventory).where(Inventory.product_id == created["id"])) is None


async def test_create_product_refusals_write_nothing(shop, snapshot):
    before = snapshot()
    cases = [
        ({**NEW_PRODUCT, "sku": "SKU-000001"}, 409, "sku 'SKU-000001' already exists"),
        ({**NEW_PRODUCT, "category": "nope"}, 400, "category 'nope' does not exist"),
        ({**NEW_PRODUCT, "price": -1}, 400, "'price' must be >= 0"),
        ({**NEW_PRODUCT, "price": 1.234}, 400, "at most two decimals"),
        ({**NEW_PRODUCT, "price": "1.00"}, 400, "'price' must be a JSON number"),
        ({**NEW_PRODUCT, "price": True}, 400, "'price' must be a JSON number"),
        ({**NEW_PRODUCT, "currency": "euro"}, 400, "'currency'"),
        ({**NEW_PRODUCT, "prise": 1}, 400, "unknown field 'prise'"),
        ({k: v for k, v in NEW_PRODUCT.items() if k != "name"}, 400, "field 'name' is required"),
        ({**NEW_PRODUCT, "name": "  "}, 400, "'name' must not be empty"),
        ({**NEW_PRODUCT, "sku": "x" * 65}, 400, "'sku' is longer than 64"),
    ]
    for body, status, message in cases:
        response = await shop.post("/api/products", json=body)
        assert response.status == status, body
        error = (await response.json())["error"]
        assert message in error["message"], (body, error)
    for body, message in (({}, "nothing to change"), ({"sku": "X"}, "unknown field 'sku'"),
                          ({"price": -0.01}, "'price' must be >= 0")):
        response = await shop.patch("/api/products/3", json=body)
        assert response.status == 400 and message in (await response.json())["error"]["message"]
    assert (await shop.patch("/api/products/999999", json={"name": "x"})).status == 404
    assert snapshot() == before


async def test_delete_product_refused_when_ordered(shop, snapshot):
    cart = await (await shop.post("/api/carts")).json()
    await shop.post(f"/api/carts/{cart['id']}/items", json={"product_id": 2, "quantity": 1})
    assert (await shop.post(f"/api/carts/{cart['id']}/checkout")).status == 201
    before = snapshot()
    response = await shop.delete("/api/products/2")
    assert response.status == 409
    assert (await response.json())["error"] == {
        "code": "conflict",
        "message": "product 2 (SKU-000002) is referenced by 1 order(s) and cannot be deleted"}
    assert snapshot() == before


async def test_dry_run_writes_leave_no_trace(shop, snapshot):
    before = snapshot()
    response = await shop.post("/api/products", json=NEW_PRODUCT, headers=DRY_RUN)
    assert response.status == 201
    assert response.headers["X-Strangler-Dry-Run"] == "rolled-back"
    assert (await response.json())["sku"] == "NEW-1"

    response = await shop.patch("/api/products/5", json={"price": 1.0}, headers=DRY_RUN)
    assert response.status == 200 and (await response.json())["price"] == 1.0
    assert response.headers["X-Strangler-Dry-Run"] == "rolled-back"

    response = await shop.delete("/api/products/5", headers=DRY_RUN)
    assert response.status == 204 and response.headers["X-Strangler-Dry-Run"] == "rolled-back"

    # A dry-run that fails is still rolled back and says so.
    response = await shop.post("/api/products", json={**NEW_PRODUCT, "sku": "SKU-000001"},
                               headers=DRY_RUN)
    assert response.status == 409 and response.headers["X-Strangler-Dry-Run"] == "rolled-back"

    # A misspelt value is refused rather than taken for a real write.
    response = await shop.post("/api/products", json=NEW_PRODUCT,
                               headers={"X-Strangler-Dry-Run": "yes"})
    assert response.status == 400
    assert "X-Strangler-Dry-Run" in (await response.json())["error"]["message"]
    assert snapshot() == before
    assert (await (await shop.get("/api/products/5")).json())["price"] == float(product(5)["price"])


async def test_explicit_ids_never_collide_with_new_ones(shop, engine):
    """The CDC's reverse direction inserts products with given ids; the API must step past them."""
    with engine.begin() as connection:
        connection.execute(insert(Product), [{
            "id": 5000, "sku": "CDC-5000", "name": "Replicated Lamp", "description": "",
            "price": 10, "currency": "EUR", "category_id": 1, "updated_at": product(1)["updated_at"]
        }])
    response = await shop.post("/api/products", json=NEW_PRODUCT)
    assert response.status == 201
    assert (await response.json())["id"] == 5001


async def test_unexpected_failure_is_a_500_quoting_the_request_id_only(shop, engine):
    """A broken database answers 500 with the request id to quote; no SQL or traceback leaks."""
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE categories RENAME TO categories_gone"))
    try:
        response = await shop.get("/api/categories", headers={"X-Request-Id": "req-500"})
        body = await response.json()
    finally:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE categories_gone RENAME TO categories"))
    assert response.status == 500
    assert body["error"] == {"code": "internal_error",
                             "message": "internal error; quote request id req-500"}
