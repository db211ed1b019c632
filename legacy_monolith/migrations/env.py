"""Alembic environment: the URL comes from the app's config, never from alembic.ini.

`legacy_monolith.migrate.upgrade(url)` passes the URL in `config.attributes`; a developer
running plain `alembic` gets `DATABASE_URL` or the default SQLite file, like the server.
On PostgreSQL an advisory lock serialises concurrent start-ups, so two shops booting at
once cannot both try to create the tables.
"""
from __future__ import annotations

from alembic import context
from sqlalchemy import text

from legacy_monolith.config import database_url
from legacy_monolith.models import Base
from strangler.db import make_engine

# Any constant will do as long as it is the legacy shop's own.
_MIGRATION_LOCK = 0x5EED_0001


def run_migrations_online() -> None:
    url = context.config.attributes.get("database_url") or database_url()
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            postgres = connection.dialect.name == "postgresql"
            if postgres:
                connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
                connection.commit()
            try:
                context.configure(connection=connection, target_metadata=Base.metadata,
                                  render_as_batch=connection.dialect.name == "sqlite")
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
