"""The admin API (aiohttp, its own port, loopback by default), every endpoint behind a bearer token.

    GET  /admin/status   rules version, load time, last reload error, per-capability stage and
                         percent, requests per backend, errors, fallbacks, breaker states
    POST /admin/reload   validate and swap the rules; 422 with the problems when invalid
    GET  /metrics        Prometheus text (totals across workers)
    plus any routes the runtime was given (the shadow report: GET /admin/shadow)
"""
from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING, Sequence

from aiohttp import web

if TYPE_CHECKING:
    from proxy.runtime import Runtime

RUNTIME = web.AppKey("runtime", "Runtime")
TOKEN = web.AppKey("token", bytes)


@web.middleware
async def require_token(request: web.Request, handler):
    """401 unless `Authorization: Bearer <token>` matches (constant-time comparison)."""
    given = request.headers.get("Authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                             request.app[TOKEN]):
        raise web.HTTPUnauthorized(
            text="admin API: send Authorization: Bearer <token> (see --admin-token-file)\n",
            headers={"WWW-Authenticate": 'Bearer realm="strangler-admin"'})
    return await handler(request)


async def status(request: web.Request) -> web.Response:
    return web.json_response(request.app[RUNTIME].status(), dumps=_dumps)


async def reload(request: web.Request) -> web.Response:
    result = await request.app[RUNTIME].reload("admin")
    body = {"ok": result.ok, "version": result.version, "problems": list(result.problems),
            "restarting_workers": list(result.restarting)}
    return web.json_response(body, status=200 if result.ok else 422, dumps=_dumps)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=request.app[RUNTIME].metrics_text(),
                        content_type="text/plain", charset="utf-8",
                        headers={"X-Prometheus-Format": "0.0.4"})


def _dumps(value: object) -> str:
    return json.dumps(value, indent=2, default=str)


def make_admin_app(runtime: "Runtime", token: str,
                   extra_routes: Sequence[web.RouteDef] = ()) -> web.Application:
    """`extra_routes` (e.g. proxy.shadow.admin.shadow_routes) sit behind the same token."""
    app = web.Application(middlewares=[require_token])
    app[RUNTIME] = runtime
    app[TOKEN] = token.encode()
    app.router.add_get("/admin/status", status)
    app.router.add_post("/admin/reload", reload)
    app.router.add_get("/metrics", metrics)
    app.router.add_routes(extra_routes)
    return app
