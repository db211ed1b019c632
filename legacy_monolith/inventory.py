"""Stock per product: the quantity checkout reserves from (never below zero)."""
from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.orm import Session

from legacy_monolith.errors import not_found
from legacy_monolith.keys import DATABASE
from legacy_monolith.models import Inventory, Product
from legacy_monolith.responses import json_response, timestamp, utcnow
from legacy_monolith.validation import dry_run, int_field, json_object, only_fields, path_id

routes = web.RouteTableDef()


def _inventory_json(row: Inventory) -> dict[str, Any]:
    return {"product_id": row.product_id, "quantity": row.quantity,
            "updated_at": timestamp(row.updated_at)}


def get_stock(session: Session, product_id: int) -> dict[str, Any]:
    if session.get(Product, product_id) is None:
        raise not_found(f"product {product_id} does not exist")
    row = session.get(Inventory, product_id)
    if row is None:  # a product written without a stock row has none on the shelf
        return {"product_id": product_id, "quantity": 0, "updated_at": None}
    return _inventory_json(row)


def set_stock(session: Session, product_id: int, quantity: int) -> dict[str, Any]:
    if session.get(Product, product_id) is None:
        raise not_found(f"product {product_id} does not exist")
    row = session.get(Inventory, product_id)
    if row is None:
        row = Inventory(product_id=product_id)
        session.add(row)
    row.quantity = quantity
    row.updated_at = utcnow()
    session.flush()
    return _inventory_json(row)


@routes.get("/api/inventory/{product_id}")
async def inventory_show(request: web.Request) -> web.Response:
    product_id = path_id(request, "product_id", "product")
    return json_response(request, await request.app[DATABASE].read(get_stock, product_id))


@routes.put("/api/inventory/{product_id}")
async def inventory_set(request: web.Request) -> web.Response:
    rehearse = dry_run(request)
    product_id = path_id(request, "product_id", "product")
    body = await json_object(request)
    only_fields(body, ("quantity",))
    quantity = int_field(body, "quantity", minimum=0)
    result = await request.app[DATABASE].write(set_stock, product_id, quantity, dry_run=rehearse)
    return json_response(request, result)
