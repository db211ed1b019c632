"""Catalog routes (products and categories), exactly as docs/catalog-api.md describes them.

These are the routes the catalog service takes over, so their shapes are the contract both
apps are compared on. Writes honour `X-Strangler-Dry-Run: 1` (run, then roll back).
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import Select, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from legacy_monolith.errors import bad_request, conflict, not_found
from legacy_monolith.keys import DATABASE
from legacy_monolith.models import CartItem, Category, Inventory, OrderItem, Product
from legacy_monolith.responses import json_response, money, no_content, timestamp, utcnow
from legacy_monolith.validation import (MAX_INT, currency_field, dry_run, json_object, only_fields,
                                        path_id, price_field, query_int, text_field)

routes = web.RouteTableDef()

CREATE_FIELDS = ("sku", "name", "description", "price", "currency", "category")
PATCH_FIELDS = ("name", "description", "price", "category")
DEFAULT_CURRENCY = "EUR"
_TEXT_LIMITS = {"sku": 64, "name": 200, "description": 10_000, "category": 100}


def product_json(product: Product, category: Category) -> dict[str, Any]:
    return {
        "id": product.id,
        "sku": product.sku,
        "name": product.name,
        "description": product.description,
        "price": money(product.price),
        "currency": product.currency,
        "category": {"slug": category.slug, "name": category.name},
        "updated_at": timestamp(product.updated_at),
    }


def _with_category() -> Select:
    return select(Product, Category).join(Category, Product.category_id == Category.id)


def get_product(session: Session, product_id: int) -> dict[str, Any]:
    row = session.execute(_with_category().where(Product.id == product_id)).first()
    if row is None:
        raise not_found(f"product {product_id} does not exist")
    return product_json(*row)


def list_products(session: Session, q: str, category: str, limit: int, offset: int) -> dict[str, Any]:
    query = _with_category()
    if q:
        query = query.where(Product.name.icontains(q, autoescape=True))
    if category:
        query = query.where(Category.slug == category)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.execute(query.order_by(Product.id).limit(limit).offset(offset)).all()
    return {"items": [product_json(*row) for row in rows], "total": total,
            "limit": limit, "offset": offset}


def _category_counts() -> Select:
    return (select(Category.slug, Category.name, func.count(Product.id).label("product_count"))
            .outerjoin(Product, Product.category_id == Category.id)
            .group_by(Category.id, Category.slug, Category.name))


def _category_json(row) -> dict[str, Any]:
    return {"slug": row.slug, "name": row.name, "product_count": row.product_count}


def list_categories(session: Session) -> dict[str, Any]:
    rows = session.execute(_category_counts().order_by(Category.slug)).all()
    return {"items": [_category_json(row) for row in rows]}


def get_category(session: Session, slug: str) -> dict[str, Any]:
    row = session.execute(_category_counts().where(Category.slug == slug)).first()
    if row is None:
        raise not_found(f"category {slug!r} does not exist")
    return _category_json(row)


def _category_by_slug(session: Session, slug: str) -> Category:
    category = session.scalar(select(Category).where(Category.slug == slug))
    if category is None:
        raise bad_request(f"field 'category': category {slug!r} does not exist")
    return category


def create_product(session: Session, fields: dict[str, Any]) -> dict[str, Any]:
    category = _category_by_slug(session, fields["category"])
    if session.scalar(select(Product.id).where(Product.sku == fields["sku"])) is not None:
        raise conflict(f"sku {fields['sku']!r} already exists")
    now = utcnow()
    product = Product(sku=fields["sku"], name=fields["name"], description=fields["description"],
                      price=fields["price"], currency=fields["currency"],
                      category_id=category.id, updated_at=now)
    session.add(product)
    try:
        session.flush()
    except IntegrityError:  # a concurrent insert took the sku between the check and the flush
        raise conflict(f"sku {fields['sku']!r} already exists") from None
    # Every product has a stock row; a new one starts with nothing on the shelf.
    session.add(Inventory(product_id=product.id, quantity=0, updated_at=now))
    session.flush()
    return product_json(product, category)


def update_product(session: Session, product_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    row = session.execute(_with_category().where(Product.id == product_id)).first()
    if row is None:
        raise not_found(f"product {product_id} does not exist")
    product, category = row
    if "category" in fields:
        category = _category_by_slug(session, fields["category"])
        product.category_id = category.id
    for name in ("name", "description", "price"):
        if name in fields:
            setattr(product, name, fields[name])
    product.updated_at = utcnow()
    session.flush()
    return product_json(product, category)


def delete_product(session: Session, product_id: int) -> None:
    product = session.get(Product, product_id)
    if product is None:
        raise not_found(f"product {product_id} does not exist")
    orders = session.scalar(select(func.count()).where(OrderItem.product_id == product_id))
    if orders:
        raise conflict(f"product {product_id} ({product.sku}) is referenced by {orders} "
                       "order(s) and cannot be deleted")
    # Stock row before cart lines: the order checkout takes its locks in, so the two cannot deadlock.
    session.execute(delete(Inventory).where(Inventory.product_id == product_id))
    session.execute(delete(CartItem).where(CartItem.product_id == product_id))
    try:
        session.execute(delete(Product).where(Product.id == product_id))
    except IntegrityError:  # a checkout ordered it between the check above and this delete
        raise conflict(f"product {product_id} ({product.sku}) is referenced by orders and "
                       "cannot be deleted") from None


def _new_product(body: dict[str, Any]) -> dict[str, Any]:
    only_fields(body, CREATE_FIELDS)
    return {
        "sku": text_field(body, "sku", max_length=_TEXT_LIMITS["sku"]),
        "name": text_field(body, "name", max_length=_TEXT_LIMITS["name"]),
        "category": text_field(body, "category", max_length=_TEXT_LIMITS["category"]),
        "description": text_field(body, "description", max_length=_TEXT_LIMITS["description"],
                                  required=False, allow_empty=True) or "",
        "price": price_field(body),
        "currency": currency_field(body) or DEFAULT_CURRENCY,
    }


def _product_changes(body: dict[str, Any]) -> dict[str, Any]:
    only_fields(body, PATCH_FIELDS)
    if not body:
        raise bad_request(f"nothing to change: send at least one of {', '.join(PATCH_FIELDS)}")
    changes: dict[str, Any] = {}
    for name in ("name", "category"):
        if name in body:
            changes[name] = text_field(body, name, max_length=_TEXT_LIMITS[name])
    if "description" in body:
        changes["description"] = text_field(body, "description", allow_empty=True,
                                            max_length=_TEXT_LIMITS["description"])
    if "price" in body:
        changes["price"] = price_field(body)
    return changes


@routes.get("/api/products")
async def products_index(request: web.Request) -> web.Response:
    q = request.query.get("q", "").strip()
    if len(q) > 200:
        raise bad_request("query parameter 'q' is longer than 200 characters")
    category = request.query.get("category", "").strip()
    limit = query_int(request, "limit", default=20, minimum=1, maximum=100)
    offset = query_int(request, "offset", default=0, minimum=0, maximum=MAX_INT)
    body = await request.app[DATABASE].read(list_products, q, category, limit, offset)
    return json_response(request, body)


@routes.get("/api/products/{id}")
async def product_show(request: web.Request) -> web.Response:
    product_id = path_id(request, "id", "product")
    return json_response(request, await request.app[DATABASE].read(get_product, product_id))


@routes.post("/api/products")
async def product_create(request: web.Request) -> web.Response:
    rehearse = dry_run(request)
    fields = _new_product(await json_object(request))
    body = await request.app[DATABASE].write(create_product, fields, dry_run=rehearse)
    return json_response(request, body, status=201)


@routes.patch("/api/products/{id}")
async def product_update(request: web.Request) -> web.Response:
    rehearse = dry_run(request)
    product_id = path_id(request, "id", "product")
    fields = _product_changes(await json_object(request))
    body = await request.app[DATABASE].write(update_product, product_id, fields, dry_run=rehearse)
    return json_response(request, body)


@routes.delete("/api/products/{id}")
async def product_delete(request: web.Request) -> web.Response:
    rehearse = dry_run(request)
    product_id = path_id(request, "id", "product")
    await request.app[DATABASE].write(delete_product, product_id, dry_run=rehearse)
    return no_content(request)


@routes.get("/api/categories")
async def categories_index(request: web.Request) -> web.Response:
    return json_response(request, await request.app[DATABASE].read(list_categories))


@routes.get("/api/categories/{slug}")
async def category_show(request: web.Request) -> web.Response:
    slug = request.match_info["slug"]
    return json_response(request, await request.app[DATABASE].read(get_category, slug))
