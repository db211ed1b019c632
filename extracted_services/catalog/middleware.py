"""Cross-cutting response rules: the noise every response carries, and errors as JSON.

Noise, exactly as legacy sends it (docs/catalog-api.md): `generated_at` and `request_id` at
the top of every JSON object, errors included, and the `X-Generated-At`/`X-Request-Id`
headers. Every answer to a request carrying `X-Strangler-Dry-Run: 1` says
`X-Strangler-Dry-Run: rolled-back` unless a real write ran for it: rehearsed writes, and
refusals where nothing was written (router 404/405, validation errors), so the proxy's shadow
replay can trust the header on every answer.
"""
from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from extracted_services.catalog.keys import REQUEST_ID, WROTE
from extracted_services.catalog.problems import ApiError, from_http_exception
from extracted_services.catalog.validation import MAX_BODY_BYTES
from strangler.serving import client_went_away, client_went_away_response

log = logging.getLogger(__name__)
_MAX_REQUEST_ID = 200
DRY_RUN_HEADER = "X-Strangler-Dry-Run"


def request_id(request: web.Request) -> str:
    """The caller's `X-Request-Id` when it is a sane token, else a fresh UUID4 (kept per request).

    Echoing it lets a shadow pair be joined up across the two apps' logs.
    """
    if REQUEST_ID not in request:
        given = request.headers.get("X-Request-Id", "")
        sane = 0 < len(given) <= _MAX_REQUEST_ID and given.isprintable()
        request[REQUEST_ID] = given if sane else str(uuid.uuid4())
    return request[REQUEST_ID]


def asks_dry_run(request: web.Request) -> bool:
    """The request carries `X-Strangler-Dry-Run: 1` (other values are refused by the writes)."""
    return request.headers.get(DRY_RUN_HEADER, "").strip() == "1"


def _stamp(request: web.Request, response: web.Response) -> web.Response:
    response.headers["X-Request-Id"] = request_id(request)
    if asks_dry_run(request) and not request.get(WROTE):
        response.headers[DRY_RUN_HEADER] = "rolled-back"
    return response


def _generated_at() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def json_response(request: web.Request, body: dict[str, Any], status: int = 200) -> web.Response:
    """A JSON object plus the noise fields `generated_at` and `request_id`."""
    when = _generated_at()
    payload = {**body, "generated_at": when, "request_id": request_id(request)}
    response = web.Response(text=json.dumps(payload), status=status,
                            content_type="application/json", headers={"X-Generated-At": when})
    return _stamp(request, response)


def no_content(request: web.Request) -> web.Response:
    return _stamp(request, web.Response(status=204, headers={"X-Generated-At": _generated_at()}))


def error_response(request: web.Request, error: ApiError) -> web.Response:
    return json_response(request, {"error": {"code": error.code, "message": error.message}},
                         status=error.status)


@web.middleware
async def errors_as_json(request: web.Request, handler) -> web.StreamResponse:
    """Every refusal in the contract's error shape, whether ours or aiohttp's (404/405/413)."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(request, from_http_exception(request, exc, MAX_BODY_BYTES))
        if isinstance(exc, web.HTTPMethodNotAllowed):
            response.headers["Allow"] = ",".join(sorted(exc.allowed_methods))
        return response
    except Exception as exc:
        if client_went_away(request, exc):
            return client_went_away_response(request, log, request_id(request))
        log.exception("unhandled error (request id %s) on %s %s",
                      request_id(request), request.method, request.path)
        return error_response(request, ApiError(
            500, f"internal error; quote request id {request_id(request)}"))
