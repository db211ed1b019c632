"""API errors as values: every 4xx/5xx carries the contract's `{"error": {code, message}}` body."""
from __future__ import annotations

from aiohttp import web

CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 409: "conflict",
         413: "payload_too_large", 415: "unsupported_media_type", 500: "internal_error"}


class ApiError(Exception):
    """Raised by handlers and validators; the middleware turns it into the JSON error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = CODES.get(status, "error")
        self.message = message


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def conflict(message: str) -> ApiError:
    return ApiError(409, message)


def from_http_exception(request: web.BaseRequest, exc: web.HTTPException,
                        max_body: int) -> ApiError:
    """aiohttp's own refusals (unknown route, wrong method, body too large) in the same shape,
    worded as legacy words them so the two apps compare equal."""
    if exc.status == 404:
        return ApiError(404, f"nothing here: {request.method} {request.path} is not a route of "
                             "this shop")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return ApiError(405, f"method {request.method} is not allowed on {request.path}; "
                             f"use one of {allowed}")
    if exc.status == 413:
        return too_large(max_body)
    return ApiError(exc.status, exc.reason)


def too_large(max_body: int) -> ApiError:
    return ApiError(413, f"request body is larger than {max_body} bytes (1 MiB): send less")
