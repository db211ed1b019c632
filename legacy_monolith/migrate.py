"""Bring a legacy database to the newest schema with alembic (idempotent: safe at every start-up).

Across processes, env.py serialises concurrent upgrades with database locks. Within one
process, `strangler.db.ALEMBIC_LOCK` does (alembic keeps its run state in module globals).
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from strangler.db import ALEMBIC_LOCK

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An alembic config built in code: no alembic.ini, the URL handed to env.py directly."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    with ALEMBIC_LOCK:
        command.upgrade(alembic_config(database_url), revision)


def current_revision(database_url: str) -> str | None:
    """The revision the database is at (None before the first migration)."""
    from alembic.runtime.migration import MigrationContext
    from strangler.db import make_engine

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
