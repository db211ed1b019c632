"""`strangler legacy …`: serve, migrate and seed the bundled legacy shop."""
from __future__ import annotations

import argparse
import logging
import time

from sqlalchemy.exc import OperationalError

from legacy_monolith.config import database_url
from legacy_monolith.migrate import upgrade
from legacy_monolith.seed import seed
from legacy_monolith.seed_data import DEFAULT_PRODUCTS
from strangler.db import make_engine
from strangler.errors import OperatorError
from strangler.serving import serve_app


def register(subparsers: argparse._SubParsersAction) -> None:
    legacy = subparsers.add_parser("legacy", help="the bundled legacy shop (the migration's 'before')")
    commands = legacy.add_subparsers(dest="legacy_command", metavar="COMMAND", required=True)

    serve_parser = commands.add_parser("serve", help=serve.__doc__, description=serve.__doc__)
    _database_option(serve_parser)
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8001)
    serve_parser.add_argument("--seed", type=int, metavar="N",
                              help="seed N products first if the database is empty")
    serve_parser.set_defaults(func=serve)

    migrate_parser = commands.add_parser("migrate", help=migrate.__doc__, description=migrate.__doc__)
    _database_option(migrate_parser)
    migrate_parser.set_defaults(func=migrate)

    seed_parser = commands.add_parser("seed", help=seed_command.__doc__,
                                      description=seed_command.__doc__)
    _database_option(seed_parser)
    seed_parser.add_argument("--products", type=int, default=DEFAULT_PRODUCTS, metavar="N",
                             help=f"how many products (default {DEFAULT_PRODUCTS}; 100000 for benchmarks)")
    seed_parser.set_defaults(func=seed_command)


def _database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", metavar="URL",
                        help="SQLAlchemy/PostgreSQL URL (default: $DATABASE_URL, else var/legacy.db)")


def _migrate(url: str) -> None:
    try:
        upgrade(url)
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0]
        raise OperatorError(f"cannot reach the database: {reason}; check --database-url "
                            "or DATABASE_URL") from None


def serve(args: argparse.Namespace) -> int:
    """Serve the legacy shop (JSON API and HTML pages); migrates the schema at start-up."""
    from legacy_monolith.app import create_app

    if args.seed is not None and args.seed < 0:
        raise OperatorError(f"--seed must be >= 0, got {args.seed}")
    url = database_url(args.database_url)
    _migrate(url)  # fail fast with a clean message before the server starts
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    serve_app(create_app(url, seed_products=args.seed), args.host, args.port)
    return 0


def migrate(args: argparse.Namespace) -> int:
    """Bring the legacy database to the newest schema (alembic upgrade head; idempotent)."""
    _migrate(database_url(args.database_url))
    print("legacy schema is at head")
    return 0


def seed_command(args: argparse.Namespace) -> int:
    """Seed an empty legacy database with the deterministic data set (migrates first)."""
    url = database_url(args.database_url)
    _migrate(url)
    engine = make_engine(url)
    try:
        started = time.perf_counter()
        seed(engine, args.products)
        print(f"seeded {args.products} products in {time.perf_counter() - started:.1f}s")
    finally:
        engine.dispose()
    return 0
