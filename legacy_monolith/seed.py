"""Fill an empty legacy database from `seed_data`, fast enough for 100,000 products.

Rows go in with explicit ids in batches of multi-row inserts, all in one transaction (a
seed is complete or absent). PostgreSQL's serial sequences are then moved past the seeded
ids with `setval`, so later inserts without an id never collide with seeded rows.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import Connection, Engine

from legacy_monolith.models import Category, Customer, Inventory, Product
from legacy_monolith.seed_data import (DEFAULT_PRODUCTS, EPOCH, iter_categories, iter_customers,
                                       iter_products)
from strangler.errors import OperatorError

BATCH = 5_000
CUSTOMERS = 5
_SERIAL_TABLES = ("categories", "products", "customers")
_SEED_TIME = EPOCH.replace(tzinfo=None)  # naive UTC, like every legacy timestamp


def product_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(Product))


def seed(engine: Engine, products: int = DEFAULT_PRODUCTS) -> None:
    """Seed categories, `products` products with stock, and a few customers into an empty database."""
    if products < 0:
        raise OperatorError(f"--products must be >= 0, got {products}")
    with engine.begin() as connection:
        existing = connection.scalar(select(func.count()).select_from(Product))
        if existing:
            raise OperatorError(f"the database already holds {existing} products; seed a fresh "
                                "database (or drop this one) to get a deterministic data set")
        categories = list(iter_categories())
        connection.execute(insert(Category), [dict(c) for c in categories])
        category_ids = {c["slug"]: c["id"] for c in categories}
        for batch in _batches(iter_products(products), BATCH):
            connection.execute(insert(Product), [
                {"id": p["id"], "sku": p["sku"], "name": p["name"], "description": p["description"],
                 "price": p["price"], "currency": p["currency"],
                 "category_id": category_ids[p["category"]],
                 "updated_at": p["updated_at"].replace(tzinfo=None)} for p in batch])
            connection.execute(insert(Inventory), [
                {"product_id": p["id"], "quantity": p["stock"],
                 "updated_at": p["updated_at"].replace(tzinfo=None)} for p in batch])
        connection.execute(insert(Customer), [
            {**c, "created_at": _SEED_TIME} for c in iter_customers(CUSTOMERS)])
        if connection.dialect.name == "postgresql":
            _advance_sequences(connection)


def _advance_sequences(connection: Connection) -> None:
    """Point each serial sequence at its table's highest id (is_called: the next id is max + 1)."""
    for table in _SERIAL_TABLES:
        connection.execute(text(
            f"SELECT setval(pg_get_serial_sequence('public.{table}', 'id'), "
            f"GREATEST((SELECT max(id) FROM public.{table}), 1), "
            f"(SELECT max(id) FROM public.{table}) IS NOT NULL)"))


def _batches(rows: Iterable, size: int) -> Iterator[list]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch
