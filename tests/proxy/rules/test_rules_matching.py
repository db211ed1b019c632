"""Every matcher kind routes, first match wins in file order, and big tables stay correct."""
from __future__ import annotations

import pytest

from proxy.decision import DEFAULT
from proxy.rules import load_table

HEAD = """\
version: 1
backends:
  legacy: {url: http://127.0.0.1:9001}
  svc: {url: http://127.0.0.1:9002}
default: legacy
capabilities:
"""


def cap(name: str, match: str) -> str:
    return (f"  - name: {name}\n    match: {match}\n    legacy: legacy\n    service: svc\n"
            "    stage: cutover\n")


@pytest.fixture
def table(rules_file):
    return load_table(rules_file(HEAD
        + cap("exact", "[{path: /api/health}]")
        + cap("template", "[{path_template: '/api/products/{id}/reviews/{review}'}]")
        + cap("prefix", "[{path_prefix: /api/products/}]")
        + cap("regex", "[{path_regex: '/api/v[0-9]+/orders(/.*)?'}]")
        + cap("methods", "[{path_prefix: /api/carts, methods: [POST, PUT]}]")
        + cap("header", "[{path_prefix: /api/carts, headers: {X-Client: mobile}}]")
        + cap("header_re", "[{path_prefix: /api/carts, headers: {X-Client: {regex: 'web-[0-9]+'}}}]")
        + cap("query", "[{path_prefix: /api/search, query: {engine: new}}]")
        + cap("query_re", "[{path_prefix: /api/search, query: {q: {regex: '[a-z]+'}}}]")
        + cap("root_files", "[{path_template: '/{file}'}]")), environ={})


@pytest.mark.parametrize("method, path, query, headers, expected, route", [
    ("GET", "/api/health", "", {}, "exact", "/api/health"),
    ("GET", "/api/health/x", "", {}, None, "/api/health/x"),
    ("GET", "/api/products/7/reviews/9", "", {}, "template", "/api/products/{id}/reviews/{review}"),
    ("GET", "/api/products/7/reviews/", "", {}, "prefix", "/api/products/{id}/reviews/"),
    ("GET", "/api/products/7", "", {}, "prefix", "/api/products/{id}"),
    ("GET", "/api/products", "", {}, "prefix", "/api/products"),
    ("GET", "/api/productsX", "", {}, None, "/api/productsX"),
    ("GET", "/api/v2/orders/5", "", {}, "regex", "/api/v2/orders/{id}"),
    ("GET", "/api/v2/orders", "", {}, "regex", "/api/v2/orders"),
    ("GET", "/api/vX/orders", "", {}, None, "/api/vX/orders"),
    ("POST", "/api/carts/3/items", "", {}, "methods", "/api/carts/{id}/items"),
    ("GET", "/api/carts/3", "", {"x-client": "mobile"}, "header", "/api/carts/{id}"),
    ("GET", "/api/carts/3", "", {"x-client": "web-12"}, "header_re", "/api/carts/{id}"),
    ("GET", "/api/carts/3", "", {"x-client": "web-12x"}, None, "/api/carts/{id}"),
    ("GET", "/api/search", "engine=new&q=Lamp", {}, "query", "/api/search"),
    ("GET", "/api/search", "engine=old&q=lamp", {}, "query_re", "/api/search"),
    ("GET", "/api/search", "q=Lamp", {}, None, "/api/search"),
    ("GET", "/favicon.ico", "", {}, "root_files", "/{file}"),
    ("GET", "/", "", {}, None, "/"),
])
def test_every_matcher_kind(table, method, path, query, headers, expected, route) -> None:
    decision = table.decide(method, path, query, headers)
    assert decision.capability == expected
    assert decision.route == route
    if expected is None:
        assert (decision.side, decision.reason, decision.backend.name) == (DEFAULT, "default", "legacy")


def test_first_match_wins_in_file_order(rules_file) -> None:
    # Each pair overlaps only partly (so the file is valid); the earlier one must win.
    broad_then_narrow = load_table(rules_file(HEAD
        + cap("first", "[{path_prefix: /api, methods: [GET]}]")
        + cap("second", "[{path_prefix: /api/products}]")), environ={})
    assert broad_then_narrow.decide("GET", "/api/products/1", "", {}).capability == "first"
    assert broad_then_narrow.decide("POST", "/api/products", "", {}).capability == "second"
    narrow_then_broad = load_table(rules_file(HEAD
        + cap("second", "[{path_prefix: /api/products}]")
        + cap("first", "[{path_prefix: /api, methods: [GET]}]")), environ={})
    assert narrow_then_broad.decide("GET", "/api/products/1", "", {}).capability == "second"
    assert narrow_then_broad.decide("GET", "/api/carts/1", "", {}).capability == "first"


def test_a_regex_earlier_in_the_file_beats_an_indexed_path_later(rules_file) -> None:
    table = load_table(rules_file(HEAD
        + cap("legacy_api", "[{path_regex: '/api/products/[0-9]+'}]")
        + cap("catalog", "[{path_prefix: /api/products}]")), environ={})
    assert table.decide("GET", "/api/products/12", "", {}).capability == "legacy_api"
    assert table.decide("GET", "/api/products", "", {}).capability == "catalog"


def test_five_hundred_capabilities_decide_correctly(rules_file) -> None:
    text = HEAD + "".join(
        cap(f"cap{i}", f"[{{path_template: '/api/cap{i}/items/{{id}}'}}, "
                       f"{{path_prefix: /svc{i}}}, {{path: /exact/{i}, methods: [GET]}}]")
        for i in range(500))
    table = load_table(rules_file(text), environ={})
    assert len(table.capabilities) == 500
    for i in range(0, 500, 7):
        assert table.decide("GET", f"/api/cap{i}/items/{i * 3}", "", {}).capability == f"cap{i}"
        assert table.decide("DELETE", f"/svc{i}/a/b", "", {}).capability == f"cap{i}"
        assert table.decide("GET", f"/exact/{i}", "", {}).capability == f"cap{i}"
        assert table.decide("POST", f"/exact/{i}", "", {}).capability is None
    assert table.decide("GET", "/api/cap500/items/1", "", {}).capability is None


@pytest.mark.parametrize("path, expected, route", [
    ("/api/%70roducts/7", "prefix", "/api/products/{id}"),     # %70 is "p"
    ("/api/carts/../products/7", "prefix", "/api/products/{id}"),
    ("/api/./health", "exact", "/api/health"),
    ("/api/products/%2e%2e/health", "exact", "/api/health"),
    ("/api/products%2F7", None, "/api/products%2F7"),             # %2F stays inside its segment
])
def test_paths_are_matched_as_backends_route_them(table, path, expected, route) -> None:
    decision = table.decide("GET", path, "", {})
    assert (decision.capability, decision.route) == (expected, route)


def test_an_encoded_path_cannot_take_a_write_past_its_owner(rules_file) -> None:
    table = load_table(rules_file(HEAD + cap("catalog", "[{path_prefix: /api/products}]")),
                       environ={})
    for path in ("/api/products", "/api/%70roducts", "/api/x/../products", "/api/%2E/products"):
        d = table.decide("POST", path, "", {})
        assert (d.capability, d.side, d.reason) == ("catalog", "service", "write-owner")
