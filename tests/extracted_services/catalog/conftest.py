"""The catalog service served over real HTTP on loopback, on SQLite and on PostgreSQL."""
from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from extracted_services.catalog.app import create_app
from strangler.db import make_engine, sqlite_url
from tests.conftest import free_port

SEEDED = 60  # products seeded into every test store


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "catalog.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
async def base_url(database_url) -> AsyncIterator[str]:
    """The service, migrated and seeded with SEEDED products, listening on a free port."""
    runner = web.AppRunner(create_app(database_url, seed_products=SEEDED))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def snapshot(database_url):
    """A function returning every row of the service's tables, to prove nothing was written."""
    engine = make_engine(database_url)

    def rows() -> dict[str, list[tuple]]:
        with engine.connect() as conn:
            return {table: [tuple(r) for r in conn.exec_driver_sql(
                        f"SELECT * FROM {table} ORDER BY 1")]
                    for table in ("categories", "products")}

    yield rows
    engine.dispose()
