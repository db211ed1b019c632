"""Reading and checking what clients send; every refusal names the field and what is wanted.

Validation happens before any database work, so bad input never writes anything.
"""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from aiohttp import web

from legacy_monolith.errors import ApiError, bad_request, not_found
from legacy_monolith.keys import DRY_RUN

# Integer columns are 32-bit on PostgreSQL: larger ids cannot exist, larger counts cannot be stored.
MAX_INT = 2**31 - 1
MAX_PRICE = Decimal("99999999.99")  # NUMERIC(10,2)
_CENT = Decimal("0.01")
# Request bodies above this are refused with 413 (aiohttp's `client_max_size`).
MAX_BODY = 1024 * 1024


async def json_object(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The request body as a JSON object (numbers with decimals as exact `Decimal`s).

    Bodies above the app's `client_max_size` (1 MiB) are refused by aiohttp with 413 while
    being read; the error middleware renders that in the contract's shape.
    """
    body = await request.read()
    if not body.strip():
        if optional:
            return {}
        raise bad_request("request body is empty: send a JSON object")
    if request.content_type != "application/json":
        raise ApiError(415, f"unsupported content type {request.content_type!r}: "
                            "send the body as application/json")
    try:
        value = json.loads(body.decode("utf-8"), parse_float=Decimal, parse_constant=_not_json)
    except UnicodeDecodeError:
        raise bad_request("malformed JSON: the body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise bad_request(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # NaN/Infinity, or an integer too long to convert
        raise bad_request(f"malformed JSON: {exc}") from None
    if not isinstance(value, dict):
        raise bad_request(f"the body must be a JSON object, got {type(value).__name__}")
    return value


def _not_json(name: str) -> Any:
    """Python's json accepts NaN and Infinity; JSON (RFC 8259) does not."""
    raise ValueError(f"{name} is not a JSON number")


def only_fields(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Refuse unknown fields: a typo (`"prise"`) must not be silently ignored."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise bad_request(f"unknown field {unknown[0]!r}: allowed fields are {', '.join(allowed)}")


def text_field(body: dict[str, Any], name: str, *, max_length: int, required: bool = True,
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
    if len(value) > max_length:
        raise bad_request(f"field {name!r} is longer than {max_length} characters")
    return value


def int_field(body: dict[str, Any], name: str, *, minimum: int, maximum: int = MAX_INT,
              required: bool = True) -> int | None:
    if name not in body:
        if required:
            raise bad_request(f"field {name!r} is required")
        return None
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"field {name!r} must be an integer")
    if not minimum <= value <= maximum:
        raise bad_request(f"field {name!r} must be between {minimum} and {maximum}, got {value}")
    return value


def price_field(body: dict[str, Any], name: str = "price", *, required: bool = True) -> Decimal | None:
    """A JSON number >= 0 with at most two decimals (checked exactly, never via float)."""
    if name not in body:
        if required:
            raise bad_request(f"field {name!r} is required")
        return None
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise bad_request(f"field {name!r} must be a JSON number")
    value = Decimal(value)
    if not value.is_finite() or value < 0:
        raise bad_request(f"field {name!r} must be >= 0, got {value}")
    if value > MAX_PRICE:
        raise bad_request(f"field {name!r} must be at most {MAX_PRICE}, got {value}")
    if value != value.quantize(_CENT):
        raise bad_request(f"field {name!r} must have at most two decimals, got {value}")
    return value.quantize(_CENT)


def currency_field(body: dict[str, Any], name: str = "currency") -> str | None:
    value = text_field(body, name, max_length=3, required=False)
    if value is not None and not (len(value) == 3 and value.isascii() and value.isupper()
                                  and value.isalpha()):
        raise bad_request(f"field {name!r} must be a three-letter ISO 4217 code such as EUR")
    return value


def path_id(request: web.Request, name: str, what: str) -> int:
    """An integer id from the path; anything that cannot be an id is simply not found."""
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) <= MAX_INT:
        raise not_found(f"{what} {raw!r} does not exist")
    return int(raw)


def query_int(request: web.Request, name: str, *, default: int, minimum: int, maximum: int) -> int:
    raw = request.query.get(name)
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


def dry_run(request: web.Request) -> bool:
    """`X-Strangler-Dry-Run: 1` asks for a rolled-back write; any other value is refused,
    so a misspelt header can never turn a rehearsal into a real write."""
    value = request.headers.get("X-Strangler-Dry-Run")
    if value is None:
        return False
    if value.strip() != "1":
        raise bad_request(f"header X-Strangler-Dry-Run must be 1 when present, got {value!r}")
    request[DRY_RUN] = True
    return True
