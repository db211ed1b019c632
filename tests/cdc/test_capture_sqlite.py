"""SqliteCapture: triggers into _cdc_changes, ordered polling, pruning, snapshots, loop
prevention with the origin marker, and PostgreSQL-identical value rendering."""
from __future__ import annotations

import sqlite3
import threading

import pytest

from cdc.capture_sqlite import CHANGES, ORIGIN, SqliteCapture, applying_origin
from cdc.envelope import VERSION
from tests.cdc.capture_support import (RecordingSink, Running, replay_in_order, rows_of,
                                       wait_for)

TOPIC = "shop.main.products"


@pytest.fixture
def path(tmp_path):
    db = tmp_path / "legacy.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, name VARCHAR(200), "
                 "price NUMERIC(10, 2), active BOOLEAN, updated_at DATETIME, photo BLOB)")
    conn.execute("CREATE TABLE cart_items (cart_id INTEGER, product_id INTEGER, "
                 "quantity INTEGER, PRIMARY KEY (cart_id, product_id))")
    conn.close()
    return db


def connect(path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    return conn


def make_capture(path, sink, **kwargs) -> SqliteCapture:
    cap = SqliteCapture(f"sqlite:///{path}", ["products", "cart_items"], "shop", sink,
                        poll_interval_s=0.01, **kwargs)
    cap.ensure_setup()
    return cap


def test_triggers_capture_every_op_with_before_and_after_images(path):
    sink = RecordingSink()
    cap = make_capture(path, sink)
    cap.poll_once()                       # starts streaming from now (no snapshot)
    conn = connect(path)
    conn.execute("INSERT INTO products VALUES (1, 'Lamp', 12.5, 1, "
                 "'2026-01-02 03:04:05.123456', x'00ff')")
    conn.execute("UPDATE products SET price = 13, active = 0 WHERE id = 1")
    conn.execute("DELETE FROM products WHERE id = 1")
    assert cap.poll_once() == 3
    create, update, delete, tombstone = sink.events
    row = {"id": 1, "name": "Lamp", "price": "12.50", "active": True,
           "updated_at": "2026-01-02T03:04:05.123456", "photo": "00ff"}
    assert create.key == {"id": 1} and create.topic == TOPIC
    assert create.value["op"] == "c" and create.value["before"] is None
    assert create.value["after"] == row
    assert update.value["op"] == "u" and update.value["before"] == row
    assert update.value["after"] == {**row, "price": "13.00", "active": False}
    assert delete.value["op"] == "d" and delete.value["after"] is None
    assert delete.value["before"] == update.value["after"]
    assert tombstone.key == {"id": 1} and tombstone.value is None
    source = create.value["source"]
    assert source == {"version": VERSION, "connector": "sqlite", "name": "shop",
                      "ts_ms": source["ts_ms"], "snapshot": "false", "db": "legacy",
                      "sequence": None, "schema": "main", "table": "products", "txId": None,
                      "lsn": create.position, "xmin": None}
    assert source["ts_ms"] > 1_600_000_000_000
    assert create.position < update.position < delete.position
    cap.close()


def test_changes_are_polled_in_commit_order_across_connections(path):
    sink = RecordingSink()
    cap = make_capture(path, sink, batch_rows=7)
    cap.poll_once()
    a, b = connect(path), connect(path)
    for i in range(20):
        writer = a if i % 2 else b
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO cart_items VALUES (?, ?, 1)", (i, i))
        writer.execute("UPDATE cart_items SET quantity = 2 WHERE cart_id = ?", (i,))
        writer.execute("COMMIT")
    while cap.poll_once():
        pass
    keys = [(e.key["cart_id"], e.value["op"]) for e in sink.events]
    assert keys == [k for i in range(20) for k in ((i, "c"), (i, "u"))]
    positions = [e.position for e in sink.events]
    assert positions == sorted(positions) and len(set(positions)) == 40
    assert sink.events[0].key == {"cart_id": 0, "product_id": 0}
    cap.close()


def test_flushed_changes_are_pruned_but_not_past_the_slowest_slot(path):
    fast, slow = RecordingSink(), RecordingSink()
    first = make_capture(path, fast, slot="fast")
    second = make_capture(path, slow, slot="slow")
    first.poll_once(), second.poll_once()
    conn = connect(path)
    for i in range(5):
        conn.execute("INSERT INTO products (id, name) VALUES (?, 'x')", (i,))
    first.poll_once()
    assert conn.execute(f"SELECT count(*) FROM {CHANGES}").fetchone()[0] == 5  # slow still needs them
    second.poll_once()
    assert conn.execute(f"SELECT count(*) FROM {CHANGES}").fetchone()[0] == 0
    assert len(fast.events) == len(slow.events) == 5
    first.close(), second.close()


def test_unflushed_changes_keep_their_offset_and_are_sent_again(path):
    sink = RecordingSink(refuse_flush=True)
    cap = make_capture(path, sink)
    cap.poll_once()
    conn = connect(path)
    conn.execute("INSERT INTO products (id, name) VALUES (1, 'x')")
    assert cap.poll_once() == 0 and len(sink.events) == 1
    assert cap.status().last_error is not None and cap.status().pending_changes == 1
    assert conn.execute(f"SELECT count(*) FROM {CHANGES}").fetchone()[0] == 1
    cap.close()
    again = RecordingSink()                       # a restart with a working transport
    cap = make_capture(path, again)
    assert cap.poll_once() == 1 and again.events[0].key == {"id": 1}
    assert cap.status().pending_changes == 0
    cap.close()


def test_changes_written_under_the_origin_marker_are_not_captured(path):
    sink = RecordingSink()
    cap = make_capture(path, sink)
    cap.poll_once()
    applier, shop = connect(path), connect(path)
    with applying_origin(applier, "strangler-apply"):
        applier.execute("INSERT INTO products (id, name) VALUES (1, 'from the service')")
        applier.execute("UPDATE products SET name = 'again' WHERE id = 1")
    shop.execute("UPDATE products SET name = 'shop edit' WHERE id = 1")
    with pytest.raises(RuntimeError):
        with applying_origin(applier):
            applier.execute("INSERT INTO products (id, name) VALUES (2, 'rolled back')")
            raise RuntimeError("apply failed")
    cap.poll_once()
    assert [(e.key, e.value["op"], e.value["after"]["name"]) for e in sink.events] == \
        [({"id": 1}, "u", "shop edit")]
    assert cap.status().skipped_by_origin == 2
    assert shop.execute(f"SELECT count(*) FROM {ORIGIN}").fetchone()[0] == 0
    cap.close()


def test_snapshot_with_writes_running_then_polling_gives_every_row_once(path):
    conn = connect(path)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO products (id, name, price) VALUES (?, ?, ?)",
                     [(i, f"p{i}", i / 4) for i in range(1, 2001)])
    conn.execute("COMMIT")
    sink = RecordingSink()
    cap = make_capture(path, sink, snapshot_chunk_rows=100)
    stop = threading.Event()
    done = []

    def write() -> None:
        w = connect(path)
        w.execute("PRAGMA synchronous=NORMAL")
        n = 2001
        while not stop.is_set():
            w.execute("INSERT INTO products (id, name, price) VALUES (?, 'new', 1)", (n,))
            w.execute("UPDATE products SET name = name || '+' WHERE id = ?", (n % 1500 + 1,))
            w.execute("DELETE FROM products WHERE id = ?", (n % 997 + 3,))
            n += 1
        done.append(n)
        w.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        emitted = cap.snapshot()
        assert cap.snapshot() == 0
        with Running(cap):
            wait_for(lambda: cap.status().events_total > emitted + 50, what="streamed changes")
            stop.set()
            writer.join()
            wait_for(lambda: cap.status().pending_changes == 0, what="caught up")
    finally:
        stop.set()
        writer.join()
    reads = [e for e in sink.events if e.value and e.value["op"] == "r"]
    assert len(reads) == emitted == len({e.key["id"] for e in reads})
    assert reads[0].value["source"]["snapshot"] == "first"
    assert reads[-1].value["source"]["snapshot"] == "last"
    expected = {(("id", i),): {"id": i, "name": n, "price": f"{p:.2f}" if p is not None else None,
                               "active": None, "updated_at": None, "photo": None}
                for i, n, p in conn.execute("SELECT id, name, price FROM products")}
    assert rows_of(replay_in_order(sink.events), TOPIC) == expected
    cap.close()


def test_added_column_appears_once_triggers_are_reinstalled(path):
    sink = RecordingSink()
    cap = make_capture(path, sink)
    cap.poll_once()
    conn = connect(path)
    conn.execute("ALTER TABLE products ADD COLUMN colour TEXT")
    cap.poll_once()                              # notices the schema change
    conn.execute("INSERT INTO products (id, name, colour) VALUES (1, 'x', 'red')")
    cap.poll_once()
    assert sink.events[0].value["after"]["colour"] == "red"
    cap.close()


def test_requested_resnapshot_re_emits_one_table(path):
    sink = RecordingSink()
    cap = make_capture(path, sink)
    conn = connect(path)
    conn.execute("INSERT INTO products (id, name) VALUES (1, 'a'), (2, 'b')")
    conn.execute("INSERT INTO cart_items VALUES (1, 1, 1)")
    assert cap.snapshot() == 3
    cap.request_snapshot("main.products")
    with pytest.raises(ValueError):
        cap.request_snapshot("orders")
    cap.poll_once()
    again = [e for e in sink.events[3:]]
    assert [(e.key, e.value["source"]["snapshot"]) for e in again] == \
        [({"id": 1}, "incremental"), ({"id": 2}, "incremental")]
    cap.close()


def test_tables_without_a_key_or_missing_are_refused(path):
    from strangler.errors import OperatorError

    connect(path).execute("CREATE TABLE no_key (a INTEGER)")
    for tables, message in ((["no_key"], "no primary key"), (["nowhere"], "no such table")):
        cap = SqliteCapture(path, tables, "shop", RecordingSink())
        with pytest.raises(OperatorError, match=message):
            cap.ensure_setup()
        cap.close()


def test_a_slot_taking_its_snapshot_keeps_other_slots_from_pruning_its_changes(path):
    conn = connect(path)
    first = make_capture(path, RecordingSink(), slot="a")
    first.poll_once()
    conn.execute("INSERT INTO products (id, name) VALUES (1, 'before')")

    class Meddling(RecordingSink):
        """While slot b reads its snapshot, a write lands and slot a prunes what it passed."""

        def send(self, event):
            super().send(event)
            if len(self.events) == 1:
                conn.execute("INSERT INTO products (id, name) VALUES (2, 'during')")
                first.poll_once()

    sink = Meddling()
    second = make_capture(path, sink, slot="b")
    assert second.snapshot() == 1
    second.poll_once()
    assert [(e.key, e.value["op"]) for e in sink.events] == [({"id": 1}, "r"), ({"id": 2}, "c")]
    first.close(), second.close()


def test_paths_and_sqlalchemy_urls_name_the_same_file(path):
    from cdc.capture_sqlite import sqlite_path

    assert sqlite_path(path) == str(path)
    assert sqlite_path(f"sqlite:///{path}") == str(path)
    assert sqlite_path(f"sqlite+pysqlite:///{path}") == str(path)


@pytest.mark.parametrize("stored,rendered", [
    ("2026-11-28 05:31:00.000000", "2026-11-28T05:31:00"),       # SQLAlchemy's padding
    ("2026-11-28 05:31:00.120000", "2026-11-28T05:31:00.12"),
    ("2026-11-28 05:31:00", "2026-11-28T05:31:00"),
    ("2026-11-28 05:31", "2026-11-28T05:31:00"),
    ("2026-11-28 05:31:00.5+00:00", "2026-11-28T05:31:00.5Z"),
    ("2026-11-28 07:31:00.25+02:00", "2026-11-28T05:31:00.25Z"),
    ("not a time", "not a time"),
])
def test_timestamps_render_as_postgresql_capture_renders_them(path, stored, rendered):
    sink = RecordingSink()
    cap = make_capture(path, sink)
    cap.poll_once()
    connect(path).execute("INSERT INTO products (id, updated_at) VALUES (1, ?)", (stored,))
    cap.poll_once()
    assert sink.events[0].value["after"]["updated_at"] == rendered
    cap.close()


def test_replace_deleting_another_row_is_captured_with_recursive_triggers(path):
    sink = RecordingSink()
    conn = connect(path)
    conn.execute("CREATE TABLE slugs (id INTEGER PRIMARY KEY, slug TEXT UNIQUE)")
    conn.execute("INSERT INTO slugs VALUES (1, 'lamps')")
    cap = SqliteCapture(path, ["slugs"], "shop", sink, poll_interval_s=0.01)
    cap.ensure_setup()
    cap.poll_once()
    conn.execute("PRAGMA recursive_triggers=ON")
    conn.execute("INSERT OR REPLACE INTO slugs VALUES (2, 'lamps')")   # removes row 1
    cap.poll_once()
    assert [(e.key, e.value and e.value["op"]) for e in sink.events] == [
        ({"id": 1}, "d"), ({"id": 1}, None), ({"id": 2}, "c")]
    cap.close()
