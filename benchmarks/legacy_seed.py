"""Seeding the legacy shop: seconds for N products on SQLite and PostgreSQL, same run.

`python -m benchmarks.legacy_seed [--products 100000] [--pg-url URL]` (the PostgreSQL URL
defaults to $STRANGLER_TEST_PG_URL; a scratch database is created and dropped). Peers: the
batched Core inserts `legacy_monolith.seed` uses, and the naive way (one ORM object per row,
one flush each) on a sample, so the bar is a ratio measured on this machine in this run.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from legacy_monolith.migrate import upgrade
from legacy_monolith.models import Category, Inventory, Product
from legacy_monolith.seed import seed
from legacy_monolith.seed_data import iter_categories, iter_products
from strangler.db import make_engine, normalise_url, sqlite_url

NAIVE_SAMPLE = 2_000


def naive_seed(engine: Engine, products: int) -> None:
    """The peer: what an old shop's fixture loader does, one ORM object and flush per row."""
    with Session(engine) as session, session.begin():
        ids = {}
        for c in iter_categories():
            session.add(category := Category(**c))
            ids[c["slug"]] = category.id
        session.flush()
        for p in iter_products(products):
            session.add(Product(id=p["id"], sku=p["sku"], name=p["name"],
                                description=p["description"], price=p["price"],
                                currency=p["currency"], category_id=ids[p["category"]],
                                updated_at=p["updated_at"].replace(tzinfo=None)))
            session.flush()
            session.add(Inventory(product_id=p["id"], quantity=p["stock"],
                                  updated_at=p["updated_at"].replace(tzinfo=None)))
            session.flush()


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        yield sqlite_url(Path(folder) / "legacy.db")


@contextmanager
def pg_database(admin_url: str) -> Iterator[str]:
    admin = create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
    name = f"bench_seed_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield normalise_url(admin_url).rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def timed(database: Callable[[], AbstractContextManager[str]], loader: Callable[[Engine, int], None],
          products: int) -> float:
    with database() as url:
        upgrade(url)
        engine = make_engine(url)
        try:
            started = time.perf_counter()
            loader(engine, products)
            return time.perf_counter() - started
        finally:
            engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.legacy_seed", description=__doc__)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--pg-url", default=os.environ.get("STRANGLER_TEST_PG_URL"))
    args = parser.parse_args(argv)
    backends = [("sqlite", sqlite_database)]
    if args.pg_url:
        backends.append(("postgresql", lambda: pg_database(args.pg_url)))
    print(f"seeding {args.products} products (naive peer on {NAIVE_SAMPLE}, scaled per row)")
    for name, database in backends:
        batched = timed(database, seed, args.products)
        naive = timed(database, naive_seed, NAIVE_SAMPLE) * args.products / NAIVE_SAMPLE
        print(f"{name:>10}: batched {batched:6.1f}s ({args.products / batched:8.0f} products/s); "
              f"naive per-row ORM would take ~{naive:6.1f}s: {naive / batched:4.1f}x slower")
    return 0


if __name__ == "__main__":
    sys.exit(main())
