"""End to end through real Kafka between two real PostgreSQL databases (legacy and service schemas)."""
from __future__ import annotations

import json
import os
from decimal import Decimal
import threading
import time
import uuid

import pytest

from cdc import dlq
from cdc.config import load_config
from cdc.mapping import TO_LEGACY, TO_SERVICE
from cdc.pipeline import Pipeline
from cdc.store import TargetStore
from cdc.transport_kafka import KafkaSource
from cdc_apply_helpers import (cleanup_cdc, create_legacy_schema, create_service_schema, execute,
                               new_stores, rows, seed_legacy, wait_streaming, wait_synced,
                               write_config)


@pytest.fixture
def stores(pg_database, pg_admin_url, kafka_bootstrap, tmp_path):
    cap, legacy, service = new_stores(pg_database, "c")
    config = load_config(cap, str(write_config(tmp_path, cap, legacy, service, kafka=kafka_bootstrap,
                                               batch_size=500)))
    yield config, legacy, service
    cleanup_cdc(pg_admin_url, cap, kafka_bootstrap)


def _writer(url: str, stop: threading.Event, start_id: int, done: list[int]) -> None:
    """Inserts, updates and deletes into legacy until stopped (what a live shop does)."""
    i = start_id
    while not stop.is_set():
        execute(url, "INSERT INTO products (id, sku, name, description, price, currency, category_id, updated_at) "
                     "VALUES (:i, 'W-' || :i, 'w', '', 1.50, 'EUR', 1, now())",
                f"UPDATE products SET price = price + 1, name = 'upd' WHERE id = :i - 7",
                f"DELETE FROM products WHERE id = :i - 11", params={"i": i})
        i += 1
        done.append(i)


def test_snapshot_then_stream_every_op_envelope_toast_and_poison(stores, kafka_bootstrap):
    config, legacy, service = stores
    seed_legacy(legacy, products=2000)
    # A service-side rule legacy does not have: such rows are poison for apply.
    execute(service, "ALTER TABLE products ADD CONSTRAINT no_poison CHECK (title <> 'poison')")
    stop, done = threading.Event(), []
    writer = threading.Thread(target=_writer, args=(legacy, stop, 10_000, done))
    writer.start()                                   # writes run while the snapshot is taken
    pipeline = Pipeline(config, [TO_SERVICE]).start()
    try:
        time.sleep(2)
        big = os.urandom(12_000).hex()               # incompressible: stored out of line (TOAST)
        execute(legacy, "UPDATE products SET description = :d WHERE id = 5", params={"d": big})
        execute(legacy, "INSERT INTO products (id, sku, name, description, price, currency, category_id, updated_at) "
                        "VALUES (900001, 'P-1', 'poison', '', 1, 'EUR', 1, now())")
        execute(legacy, "UPDATE products SET price = 77.70 WHERE id = 5")   # TOASTed column untouched
        execute(legacy, "INSERT INTO products (id, sku, name, description, price, currency, category_id, updated_at) "
                        "VALUES (900002, 'P-2', 'after the poison', '', 2.25, 'EUR', 2, now())")
        time.sleep(1)
        stop.set()
        writer.join()
        report = wait_synced(config, TO_SERVICE, expected=1)
        assert pipeline.errors == []
        # The only difference left is the poison row, and it sits in the DLQ with its reason.
        assert [(t.source, t.missing) for t in report.tables if t.differences] == [("products", [(900001,)])]
        assert rows(service, "SELECT length(description), price_cents FROM products WHERE id = 5") == [(24_000, 7770)]
        assert rows(service, "SELECT title, price_cents, category_slug FROM products WHERE id = 900002") == [
            ("after the poison", 225, "cat-2")]
        store = TargetStore(service)
        letters = dlq.letters(store, config.route(TO_SERVICE).name)
        store.close()
        assert [(lt.kind, lt.record().event.key) for lt in letters] == [("constraint", {"id": 900001})]
        assert "no_poison" in letters[0].reason
        assert len(done) > 10
    finally:
        pipeline.close()
    _check_envelopes(config, kafka_bootstrap)
    _check_dead_letter_topic(config, kafka_bootstrap)


def _check_dead_letter_topic(config, kafka_bootstrap):
    """The poison event is also on `<topic>.dlq`, as it was sent, with the reason in headers."""
    from confluent_kafka import Consumer
    topic = config.route(TO_SERVICE).topic("products")
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"probe{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([f"{topic}.dlq"])
    try:
        deadline, found = time.monotonic() + 30, []
        while not found and time.monotonic() < deadline:
            found = [m for m in consumer.consume(10, 0.5) if m.error() is None]
    finally:
        consumer.close()
    assert len(found) == 1
    headers = {k: v.decode() for k, v in found[0].headers()}
    assert json.loads(found[0].key()) == {"id": 900001}
    assert json.loads(found[0].value())["after"]["name"] == "poison"
    assert headers["strangler.dlq.kind"] == "constraint" and "no_poison" in headers["strangler.dlq.reason"]
    assert headers["strangler.dlq.topic"] == topic


def _check_envelopes(config, kafka_bootstrap):
    """Every op as any Debezium reader expects it, field by field."""
    route = config.route(TO_SERVICE)
    topic = route.topic("products")
    source = KafkaSource(kafka_bootstrap, f"probe{uuid.uuid4().hex[:6]}", [topic], lambda: {})
    seen: dict[str, object] = {}
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and len(seen) < 5:
            for r in source.poll(5000, 0.5):
                kind = "tombstone" if r.event.value is None else r.event.value["op"]
                seen.setdefault(kind, r)
    finally:
        source.close()
    assert len(source.assigned) == 3
    assert set(seen) == {"r", "c", "u", "d", "tombstone"}
    for op in ("r", "c", "u", "d"):
        value = seen[op].event.value
        assert set(value) >= {"before", "after", "source", "op", "ts_ms"}
        src = value["source"]
        assert src["connector"] == "postgresql" and src["name"] == route.source.topic_prefix
        assert (src["schema"], src["table"]) == ("public", "products")
        assert src["lsn"] == seen[op].event.position and isinstance(src["ts_ms"], int)
        assert src["snapshot"] in (("true", "first", "last") if op == "r" else ("false",))
        row = value["after"] if op != "d" else value["before"]
        assert set(row) == {"id", "sku", "name", "description", "price", "currency", "category_id", "updated_at"}
        assert seen[op].event.key == {"id": row["id"]}
        assert isinstance(row["price"], str)               # exact decimal, as Debezium's string mode
    assert seen["c"].event.value["before"] is None and seen["d"].event.value["after"] is None
    assert seen["u"].event.value["before"] is not None      # REPLICA IDENTITY FULL
    assert seen["tombstone"].event.key is not None


def test_reverse_sync_has_no_echo_loop(stores, kafka_bootstrap):
    config, legacy, service = stores
    seed_legacy(legacy, products=50)
    pipeline = Pipeline(config, [TO_SERVICE, TO_LEGACY]).start()
    try:
        assert wait_synced(config, TO_SERVICE).differences == 0
        wait_streaming(pipeline)
        # The service takes over writes for a product: the change flows back to legacy...
        execute(service, "UPDATE products SET title = 'from the service', price_cents = 4321 WHERE id = 7")
        execute(service, "INSERT INTO products (id, sku, title, description, price_cents, currency, "
                         "category_slug, updated_at) VALUES (5000, 'S-1', 'born in service', '', 100, 'EUR', "
                         "'cat-2', now())")
        assert wait_synced(config, TO_LEGACY).differences == 0
        assert rows(legacy, "SELECT name, price FROM products WHERE id = 7")[0][0] == "from the service"
        assert rows(legacy, "SELECT category_id FROM products WHERE id = 5000") == [(2,)]
        # ...and is not captured again on the legacy side and sent back (no echo).
        time.sleep(2)
        legacy_capture = next(c for c in pipeline.captures if c.route.direction == TO_SERVICE).capture
        assert legacy_capture.status().transactions_skipped_by_origin >= 1
        store = TargetStore(service)
        applied = store.positions(config.route(TO_SERVICE).topic("products"), ['{"id":7}', '{"id":5000}'])
        store.close()
        assert '{"id":5000}' not in applied                   # never came back from legacy
        snapshot_position = applied['{"id":7}']
        assert all(p == snapshot_position for p in applied.values())
        assert wait_synced(config, TO_SERVICE).differences == 0
        assert pipeline.errors == []
    finally:
        pipeline.close()


def test_sqlite_stores_over_the_embedded_log_both_ways_without_echo(tmp_path):
    """The `make demo` setting: no broker, SQLite on both sides, triggers + the origin marker."""
    from strangler.db import sqlite_url
    legacy, service = sqlite_url(tmp_path / "legacy.db"), sqlite_url(tmp_path / "service.db")
    create_legacy_schema(legacy)
    create_service_schema(service)
    seed_legacy(legacy, products=300)
    config = load_config("demo", str(write_config(tmp_path, "demo", legacy, service)))
    pipeline = Pipeline(config, [TO_SERVICE, TO_LEGACY]).start()
    try:
        assert wait_synced(config, TO_SERVICE, timeout_s=30).differences == 0
        wait_streaming(pipeline)
        execute(legacy, "UPDATE products SET price = 5.55 WHERE id = 3", "DELETE FROM products WHERE id = 4")
        execute(service, "UPDATE products SET title = 'service wrote this' WHERE id = 9")
        assert wait_synced(config, TO_SERVICE, timeout_s=30).differences == 0
        assert wait_synced(config, TO_LEGACY, timeout_s=30).differences == 0
        assert rows(service, "SELECT price_cents FROM products WHERE id = 3") == [(555,)]
        assert rows(legacy, "SELECT name FROM products WHERE id = 9") == [("service wrote this",)]
        time.sleep(1)
        # Applied changes carried the origin marker: each side's capture skipped them (no echo).
        skipped = [c.capture.status().skipped_by_origin for c in pipeline.captures]
        assert all(n >= 1 for n in skipped), skipped
        assert pipeline.errors == []
    finally:
        pipeline.close()


def test_apply_and_capture_survive_their_database_connections_being_killed(stores):
    """Stand-in for a PostgreSQL restart (the shared server must not be restarted): every backend
    of both pipeline sessions is terminated mid-stream; both reconnect and resume, nothing lost."""
    config, legacy, service = stores
    seed_legacy(legacy, products=500)
    pipeline = Pipeline(config, [TO_SERVICE]).start()
    stop, done = threading.Event(), []
    writer = threading.Thread(target=_writer, args=(legacy, stop, 20_000, done))
    try:
        assert wait_synced(config, TO_SERVICE).differences == 0
        writer.start()
        for _ in range(2):
            time.sleep(1)
            for url in (legacy, service):
                db = url.rsplit("/", 1)[1]
                execute(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d "
                             "AND (backend_type = 'walsender' OR application_name = 'strangler-cdc-apply')",
                        params={"d": db})
        time.sleep(1)
        stop.set()
        writer.join()
        assert wait_synced(config, TO_SERVICE, timeout_s=60).differences == 0
        assert pipeline.errors == [] and len(done) > 20
    finally:
        stop.set()
        pipeline.close()


def test_switching_write_ownership_mid_traffic_loses_and_duplicates_nothing(stores):
    """Legacy writes, then stops; drain; the service takes over the very same rows at once."""
    from cdc.drain import drain
    config, legacy, service = stores
    seed_legacy(legacy, products=100)
    pipeline = Pipeline(config, [TO_SERVICE, TO_LEGACY]).start()
    try:
        assert wait_synced(config, TO_SERVICE).differences == 0
        wait_streaming(pipeline)
        for i in range(200):                       # the old owner's last burst, still in flight...
            execute(legacy, "UPDATE products SET price = :p WHERE id = :id", params={"p": i, "id": 1 + i % 20})
        assert drain(config, TO_SERVICE, timeout_s=60)
        for i in range(200):                       # ...the new owner writes the same rows at once
            execute(service, "UPDATE products SET price_cents = :p WHERE id = :id",
                    params={"p": 100_000 + i, "id": 1 + i % 20})
        assert drain(config, TO_LEGACY, timeout_s=60)
        assert wait_synced(config, TO_LEGACY).differences == 0
        assert wait_synced(config, TO_SERVICE).differences == 0
        assert rows(legacy, "SELECT id, price FROM products WHERE id IN (1, 20) ORDER BY id") == [
            (1, Decimal("1001.80")), (20, Decimal("1001.99"))]
        assert pipeline.errors == []
    finally:
        pipeline.close()
