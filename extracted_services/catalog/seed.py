"""Seed the service from the shop's shared generator, so both stores start with the same rows.

Mapping legacy → service: price Decimal → integer cents, category id → slug (the legacy id is
kept in `legacy_category_id` for the CDC). Stock is not the catalog's concern (inventory stays
in the monolith), so it is dropped.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import Connection, Engine

from extracted_services.catalog.models import Category, Product
from legacy_monolith import seed_data

DEFAULT_PRODUCTS = seed_data.DEFAULT_PRODUCTS
BATCH = 5_000  # rows per multi-row insert: bounded memory for the 100,000-product benchmark seed


def seed(engine: Engine, products: int = DEFAULT_PRODUCTS) -> int:
    """Fill an empty catalog with the shared seed; returns the rows added (0 if not empty)."""
    with engine.begin() as conn:
        if conn.scalar(select(func.count()).select_from(Category)):
            return 0
        conn.execute(insert(Category), [
            {"slug": c["slug"], "display_name": c["name"], "legacy_category_id": c["id"]}
            for c in seed_data.iter_categories()])
        added = 0
        for batch in _batches(seed_data.iter_products(products)):
            conn.execute(insert(Product), [
                {"id": p["id"], "sku": p["sku"], "title": p["name"],
                 "description": p["description"], "price_cents": int(p["price"].scaleb(2)),
                 "currency": p["currency"], "category_slug": p["category"],
                 "updated_at": p["updated_at"]} for p in batch])
            added += len(batch)
        _advance_id_sequence(conn)
        return added


def _advance_id_sequence(conn: Connection) -> None:
    """Explicit ids do not move PostgreSQL's sequence: move it past the max id by hand.

    SQLite needs nothing: an INTEGER PRIMARY KEY continues after the max rowid. While legacy
    owns writes (up to `canary`) only legacy creates products, so ids never collide; once the
    service owns writes it continues after the largest id it holds.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text(
            "SELECT setval(pg_get_serial_sequence('products', 'id'), "
            "COALESCE((SELECT max(id) FROM products), 0) + 1, false)"))


def _batches(rows: Iterable[seed_data.ProductRow]) -> Iterator[list[seed_data.ProductRow]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, BATCH)):
        yield batch
