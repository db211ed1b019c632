"""Checkout: reserve stock, write the order, empty the cart, all in ONE transaction.

Stock is taken with a conditional decrement, `UPDATE inventory SET quantity = quantity - q
WHERE product_id = p AND quantity >= q`, checked by rowcount. It is atomic on PostgreSQL
(row lock) and SQLite (database write lock) alike, so stock can never go negative and two
checkouts can never sell the same last item. Products are taken in id order so concurrent
checkouts lock rows in the same order and cannot deadlock. The first short product aborts
the whole transaction with 409: no stock moved, no order written, the cart left as it was.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from aiohttp import web
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from legacy_monolith.carts import cart_lines, lock_cart
from legacy_monolith.errors import bad_request, conflict
from legacy_monolith.keys import DATABASE
from legacy_monolith.models import CartItem, Inventory, Order, OrderItem
from legacy_monolith.orders import order_json
from legacy_monolith.responses import json_response, utcnow
from legacy_monolith.validation import MAX_PRICE, dry_run, json_object, path_id

routes = web.RouteTableDef()


def checkout(session: Session, cart_id: int) -> dict[str, Any]:
    cart = lock_cart(session, cart_id)
    lines = cart_lines(session, cart_id)  # ordered by product id
    if not lines:
        raise bad_request(f"cart {cart_id} is empty: add items before checking out")
    total = sum((product.price * item.quantity for item, product in lines), Decimal("0.00"))
    if total > MAX_PRICE:
        raise conflict(f"order total {total} exceeds the largest amount an order can hold "
                       f"({MAX_PRICE}): split the cart")
    now = utcnow()
    for item, product in lines:
        reserved = session.execute(
            update(Inventory)
            .where(Inventory.product_id == product.id, Inventory.quantity >= item.quantity)
            .values(quantity=Inventory.quantity - item.quantity, updated_at=now)
            .execution_options(synchronize_session=False))
        if reserved.rowcount != 1:
            available = session.scalar(select(Inventory.quantity)
                                       .where(Inventory.product_id == product.id)) or 0
            raise conflict(f"insufficient stock for product {product.id} ({product.sku}): "
                           f"requested {item.quantity}, available {available}")
    order = Order(customer_id=cart.customer_id, cart_id=cart.id, status="placed", total=total,
                  currency=lines[0][1].currency, created_at=now)
    session.add(order)
    session.flush()
    session.add_all(OrderItem(order_id=order.id, product_id=product.id, quantity=item.quantity,
                              unit_price=product.price) for item, product in lines)
    session.execute(delete(CartItem).where(CartItem.cart_id == cart_id))
    session.flush()
    return order_json(session, order)


@routes.post("/api/carts/{id}/checkout")
async def cart_checkout(request: web.Request) -> web.Response:
    rehearse = dry_run(request)
    cart_id = path_id(request, "id", "cart")
    await json_object(request, optional=True)  # no fields; a body, if any, must still be valid
    order = await request.app[DATABASE].write(checkout, cart_id, dry_run=rehearse)
    return json_response(request, order, status=201)
