"""Bring the service's database to the latest alembic revision (run at start-up and by the CLI)."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

from strangler.db import ALEMBIC_LOCK

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config() -> Config:
    """Configured in code, not by an alembic.ini: the database URL comes from the app's config."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """All or nothing, on SQLite too: pysqlite runs DDL outside any transaction unless one was
    opened explicitly, so a migration failing half-way would leave half a schema behind.
    One upgrade at a time per process: alembic keeps its run state in module globals."""
    config = alembic_config()
    with ALEMBIC_LOCK, engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
