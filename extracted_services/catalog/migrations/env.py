"""Alembic environment: runs on the connection the service hands over (see migrate.py).

The version table has the service's own name: pointed by mistake at the legacy database
(whose `alembic_version` also says "0001"), the service fails loudly on its first CREATE
instead of believing the schema is already there.
"""
from __future__ import annotations

from alembic import context

from extracted_services.catalog.models import Base

VERSION_TABLE = "catalog_alembic_version"

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata,
                  version_table=VERSION_TABLE,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
