"""Values the target column cannot hold are dead-lettered, never cut to fit (real PostgreSQL).

Apply writes a batch as `INSERT … SELECT * FROM unnest(%s::type[], …)`. An explicit cast to the
column's full type (`varchar(64)[]`) truncates silently; the arrays are cast to the base type so
the assignment to the column decides, exactly as a plain INSERT would.
"""
from __future__ import annotations

import uuid
from decimal import Decimal

from cdc.store import TargetStore
from cdc_apply_helpers import Events, category, execute, product, rows


def test_a_slug_longer_than_the_service_column_is_dead_lettered_not_truncated(service):
    url, applier = service
    ev = Events()
    long_slug = "s" * 70                        # legacy varchar(100), service varchar(64)
    outcome = applier.apply([ev.insert("categories", category(1)),
                             ev.insert("categories", category(2, slug=long_slug)),
                             ev.insert("products", product(7, category_id=1))])
    assert outcome.applied == 2
    assert [d.kind for d in outcome.dead] == ["constraint"]
    assert outcome.dead[0].record.event.key == {"id": 2}
    assert "too long" in outcome.dead[0].reason
    assert rows(url, "SELECT slug, legacy_category_id FROM categories") == [("cat-1", 1)]
    assert rows(url, "SELECT id, category_slug FROM products") == [(7, "cat-1")]
    assert rows(url, "SELECT count(*) FROM _cdc_dlq WHERE kind = 'constraint' "
                     "AND reason LIKE '%too long%'") == [(1,)]


def test_typed_columns_follow_postgresql_assignment_rules(pg_url):
    """Text too long for varchar(n)/char(n) and numbers too large for numeric(p,s) raise; extra
    decimals are rounded to the scale (PostgreSQL's assignment to numeric(p,s) rounds, as a plain
    INSERT does); char(n) drops trailing blanks beyond n as the standard says."""
    execute(pg_url, "CREATE TABLE limits (k integer PRIMARY KEY, s varchar(5), n numeric(5,2), "
                    "c char(3))")
    store = TargetStore(pg_url)
    cols, key = ("k", "s", "n", "c"), ("k",)

    def upsert(*row) -> str | None:
        store.begin()
        try:
            store.upsert("limits", cols, key, [row])
        except store.errors as exc:
            store.rollback()
            return type(exc).__name__
        store.commit()
        return None

    try:
        assert upsert(1, "abcde", Decimal("1.5"), "ab") is None          # normal rows still apply
        assert upsert(2, "abcdef", Decimal("1"), "a") == "StringDataRightTruncation"
        assert upsert(3, "a", Decimal("1"), "abcd") == "StringDataRightTruncation"
        assert upsert(4, "a", Decimal("12345.1"), "a") == "NumericValueOutOfRange"
        assert upsert(5, "a", Decimal("1.239"), "ab  ") is None
        assert rows(pg_url, "SELECT k, s, n, c FROM limits ORDER BY k") == [
            (1, "abcde", Decimal("1.50"), "ab "), (5, "a", Decimal("1.24"), "ab ")]
    finally:
        store.close()
