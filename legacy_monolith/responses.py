"""Responses with the legacy shop's documented noise: `generated_at` and `request_id`.

Every JSON object the shop sends carries both at top level (errors included), plus the
`X-Generated-At` and `X-Request-Id` headers; HTML pages print a "generated at" footer.
Shadow comparison must learn to ignore exactly these, so they are real on purpose.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from aiohttp import web

from legacy_monolith.keys import DRY_RUN, REQUEST_ID

_MAX_REQUEST_ID = 200


def utcnow() -> datetime:
    """Naive UTC at whole seconds: what the legacy `timestamp` columns hold."""
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


def timestamp(value: datetime) -> str:
    """A stored (naive UTC) time as the contract writes it: `2026-01-01T00:00:00Z`."""
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def money(value: Decimal) -> float:
    """NUMERIC(10,2) as a JSON number (49.99, 5.0): the contract's price shape."""
    return float(value)


def generated_at() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def request_id(request: web.Request) -> str:
    """The caller's `X-Request-Id` when it is a sane token, else a fresh UUID4 (kept per request)."""
    if REQUEST_ID not in request:
        given = request.headers.get("X-Request-Id", "")
        sane = 0 < len(given) <= _MAX_REQUEST_ID and given.isprintable()
        request[REQUEST_ID] = given if sane else str(uuid.uuid4())
    return request[REQUEST_ID]


def stamp(request: web.Request, response: web.StreamResponse, when: str) -> None:
    response.headers["X-Generated-At"] = when
    response.headers["X-Request-Id"] = request_id(request)
    if request.get(DRY_RUN):
        response.headers["X-Strangler-Dry-Run"] = "rolled-back"


def json_response(request: web.Request, body: dict[str, Any], status: int = 200) -> web.Response:
    when = generated_at()
    payload = {**body, "generated_at": when, "request_id": request_id(request)}
    response = web.Response(text=json.dumps(payload), status=status,
                            content_type="application/json")
    stamp(request, response, when)
    return response


def no_content(request: web.Request) -> web.Response:
    response = web.Response(status=204)
    stamp(request, response, generated_at())
    return response


def html_response(request: web.Request, render: Callable[[str], str],
                  status: int = 200) -> web.Response:
    """`render(generated_at)` returns the whole page, so its footer shows the same time as the header."""
    when = generated_at()
    response = web.Response(text=render(when), status=status, content_type="text/html")
    stamp(request, response, when)
    return response
