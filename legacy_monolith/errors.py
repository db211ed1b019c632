"""API errors as values: every 4xx/5xx carries `{"error": {"code", "message"}}` (docs/catalog-api.md)."""
from __future__ import annotations

CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 409: "conflict",
         413: "payload_too_large", 415: "unsupported_media_type", 500: "internal_error"}


class ApiError(Exception):
    """Raised by handlers and validators; the error middleware renders it (JSON or HTML)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = CODES.get(status, "error")
        self.message = message

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def conflict(message: str) -> ApiError:
    return ApiError(409, message)
