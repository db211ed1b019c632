"""Turn query strings and JSON bodies into checked values, or a 4xx that names the field.

Prices arrive as JSON numbers and are parsed as Decimal (never float) so "at most two
decimals" is exact; they leave as integer cents.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping

from aiohttp import web

from extracted_services.catalog.problems import ApiError, bad_request

MAX_BODY_BYTES = 1024 * 1024
MAX_LIMIT = 100
DEFAULT_LIMIT = 20
MAX_PRICE = Decimal("99999999.99")  # what legacy's NUMERIC(10,2) can hold
_INTEGER = re.compile(r"[0-9]+")
_CURRENCY = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True, slots=True)
class ListQuery:
    q: str | None
    category: str | None
    limit: int
    offset: int


def list_query(params: Mapping[str, str]) -> ListQuery:
    limit = _int_param(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _int_param(params, "offset", 0, 0, None)
    return ListQuery(q=params.get("q") or None, category=params.get("category") or None,
                     limit=limit, offset=offset)


def _int_param(params: Mapping[str, str], name: str, default: int, low: int,
               high: int | None) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    value = int(raw) if _INTEGER.fullmatch(raw) else None
    if value is None or value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise bad_request(f"{name} must be an integer {bounds}")
    return value


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; 415 for another media type, 413 past 1 MiB, 400 if malformed."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    if request.content_type != "application/json":
        raise ApiError(415, "send the body as application/json")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, f"the body is larger than {MAX_BODY_BYTES} bytes") from None
    try:
        body = json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
    except ValueError as exc:  # includes JSONDecodeError and UnicodeDecodeError
        raise bad_request(f"malformed JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


@dataclass(frozen=True, slots=True)
class NewProduct:
    sku: str
    name: str
    description: str
    price_cents: int
    currency: str
    category: str


CREATE_FIELDS = frozenset({"sku", "name", "description", "price", "currency", "category"})
PATCH_FIELDS = frozenset({"name", "description", "price", "category"})


def new_product(body: dict[str, Any]) -> NewProduct:
    _no_unknown_fields(body, CREATE_FIELDS)
    for field in ("sku", "name", "price", "category"):
        if field not in body:
            raise bad_request(f"{field} is required")
    return NewProduct(
        sku=_text(body, "sku", 64),
        name=_text(body, "name", 200),
        description=_text(body, "description", 10_000, default="", allow_empty=True),
        price_cents=price_cents(body["price"]),
        currency=_currency(body.get("currency", "EUR")),
        category=_text(body, "category", 64),
    )


def product_changes(body: dict[str, Any]) -> dict[str, Any]:
    """The validated PATCH fields, keyed by the service's column names."""
    _no_unknown_fields(body, PATCH_FIELDS)
    if not body:
        raise bad_request(f"send at least one of {', '.join(sorted(PATCH_FIELDS))}")
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["title"] = _text(body, "name", 200)
    if "description" in body:
        changes["description"] = _text(body, "description", 10_000, allow_empty=True)
    if "price" in body:
        changes["price_cents"] = price_cents(body["price"])
    if "category" in body:
        changes["category_slug"] = _text(body, "category", 64)
    return changes


def price_cents(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise bad_request("price must be a number")
    price = Decimal(value)
    if price < 0:
        raise bad_request("price must be >= 0")
    if price > MAX_PRICE:
        raise bad_request(f"price must be <= {MAX_PRICE}")
    cents = price.scaleb(2)
    if cents != cents.to_integral_value():
        raise bad_request("price must have at most two decimals")
    return int(cents)


def _no_unknown_fields(body: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise bad_request(f"unknown field {unknown[0]}; allowed: {', '.join(sorted(allowed))}")


def _text(body: dict[str, Any], field: str, max_length: int, default: str | None = None,
          allow_empty: bool = False) -> str:
    value = body.get(field, default)
    if not isinstance(value, str):
        raise bad_request(f"{field} must be a string")
    if not allow_empty and not value.strip():
        raise bad_request(f"{field} must not be empty")
    if len(value) > max_length:
        raise bad_request(f"{field} must be at most {max_length} characters")
    return value


def _currency(value: Any) -> str:
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise bad_request("currency must be a three-letter ISO 4217 code such as EUR")
    return value
