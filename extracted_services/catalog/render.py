"""The service's rows in the public contract's shapes (docs/catalog-api.md)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy.engine import RowMapping


def price(cents: int) -> float:
    """49.99 from 4999, 5.0 from 500: the same float legacy gets from NUMERIC(10,2).

    cents / 100 and float(Decimal("49.99")) are both the correctly rounded binary value of
    the same rational number, so they are the same float and serialise identically.
    """
    return cents / 100


def timestamp(value: datetime) -> str:
    """UTC, whole seconds, `Z` suffix (SQLite hands back naive values, stored as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def product(row: RowMapping) -> dict[str, Any]:
    return {
        "id": row["id"],
        "sku": row["sku"],
        "name": row["title"],
        "description": row["description"],
        "price": price(row["price_cents"]),
        "currency": row["currency"],
        "category": {"slug": row["category_slug"], "name": row["display_name"]},
        "updated_at": timestamp(row["updated_at"]),
    }


def category(row: RowMapping) -> dict[str, Any]:
    return {"slug": row["slug"], "name": row["display_name"],
            "product_count": row["product_count"]}
