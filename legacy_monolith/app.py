"""The legacy shop as one aiohttp application over one database.

`create_app(database_url)` is what the CLI serves and what tests start on a free port.
Start-up brings the schema to alembic head (idempotent) and, when asked, seeds an empty
database; the database and its thread pool are one `cleanup_ctx` resource.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from sqlalchemy import text

from legacy_monolith import carts, catalog, checkout, customers, inventory, orders, pages
from legacy_monolith.database import Database
from legacy_monolith.keys import DATABASE
from legacy_monolith.middleware import errors
from legacy_monolith.migrate import upgrade
from legacy_monolith.responses import json_response
from legacy_monolith.seed import product_count, seed
from legacy_monolith.validation import MAX_BODY

log = logging.getLogger(__name__)


def create_app(database_url: str, *, seed_products: int | None = None) -> web.Application:
    """The shop on `database_url`; `seed_products=N` seeds N products if the database is empty."""
    app = web.Application(client_max_size=MAX_BODY, middlewares=[errors])
    app.cleanup_ctx.append(_database(database_url, seed_products))
    for module in (catalog, inventory, customers, carts, checkout, orders, pages):
        app.add_routes(module.routes)
    app.router.add_get("/healthz", healthz)
    return app


def _database(url: str, seed_products: int | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def database(app: web.Application) -> AsyncIterator[None]:
        await asyncio.to_thread(upgrade, url)
        db = Database(url)
        try:
            if seed_products is not None:
                await asyncio.to_thread(_seed_if_empty, db, seed_products)
            app[DATABASE] = db
            yield
        finally:
            db.close()
    return database


def _seed_if_empty(db: Database, products: int) -> None:
    existing = product_count(db.engine)
    if existing:
        log.info("database already holds %d products; not seeding", existing)
        return
    seed(db.engine, products)
    log.info("seeded %d products", products)


async def healthz(request: web.Request) -> web.Response:
    """Liveness that includes the database: a shop that cannot query is not healthy."""
    await request.app[DATABASE].read(lambda session: session.execute(text("SELECT 1")))
    return json_response(request, {"status": "ok"})
