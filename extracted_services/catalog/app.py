"""The catalog service's aiohttp application: its own store, same public contract as legacy."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial

from aiohttp import web

from extracted_services.catalog import migrate, seed
from extracted_services.catalog.fault import fault_middlewares
from extracted_services.catalog.handlers import routes
from extracted_services.catalog.keys import DATABASE_URL, ENGINE
from extracted_services.catalog.middleware import errors_as_json
from extracted_services.catalog.validation import MAX_BODY_BYTES
from strangler.db import make_engine


def create_app(database_url: str, *, seed_products: int | None = None) -> web.Application:
    """The service on `database_url`, migrated at start-up; seeded when empty and asked to."""
    app = web.Application(middlewares=[*fault_middlewares(), errors_as_json],
                          client_max_size=MAX_BODY_BYTES)
    app[DATABASE_URL] = database_url
    app.cleanup_ctx.append(partial(_database, seed_products=seed_products))
    app.add_routes(routes)
    return app


async def _database(app: web.Application, seed_products: int | None) -> AsyncIterator[None]:
    engine = make_engine(app[DATABASE_URL])

    def prepare() -> None:
        migrate.upgrade(engine)
        if seed_products is not None:
            seed.seed(engine, seed_products)

    await asyncio.get_running_loop().run_in_executor(None, prepare)
    app[ENGINE] = engine
    yield
    engine.dispose()
