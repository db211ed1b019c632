"""Consistent snapshots: exported-snapshot start with writes running, markers and positions,
resuming an interrupted snapshot, and re-snapshotting one table while streaming."""
from __future__ import annotations

import random
import threading

import psycopg2
import pytest

from cdc.capture_pg import PgCapture
from cdc.snapshot import PROGRESS_TABLE, libpq_dsn
from tests.cdc.capture_support import (RecordingSink, Running, apply_events, replay_in_order,
                                       rows_of, wait_for)

pytestmark = pytest.mark.postgres
TOPIC = "shop.public.products"
ROWS = 3000


@pytest.fixture
def db(pg_url):
    conn = psycopg2.connect(libpq_dsn(pg_url))
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("CREATE TABLE products (id int PRIMARY KEY, name text, price numeric(10,2), "
                "updated_at timestamp)")
    cur.execute("CREATE TABLE categories (id int PRIMARY KEY, name text)")
    cur.execute(f"INSERT INTO products SELECT g, 'p' || g, g / 100.0, "
                f"'2026-01-01'::timestamp + g * interval '1 second' "
                f"FROM generate_series(1, {ROWS}) g")
    cur.execute("INSERT INTO categories SELECT g, 'c' || g FROM generate_series(1, 20) g")
    yield cur
    conn.close()


def make_capture(pg_url, sink, **kwargs):
    kwargs.setdefault("heartbeat_interval_s", 0.2)
    kwargs.setdefault("flush_interval_s", 0.05)
    kwargs.setdefault("snapshot_chunk_rows", 250)
    cap = PgCapture(pg_url, "snap_" + pg_url.rsplit("/", 1)[1], "snap_pub",
                    ["products", "categories"], "shop", sink, **kwargs)
    cap.ensure_setup()
    return cap


class Writer:
    """Random inserts/updates/deletes (some several per transaction) until stopped."""

    def __init__(self, pg_url, seed: int):
        self.conn = psycopg2.connect(libpq_dsn(pg_url))
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.count = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        cur = self.conn.cursor()
        next_id = ROWS + 1
        while not self.stop.is_set():
            for _ in range(self.rng.randint(1, 4)):
                pick = self.rng.random()
                target = self.rng.randint(1, next_id)
                if pick < 0.4:
                    cur.execute("INSERT INTO products VALUES (%s, 'new', 1.00, now())",
                                (next_id,))
                    next_id += 1
                elif pick < 0.8:
                    cur.execute("UPDATE products SET name = name || '+', price = price + 1, "
                                "updated_at = now() WHERE id = %s", (target,))
                else:
                    cur.execute("DELETE FROM products WHERE id = %s", (target,))
                self.count += 1
            self.conn.commit()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)
        self.conn.close()


def table_rows(cur) -> dict:
    cur.execute("SELECT id, name, price::text, "
                "replace(updated_at::text, ' ', 'T') FROM products")
    return {(("id", r[0]),): {"id": r[0], "name": r[1], "price": r[2], "updated_at": r[3]}
            for r in cur.fetchall()}


def finish_stream(db, cap, sink) -> None:
    """Write a sentinel row and stream until it arrives: everything before it has too."""
    db.execute("INSERT INTO categories VALUES (-1, 'sentinel')")
    wait_for(lambda: any(e.key == {"id": -1} for e in sink.events), what="sentinel")


def test_snapshot_then_stream_with_writes_running_keeps_every_row_exactly_once(pg_url, db):
    sink = RecordingSink()
    cap = make_capture(pg_url, sink)
    with Writer(pg_url, seed=1) as writer:
        wait_for(lambda: writer.count > 20, what="writer running")
        emitted = cap.snapshot()
        during = writer.count
        with Running(cap):
            wait_for(lambda: writer.count > during + 200, what="writes after the snapshot")
            writer.stop.set()
            writer.thread.join(10)
            finish_stream(db, cap, sink)
    cap.close()
    reads = [e for e in sink.events if e.value and e.value["op"] == "r"]
    assert len(reads) == emitted
    read_keys = [(e.topic, e.key["id"]) for e in reads]
    assert len(read_keys) == len(set(read_keys))               # each row read once
    expected = table_rows(db)
    assert rows_of(replay_in_order(sink.events), TOPIC) == expected
    assert rows_of(apply_events(sink.events), TOPIC) == expected
    assert writer.count > during > 0


def test_snapshot_rows_are_marked_and_positioned_below_every_streamed_change(pg_url, db):
    sink = RecordingSink()
    cap = make_capture(pg_url, sink)
    emitted = cap.snapshot()
    assert emitted == ROWS + 20
    assert cap.snapshot() == 0                                  # done: a no-op
    with Running(cap):
        db.execute("UPDATE products SET name = 'x' WHERE id = 1")
        wait_for(lambda: any(e.value and e.value["op"] == "u" for e in sink.events),
                 what="update")
    cap.close()
    reads = [e for e in sink.events if e.value["op"] == "r"]
    markers = [e.value["source"]["snapshot"] for e in reads]
    assert markers[0] == "first" and markers[-1] == "last"
    assert set(markers[1:-1]) == {"true"}
    assert [e.key["id"] for e in reads if e.topic == TOPIC] == list(range(1, ROWS + 1))
    assert all(e.value["before"] is None for e in reads)
    assert len({e.position for e in reads}) == 1
    assert reads[0].value["source"]["lsn"] == reads[0].position
    update = sink.events[-1]
    assert update.position > reads[0].position
    assert reads[0].value["after"] == {"id": 1, "name": "p1", "price": "0.01",
                                       "updated_at": "2026-01-01T00:00:01"}


class FlakySink(RecordingSink):
    """Flushes `ok_flushes` times, then the transport 'goes down'."""

    def __init__(self, ok_flushes: int):
        super().__init__()
        self.ok_flushes = ok_flushes

    def flush(self, timeout_s: float) -> None:
        if self.ok_flushes == 0:
            raise ConnectionError("transport down")
        self.ok_flushes -= 1
        super().flush(timeout_s)


def test_interrupted_snapshot_resumes_after_the_last_flushed_key(pg_url, db):
    first = FlakySink(ok_flushes=4)
    cap = make_capture(pg_url, first)
    with pytest.raises(ConnectionError):
        cap.snapshot()
    cap.close()
    flushed = [e.key["id"] for e in first.events[:first.flushed]]
    db.execute(f"SELECT last_key, done FROM {PROGRESS_TABLE} WHERE table_name = "
               "'public.products'")
    last_key, done = db.fetchone()
    assert not done and last_key == [flushed[-1]] and flushed == list(range(1, len(flushed) + 1))
    # Changes while capture is down, on both sides of the resume point.
    db.execute("UPDATE products SET name = 'early' WHERE id = 2")
    db.execute("UPDATE products SET name = 'late' WHERE id = %s", (ROWS - 1,))
    db.execute("DELETE FROM products WHERE id IN (3, %s)", (ROWS,))
    db.execute("INSERT INTO products VALUES (%s, 'added', 9.99, '2026-02-02')", (ROWS + 5,))
    second = RecordingSink()
    cap = make_capture(pg_url, second)
    assert cap.snapshot() > 0
    resumed = [e.key["id"] for e in second.events if e.topic == TOPIC]
    assert resumed[0] == flushed[-1] + 1
    with Running(cap):
        finish_stream(db, cap, second)
    cap.close()
    events = first.events[:first.flushed] + second.events
    assert rows_of(apply_events(events), TOPIC) == table_rows(db)
    assert rows_of(replay_in_order(events), TOPIC) == table_rows(db)


def test_resnapshot_of_one_table_while_streaming_fills_the_target_without_reordering(pg_url, db):
    sink = RecordingSink()
    cap = make_capture(pg_url, sink, snapshot_chunk_rows=200)
    with Running(cap):   # no initial snapshot: the stream alone lacks the existing rows
        with Writer(pg_url, seed=2) as writer:
            wait_for(lambda: writer.count > 50, what="writer running")
            cap.request_snapshot("products")
            wait_for(lambda: cap.status().resnapshots_completed == 1, what="re-snapshot",
                     timeout_s=60)
            done_at = writer.count
            wait_for(lambda: writer.count > done_at + 100, what="writes after it")
        finish_stream(db, cap, sink)
    cap.close()
    reads = [e for e in sink.events if e.value and e.value["op"] == "r"]
    assert reads and {e.value["source"]["snapshot"] for e in reads} == {"incremental"}
    assert all(e.topic == TOPIC for e in reads)
    expected = table_rows(db)
    assert rows_of(replay_in_order(sink.events), TOPIC) == expected
    assert rows_of(apply_events(sink.events), TOPIC) == expected


def test_request_snapshot_refuses_a_table_that_is_not_captured(pg_url, db):
    cap = make_capture(pg_url, RecordingSink())
    with pytest.raises(ValueError, match="not captured"):
        cap.request_snapshot("public.orders")
    cap.close()


def test_a_table_added_to_the_capture_later_gets_its_own_snapshot(pg_url, db):
    sink = RecordingSink()
    cap = PgCapture(pg_url, "snap_" + pg_url.rsplit("/", 1)[1], "snap_pub", ["categories"],
                    "shop", sink)
    cap.ensure_setup()
    assert cap.snapshot() == 20
    cap.close()
    cap = make_capture(pg_url, sink)             # now products and categories
    assert cap.snapshot() == ROWS
    assert cap.snapshot() == 0
    cap.close()
    reads = [e for e in sink.events[20:]]
    assert {e.topic for e in reads} == {TOPIC}
    assert reads[-1].value["source"]["snapshot"] == "last"


def test_stream_only_start_takes_no_snapshot(pg_url, db):
    sink = RecordingSink()
    cap = make_capture(pg_url, sink)
    with Running(cap):
        pass
    assert cap.snapshot() == 0 and sink.events == []
    cap.close()
