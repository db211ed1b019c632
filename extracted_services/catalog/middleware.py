"""Cross-cutting response rules: the noise fields every JSON object carries, and errors as JSON."""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from extracted_services.catalog.problems import ApiError, from_http_exception

log = logging.getLogger(__name__)
REQUEST_ID = "X-Request-Id"


def json_response(request: web.Request, body: dict[str, Any], status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    """A JSON object plus the contract's noise fields: `generated_at` and `request_id`.

    `request_id` echoes the caller's X-Request-Id so a shadow pair can be joined up.
    """
    generated_at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    body = {**body, "generated_at": generated_at,
            "request_id": request.headers.get(REQUEST_ID) or str(uuid.uuid4())}
    return web.json_response(body, status=status,
                             headers={"X-Generated-At": generated_at, **(headers or {})})


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
        return error_response(request, from_http_exception(request, exc))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(request, ApiError(500, "internal error; see the service log"))
