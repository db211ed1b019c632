"""PgCapture against the real PostgreSQL 15: ops, envelopes, TOAST, schema changes, safe
acknowledgement, restart, heartbeats and origin filtering."""
from __future__ import annotations

import json
import random
import string
import time

import psycopg2
import pytest

from cdc.capture_pg import HEARTBEAT_TABLE, PgCapture
from cdc.envelope import VERSION
from cdc.pgoutput import lsn_to_int
from cdc.snapshot import libpq_dsn, wait_slot_released
from tests.cdc.capture_support import RecordingSink, Running, wait_for

pytestmark = pytest.mark.postgres


@pytest.fixture
def db(pg_url):
    conn = psycopg2.connect(libpq_dsn(pg_url))
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("CREATE TABLE products (id int PRIMARY KEY, sku text, name text, "
                "price numeric(10,2), active boolean, updated_at timestamp, description text)")
    cur.execute("CREATE TABLE audit_log (id bigserial PRIMARY KEY, payload text)")
    yield cur
    conn.close()


def slot_name(pg_url) -> str:
    """Slots are cluster-wide: name them after the test's own database."""
    return "cap_" + pg_url.rsplit("/", 1)[1]


def make_capture(pg_url, sink, tables=("products",), **kwargs):
    kwargs.setdefault("heartbeat_interval_s", 0.2)
    kwargs.setdefault("flush_interval_s", 0.05)
    cap = PgCapture(pg_url, slot_name(pg_url), "cap_pub", list(tables), "shop", sink, **kwargs)
    cap.ensure_setup()
    return cap


def current_lsn(cur) -> int:
    cur.execute("SELECT pg_current_wal_lsn()::text")
    return lsn_to_int(cur.fetchone()[0])


def slot_lsns(cur) -> tuple[int, int]:
    cur.execute("SELECT confirmed_flush_lsn::text, restart_lsn::text FROM pg_replication_slots "
                "WHERE database = current_database() AND slot_name LIKE 'cap%%'")
    confirmed, restart = cur.fetchone()
    return lsn_to_int(confirmed), lsn_to_int(restart)


def random_text(n: int) -> str:
    return "".join(random.choices(string.ascii_letters + string.digits, k=n))


def test_each_op_becomes_a_debezium_envelope_field_by_field(pg_url, db):
    sink = RecordingSink()
    cap = make_capture(pg_url, sink)
    with Running(cap):
        db.execute("INSERT INTO products VALUES (1, 'SKU-1', 'Lamp', 12.50, true, "
                   "'2026-01-02 03:04:05.123456', 'bright')")
        db.execute("UPDATE products SET price = 13.00, name = 'Lamp 2' WHERE id = 1")
        db.execute("DELETE FROM products WHERE id = 1")
        db.execute("TRUNCATE products")
        wait_for(lambda: any(v["op"] == "t" for v in sink.values()), what="the truncate")
    cap.close()
    db.execute("SELECT current_database()")
    dbname = db.fetchone()[0]
    events = [e for e in sink.events]
    assert [(e.key, e.value and e.value["op"]) for e in events] == [
        ({"id": 1}, "c"), ({"id": 1}, "u"), ({"id": 1}, "d"), ({"id": 1}, None), (None, "t")]
    assert all(e.topic == "shop.public.products" for e in events)
    row = {"id": 1, "sku": "SKU-1", "name": "Lamp", "price": "12.50", "active": True,
           "updated_at": "2026-01-02T03:04:05.123456", "description": "bright"}
    create, update, delete, tombstone, truncate = events
    assert create.value["before"] is None and create.value["after"] == row
    assert update.value["before"] == row       # REPLICA IDENTITY FULL: the whole old row
    assert update.value["after"] == {**row, "price": "13.00", "name": "Lamp 2"}
    assert delete.value["before"] == update.value["after"] and delete.value["after"] is None
    assert tombstone.value is None and tombstone.position == delete.position
    assert truncate.value["before"] is None and truncate.value["after"] is None
    positions = [create.position, update.position, delete.position, truncate.position]
    assert positions == sorted(positions) and len(set(positions)) == 4
    tx_ids = set()
    for event in (create, update, delete, truncate):
        value, source = event.value, event.value["source"]
        assert set(value) == {"before", "after", "source", "op", "ts_ms", "transaction"}
        assert source["version"] == VERSION and source["connector"] == "postgresql"
        assert source["name"] == "shop" and source["db"] == dbname
        assert (source["schema"], source["table"]) == ("public", "products")
        assert source["snapshot"] == "false"
        assert source["lsn"] == event.position
        assert isinstance(source["txId"], int)
        tx_ids.add(source["txId"])
        commit_lsn, change_lsn = (int(x) for x in json.loads(source["sequence"]))
        assert change_lsn == source["lsn"] and commit_lsn > change_lsn
        assert 0 < source["ts_ms"] <= value["ts_ms"]
    assert len(tx_ids) == 4


def test_ensure_setup_sets_replica_identity_full_and_publishes_heartbeat(pg_url, db):
    make_capture(pg_url, RecordingSink()).close()
    db.execute("SELECT relreplident FROM pg_class WHERE relname = 'products'")
    assert db.fetchone()[0] == "f"
    db.execute("SELECT tablename FROM pg_publication_tables WHERE pubname = 'cap_pub' "
               "ORDER BY 1")
    assert [r[0] for r in db.fetchall()] == ["products", HEARTBEAT_TABLE]
    make_capture(pg_url, RecordingSink()).close()   # idempotent


def test_primary_key_change_and_bad_table_lists(pg_url, db):
    from strangler.errors import OperatorError

    sink = RecordingSink()
    cap = make_capture(pg_url, sink)
    with Running(cap):
        db.execute("INSERT INTO products (id, name) VALUES (1, 'a')")
        db.execute("UPDATE products SET id = 5 WHERE id = 1")
        wait_for(lambda: len(sink.events) == 4, what="key change")
    cap.close()
    assert [(e.key, e.value and e.value["op"]) for e in sink.events] == [
        ({"id": 1}, "c"), ({"id": 1}, "d"), ({"id": 1}, None), ({"id": 5}, "c")]
    db.execute("CREATE TABLE no_key (a int)")
    for tables, message in ((["no_key"], "no primary key"), (["nowhere"], "does not exist")):
        with pytest.raises(OperatorError, match=message):
            make_capture(pg_url, sink, tables=tables)


def test_untouched_toasted_column_is_never_given_a_fake_value(pg_url, db):
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, title text, body text)")
    big = random_text(20_000)   # random, so it stays out of line instead of compressing
    db.execute("INSERT INTO docs VALUES (1, 'a', %s), (2, 'a', %s)", (big, big))
    sink = RecordingSink()
    cap = make_capture(pg_url, sink, tables=("docs",))
    db.execute("SELECT pg_column_size(body) FROM docs WHERE id = 1")
    assert db.fetchone()[0] > 2000
    db.execute("ALTER TABLE docs REPLICA IDENTITY DEFAULT")   # key-only old row: no old body
    with Running(cap):
        db.execute("UPDATE docs SET title = 'b' WHERE id = 1")
        db.execute("ALTER TABLE docs REPLICA IDENTITY FULL")
        db.execute("UPDATE docs SET title = 'c' WHERE id = 2")
        wait_for(lambda: len(sink.events) == 2, what="two updates")
    cap.close()
    key_only, full = (e.value for e in sink.events)
    # Without the old value the column is left out and named, never a placeholder.
    assert key_only["after"] == {"id": 1, "title": "b"}
    assert key_only["unavailable_columns"] == ["body"]
    # With REPLICA IDENTITY FULL the old row carries the real value: after = the true row.
    assert full["after"] == {"id": 2, "title": "c", "body": big}
    assert full["before"]["body"] == big and "unavailable_columns" not in full


def test_column_added_mid_stream_appears_in_later_events(pg_url, db):
    sink = RecordingSink()
    cap = make_capture(pg_url, sink)
    with Running(cap):
        db.execute("INSERT INTO products (id, name) VALUES (1, 'before')")
        wait_for(lambda: len(sink.events) == 1, what="first insert")
        db.execute("ALTER TABLE products ADD COLUMN colour text DEFAULT 'red'")
        db.execute("INSERT INTO products (id, name, colour) VALUES (2, 'after', 'blue')")
        db.execute("UPDATE products SET name = 'old row' WHERE id = 1")
        wait_for(lambda: len(sink.events) == 3, what="events after ALTER")
    cap.close()
    first, second, third = (e.value for e in sink.events)
    assert "colour" not in first["after"]
    assert second["after"]["colour"] == "blue"
    assert third["before"]["colour"] == "red" and third["after"]["name"] == "old row"


def test_acknowledged_lsn_never_passes_unflushed_events(pg_url, db):
    sink = RecordingSink(refuse_flush=True)
    cap = make_capture(pg_url, sink)
    with Running(cap):
        # Once a heartbeat has been received, psycopg2 can no longer move the flush position
        # by itself (it only does so while nothing unacknowledged has arrived).
        wait_for(lambda: cap.status().received_lsn is not None, what="a heartbeat received")
        before_writes = current_lsn(db)
        for i in range(20):
            db.execute("INSERT INTO products (id, name) VALUES (%s, 'x')", (i,))
        wait_for(lambda: len(sink.events) == 20, what="events sent")
        wait_for(lambda: cap.status().last_error is not None, what="a refused flush")
        confirmed, _ = slot_lsns(db)
        assert confirmed <= before_writes
    cap.close()
    assert slot_lsns(db)[0] <= before_writes
    # The same writes, once a sink does flush, move the slot past them.
    good = RecordingSink()
    cap = make_capture(pg_url, good)
    after_writes = current_lsn(db)
    with Running(cap):
        wait_for(lambda: slot_lsns(db)[0] >= after_writes, what="acknowledgement")
    cap.close()
    assert [e.key["id"] for e in good.events[:20]] == list(range(20))


def test_restart_resumes_from_the_acknowledged_position_without_loss(pg_url, db):
    first = RecordingSink()
    cap = make_capture(pg_url, first)
    with Running(cap):
        db.execute("INSERT INTO products (id, name) SELECT g, 'a' FROM generate_series(1, 50) g")
        after_batch = current_lsn(db)
        wait_for(lambda: lsn_to_int(cap.status().flushed_lsn or "0/0") >= after_batch,
                 what="batch 1 acknowledged")
    cap.close()
    # Changes made while capture is down are retained by the slot and delivered on restart.
    db.execute("INSERT INTO products (id, name) SELECT g, 'b' FROM generate_series(51, 80) g")
    db.execute("UPDATE products SET name = 'c' WHERE id <= 10")
    db.execute("DELETE FROM products WHERE id > 75")
    second = RecordingSink()
    cap = make_capture(pg_url, second)
    with Running(cap):
        wait_for(lambda: sum(1 for v in second.values() if v["op"] == "d") == 5, what="batch 2")
    cap.close()
    ops = [(e.value["op"], e.key["id"]) for e in second.events if e.value is not None]
    assert ops == ([("c", i) for i in range(51, 81)] + [("u", i) for i in range(1, 11)]
                   + [("d", i) for i in range(76, 81)])


def test_heartbeat_advances_an_idle_slot_while_other_tables_take_writes(pg_url, db):
    sink = RecordingSink()
    cap = make_capture(pg_url, sink, heartbeat_interval_s=0.1)
    with Running(cap):
        wait_for(lambda: cap.status().flushed_lsn is not None, what="first heartbeat ack")
        start = current_lsn(db)
        for _ in range(20):   # ~4 MB of WAL in a table capture does not publish
            db.execute("INSERT INTO audit_log (payload) SELECT repeat(md5(g::text), 6) "
                       "FROM generate_series(1, 1000) g")
        written = current_lsn(db)
        wait_for(lambda: slot_lsns(db)[0] >= written, what="confirmed_flush past the writes")
        # restart_lsn moves at the next running-xacts record with no older transaction open
        # (cluster-wide, so another session's transaction can hold it a moment); a checkpoint
        # logs such a record now rather than at the bgwriter's next 15 s tick.
        checkpoints = [0.0]

        def restart_moved() -> bool:
            if time.monotonic() - checkpoints[-1] > 2:
                db.execute("CHECKPOINT")
                checkpoints.append(time.monotonic())
            return slot_lsns(db)[1] > start
        wait_for(restart_moved, timeout_s=60, what="restart_lsn past the writes")
        status = cap.status()
    cap.close()
    assert sink.events == []                       # heartbeats are not emitted as events
    assert status.retained_wal_bytes is not None
    assert status.retained_wal_bytes < written - start + (current_lsn(db) - written)


def test_transactions_replayed_under_a_replication_origin_are_dropped(pg_url, db):
    db.execute("SELECT pg_replication_origin_create('strangler_apply_test')")
    applier = psycopg2.connect(libpq_dsn(pg_url))
    applier.autocommit = True
    acur = applier.cursor()
    acur.execute("SELECT pg_replication_origin_session_setup('strangler_apply_test')")
    sink = RecordingSink()
    cap = make_capture(pg_url, sink)
    try:
        with Running(cap):
            acur.execute("INSERT INTO products (id, name) VALUES (1, 'from apply')")
            acur.execute("UPDATE products SET name = 'from apply 2' WHERE id = 1")
            db.execute("INSERT INTO products (id, name) VALUES (2, 'from the shop')")
            wait_for(lambda: len(sink.events) == 1, what="the shop's insert")
            wait_for(lambda: cap.status().transactions_skipped_by_origin == 2, what="skips")
    finally:
        acur.execute("SELECT pg_replication_origin_session_reset()")
        applier.close()
        cap.close()
    assert [e.key for e in sink.events] == [{"id": 2}]
    db.execute("SELECT pg_replication_origin_drop('strangler_apply_test')")


def test_pg15_pgoutput_sends_origin_right_after_begin(pg_url, db):
    """The premise of loop prevention, checked on the raw stream rather than assumed."""
    from psycopg2.extras import LogicalReplicationConnection
    from cdc import pgoutput

    make_capture(pg_url, RecordingSink()).close()
    raw_slot = "raw_" + pg_url.rsplit("/", 1)[1]
    db.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (raw_slot,))
    db.execute("SELECT pg_replication_origin_create('strangler_raw')")
    db.execute("BEGIN")
    db.execute("SELECT pg_replication_origin_session_setup('strangler_raw')")
    db.execute("SELECT pg_replication_origin_xact_setup('0/AB', now())")
    db.execute("INSERT INTO products (id, name) VALUES (7, 'applied')")
    db.execute("COMMIT")
    db.execute("SELECT pg_replication_origin_session_reset()")
    conn = psycopg2.connect(libpq_dsn(pg_url), connection_factory=LogicalReplicationConnection)
    try:
        cur = conn.cursor()
        cur.start_replication(slot_name=raw_slot, decode=False,
                              options={"proto_version": "1", "publication_names": "cap_pub"})
        kinds: list = []

        def collect():
            msg = cur.read_message()
            if msg is not None:
                kinds.append(pgoutput.parse(msg.payload))
            return any(isinstance(k, pgoutput.Commit) for k in kinds)
        wait_for(collect, what="the applied transaction")
    finally:
        conn.close()
    types = [type(k).__name__ for k in kinds]
    assert types[:2] == ["Begin", "Origin"]
    origin = kinds[1]
    assert origin.name == "strangler_raw" and origin.origin_lsn == 0xAB
    wait_slot_released(libpq_dsn(pg_url), raw_slot)
    db.execute("SELECT pg_drop_replication_slot(%s)", (raw_slot,))
    db.execute("SELECT pg_replication_origin_drop('strangler_raw')")


@pytest.mark.kafka
def test_events_reach_real_kafka_keyed_and_the_slot_moves_only_after_kafka_holds_them(
        pg_url, db, kafka_bootstrap):
    import uuid

    from confluent_kafka.admin import AdminClient

    from cdc.transport_kafka import KafkaSink, KafkaSource

    prefix = f"cap{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.public.products"
    sink = KafkaSink(kafka_bootstrap, partitions=3)
    cap = PgCapture(pg_url, slot_name(pg_url), "cap_pub", ["products"], prefix, sink,
                    heartbeat_interval_s=0.2, flush_interval_s=0.05)
    cap.ensure_setup()
    try:
        with Running(cap):
            db.execute("INSERT INTO products (id, name, price) VALUES (1, 'a', 1.50), "
                       "(2, 'b', 2.50)")
            db.execute("UPDATE products SET name = 'a2' WHERE id = 1")
            db.execute("DELETE FROM products WHERE id = 2")
            written = current_lsn(db)
            wait_for(lambda: slot_lsns(db)[0] >= written, what="acknowledged after Kafka flush")
        cap.close()
        source = KafkaSource(kafka_bootstrap, f"g{uuid.uuid4().hex[:8]}", [topic], lambda: {})
        got: list = []
        try:
            wait_for(lambda: got.extend(source.poll(100, 0.2)) or len(got) >= 5,
                     timeout_s=30, what="events in Kafka")
        finally:
            source.close()
        by_key: dict = {}
        for record in sorted(got, key=lambda r: (r.partition, r.offset)):
            by_key.setdefault(record.event.key["id"], []).append(record)
        assert [r.event.value and r.event.value["op"] for r in by_key[1]] == ["c", "u"]
        assert [r.event.value and r.event.value["op"] for r in by_key[2]] == ["c", "d", None]
        assert by_key[1][1].event.value["after"] == {
            "id": 1, "sku": None, "name": "a2", "price": "1.50", "active": None,
            "updated_at": None, "description": None}
        assert len({r.partition for r in by_key[2]}) == 1
        assert all(r.event.position == r.event.value["source"]["lsn"]
                   for r in got if r.event.value)
    finally:
        sink.close()
        AdminClient({"bootstrap.servers": kafka_bootstrap}).delete_topics([topic])


CAPTURE_PROCESS = """
import sys, threading
from cdc.capture_pg import PgCapture
from cdc.transport_embedded import EmbeddedSink
dsn, slot, log = sys.argv[1:4]
cap = PgCapture(dsn, slot, "cap_pub", ["products"], "shop", EmbeddedSink(log),
                heartbeat_interval_s=0.2, flush_interval_s=0.05)
cap.ensure_setup()
cap.snapshot()
cap.run(threading.Event())
"""


def test_kill_9_of_the_capture_process_loses_nothing(pg_url, db, tmp_path):
    import signal
    import sqlite3
    import subprocess
    import sys
    import threading

    from cdc.events import ChangeEvent
    from tests.cdc.capture_support import apply_events, rows_of

    db.execute("INSERT INTO products (id, name) SELECT g, 'p' FROM generate_series(1, 500) g")
    log = tmp_path / "log.db"
    args = [sys.executable, "-c", CAPTURE_PROCESS, libpq_dsn(pg_url), slot_name(pg_url), str(log)]

    def logged() -> int:
        if not log.exists():
            return 0
        with sqlite3.connect(log) as conn:
            try:
                return conn.execute("SELECT count(*) FROM cdc_log").fetchone()[0]
            except sqlite3.OperationalError:
                return 0

    stop = threading.Event()

    def write() -> None:
        conn = psycopg2.connect(libpq_dsn(pg_url))
        conn.autocommit = True
        cur, i = conn.cursor(), 1000
        while not stop.is_set():
            cur.execute("INSERT INTO products (id, name) VALUES (%s, 'w')", (i,))
            cur.execute("UPDATE products SET name = name || '+' WHERE id = %s", (i % 500 + 1,))
            i += 1
        conn.close()

    writer = threading.Thread(target=write)
    process = subprocess.Popen(args)
    try:
        wait_for(lambda: logged() >= 500, timeout_s=30, what="snapshot in the log")
        writer.start()
        wait_for(lambda: logged() >= 800, timeout_s=30, what="streaming into the log")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        wait_slot_released(libpq_dsn(pg_url), slot_name(pg_url))
        process = subprocess.Popen(args)
        at_kill = logged()
        wait_for(lambda: logged() >= at_kill + 300, timeout_s=30, what="streaming after restart")
        stop.set()
        writer.join()
        db.execute("INSERT INTO products (id, name) VALUES (-1, 'sentinel')")
        with sqlite3.connect(log) as conn:
            wait_for(lambda: conn.execute("SELECT count(*) FROM cdc_log WHERE key = '{\"id\":-1}'")
                     .fetchone()[0] > 0, timeout_s=30, what="sentinel")
            rows = conn.execute("SELECT topic, key, value, position FROM cdc_log ORDER BY id")
            events = [ChangeEvent(t, json.loads(k), v and json.loads(v), p) for t, k, v, p in rows]
    finally:
        stop.set()
        if writer.is_alive():
            writer.join()
        process.kill()
        process.wait(10)
        wait_slot_released(libpq_dsn(pg_url), slot_name(pg_url))
    db.execute("SELECT id, name FROM products")
    expected = {(("id", i),): n for i, n in db.fetchall()}
    got = {k: v["name"] for k, v in rows_of(apply_events(events), "shop.public.products").items()}
    assert got == expected


def test_a_dropped_replication_connection_stops_run_and_a_new_run_resumes(pg_url, db):
    first = RecordingSink()
    cap = make_capture(pg_url, first)
    runner = Running(cap)
    with pytest.raises(psycopg2.Error):
        with runner:
            db.execute("INSERT INTO products (id, name) SELECT g, 'a' FROM generate_series(1, 20) g")
            wait_for(lambda: len(first.events) == 20, what="first batch")
            db.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                       "WHERE slot_name = %s", (slot_name(pg_url),))
            db.execute("INSERT INTO products (id, name) SELECT g, 'b' FROM generate_series(21, 40) g")
            runner.thread.join(15)
            assert not runner.thread.is_alive()
    cap.close()
    second = RecordingSink()
    cap = make_capture(pg_url, second)
    with Running(cap):
        wait_for(lambda: any(e.key == {"id": 40} for e in second.events), what="second batch")
    cap.close()
    delivered = {e.key["id"] for e in first.events[:first.flushed] + second.events}
    assert delivered == set(range(1, 41))


class FeedbackRecorder:
    """Stands in for the replication cursor's send_feedback only: records what capture acks."""

    def __init__(self):
        self.acks: list[int] = []

    def send_feedback(self, flush_lsn: int, reply: bool) -> None:
        self.acks.append(flush_lsn)


def interleaved_frames(pg_url, db) -> list[tuple[bytes, int]]:
    """T1 writes first but commits last, T2 and T3 commit in between: the stream carries T2,
    T3, then T1, whose Begin starts *below* T2's and T3's commits."""
    from psycopg2.extras import LogicalReplicationConnection

    raw_slot = "raw_" + pg_url.rsplit("/", 1)[1]
    db.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (raw_slot,))
    t1 = psycopg2.connect(libpq_dsn(pg_url))
    t1.cursor().execute("INSERT INTO products (id, name) VALUES (1, 't1')")
    db.execute("INSERT INTO products (id, name) VALUES (2, 't2')")
    db.execute("INSERT INTO products (id, name) VALUES (3, 't3')")
    t1.commit()
    t1.close()
    conn = psycopg2.connect(libpq_dsn(pg_url), connection_factory=LogicalReplicationConnection)
    frames: list = []
    try:
        cur = conn.cursor()
        cur.start_replication(slot_name=raw_slot, decode=False,
                              options={"proto_version": "1", "publication_names": "cap_pub"})

        def collect():
            msg = cur.read_message()
            if msg is not None:
                frames.append((msg.payload, msg.data_start))
            return sum(1 for p, _ in frames if p[:1] == b"C") == 3
        wait_for(collect, what="three transactions")
    finally:
        conn.close()
    wait_slot_released(libpq_dsn(pg_url), raw_slot)
    db.execute("SELECT pg_drop_replication_slot(%s)", (raw_slot,))
    return frames


def test_events_sent_before_an_interleaved_transaction_are_flushed_before_it_is_read(pg_url, db):
    """psycopg2 forwards the flush LSN on a keepalive once the last message received starts at
    or below the acknowledged LSN: capture must not have unflushed events at that point."""
    from cdc import pgoutput
    from cdc.capture_pg import SinkStalled

    make_capture(pg_url, RecordingSink()).close()    # the publication the frames need
    frames = interleaved_frames(pg_url, db)
    commits = [i for i, (p, _) in enumerate(frames) if p[:1] == b"C"]
    begins = [i for i, (p, _) in enumerate(frames) if p[:1] == b"B"]
    ends = [pgoutput.parse(frames[i][0]).end_lsn for i in commits]
    assert frames[begins[2]][1] < ends[0]            # T1 begins below T2's commit

    for refuse, outcome in ((False, "flushed"), (True, "stalled")):
        sink = RecordingSink()
        cap = make_capture(pg_url, sink)
        cap._cur = FeedbackRecorder()
        for payload, lsn in frames[:commits[0] + 1]:     # T2, then flushed and acknowledged
            cap._handle(payload, lsn)
        assert cap._flush_and_ack() and cap._cur.acks == [ends[0]]
        for payload, lsn in frames[commits[0] + 1:begins[2]]:   # T3: sent, not flushed
            cap._handle(payload, lsn)
        assert sink.flushed == 1 and len(sink.events) == 2
        sink.refuse_flush = refuse
        if outcome == "flushed":
            cap._handle(*frames[begins[2]])
            assert sink.flushed == 2 and cap._cur.acks == [ends[0], ends[1]]
        else:
            with pytest.raises(SinkStalled):
                cap._handle(*frames[begins[2]])
            assert cap._cur.acks == [ends[0]]
        cap.close()
