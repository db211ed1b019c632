"""`GET /admin/shadow`: the shadow report served live (JSON by default).

Mount the routes inside the admin app, behind its bearer token:
`admin_app.add_routes(shadow_routes(store_url))`. Query: `capability`, `since` (15m, 1h…),
`format=json|html|markdown|text`.
"""
from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from proxy.shadow.formats import CONTENT_TYPES, FORMATS, parse_window, render
from proxy.shadow.report import build_report
from proxy.shadow.store import ShadowStore


def shadow_routes(store_url: str) -> list[web.RouteDef]:
    store: ShadowStore | None = None

    async def shadow_report(request: web.Request) -> web.Response:
        nonlocal store
        fmt = request.query.get("format", "json")
        if fmt not in FORMATS:
            raise web.HTTPBadRequest(text=f"format {fmt!r} is not one of {', '.join(FORMATS)}\n")
        since_s = None
        if request.query.get("since"):
            try:
                since_s = parse_window(request.query["since"])
            except ValueError as exc:
                raise web.HTTPBadRequest(text=f"{exc}\n") from None
        if store is None:
            store = ShadowStore(store_url)
        # The report reads the database: keep that off the admin app's event loop.
        try:
            report = await asyncio.to_thread(build_report, store,
                                             capability=request.query.get("capability"),
                                             since_s=since_s)
        except SQLAlchemyError as exc:
            raise web.HTTPServiceUnavailable(
                text=f"shadow store unavailable ({type(exc).__name__}); check that the "
                     "database is up\n") from None
        return web.Response(text=render(report, fmt), content_type=CONTENT_TYPES[fmt],
                            charset="utf-8")

    return [web.get("/admin/shadow", shadow_report)]
