"""`strangler catalog …`: serve, migrate and seed the extracted catalog service."""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from aiohttp import web

from extracted_services.catalog import migrate, seed
from strangler.db import make_engine, sqlite_url
from strangler.errors import OperatorError

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
    seed_parser.add_argument("--products", type=int, default=seed.DEFAULT_PRODUCTS, metavar="N")
    seed_parser.set_defaults(func=run_seed)


def _database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"),
                        help=f"default: $DATABASE_URL, else SQLite at {DEFAULT_DATABASE}")


def database_url(args: argparse.Namespace) -> str:
    if args.database_url:
        return args.database_url
    DEFAULT_DATABASE.parent.mkdir(parents=True, exist_ok=True)
    return sqlite_url(DEFAULT_DATABASE)


def serve(args: argparse.Namespace) -> int:
    """Serve the catalog API (migrating the database first) until interrupted."""
    from extracted_services.catalog.app import create_app

    if args.seed is not None and args.seed < 0:
        raise OperatorError(f"--seed must be >= 0, got {args.seed}")
    app = create_app(database_url(args), seed_products=args.seed)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)
    except OSError as exc:
        raise OperatorError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}; "
                            "stop whatever uses it or pass --port") from None
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    """Upgrade the catalog database to the latest schema revision."""
    migrate.upgrade(make_engine(database_url(args)))
    return 0


def run_seed(args: argparse.Namespace) -> int:
    """Migrate, then fill an empty catalog with the shared seed data (same rows as legacy)."""
    if args.products < 0:
        raise OperatorError(f"--products must be >= 0, got {args.products}")
    engine = make_engine(database_url(args))
    migrate.upgrade(engine)
    added = seed.seed(engine, args.products)
    print(f"seeded {added} products" if added else "catalog already holds data; nothing seeded")
    return 0
