"""Bad input gets a clear 4xx in the contract's error shape and writes nothing (both backends)."""
from __future__ import annotations

from tests.legacy_monolith.legacy_shop import JSON

MIB = 1024 * 1024

# (method, path, body bytes, headers, status, code, words the message must contain)
CASES = [
    ("POST", "/api/products", b'{"sku": "A",', JSON, 400, "bad_request", "malformed JSON"),
    ("POST", "/api/products", b"\xff\xfe", JSON, 400, "bad_request", "not UTF-8"),
    ("PUT", "/api/inventory/1", b'{"quantity": NaN}', JSON, 400, "bad_request",
     "NaN is not a JSON number"),
    ("POST", "/api/products", b"[1, 2]", JSON, 400, "bad_request", "JSON object"),
    ("POST", "/api/products", b"", JSON, 400, "bad_request", "body is empty"),
    ("POST", "/api/products", b'{"sku": "A"}', {"Content-Type": "text/plain"}, 415,
     "unsupported_media_type", "application/json"),
    ("POST", "/api/products", b'{"pad": "' + b"x" * MIB + b'"}', JSON, 413,
     "payload_too_large", "1 MiB"),
    ("PATCH", "/api/products/1", b"{nope}", JSON, 400, "bad_request", "malformed JSON"),
    ("PUT", "/api/inventory/1", b'{"quantity": -3}', JSON, 400, "bad_request", "'quantity'"),
    ("POST", "/api/carts/1/items", b'{"product_id": 1, "quantity": -1}', JSON, 400,
     "bad_request", "'quantity' must be between 1"),
    ("POST", "/api/carts/1/items", b'{"product_id": 1, "quantity": 0}', JSON, 400,
     "bad_request", "'quantity' must be between 1"),
    ("POST", "/api/carts/1/items", b'{"product_id": 1, "quantity": true}', JSON, 400,
     "bad_request", "'quantity' must be an integer"),
    ("POST", "/api/carts/1/items", b'{"product_id": 999999, "quantity": 1}', JSON, 404,
     "not_found", "product 999999 does not exist"),
    ("POST", "/api/carts/999999/items", b'{"product_id": 1, "quantity": 1}', JSON, 404,
     "not_found", "cart 999999 does not exist"),
    ("POST", "/api/carts", b'{"customer_id": 999999}', JSON, 404, "not_found",
     "customer 999999 does not exist"),
    ("POST", "/api/carts", b'{"customer": 1}', JSON, 400, "bad_request", "unknown field 'customer'"),
    ("POST", "/api/carts/1/checkout", b"{", JSON, 400, "bad_request", "malformed JSON"),
    ("POST", "/api/customers", b'{"email": 5, "name": "x"}', JSON, 400, "bad_request", "'email'"),
    ("DELETE", "/api/carts/1/items/abc", b"", {}, 404, "not_found", "product 'abc'"),
    ("GET", "/api/nowhere", b"", {}, 404, "not_found", "/api/nowhere"),
    ("PUT", "/api/products", b"{}", JSON, 405, "method_not_allowed", "PUT"),
]


async def test_refused_with_clear_error_and_nothing_written(shop, snapshot):
    # A cart 1 with one line exists so that refusals aimed at it have something to spoil.
    assert (await shop.post("/api/carts")).status == 201
    assert (await shop.post("/api/carts/1/items", json={"product_id": 1, "quantity": 1})).status == 200
    before = snapshot()
    # One shop for all cases (a fresh database per case would be slow); each case is named on failure.
    for method, path, body, headers, status, code, words in CASES:
        case = f"{method} {path} {body[:40]!r}"
        response = await shop.request(method, path, data=body, headers=headers)
        assert response.status == status, case
        payload = await response.json()
        assert payload["error"]["code"] == code, case
        assert words in payload["error"]["message"], (case, payload)
        assert payload["request_id"] and payload["generated_at"], case
    response = await shop.put("/api/products")
    assert response.headers["Allow"] == "GET,HEAD,POST"
    assert snapshot() == before
