"""Verify on real PostgreSQL stores: 100,000 rows while writes flow, exact differences, and repair."""
from __future__ import annotations

import threading
import time

import pytest

from cdc.config import load_config
from cdc.mapping import TO_SERVICE
from cdc.pipeline import Pipeline
from cdc.verify import KEYS_PER_QUERY, canonical, verify
from cdc_apply_helpers import cleanup_cdc, execute, new_stores, rows, write_config

ROWS = 100_000


@pytest.fixture
def synced(request, pg_database, pg_admin_url, tmp_path):
    """Two stores holding the same products (filled directly), a stream-only pipeline between."""
    n = getattr(request, "param", ROWS)
    cap, legacy, service = new_stores(pg_database, "v")
    execute(legacy,
            "INSERT INTO categories (id, name, slug) VALUES (1, 'One', 'one'), (2, 'Two', 'two')",
            "INSERT INTO products (id, sku, name, description, price, currency, category_id, updated_at) "
            f"SELECT i, 'S' || i, 'n' || i, 'd', i / 100.0, 'EUR', 1 + i % 2, '2026-01-01' "
            f"FROM generate_series(1, {n}) i")
    execute(service,
            "INSERT INTO categories (slug, display_name, legacy_category_id) VALUES ('one', 'One', 1), ('two', 'Two', 2)",
            "INSERT INTO products (id, sku, title, description, price_cents, currency, category_slug, updated_at) "
            f"SELECT i, 'S' || i, 'n' || i, 'd', i, 'EUR', CASE WHEN i % 2 = 0 THEN 'one' ELSE 'two' END, "
            f"'2026-01-01' FROM generate_series(1, {n}) i")
    config = load_config(cap, str(write_config(tmp_path, cap, legacy, service)))    # embedded transport
    pipeline = Pipeline(config, [TO_SERVICE], snapshot=False).start()
    deadline = time.monotonic() + 30
    while not (pipeline.captures[0].capture and pipeline.captures[0].capture.streaming.is_set()):
        assert time.monotonic() < deadline and not pipeline.errors, pipeline.errors
        time.sleep(0.1)
    yield config, legacy, service
    pipeline.close()
    assert pipeline.errors == []
    cleanup_cdc(pg_admin_url, cap, None)


def test_100k_rows_verify_clean_while_writes_continue(synced):
    config, legacy, _ = synced
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            execute(legacy, "UPDATE products SET price = price + 1, name = 'w' WHERE id = :a",
                    "DELETE FROM products WHERE id = :b",
                    params={"a": (i * 7919) % ROWS + 1, "b": ROWS - i})
    writer = threading.Thread(target=write)
    writer.start()
    try:
        report = verify(config, TO_SERVICE, chunk_rows=2000, recheck_rounds=10, recheck_wait_s=0.5)
    finally:
        stop.set()
        writer.join()
    products = next(t for t in report.tables if t.source == "products")
    assert products.chunks >= ROWS // 5000
    assert products.source_rows > ROWS - 5000 and products.target_rows > ROWS - 5000
    assert report.differences == 0, report.as_dict()


@pytest.mark.parametrize("synced", [20_000], indirect=True)
def test_differences_are_listed_exactly_and_repair_fixes_them(synced):
    config, legacy, service = synced
    execute(service, "UPDATE products SET price_cents = 1 WHERE id IN (10, 16000)",
            "DELETE FROM products WHERE id = 777",
            "INSERT INTO products (id, sku, title, description, price_cents, currency, category_slug, updated_at) "
            "VALUES (20001, 'X', 'x', '', 1, 'EUR', 'one', now())",
            "UPDATE categories SET display_name = 'Changed' WHERE slug = 'two'")
    report = verify(config, TO_SERVICE, chunk_rows=2000, recheck_rounds=1, recheck_wait_s=0.1)
    products = next(t for t in report.tables if t.source == "products")
    assert (products.missing, products.extra, sorted(products.different)) == ([(777,)], [(20001,)], [(10,), (16000,)])
    assert products.chunks_differing == 3
    assert next(t for t in report.tables if t.source == "categories").different == [(2,)]
    assert report.differences == 5

    repaired = verify(config, TO_SERVICE, repair=True, chunk_rows=2000, recheck_rounds=8, recheck_wait_s=0.5)
    assert repaired.repaired == 5 and repaired.differences == 0, repaired.as_dict()
    assert rows(service, "SELECT price_cents FROM products WHERE id IN (10, 777) ORDER BY id") == [(10,), (777,)]


@pytest.mark.parametrize("synced", [20_000], indirect=True)
def test_a_widely_drifted_table_is_rechecked_in_batches_and_counted_exactly(synced):
    """More suspects than one recheck query takes (KEYS_PER_QUERY): each still counted once."""
    config, _, service = synced
    drifted = 2 * KEYS_PER_QUERY + 500
    execute(service, f"UPDATE products SET title = 'drift' WHERE id <= {drifted}",
            f"DELETE FROM products WHERE id > {20_000 - 3}")
    report = verify(config, TO_SERVICE, chunk_rows=2000, recheck_rounds=2, recheck_wait_s=0.1)
    products = next(t for t in report.tables if t.source == "products")
    assert len(products.different) == drifted and len(products.missing) == 3
    assert sorted(products.different)[:2] == [(1,), (2,)] and products.extra == []


@pytest.mark.parametrize("a,b", [("12.50", 12.5), ("2026-01-01T00:00:00Z", "2026-01-01 00:00:00+00:00"),
                                 (1, 1.0), ("a", "a")])
def test_canonical_values_compare_across_drivers(a, b):
    assert canonical(a) == canonical(b)
