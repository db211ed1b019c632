"""Apply against a real PostgreSQL service schema: mapping, idempotence, stale skip, offsets, TOAST, truncate, origin."""
from __future__ import annotations

import dataclasses

from sqlalchemy import text

from cdc.mapping import UNAVAILABLE
from cdc_apply_helpers import Events, category, mapping, product, rows
from strangler.db import make_engine


def test_insert_maps_columns_prices_and_lookups_within_one_batch(service):
    url, applier = service
    ev = Events()
    batch = [ev.insert("categories", category(1)),
             ev.insert("products", product(7, price="49.99")),
             ev.insert("products", product(8, price="0.10"))]
    outcome = applier.apply(batch)
    assert (outcome.applied, outcome.dead) == (3, [])
    assert rows(url, "SELECT slug, display_name, legacy_category_id FROM categories") == [("cat-1", "Category 1", 1)]
    assert rows(url, "SELECT id, sku, title, price_cents, currency, category_slug FROM products ORDER BY id") == [
        (7, "SKU-000007", "Product 7", 4999, "EUR", "cat-1"),
        (8, "SKU-000008", "Product 8", 10, "EUR", "cat-1")]
    assert applier.stored_offsets() == {("legacy.public.categories", 0): 2, ("legacy.public.products", 0): 4}


def test_the_topic_ids_records_carry_are_stored_with_their_offsets(service):
    """The offsets count in one incarnation of each topic: its id commits with them."""
    _, applier = service
    ev = Events()
    batch = [dataclasses.replace(ev.insert("categories", category(1)), topic_id="cat-id-1"),
             ev.insert("products", product(7, price="1.00"))]          # a transport without ids
    applier.apply(batch)
    assert applier.stored_topic_ids() == {"legacy.public.categories": "cat-id-1"}
    applier.apply([dataclasses.replace(ev.insert("categories", category(2)), topic_id="cat-id-2")])
    assert applier.stored_topic_ids() == {"legacy.public.categories": "cat-id-2"}
    assert applier.stored_offsets()[("legacy.public.categories", 0)] == 4


def test_redelivered_batch_changes_nothing_and_stale_events_are_skipped(service):
    url, applier = service
    ev = Events()
    first = [ev.insert("categories", category(1)), ev.insert("products", product(1, price="1.00"))]
    applier.apply(first)
    newer = ev.update("products", None, product(1, price="3.00"))
    applier.apply([newer])
    again = applier.apply(first)                  # at-least-once: the old batch arrives again
    # The product's insert is older than the update the target holds: skipped. The category's is
    # the very event the target holds: re-applied, which an idempotent upsert makes harmless.
    assert (again.applied, again.skipped) == (1, 1)
    older = ev.update("products", None, product(1, price="2.00"), position=newer.event.position - 5)
    assert applier.apply([older]).skipped == 1
    assert rows(url, "SELECT count(*), max(price_cents) FROM products") == [(1, 300)]


def test_several_changes_to_one_row_in_a_batch_fold_in_order(service):
    url, applier = service
    ev = Events()
    applier.apply([ev.insert("categories", category(1)), ev.insert("categories", category(2)),
                   ev.insert("products", product(1)),
                   ev.update("products", None, product(1, name="renamed", category_id=2)),
                   ev.update("products", None, product(1, name="final", category_id=2, description=UNAVAILABLE)),
                   ev.insert("products", product(2)),
                   ev.delete("products", product(2)),
                   ev.record("products", "d", {"id": 2}, tombstone=True)])
    assert rows(url, "SELECT id, title, description, category_slug FROM products") == [
        (1, "final", "about 1", "cat-2")]


def test_toasted_placeholder_never_overwrites_real_data(service):
    url, applier = service
    ev = Events()
    applier.apply([ev.insert("categories", category(1)),
                   ev.insert("products", product(1, description="x" * 10_000))])
    applier.apply([ev.update("products", product(1), product(1, price="5.00", description=UNAVAILABLE))])
    assert rows(url, "SELECT length(description), price_cents FROM products") == [(10_000, 500)]


def test_delete_and_key_change_through_a_derived_key(service):
    url, applier = service
    ev = Events()
    applier.apply([ev.insert("categories", category(1)), ev.insert("categories", category(2))])
    # The service keys categories by slug: a slug change moves the row, a delete removes it.
    applier.apply([ev.update("categories", category(1), category(1, slug="renamed")),
                   ev.delete("categories", category(2))])
    assert rows(url, "SELECT slug, legacy_category_id FROM categories") == [("renamed", 1)]


def test_truncate_empties_the_target_and_older_events_stay_out(service):
    url, applier = service
    ev = Events()
    early = ev.insert("categories", category(9))
    applier.apply([ev.insert("categories", category(1)), ev.insert("products", product(1))])
    truncate = ev.record("products", "t", None, None, None)
    late = ev.insert("products", product(2))
    applier.apply([truncate, late])
    assert rows(url, "SELECT id FROM products") == [(2,)]
    stale = ev.insert("products", product(3), position=truncate.event.position - 1)
    assert applier.apply([stale]).skipped == 1
    assert applier.apply([early]).applied == 1       # other tables are untouched by the truncate


def test_a_truncate_applied_after_newer_rows_from_other_partitions_keeps_them(service):
    """A truncate has no key, so Kafka may hand it over after inserts made after it (they sit on
    other partitions): those rows must survive it, and only rows older than it go."""
    url, applier = service
    ev = Events()
    applier.apply([ev.insert("categories", category(1)), ev.insert("products", product(1)),
                   ev.insert("products", product(2))])
    truncate = ev.record("products", "t", None, None, None)
    newer = [ev.insert("products", product(3)), ev.insert("products", product(4))]
    assert applier.apply(newer).applied == 2            # their partition was read first
    assert applier.apply([truncate]).applied == 1
    assert rows(url, "SELECT id FROM products ORDER BY id") == [(3,), (4,)]
    # An older change still on its way stays out; newer rows keep taking changes.
    stale = ev.update("products", None, product(1, name="late"), position=truncate.event.position - 5)
    again = ev.update("products", None, product(3, name="renamed"))
    assert applier.apply([stale, again]).skipped == 1
    assert rows(url, "SELECT id, title FROM products ORDER BY id") == [(3, "renamed"), (4, "Product 4")]


def test_a_slug_renamed_in_legacy_moves_the_category_and_its_products(service):
    url, applier = service
    ev = Events()
    applier.apply([ev.insert("categories", category(1)), ev.insert("products", product(1)),
                   ev.insert("products", product(2))])
    renamed = ev.update("categories", category(1), category(1, slug="renamed"))
    outcome = applier.apply([renamed])
    assert (outcome.applied, outcome.dead) == (1, [])
    assert rows(url, "SELECT slug, legacy_category_id FROM categories") == [("renamed", 1)]
    assert rows(url, "SELECT id, category_slug FROM products ORDER BY id") == [
        (1, "renamed"), (2, "renamed")]


def test_applied_transactions_carry_a_replication_origin_so_capture_drops_them(service):
    url, applier = service
    assert applier.origin and applier.origin == f"strangler_{applier.consumer}_0"
    engine = make_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_create_logical_replication_slot('echo_probe', 'test_decoding')"))
        try:
            ev = Events()
            applier.apply([ev.insert("categories", category(1))])
            conn.execute(text("INSERT INTO categories (slug, display_name) VALUES ('local', 'Local')"))
            changes = [r[0] for r in conn.execute(text(
                "SELECT data FROM pg_logical_slot_get_changes('echo_probe', NULL, NULL, "
                "'only-local', '1', 'skip-empty-xacts', '1')"))]
        finally:
            conn.execute(text("SELECT pg_drop_replication_slot('echo_probe')"))
    engine.dispose()
    inserts = [c for c in changes if c.startswith("table public.categories: INSERT")]
    assert len(inserts) == 1 and "local" in inserts[0]


def test_a_product_deleted_on_the_service_leaves_legacy_with_its_stock_row(pg_url, pg_admin_url):
    """After the write switch, service -> legacy: legacy's own delete drops the stock row and
    cart lines first (also_delete); a product still in an order stays, dead-lettered."""
    import uuid

    from cdc.apply import Applier
    from cdc.mapping import TO_LEGACY
    from cdc.store import TargetStore
    from cdc_apply_helpers import cleanup_cdc, create_legacy_schema, execute, seed_legacy
    create_legacy_schema(pg_url)
    seed_legacy(pg_url, categories=1, products=3)
    execute(pg_url, "INSERT INTO inventory (product_id, quantity, updated_at) "
                    "VALUES (1, 5, now()), (2, 5, now()), (3, 5, now())",
            "INSERT INTO customers (id, email, name, created_at) VALUES (1, 'a@b.c', 'A', now())",
            "INSERT INTO orders (id, customer_id, status, total, currency, created_at) "
            "VALUES (1, 1, 'placed', 12.34, 'EUR', now())",
            "INSERT INTO order_items (order_id, product_id, quantity, unit_price) "
            "VALUES (1, 3, 1, 12.34)")
    store = TargetStore(pg_url)
    consumer = f"apply_{uuid.uuid4().hex[:8]}"
    try:
        applier = Applier(store, mapping(), TO_LEGACY, consumer)
        ev = Events(prefix="catalog")
        gone = [ev.delete("products", {"id": i, "sku": f"SKU-{i:06d}"}) for i in (1, 3)]
        outcome = applier.apply(gone)
        assert outcome.applied == 1 and [d.kind for d in outcome.dead] == ["constraint"]
        assert "order_items" in outcome.dead[0].reason
        assert rows(pg_url, "SELECT id FROM products ORDER BY id") == [(2,), (3,)]
        assert rows(pg_url, "SELECT product_id FROM inventory ORDER BY product_id") == [(2,), (3,)]
    finally:
        store.close()
        cleanup_cdc(pg_admin_url, consumer, None)
