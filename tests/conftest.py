"""Fixtures shared by the whole suite: real PostgreSQL, real Kafka, free loopback ports.

`make test` starts PostgreSQL and Kafka and exports STRANGLER_TEST_PG_URL and
STRANGLER_TEST_KAFKA. A test that needs them and finds them missing fails loudly:
nothing is skipped.
"""
from __future__ import annotations

import os
import socket
import time
import uuid

import pytest
from aiohttp import web
from sqlalchemy import create_engine, text

from strangler.db import normalise_url


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it), never one handed
    out before in this run: two calls in a row may otherwise get the same just-released port
    (a demo once started with its proxy and admin API on one port)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


async def serve_app(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve an aiohttp app on a free loopback port; the caller cleans the runner up."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
def unused_port() -> int:
    return free_port()


def _require_env(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: {what} is needed; run the suite with `make test`, "
                    "which starts it.", pytrace=False)
    return value


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """URL of the maintenance database of the PostgreSQL started by `make test`."""
    return normalise_url(_require_env("STRANGLER_TEST_PG_URL", "PostgreSQL"))


@pytest.fixture
def pg_database(pg_admin_url):
    """Factory: create a fresh, uniquely named PostgreSQL database; all are dropped afterwards."""
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    def make(prefix: str = "t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return pg_admin_url.rsplit("/", 1)[0] + "/" + name

    yield make
    with admin.connect() as conn:
        for name in created:
            _drop_database(conn, name)
    admin.dispose()


def _drop_database(conn, name: str, attempts: int = 40) -> None:
    """Drop a test database, its replication slots first.

    A walsender still counts as active for a moment after its client went away, so the slot
    and the database are retried until they are released (bounded, then the error surfaces).
    """
    for attempt in range(attempts):
        try:
            conn.execute(text(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                "WHERE database = :n AND active"), {"n": name})
            conn.execute(text(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE database = :n AND NOT active"), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            time.sleep(0.25)


@pytest.fixture
def pg_url(pg_database) -> str:
    """One fresh PostgreSQL database for this test."""
    return pg_database()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """bootstrap.servers of the Kafka broker started by `make test`."""
    return _require_env("STRANGLER_TEST_KAFKA", "the Kafka broker")
