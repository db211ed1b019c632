"""The legacy shop on both backends: each API test runs once on SQLite and once on PostgreSQL.

The shop is served over real HTTP on a loopback port the OS picks, from a freshly migrated
and seeded database, and torn down (server, engine, database) after the test. On PostgreSQL
the API tests share one database per session, emptied before every test (TRUNCATE … RESTART
IDENTITY): a new database per test costs seconds of CREATE/DROP on a busy machine. Tests
about migrations themselves use `fresh_database_url`, a brand-new database.
"""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import MetaData, create_engine, select, text
from sqlalchemy.engine import Engine

from legacy_monolith.app import create_app
from legacy_monolith.migrate import upgrade
from legacy_monolith.models import Base
from strangler.db import make_engine, sqlite_url
from tests.legacy_monolith.legacy_shop import SEEDED_PRODUCTS


@pytest.fixture(scope="session")
def shared_pg_url(pg_admin_url) -> Iterator[str]:
    """One migrated PostgreSQL database for this session's API tests, dropped at the end."""
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    name = f"legacy_api_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = pg_admin_url.rsplit("/", 1)[0] + "/" + name
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _empty(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            tables = ", ".join(Base.metadata.tables)
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """An empty, migrated database (the shop seeds it when it starts)."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "legacy.db")
    url = request.getfixturevalue("shared_pg_url")
    _empty(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database_url(request, tmp_path) -> str:
    """A brand-new database that has never seen a migration."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "fresh.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
async def shop(database_url) -> AsyncIterator[TestClient]:
    """An HTTP client for a seeded shop served on 127.0.0.1 (a port the OS chose)."""
    server = TestServer(create_app(database_url, seed_products=SEEDED_PRODUCTS), host="127.0.0.1")
    async with TestClient(server) as client:
        yield client


@pytest.fixture
def engine(database_url) -> Iterator[Engine]:
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
