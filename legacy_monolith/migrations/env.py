"""Alembic environment: the URL comes from the app's config, never from alembic.ini.

`legacy_monolith.migrate.upgrade(url)` passes the URL in `config.attributes`; a developer
running plain `alembic` gets `DATABASE_URL` or the default SQLite file, like the server.

Start-up runs `upgrade head` in every shop process, so concurrent start-ups must not race:
on PostgreSQL an advisory lock serialises them; on SQLite the migration runs in one
`BEGIN IMMEDIATE` transaction (SQLAlchemy's recipe for real SQLite transactions), so a
second process waits for the write lock and then finds the schema already at head.
"""
from __future__ import annotations

from alembic import context
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from legacy_monolith.config import database_url
from legacy_monolith.models import Base
from strangler.db import make_engine

# Any constant will do as long as it is the legacy shop's own.
_MIGRATION_LOCK = 0x5EED_0001


def _sqlite_transactional_ddl(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _driver_stays_out(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # pysqlite would autocommit each DDL statement

    @event.listens_for(engine, "begin")
    def _take_write_lock(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def run_migrations_online() -> None:
    url = context.config.attributes.get("database_url") or database_url()
    engine = make_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        _sqlite_transactional_ddl(engine)
    try:
        with engine.connect() as connection:
            postgres = connection.dialect.name == "postgresql"
            if postgres:
                connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
                connection.commit()
            try:
                context.configure(connection=connection, target_metadata=Base.metadata,
                                  render_as_batch=sqlite, transactional_ddl=True)
                with context.begin_transaction():
                    context.run_migrations()
            finally:
                if postgres:
                    connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
                    connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run against a database")
run_migrations_online()
