"""The typed application keys of the catalog service, in one place."""
from __future__ import annotations

from sqlalchemy.engine import Engine
from aiohttp import web

DATABASE_URL = web.AppKey("database_url", str)
ENGINE = web.AppKey("engine", Engine)
