"""`verify --repair` removes target rows without a source row the way apply does, and a removal
the target refuses is reported with its reason: the run goes on to the other tables."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from cdc.config import load_config
from cdc.mapping import TO_LEGACY
from cdc.pipeline import Pipeline
from cdc.verify import verify
from cdc_apply_helpers import cleanup_cdc, execute, new_stores, rows, wait_streaming, write_config
from strangler.db import make_engine

PRODUCT = ("INSERT INTO products (id, sku, name, description, price, currency, category_id, updated_at) "
           "VALUES (:i, 'S' || :i, 'n' || :i, 'd', 1.50, 'EUR', :c, '2026-01-01')")
SERVICE_PRODUCT = ("INSERT INTO products (id, sku, title, description, price_cents, currency, category_slug, "
                   "updated_at) VALUES (:i, 'S' || :i, 'n' || :i, 'd', 150, 'EUR', 'one', '2026-01-01')")


@pytest.fixture
def to_legacy(pg_database, pg_admin_url, tmp_path):
    cap, legacy, service = new_stores(pg_database, "vr")
    execute(legacy, "INSERT INTO categories (id, name, slug) VALUES (1, 'One', 'one'), (13, 'Real', 'real')")
    for i, c in [(1, 1), (2, 1), (3, 1), (4, 1), (5, 13)]:
        execute(legacy, PRODUCT, params={"i": i, "c": c})
    execute(legacy, "INSERT INTO inventory (product_id, quantity, updated_at) VALUES (4, 5, now())")
    execute(service, "INSERT INTO categories (slug, display_name, legacy_category_id) VALUES ('one', 'One', 1)")
    for i in (1, 2, 3, 6):
        execute(service, SERVICE_PRODUCT, params={"i": i})
    execute(service, "UPDATE products SET title = 'renamed' WHERE id = 2")
    config = load_config(cap, str(write_config(tmp_path, cap, legacy, service, writes="service")))
    pipeline = Pipeline(config, [TO_LEGACY], snapshot=False).start()
    wait_streaming(pipeline)
    yield config, legacy, service
    pipeline.close()
    assert pipeline.errors == []
    cleanup_cdc(pg_admin_url, cap, None)


def test_a_refused_removal_is_reported_and_the_other_tables_are_still_repaired(to_legacy):
    config, legacy, _ = to_legacy
    # Legacy's own changes would be captured towards the service: the repair must not add any.
    echo = make_engine(legacy, isolation_level="AUTOCOMMIT")
    with echo.connect() as conn:
        conn.execute(text("SELECT pg_create_logical_replication_slot('repair_echo', 'test_decoding')"))
    try:
        report = verify(config, TO_LEGACY, repair=True, chunk_rows=2000, recheck_rounds=8,
                        recheck_wait_s=0.5)
        with echo.connect() as conn:
            changes = [r[0] for r in conn.execute(text(
                "SELECT data FROM pg_logical_slot_get_changes('repair_echo', NULL, NULL, "
                "'only-local', '1', 'skip-empty-xacts', '1')"))]
    finally:
        with echo.connect() as conn:
            conn.execute(text("SELECT pg_drop_replication_slot('repair_echo')"))
        echo.dispose()

    categories = next(t for t in report.tables if t.source == "categories")
    products = next(t for t in report.tables if t.source == "products")
    # Category 13 is still referenced in legacy: not removed, reported with the reason.
    assert categories.extra == [("real",)]
    assert [k for k, _ in categories.repair_failures] == [("real",)]
    assert "ForeignKeyViolation" in categories.repair_failures[0][1]
    assert categories.samples[0]["repair_failed"] == categories.repair_failures[0][1]
    assert report.as_dict()["tables"][0]["repair_failures"][0]["key"] == ["real"]
    assert report.differences == 1
    # The products were still checked and repaired: 4 and 5 removed (4's stock row first, as
    # also_delete says), 6 re-emitted, 2 re-emitted with its new title.
    assert products.differences == 0 and products.repair_failures == []
    assert rows(legacy, "SELECT id, name FROM products ORDER BY id") == [
        (1, "n1"), (2, "renamed"), (3, "n3"), (6, "n6")]
    assert rows(legacy, "SELECT count(*) FROM inventory") == [(0,)]
    assert rows(legacy, "SELECT id FROM categories ORDER BY id") == [(1,), (13,)]
    # Everything written to legacy carried the replication origin: nothing for capture to echo.
    assert changes == [], changes
    assert report.repaired == 4
