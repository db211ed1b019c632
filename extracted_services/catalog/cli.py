"""`strangler catalog …`: serve, migrate and seed the extracted catalog service."""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from legacy_monolith.seed_data import DEFAULT_PRODUCTS
from strangler.db import make_engine, sqlite_url
from strangler.errors import OperatorError
from strangler.serving import serve_app

DEFAULT_DATABASE = Path("var/catalog.db")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("catalog", help="the extracted catalog service")
    commands = parser.add_subparsers(dest="catalog_command", metavar="COMMAND", required=True)

    serve_parser = commands.add_parser("serve", help=serve.__doc__, description=serve.__doc__)
    _database_option(serve_parser)
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8002)
    serve_parser.add_argument("--seed", type=int, metavar="N",
                              help="seed N products from the shared seed if the store is empty")
    serve_parser.set_defaults(func=serve)

    migrate_parser = commands.add_parser("migrate", help=run_migrate.__doc__,
                                         description=run_migrate.__doc__)
    _database_option(migrate_parser)
    migrate_parser.set_defaults(func=run_migrate)

    seed_parser = commands.add_parser("seed", help=run_seed.__doc__, description=run_seed.__doc__)
    _database_option(seed_parser)
    seed_parser.add_argument("--products", type=int, default=DEFAULT_PRODUCTS, metavar="N",
                             help=f"how many products (default {DEFAULT_PRODUCTS})")
    seed_parser.set_defaults(func=run_seed)


def _database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", metavar="URL", default=os.environ.get("DATABASE_URL"),
                        help=f"default: $DATABASE_URL, else SQLite at {DEFAULT_DATABASE}")


def _database_url(args: argparse.Namespace) -> str:
    if args.database_url:
        return args.database_url
    DEFAULT_DATABASE.parent.mkdir(parents=True, exist_ok=True)
    return sqlite_url(DEFAULT_DATABASE)


def _migrated_engine(url: str) -> Engine:
    """An engine on a database at the newest schema, or one clean line saying why not."""
    from extracted_services.catalog import migrate

    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
    except OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0]
        raise OperatorError(f"cannot reach the catalog database: {reason}; check --database-url "
                            "or DATABASE_URL") from None
    return engine


def _non_negative(value: int | None, flag: str) -> None:
    if value is not None and value < 0:
        raise OperatorError(f"{flag} must be >= 0, got {value}")


def serve(args: argparse.Namespace) -> int:
    """Serve the catalog API (migrating the database first) until interrupted."""
    from extracted_services.catalog.app import create_app

    _non_negative(args.seed, "--seed")
    url = _database_url(args)
    _migrated_engine(url).dispose()  # fail fast with a clean message before the server starts
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    serve_app(create_app(url, seed_products=args.seed), args.host, args.port)
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    """Upgrade the catalog database to the newest schema (alembic upgrade head; idempotent)."""
    _migrated_engine(_database_url(args)).dispose()
    print("catalog schema is at head")
    return 0


def run_seed(args: argparse.Namespace) -> int:
    """Migrate, then fill an empty catalog with the shared seed data (the same rows as legacy)."""
    from extracted_services.catalog import seed

    _non_negative(args.products, "--products")
    engine = _migrated_engine(_database_url(args))
    try:
        added = seed.seed(engine, args.products)
    finally:
        engine.dispose()
    print(f"seeded {added} products" if added else "the catalog already holds data; nothing seeded")
    return 0
