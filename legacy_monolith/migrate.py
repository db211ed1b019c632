"""Bring a legacy database to the newest schema with alembic (idempotent: safe at every start-up).

Across processes, env.py serialises concurrent upgrades with database locks. Within one
process a lock is needed too: alembic installs `alembic.context`/`alembic.op` as module
globals for the duration of a run, so two runs on two threads would trample each other.
"""
from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_IN_PROCESS = threading.Lock()


def alembic_config(database_url: str) -> Config:
    """An alembic config built in code: no alembic.ini, the URL handed to env.py directly."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    with _IN_PROCESS:
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
