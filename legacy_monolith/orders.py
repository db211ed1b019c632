"""Orders: written by checkout, read back joined to the catalog's products table."""
from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from legacy_monolith.errors import not_found
from legacy_monolith.keys import DATABASE
from legacy_monolith.models import Order, OrderItem, Product
from legacy_monolith.responses import json_response, money, timestamp
from legacy_monolith.validation import path_id

routes = web.RouteTableDef()


def order_json(session: Session, order: Order) -> dict[str, Any]:
    # The cross-capability join the migration has to untangle: orders read product names live.
    query = (select(OrderItem, Product).join(Product, OrderItem.product_id == Product.id)
             .where(OrderItem.order_id == order.id).order_by(OrderItem.product_id))
    items = [{"product_id": product.id, "sku": product.sku, "name": product.name,
              "quantity": item.quantity, "unit_price": money(item.unit_price),
              "line_total": money(item.unit_price * item.quantity)}
             for item, product in session.execute(query).all()]
    return {"id": order.id, "customer_id": order.customer_id, "cart_id": order.cart_id,
            "status": order.status, "items": items, "total": money(order.total),
            "currency": order.currency, "created_at": timestamp(order.created_at)}


def get_order(session: Session, order_id: int) -> dict[str, Any]:
    order = session.get(Order, order_id)
    if order is None:
        raise not_found(f"order {order_id} does not exist")
    return order_json(session, order)


@routes.get("/api/orders/{id}")
async def order_show(request: web.Request) -> web.Response:
    order_id = path_id(request, "id", "order")
    return json_response(request, await request.app[DATABASE].read(get_order, order_id))
