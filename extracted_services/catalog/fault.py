"""Test-only fault injection: a deliberately broken release of the catalog service.

`STRANGLER_CATALOG_FAULT=error-rate:0.5` makes the service answer 500 to that share of its API
GETs, drawn at random (evenly spaced failures would fall in step with interleaved callers, e.g.
always on the proxy's shadow copies and never on client reads). The end-to-end scenario
(`strangler/scenario.py`) starts a "broken release" this way to prove the proxy's automatic
rollback; unset (the default), the middleware is not installed at all.
"""
from __future__ import annotations

import os
import random

from aiohttp import web

FAULT_ENV = "STRANGLER_CATALOG_FAULT"


def fault_middlewares(setting: str | None = None) -> list:
    """The middleware the setting asks for (none when unset); a malformed setting fails start-up."""
    setting = os.environ.get(FAULT_ENV, "") if setting is None else setting
    if not setting.strip():
        return []
    kind, _, value = setting.partition(":")
    try:
        rate = float(value)
    except ValueError:
        rate = -1.0
    if kind != "error-rate" or not 0 < rate <= 1:
        raise ValueError(f"{FAULT_ENV}={setting!r} is not understood; use error-rate:R "
                         "with 0 < R <= 1, or unset it")

    @web.middleware
    async def broken_release(request: web.Request, handler):
        if request.method == "GET" and request.path.startswith("/api/") \
                and random.random() < rate:
            return web.json_response(
                {"error": {"code": "internal", "message": f"injected fault ({FAULT_ENV})"}},
                status=500)
        return await handler(request)

    return [broken_release]
