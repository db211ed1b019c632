"""One error path for the whole shop: JSON errors under /api, HTML error pages elsewhere.

aiohttp's own refusals (unknown route, wrong method, body above `client_max_size`) are
turned into the same `{"error": {code, message}}` shape as the handlers' errors; an
unexpected exception is logged with the request id and answered with a 500 quoting it
(never the exception text, which may hold data). A client that hung up mid-request (reading
its body raises ConnectionResetError) is not a server fault: one INFO line, no traceback, and
the nginx-style 499 instead of a 500, which nobody would receive anyway.
"""
from __future__ import annotations

import logging

from aiohttp import web

from legacy_monolith.errors import ApiError
from legacy_monolith.pages import error_page
from legacy_monolith.responses import html_response, json_response, request_id
from legacy_monolith.validation import MAX_BODY
from strangler.serving import client_went_away, client_went_away_response

log = logging.getLogger(__name__)


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> ApiError:
    if exc.status == 404:
        return ApiError(404, f"nothing here: {request.method} {request.path} is not a route of "
                             "this shop")
    if exc.status == 405 and isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return ApiError(405, f"method {request.method} is not allowed on {request.path}; "
                             f"use one of {allowed}")
    if exc.status == 413:
        return ApiError(413, f"request body is larger than {MAX_BODY} bytes (1 MiB): send less")
    return ApiError(exc.status, exc.reason)


@web.middleware
async def errors(request: web.Request, handler) -> web.StreamResponse:
    allow: str | None = None
    try:
        return await handler(request)
    except ApiError as exc:
        error = exc
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if isinstance(exc, web.HTTPMethodNotAllowed):
            allow = ",".join(sorted(exc.allowed_methods))
        error = _from_http_exception(request, exc)
    except Exception as exc:
        if client_went_away(request, exc):
            return client_went_away_response(request, log, request_id(request))
        log.exception("unhandled error (request id %s) on %s %s",
                      request_id(request), request.method, request.path)
        error = ApiError(500, f"internal error; quote request id {request_id(request)}")
    if request.path.startswith("/api/") or request.path == "/healthz":
        response = json_response(request, error.body(), status=error.status)
    else:
        response = html_response(request, error_page(error), status=error.status)
    if allow:
        response.headers["Allow"] = allow
    return response
