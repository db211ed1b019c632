"""Bad input gets a clear 4xx in the contract's error shape, and nothing is written."""
from __future__ import annotations

from tests.extracted_services.catalog.conftest import SEEDED

JSON = {"Content-Type": "application/json"}
GOOD = {"sku": "OK-1", "name": "Oak Stool", "price": 10, "category": "seating"}

# (method, path, request kwargs, status, code, words the message must contain)
CASES = [
    ("POST", "/api/products", {"data": b'{"sku": ', "headers": JSON}, 400, "bad_request",
     "malformed JSON"),
    ("POST", "/api/products", {"data": b"", "headers": JSON}, 400, "bad_request", "empty"),
    ("POST", "/api/products", {"data": b'{"sku": "\xc3\x28"}', "headers": JSON}, 400,
     "bad_request",
     "not UTF-8"),
    ("POST", "/api/products", {"data": b"[1, 2]", "headers": JSON}, 400, "bad_request",
     "JSON object"),
    ("POST", "/api/products", {"data": b'{"price": NaN}', "headers": JSON}, 400, "bad_request",
     "malformed JSON"),
    ("POST", "/api/products", {"data": b"sku=1", "headers": {
        "Content-Type": "application/x-www-form-urlencoded"}}, 415, "unsupported_media_type",
     "application/json"),
    ("POST", "/api/products", {"json": GOOD | {"price": -1}}, 400, "bad_request",
     "field 'price' must be >= 0, got -1"),
    ("POST", "/api/products", {"json": GOOD | {"price": 1.234}}, 400, "bad_request",
     "field 'price' must have at most two decimals, got 1.234"),
    ("POST", "/api/products", {"json": GOOD | {"price": 100_000_000}}, 400, "bad_request",
     "at most 99999999.99"),
    ("POST", "/api/products", {"json": GOOD | {"price": "10"}}, 400, "bad_request", "price"),
    ("POST", "/api/products", {"json": GOOD | {"price": True}}, 400, "bad_request", "price"),
    ("POST", "/api/products", {"json": GOOD | {"currency": "euro"}}, 400, "bad_request",
     "currency"),
    ("POST", "/api/products", {"json": GOOD | {"category": "nope"}}, 400, "bad_request",
     "category 'nope' does not exist"),
    ("POST", "/api/products", {"json": GOOD | {"sku": "SKU-000001"}}, 409, "conflict",
     "SKU-000001"),
    ("POST", "/api/products", {"json": {"name": "x", "price": 1, "category": "decor"}}, 400,
     "bad_request", "field 'sku' is required"),
    ("POST", "/api/products", {"json": GOOD | {"stock": 3}}, 400, "bad_request",
     "unknown field 'stock'"),
    ("POST", "/api/products", {"data": b'{"sku": "' + b"x" * (1024 * 1024) + b'"}',
                               "headers": JSON}, 413, "payload_too_large",
     "larger than 1048576 bytes (1 MiB)"),
    ("PATCH", "/api/products/1", {"json": {"price": -0.01}}, 400, "bad_request", "price"),
    ("PATCH", "/api/products/1", {"json": {}}, 400, "bad_request", "nothing to change"),
    ("PATCH", "/api/products/1", {"json": {"sku": "B"}}, 400, "bad_request", "unknown field 'sku'"),
    ("PATCH", "/api/products/1", {"json": {"name": " "}}, 400, "bad_request",
     "field 'name' must not be empty"),
    ("PATCH", f"/api/products/{SEEDED + 1}", {"json": {"price": 1}}, 404, "not_found",
     f"product {SEEDED + 1} does not exist"),
    ("DELETE", f"/api/products/{SEEDED + 1}", {}, 404, "not_found", f"product {SEEDED + 1}"),
    ("POST", "/api/products", {"json": GOOD, "headers": {"X-Strangler-Dry-Run": "yes"}}, 400,
     "bad_request", "X-Strangler-Dry-Run"),
    ("GET", "/api/products?limit=0", {}, 400, "bad_request",
     "query parameter 'limit' must be between 1 and 100, got 0"),
    ("GET", "/api/products?limit=101", {}, 400, "bad_request", "'limit'"),
    ("GET", "/api/products?limit=ten", {}, 400, "bad_request",
     "query parameter 'limit' must be an integer, got 'ten'"),
    ("GET", "/api/products?offset=-1", {}, 400, "bad_request", "'offset'"),
    ("GET", "/api/products?q=" + "a" * 201, {}, 400, "bad_request", "'q' is longer than 200"),
    ("GET", "/api/products/abc", {}, 404, "not_found", "product 'abc' does not exist"),
    ("GET", f"/api/products/{2**31}", {}, 404, "not_found", "does not exist"),
    ("PUT", "/api/products/1", {"json": GOOD}, 405, "method_not_allowed",
     "method PUT is not allowed on /api/products/1; use one of DELETE, GET, HEAD, PATCH"),
    ("GET", "/api/nothing-here", {}, 404, "not_found", "GET /api/nothing-here is not a route"),
]


async def test_refused_with_a_clear_error_and_nothing_written(base_url, http, snapshot):
    """All cases against one server (one database each for SQLite and PostgreSQL keeps this
    fast); every case is checked and every failure listed, not just the first."""
    before = snapshot()
    failures = []
    for method, path, kwargs, status, code, words in CASES:
        async with http.request(method, base_url + path, **kwargs) as resp:
            body = await resp.json()
            got = (resp.status, body.get("error", {}).get("code"))
        message = body.get("error", {}).get("message", "")
        if got != (status, code) or words not in message:
            failures.append(f"{method} {path[:60]}: got {got} {message!r}, "
                            f"want {(status, code)} with {words!r}")
    assert not failures, "\n".join(failures)
    assert snapshot() == before


async def test_chunked_body_over_the_limit_is_refused(base_url, http, snapshot):
    """Without a Content-Length the limit still holds (aiohttp counts while reading)."""
    before = snapshot()

    async def chunks():
        for _ in range(17):
            yield b"x" * 65536

    async with http.post(f"{base_url}/api/products", data=chunks(), headers=JSON) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == "payload_too_large"
    assert snapshot() == before
