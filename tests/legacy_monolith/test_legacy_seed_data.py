"""The pure seed generator: deterministic, prefix-stable, and within the schema's limits."""
from __future__ import annotations

import hashlib
from decimal import Decimal

from legacy_monolith.seed_data import iter_categories, iter_customers, iter_products, product


def _digest(rows) -> str:
    return hashlib.sha256(repr(list(rows)).encode()).hexdigest()


def test_same_n_gives_same_rows():
    assert _digest(iter_products(500)) == _digest(iter_products(500))
    assert _digest(iter_categories()) == _digest(iter_categories())


def test_smaller_seed_is_a_prefix_of_a_larger_one():
    assert list(iter_products(50)) == list(iter_products(300))[:50]
    assert product(123) == list(iter_products(123))[-1]


def test_products_fit_the_legacy_schema():
    slugs = {c["slug"] for c in iter_categories()}
    assert len(slugs) == 12
    rows = list(iter_products(2000))
    assert [r["id"] for r in rows] == list(range(1, 2001))
    assert len({r["sku"] for r in rows}) == 2000
    assert rows[16]["sku"] == "SKU-000017"
    for r in rows:
        assert r["category"] in slugs
        assert isinstance(r["price"], Decimal) and r["price"] >= 0
        assert r["price"] == r["price"].quantize(Decimal("0.01"))
        assert r["currency"] == "EUR"
        assert r["stock"] >= 0
        assert r["updated_at"].tzinfo is not None and r["updated_at"].microsecond == 0
    # Some products are sold out so checkout meets real shortages.
    assert any(r["stock"] == 0 for r in rows)


def test_customers_are_unique_example_addresses():
    customers = list(iter_customers(8))
    assert len({c["email"] for c in customers}) == 8
    assert all(c["email"].endswith("@example.org") for c in customers)
