"""Turn query strings and JSON bodies into checked values, or a 4xx that names the field.

Refusals word-for-word as the legacy shop words them (docs/catalog-api.md: the two apps are
compared field by field, error messages included). Prices are parsed as Decimal, never
float, so "at most two decimals" is exact; they leave as integer cents.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aiohttp import web

from extracted_services.catalog.problems import ApiError, bad_request, not_found, too_large

MAX_BODY_BYTES = 1024 * 1024
# Legacy's ids and offsets are 32-bit integers; beyond that nothing can exist on either side.
MAX_INT = 2**31 - 1
MAX_PRICE = Decimal("99999999.99")  # what legacy's NUMERIC(10,2) can hold
MAX_QUERY = 200
CREATE_FIELDS = ("sku", "name", "description", "price", "currency", "category")
PATCH_FIELDS = ("name", "description", "price", "category")
TEXT_LIMITS = {"sku": 64, "name": 200, "description": 10_000, "category": 100, "currency": 3}
DEFAULT_CURRENCY = "EUR"


@dataclass(frozen=True, slots=True)
class ListQuery:
    q: str
    category: str
    limit: int
    offset: int


def list_query(params: Mapping[str, str]) -> ListQuery:
    q = params.get("q", "").strip()
    if len(q) > MAX_QUERY:
        raise bad_request(f"query parameter 'q' is longer than {MAX_QUERY} characters")
    return ListQuery(q=q, category=params.get("category", "").strip(),
                     limit=_query_int(params, "limit", 20, 1, 100),
                     offset=_query_int(params, "offset", 0, 0, MAX_INT))


def _query_int(params: Mapping[str, str], name: str, default: int, minimum: int,
               maximum: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"query parameter {name!r} must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise bad_request(f"query parameter {name!r} must be between {minimum} and {maximum}, "
                          f"got {value}")
    return value


def path_id(raw: str, what: str) -> int:
    """An id from the path; anything that cannot be an id is simply not found."""
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) <= MAX_INT:
        raise not_found(f"{what} {raw!r} does not exist")
    return int(raw)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; 413 past 1 MiB, 400 if empty or malformed, 415 if not JSON."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise too_large(MAX_BODY_BYTES)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:  # chunked bodies: aiohttp counts while reading
        raise too_large(MAX_BODY_BYTES) from None
    if not raw.strip():
        raise bad_request("request body is empty: send a JSON object")
    if request.content_type != "application/json":
        raise ApiError(415, f"unsupported content type {request.content_type!r}: "
                            "send the body as application/json")
    try:
        body = json.loads(raw.decode("utf-8"), parse_float=Decimal, parse_constant=_not_json)
    except UnicodeDecodeError:
        raise bad_request("malformed JSON: the body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise bad_request(f"malformed JSON: {exc.msg} at line {exc.lineno} "
                          f"column {exc.colno}") from None
    except ValueError as exc:  # NaN/Infinity, or an integer too long to convert
        raise bad_request(f"malformed JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request(f"the body must be a JSON object, got {type(body).__name__}")
    return body


def _not_json(name: str) -> Any:
    """Python's json accepts NaN and Infinity; JSON (RFC 8259) does not."""
    raise ValueError(f"{name} is not a JSON number")


@dataclass(frozen=True, slots=True)
class NewProduct:
    sku: str
    name: str
    description: str
    price_cents: int
    currency: str
    category: str


def new_product(body: dict[str, Any]) -> NewProduct:
    _only_fields(body, CREATE_FIELDS)
    sku, name, category = (_text(body, field) for field in ("sku", "name", "category"))
    description = _text(body, "description", required=False, allow_empty=True)
    cents = _price_cents(body, required=True)
    currency = _currency(body)
    return NewProduct(sku=sku, name=name, description=description or "", price_cents=cents,
                      currency=currency or DEFAULT_CURRENCY, category=category)


def product_changes(body: dict[str, Any]) -> dict[str, Any]:
    """The validated PATCH fields, keyed by the service's column names."""
    _only_fields(body, PATCH_FIELDS)
    checked = {
        "title": _text(body, "name", required=False),
        "category_slug": _text(body, "category", required=False),
        "description": _text(body, "description", required=False, allow_empty=True),
        "price_cents": _price_cents(body, required=False),
    }
    changes = {column: value for column, value in checked.items() if value is not None}
    if not changes:
        raise bad_request(f"nothing to change: send at least one of {', '.join(PATCH_FIELDS)}")
    return changes


def _only_fields(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Refuse unknown fields: a typo (`"prise"`) must not be silently ignored."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise bad_request(f"unknown field {unknown[0]!r}: allowed fields are {', '.join(allowed)}")


def _text(body: dict[str, Any], name: str, *, required: bool = True,
          allow_empty: bool = False) -> str | None:
    if name not in body:
        if required:
            raise bad_request(f"field {name!r} is required")
        return None
    value = body[name]
    if not isinstance(value, str):
        raise bad_request(f"field {name!r} must be a string")
    value = value.strip()
    if not value and not allow_empty:
        raise bad_request(f"field {name!r} must not be empty")
    if len(value) > TEXT_LIMITS[name]:
        raise bad_request(f"field {name!r} is longer than {TEXT_LIMITS[name]} characters")
    return value


def _price_cents(body: dict[str, Any], *, required: bool) -> int | None:
    """A JSON number >= 0 with at most two decimals, as integer cents."""
    if "price" not in body:
        if required:
            raise bad_request("field 'price' is required")
        return None
    value = body["price"]
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise bad_request("field 'price' must be a JSON number")
    price = Decimal(value)
    if price < 0:
        raise bad_request(f"field 'price' must be >= 0, got {price}")
    if price > MAX_PRICE:
        raise bad_request(f"field 'price' must be at most {MAX_PRICE}, got {price}")
    cents = price.scaleb(2)
    if cents != cents.to_integral_value():
        raise bad_request(f"field 'price' must have at most two decimals, got {price}")
    return int(cents)


def _currency(body: dict[str, Any]) -> str | None:
    value = _text(body, "currency", required=False)
    if value is not None and not (len(value) == 3 and value.isascii() and value.isupper()
                                  and value.isalpha()):
        raise bad_request("field 'currency' must be a three-letter ISO 4217 code such as EUR")
    return value
