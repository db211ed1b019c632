"""The rest of the shop (inventory, customers, carts, checkout, orders), on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from legacy_monolith.models import Inventory, Order, OrderItem
from legacy_monolith.seed_data import iter_products, product
from tests.legacy_monolith.legacy_shop import SEEDED_PRODUCTS, without_noise


def in_stock(minimum: int) -> list[int]:
    """Seeded product ids with at least `minimum` items in stock."""
    return [p["id"] for p in iter_products(SEEDED_PRODUCTS) if p["stock"] >= minimum]


def stock_of(engine, product_id: int) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(Inventory.quantity).where(Inventory.product_id == product_id))


def count(engine, model) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(model))


async def new_cart(shop, *lines: tuple[int, int]) -> int:
    response = await shop.post("/api/carts")
    assert response.status == 201
    cart_id = (await response.json())["id"]
    for product_id, quantity in lines:
        response = await shop.post(f"/api/carts/{cart_id}/items",
                                   json={"product_id": product_id, "quantity": quantity})
        assert response.status == 200, await response.text()
    return cart_id


async def test_inventory_read_and_set(shop, snapshot):
    response = await shop.get("/api/inventory/3")
    body = without_noise(await response.json())
    assert body["product_id"] == 3 and body["quantity"] == product(3)["stock"]

    response = await shop.put("/api/inventory/3", json={"quantity": 7})
    assert response.status == 200 and (await response.json())["quantity"] == 7
    assert (await (await shop.get("/api/inventory/3")).json())["quantity"] == 7

    before = snapshot()
    for body, status in (({"quantity": -1}, 400), ({"quantity": 1.5}, 400), ({}, 400),
                         ({"quantity": "3"}, 400), ({"quantity": 2**31}, 400)):
        response = await shop.put("/api/inventory/3", json=body)
        assert response.status == status, body
        assert "quantity" in (await response.json())["error"]["message"]
    assert (await shop.put("/api/inventory/999999", json={"quantity": 1})).status == 404
    assert (await shop.get("/api/inventory/999999")).status == 404
    assert snapshot() == before


async def test_customers(shop, snapshot):
    response = await shop.post("/api/customers", json={"email": "new@example.org", "name": "New"})
    assert response.status == 201
    customer = without_noise(await response.json())
    assert customer["email"] == "new@example.org" and customer["name"] == "New"
    assert without_noise(await (await shop.get(f"/api/customers/{customer['id']}")).json()) == customer

    before = snapshot()
    for body, status in (({"email": "new@example.org", "name": "Again"}, 409),
                         ({"email": "not-an-address", "name": "X"}, 400),
                         ({"email": "x@example.org"}, 400)):
        assert (await shop.post("/api/customers", json=body)).status == status, body
    assert (await shop.get("/api/customers/999999")).status == 404
    assert snapshot() == before


async def test_cart_lines_add_up_and_can_be_removed(shop):
    first, second = in_stock(3)[:2]
    response = await shop.post("/api/carts", json={"customer_id": 1})
    cart = without_noise(await response.json())
    assert response.status == 201 and cart["customer_id"] == 1 and cart["items"] == []

    for quantity in (1, 2):  # adding the same product again grows its line
        await shop.post(f"/api/carts/{cart['id']}/items", json={"product_id": first, "quantity": quantity})
    response = await shop.post(f"/api/carts/{cart['id']}/items", json={"product_id": second, "quantity": 1})
    cart = without_noise(await response.json())
    prices = {i: product(i)["price"] for i in (first, second)}
    assert [(i["product_id"], i["quantity"]) for i in cart["items"]] == [(first, 3), (second, 1)]
    assert cart["items"][0]["unit_price"] == float(prices[first])
    assert cart["items"][0]["name"] == product(first)["name"]
    assert cart["total"] == float(prices[first] * 3 + prices[second])

    response = await shop.delete(f"/api/carts/{cart['id']}/items/{first}")
    assert [i["product_id"] for i in (await response.json())["items"]] == [second]
    assert (await shop.delete(f"/api/carts/{cart['id']}/items/{first}")).status == 404
    assert (await shop.get(f"/api/carts/{cart['id']}")).status == 200
    assert (await shop.get("/api/carts/999999")).status == 404


async def test_checkout_reserves_stock_writes_order_and_empties_cart(shop, engine):
    first, second = in_stock(4)[:2]
    stock = {i: product(i)["stock"] for i in (first, second)}
    cart_id = await new_cart(shop, (second, 1), (first, 4))

    response = await shop.post(f"/api/carts/{cart_id}/checkout")
    assert response.status == 201
    order = without_noise(await response.json())
    assert order["status"] == "placed" and order["cart_id"] == cart_id
    assert [(i["product_id"], i["sku"], i["quantity"]) for i in order["items"]] == \
        sorted([(first, product(first)["sku"], 4), (second, product(second)["sku"], 1)])
    assert order["total"] == float(product(first)["price"] * 4 + product(second)["price"])

    assert stock_of(engine, first) == stock[first] - 4
    assert stock_of(engine, second) == stock[second] - 1
    assert (await (await shop.get(f"/api/carts/{cart_id}")).json())["items"] == []
    assert without_noise(await (await shop.get(f"/api/orders/{order['id']}")).json()) == order
    assert (await shop.get("/api/orders/999999")).status == 404

    # The order keeps the price it was sold at, while the product name is read live (a join).
    await shop.patch(f"/api/products/{first}", json={"price": 0.5, "name": "Renamed"})
    line = (await (await shop.get(f"/api/orders/{order['id']}")).json())["items"]
    line = next(i for i in line if i["product_id"] == first)
    assert line["unit_price"] == float(product(first)["price"]) and line["name"] == "Renamed"


async def test_checkout_short_stock_is_409_and_writes_nothing(shop, engine, snapshot):
    plenty = in_stock(10)[0]
    short = in_stock(1)[1]
    await shop.put(f"/api/inventory/{short}", json={"quantity": 2})
    cart_id = await new_cart(shop, (plenty, 1), (short, 5))
    before = snapshot()
    orders_before = count(engine, Order)

    response = await shop.post(f"/api/carts/{cart_id}/checkout")
    assert response.status == 409
    body = without_noise(await response.json())
    assert body == {"error": {"code": "conflict", "message":
                              f"insufficient stock for product {short} ({product(short)['sku']}): "
                              "requested 5, available 2"}}
    assert snapshot() == before  # no stock moved (not even the product that had enough), no order
    assert count(engine, Order) == orders_before and count(engine, OrderItem) == 0
    assert stock_of(engine, short) == 2
    assert len((await (await shop.get(f"/api/carts/{cart_id}")).json())["items"]) == 2


async def test_checkout_refusals(shop, snapshot):
    empty = await new_cart(shop)
    before = snapshot()
    response = await shop.post(f"/api/carts/{empty}/checkout")
    assert response.status == 400
    assert (await response.json())["error"]["message"] == \
        f"cart {empty} is empty: add items before checking out"
    assert (await shop.post("/api/carts/999999/checkout")).status == 404
    assert snapshot() == before

    # NUMERIC(10,2) caps an order's total: refused before anything is reserved.
    dear = in_stock(3)[0]
    await shop.patch(f"/api/products/{dear}", json={"price": 99999999.99})
    cart_id = await new_cart(shop, (dear, 2))
    before = snapshot()
    response = await shop.post(f"/api/carts/{cart_id}/checkout")
    assert response.status == 409
    assert (await response.json())["error"]["message"] == (
        "order total 199999999.98 exceeds the largest amount an order can hold (99999999.99): "
        "split the cart")
    assert snapshot() == before


async def test_concurrent_checkouts_never_oversell(shop, engine):
    target = in_stock(1)[0]
    await shop.put(f"/api/inventory/{target}", json={"quantity": 3})
    carts = [await new_cart(shop, (target, 1)) for _ in range(6)]

    responses = await asyncio.gather(*(shop.post(f"/api/carts/{c}/checkout") for c in carts))
    statuses = sorted(r.status for r in responses)
    assert statuses == [201, 201, 201, 409, 409, 409]
    assert stock_of(engine, target) == 0
    assert count(engine, Order) == 3


async def test_double_checkout_of_one_cart_orders_once(shop, engine):
    cart_id = await new_cart(shop, (in_stock(5)[0], 2))
    responses = await asyncio.gather(*(shop.post(f"/api/carts/{cart_id}/checkout") for _ in range(3)))
    assert sorted(r.status for r in responses) == [201, 400, 400]
    assert count(engine, Order) == 1


async def test_dry_run_checkout_leaves_no_trace(shop, snapshot):
    cart_id = await new_cart(shop, (in_stock(1)[0], 1))
    before = snapshot()
    response = await shop.post(f"/api/carts/{cart_id}/checkout", headers={"X-Strangler-Dry-Run": "1"})
    assert response.status == 201 and response.headers["X-Strangler-Dry-Run"] == "rolled-back"
    assert (await response.json())["status"] == "placed"
    assert snapshot() == before


async def test_overlapping_concurrent_checkouts_keep_stock_and_orders_consistent(shop, engine):
    """Carts sharing products in different orders check out at once: no deadlock, no lost item;
    every unit either left the shelf in exactly one order or is still in stock."""
    products = in_stock(1)[:4]
    for product_id in products:
        await shop.put(f"/api/inventory/{product_id}", json={"quantity": 5})
    # Lines listed in different orders (checkout reserves in id order regardless).
    cart_lines = [[(products[(c + k) % 4], 1 + (c + k) % 3) for k in range(3)] for c in range(8)]
    carts = [await new_cart(shop, *lines) for lines in reversed(cart_lines)]

    responses = await asyncio.gather(*(shop.post(f"/api/carts/{c}/checkout") for c in carts))
    assert {r.status for r in responses} <= {201, 409}
    orders = [await r.json() for r in responses if r.status == 201]
    assert orders and len(orders) < len(carts)  # 20 units on the shelf, 48 wanted
    for product_id in products:
        sold = sum(i["quantity"] for o in orders for i in o["items"] if i["product_id"] == product_id)
        assert stock_of(engine, product_id) == 5 - sold >= 0
    assert count(engine, Order) == len(orders)
    assert count(engine, OrderItem) == sum(len(o["items"]) for o in orders)
