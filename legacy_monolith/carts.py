"""Shopping carts: lines joined to live product prices until checkout freezes them in an order.

Every cart write first touches the cart row (`UPDATE carts SET updated_at`): that takes the
row lock on PostgreSQL and the write lock on SQLite, so two writes to one cart (say, two
clicks on "check out") run one after the other and the second sees the first's result.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from aiohttp import web
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from legacy_monolith.errors import conflict, not_found
from legacy_monolith.keys import DATABASE
from legacy_monolith.models import Cart, CartItem, Customer, Product
from legacy_monolith.responses import json_response, money, timestamp, utcnow
from legacy_monolith.validation import dry_run, int_field, json_object, only_fields, path_id

routes = web.RouteTableDef()

MAX_LINE_QUANTITY = 10_000
DEFAULT_CURRENCY = "EUR"


def lock_cart(session: Session, cart_id: int) -> Cart:
    """Touch the cart so concurrent writers queue behind this transaction; 404 if it is unknown."""
    touched = session.execute(update(Cart).where(Cart.id == cart_id).values(updated_at=utcnow())
                              .execution_options(synchronize_session=False))
    if touched.rowcount != 1:
        raise not_found(f"cart {cart_id} does not exist")
    return session.get(Cart, cart_id, populate_existing=True)


def cart_lines(session: Session, cart_id: int) -> list[tuple[CartItem, Product]]:
    query = (select(CartItem, Product).join(Product, CartItem.product_id == Product.id)
             .where(CartItem.cart_id == cart_id).order_by(CartItem.product_id))
    return [(item, product) for item, product in session.execute(query).all()]


def cart_json(session: Session, cart: Cart) -> dict[str, Any]:
    lines = cart_lines(session, cart.id)
    items = [{"product_id": product.id, "sku": product.sku, "name": product.name,
              "quantity": item.quantity, "unit_price": money(product.price),
              "line_total": money(product.price * item.quantity)} for item, product in lines]
    total = sum((product.price * item.quantity for item, product in lines), Decimal("0.00"))
    return {"id": cart.id, "customer_id": cart.customer_id, "items": items,
            "total": money(total),
            "currency": lines[0][1].currency if lines else DEFAULT_CURRENCY,
            "created_at": timestamp(cart.created_at), "updated_at": timestamp(cart.updated_at)}


def get_cart(session: Session, cart_id: int) -> dict[str, Any]:
    cart = session.get(Cart, cart_id)
    if cart is None:
        raise not_found(f"cart {cart_id} does not exist")
    return cart_json(session, cart)


def create_cart(session: Session, customer_id: int | None) -> dict[str, Any]:
    if customer_id is not None and session.get(Customer, customer_id) is None:
        raise not_found(f"customer {customer_id} does not exist")
    now = utcnow()
    cart = Cart(customer_id=customer_id, created_at=now, updated_at=now)
    session.add(cart)
    session.flush()
    return cart_json(session, cart)


def add_item(session: Session, cart_id: int, product_id: int, quantity: int) -> dict[str, Any]:
    cart = lock_cart(session, cart_id)
    product = session.get(Product, product_id)
    if product is None:
        raise not_found(f"product {product_id} does not exist")
    lines = cart_lines(session, cart_id)
    currencies = {p.currency for _, p in lines if p.id != product_id}
    if currencies and product.currency not in currencies:
        raise conflict(f"cart {cart_id} is priced in {currencies.pop()}; product {product_id} is "
                       f"priced in {product.currency}: use a separate cart")
    item = session.get(CartItem, (cart_id, product_id))
    new_quantity = quantity + (item.quantity if item else 0)
    if new_quantity > MAX_LINE_QUANTITY:
        raise conflict(f"a cart line holds at most {MAX_LINE_QUANTITY}; product {product_id} "
                       f"would reach {new_quantity}")
    if item is None:
        session.add(CartItem(cart_id=cart_id, product_id=product_id, quantity=quantity))
    else:
        item.quantity = new_quantity
    session.flush()
    return cart_json(session, cart)


def remove_item(session: Session, cart_id: int, product_id: int) -> dict[str, Any]:
    cart = lock_cart(session, cart_id)
    removed = session.execute(delete(CartItem).where(CartItem.cart_id == cart_id,
                                                     CartItem.product_id == product_id))
    if removed.rowcount != 1:
        raise not_found(f"product {product_id} is not in cart {cart_id}")
    return cart_json(session, cart)


@routes.post("/api/carts")
async def cart_create(request: web.Request) -> web.Response:
    rehearse = dry_run(request)
    body = await json_object(request, optional=True)
    only_fields(body, ("customer_id",))
    customer_id = None if body.get("customer_id") is None else int_field(body, "customer_id",
                                                                         minimum=1)
    cart = await request.app[DATABASE].write(create_cart, customer_id, dry_run=rehearse)
    return json_response(request, cart, status=201)


@routes.get("/api/carts/{id}")
async def cart_show(request: web.Request) -> web.Response:
    cart_id = path_id(request, "id", "cart")
    return json_response(request, await request.app[DATABASE].read(get_cart, cart_id))


@routes.post("/api/carts/{id}/items")
async def cart_add(request: web.Request) -> web.Response:
    rehearse = dry_run(request)
    cart_id = path_id(request, "id", "cart")
    body = await json_object(request)
    only_fields(body, ("product_id", "quantity"))
    product_id = int_field(body, "product_id", minimum=1)
    quantity = int_field(body, "quantity", minimum=1, maximum=MAX_LINE_QUANTITY)
    cart = await request.app[DATABASE].write(add_item, cart_id, product_id, quantity,
                                             dry_run=rehearse)
    return json_response(request, cart)


@routes.delete("/api/carts/{id}/items/{product_id}")
async def cart_remove(request: web.Request) -> web.Response:
    rehearse = dry_run(request)
    cart_id = path_id(request, "id", "cart")
    product_id = path_id(request, "product_id", "product")
    cart = await request.app[DATABASE].write(remove_item, cart_id, product_id, dry_run=rehearse)
    return json_response(request, cart)
