"""The typed application and request keys of the catalog service, in one place."""
from __future__ import annotations

from aiohttp import web
from sqlalchemy.engine import Engine

DATABASE_URL = web.AppKey("database_url", str)
ENGINE = web.AppKey("engine", Engine)
# Per request: the id echoed in the body and headers, and whether this write is a rehearsal.
REQUEST_ID = web.RequestKey("request_id", str)
DRY_RUN = web.RequestKey("dry_run", bool)
