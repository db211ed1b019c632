"""Constants and helpers shared by the legacy shop's tests (fixtures live in conftest.py)."""
from __future__ import annotations

import re

# Small enough to be quick, large enough for pagination, every category and sold-out products.
SEEDED_PRODUCTS = 60
JSON = {"Content-Type": "application/json"}
DRY_RUN = {"X-Strangler-Dry-Run": "1"}
GENERATED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def without_noise(body: dict) -> dict:
    """The body minus the documented noise fields, after checking they are there and well-formed."""
    assert GENERATED_AT.match(body.pop("generated_at"))
    assert body.pop("request_id")
    return body
