"""Typed keys for what the app and each request carry, in one place."""
from __future__ import annotations

from aiohttp import web

from legacy_monolith.database import Database

DATABASE = web.AppKey("database", Database)
# The id echoed in the response's noise fields, and whether this request's writes roll back.
REQUEST_ID = web.RequestKey("legacy.request_id", str)
DRY_RUN = web.RequestKey("legacy.dry_run", bool)
