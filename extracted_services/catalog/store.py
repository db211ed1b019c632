"""The catalog's queries and writes, on a SQLAlchemy Connection (sync; run in the executor).

Each write function expects to run inside the caller's transaction, so the caller decides
between commit and rollback (the dry-run header) and an error leaves nothing written.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from extracted_services.catalog import render
from extracted_services.catalog.models import Category, Product
from extracted_services.catalog.problems import bad_request, conflict, not_found
from extracted_services.catalog.validation import ListQuery, NewProduct

_PRODUCT_COLUMNS = (Product.id, Product.sku, Product.title, Product.description,
                    Product.price_cents, Product.currency, Product.category_slug,
                    Product.updated_at, Category.display_name)


def _products() -> Select:
    return select(*_PRODUCT_COLUMNS).join(Category, Product.category_slug == Category.slug)


def list_products(conn: Connection, query: ListQuery) -> dict[str, Any]:
    conditions = []
    if query.q:
        conditions.append(Product.title.icontains(query.q, autoescape=True))
    if query.category:
        conditions.append(Product.category_slug == query.category)
    total = conn.scalar(select(func.count()).select_from(Product).where(*conditions))
    rows = conn.execute(_products().where(*conditions).order_by(Product.id)
                        .limit(query.limit).offset(query.offset)).mappings()
    return {"items": [render.product(row) for row in rows], "total": total,
            "limit": query.limit, "offset": query.offset}


def get_product(conn: Connection, product_id: int) -> dict[str, Any]:
    row = conn.execute(_products().where(Product.id == product_id)).mappings().first()
    if row is None:
        raise not_found(f"product {product_id} does not exist")
    return render.product(row)


def _categories() -> Select:
    return (select(Category.slug, Category.display_name,
                   func.count(Product.id).label("product_count"))
            .outerjoin(Product, Product.category_slug == Category.slug)
            .group_by(Category.slug, Category.display_name))


def list_categories(conn: Connection) -> dict[str, Any]:
    rows = conn.execute(_categories().order_by(Category.slug)).mappings()
    return {"items": [render.category(row) for row in rows]}


def get_category(conn: Connection, slug: str) -> dict[str, Any]:
    row = conn.execute(_categories().where(Category.slug == slug)).mappings().first()
    if row is None:
        raise not_found(f"category {slug!r} does not exist")
    return render.category(row)


def create_product(conn: Connection, new: NewProduct) -> dict[str, Any]:
    _require_category(conn, new.category)
    if conn.scalar(select(Product.id).where(Product.sku == new.sku)) is not None:
        raise conflict(f"sku {new.sku!r} already exists")
    values = {"sku": new.sku, "title": new.name, "description": new.description,
              "price_cents": new.price_cents, "currency": new.currency,
              "category_slug": new.category, "updated_at": _now()}
    product_id = _next_id(conn)
    if product_id is not None:
        values["id"] = product_id
    try:
        product_id = conn.execute(insert(Product).values(values)
                                  .returning(Product.id)).scalar_one()
    except IntegrityError as exc:  # a concurrent insert won the race between check and insert
        if "sku" in str(exc.orig):
            raise conflict(f"sku {new.sku!r} already exists") from None
        raise conflict(f"product id {values.get('id')} was just taken by a concurrent insert; "
                       "send the request again") from None
    return get_product(conn, product_id)


def update_product(conn: Connection, product_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    if conn.scalar(select(Product.id).where(Product.id == product_id)) is None:
        raise not_found(f"product {product_id} does not exist")
    if "category_slug" in changes:
        _require_category(conn, changes["category_slug"])
    conn.execute(update(Product).where(Product.id == product_id)
                 .values(**changes, updated_at=_now()))
    return get_product(conn, product_id)


def delete_product(conn: Connection, product_id: int) -> None:
    if conn.execute(delete(Product).where(Product.id == product_id)).rowcount == 0:
        raise not_found(f"product {product_id} does not exist")


def _next_id(conn: Connection) -> int | None:
    """On PostgreSQL, the sequence's next value, but never at or below the largest id held.

    Rows arriving with explicit ids (seed, CDC from legacy) do not move the sequence, so
    without this a new product could collide with a replicated one; the sequence is moved up
    to the id taken, so it lags at most until the first insert after a replicated batch.
    SQLite needs nothing: an INTEGER PRIMARY KEY already continues after the largest rowid.
    """
    if conn.dialect.name != "postgresql":
        return None
    sequence = func.pg_get_serial_sequence("products", "id")
    past_max = select(func.coalesce(func.max(Product.id), 0) + 1).scalar_subquery()
    return conn.scalar(select(func.setval(sequence,
                                          func.greatest(func.nextval(sequence), past_max))))


def _require_category(conn: Connection, slug: str) -> None:
    if conn.scalar(select(Category.slug).where(Category.slug == slug)) is None:
        raise bad_request(f"field 'category': category {slug!r} does not exist")


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)
