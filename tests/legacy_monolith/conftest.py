"""The legacy shop on both backends: each API test runs once on SQLite and once on PostgreSQL.

The shop is served over real HTTP on a loopback port the OS picks, from a freshly
migrated and seeded database, and torn down (server, engine, database) after the test.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import MetaData, select
from sqlalchemy.engine import Engine

from legacy_monolith.app import create_app
from strangler.db import make_engine, sqlite_url
from tests.legacy_monolith.legacy_shop import SEEDED_PRODUCTS


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "legacy.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
async def shop(database_url) -> AsyncIterator[TestClient]:
    """An HTTP client for a seeded shop served on 127.0.0.1 (a port the OS chose)."""
    server = TestServer(create_app(database_url, seed_products=SEEDED_PRODUCTS), host="127.0.0.1")
    async with TestClient(server) as client:
        yield client


@pytest.fixture
def engine(database_url) -> Engine:
    """A separate engine on the shop's database, to check what the API did (or did not) write."""
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def snapshot(engine) -> Callable[[], dict[str, list[tuple]]]:
    """Every row of every table, ordered: equal snapshots mean nothing was written."""
    def take() -> dict[str, list[tuple]]:
        metadata = MetaData()
        metadata.reflect(engine)
        with engine.connect() as connection:
            return {name: sorted(tuple(row) for row in connection.execute(select(table)))
                    for name, table in metadata.tables.items()}
    return take
