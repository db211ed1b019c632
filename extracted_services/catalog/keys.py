"""The typed application and request keys of the catalog service, in one place."""
from __future__ import annotations

from aiohttp import web
from sqlalchemy.engine import Engine

DATABASE_URL = web.AppKey("database_url", str)
ENGINE = web.AppKey("engine", Engine)
# Per request: the id echoed in the body and headers, and whether a write ran that was not
# rolled back as a rehearsal (set before it starts: it may have committed).
REQUEST_ID = web.RequestKey("request_id", str)
WROTE = web.RequestKey("wrote", bool)
