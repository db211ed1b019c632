"""PostgreSQL capture speed: `python -m benchmarks.cdc_capture [--changes 100000]`.

Needs the PostgreSQL of `make services` (STRANGLER_TEST_PG_URL, default the local one). Writes
N changes (inserts, updates, deletes in 1,000-row transactions) into a products table of a fresh
database, records the raw pgoutput frames once, then measures in the same run:

  parse      pgoutput.parse() of every frame                      (the bare decoder)
  capture    PgCapture's message handler: parse + value conversion + Debezium envelope
  +json      the same plus JSON encoding of key and value          (what a transport sends)
  decode     envelope.decode of the produced values                 (peer: a consumer's cheapest work)
  live       PgCapture.run() against the real slot into a counting sink, from start to the
             last event (network, walsender, feedback included)
  snapshot   PgCapture.snapshot() of the resulting table (rows/s; the bar is 50,000)

Rates are changes/s (a delete's tombstone is not counted as a change), printed with the ratio
to the live figure. The end-to-end bar is 10,000 changes/s, so capture should be well above it.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid

import psycopg2
from psycopg2.extras import LogicalReplicationConnection

from cdc.capture_pg import PgCapture
from cdc.envelope import decode, encode
from cdc.pgoutput import parse
from cdc.snapshot import libpq_dsn

ADMIN = os.environ.get("STRANGLER_TEST_PG_URL",
                       "postgresql://postgres:strangler@127.0.0.1:5432/postgres")


class CountingSink:
    """Counts changes (not tombstones) and drops them, as a transport hands them on."""

    def __init__(self):
        self.changes = 0
        self.done = threading.Event()
        self.target = 0

    def send(self, event) -> None:
        if event.value is not None:
            self.changes += 1
            if self.changes == self.target:
                self.done.set()

    def flush(self, timeout_s: float) -> None:
        pass


class EncodingSink(CountingSink):
    """Encodes key and value to JSON as a transport would; keeps only the value bytes."""

    def __init__(self):
        super().__init__()
        self.values: list[bytes] = []

    def send(self, event) -> None:
        encode(event.key)
        if event.value is not None:
            self.values.append(encode(event.value))
        super().send(event)


def write_changes(dsn: str, n: int) -> None:
    conn = psycopg2.connect(dsn)
    cur = conn.cursor()
    inserts = n * 6 // 10
    for start in range(0, inserts, 1000):
        cur.execute("INSERT INTO products SELECT g, 'SKU-' || g, 'Product ' || g, "
                    "'A plain description of product ' || g, (g %% 5000) / 100.0, 'EUR', "
                    "g %% 50, now() FROM generate_series(%s, %s) g",
                    (start + 1, min(start + 1000, inserts)))
        conn.commit()
    updates = n * 3 // 10
    for start in range(0, updates, 1000):
        cur.execute("UPDATE products SET price = price + 1, updated_at = now() "
                    "WHERE id BETWEEN %s AND %s", (start + 1, min(start + 1000, updates)))
        conn.commit()
    deletes = n - inserts - updates
    for start in range(0, deletes, 1000):
        cur.execute("DELETE FROM products WHERE id BETWEEN %s AND %s",
                    (inserts - start - min(1000, deletes - start) + 1, inserts - start))
        conn.commit()
    conn.close()


def record_frames(dsn: str, slot: str, publication: str, n: int) -> list[tuple[bytes, int]]:
    conn = psycopg2.connect(dsn, connection_factory=LogicalReplicationConnection)
    cur = conn.cursor()
    cur.start_replication(slot_name=slot, decode=False,
                          options={"proto_version": "1", "publication_names": publication})
    frames: list[tuple[bytes, int]] = []
    rows = 0
    while rows < n:
        msg = cur.read_message()
        if msg is None:
            time.sleep(0.001)
            continue
        frames.append((msg.payload, msg.data_start))
        rows += msg.payload[:1] in (b"I", b"U", b"D")
    conn.close()
    return frames


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def main(changes: int) -> int:
    name = f"bench_cdc_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(libpq_dsn(ADMIN))
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    dsn = libpq_dsn(ADMIN).rsplit("/", 1)[0] + "/" + name
    try:
        setup = psycopg2.connect(dsn)
        setup.autocommit = True
        setup.cursor().execute(
            "CREATE TABLE products (id int PRIMARY KEY, sku text, name text, description text, "
            "price numeric(10,2), currency char(3), category_id int, updated_at timestamp)")
        setup.close()
        sink = CountingSink()
        cap = PgCapture(dsn, name, name, ["products"], "bench", sink)
        cap.ensure_setup()
        setup = psycopg2.connect(dsn)
        setup.autocommit = True
        setup.cursor().execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')",
                               (name,))
        setup.cursor().execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')",
                               (name + "_raw",))
        setup.close()
        t0 = time.perf_counter()
        write_changes(dsn, changes)
        write_s = time.perf_counter() - t0
        frames = record_frames(dsn, name + "_raw", name, changes)

        t0 = time.perf_counter()
        for payload, _ in frames:
            parse(payload)
        parse_s = time.perf_counter() - t0

        counting = CountingSink()
        cap.sink = counting
        t0 = time.perf_counter()
        for payload, lsn in frames:
            cap._handle(payload, lsn)
        capture_s = time.perf_counter() - t0

        encoding = EncodingSink()
        cap.sink = encoding
        t0 = time.perf_counter()
        for payload, lsn in frames:
            cap._handle(payload, lsn)
        json_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        for value in encoding.values:
            decode(value)
        loads_s = time.perf_counter() - t0

        sink.target = changes
        cap.sink = sink
        stop = threading.Event()
        runner = threading.Thread(target=cap.run, args=(stop,))
        t0 = time.perf_counter()
        runner.start()
        sink.done.wait(600)
        live_s = time.perf_counter() - t0
        stop.set()
        runner.join()
        cap.close()

        snap_sink = CountingSink()
        snap = PgCapture(dsn, name + "_snap", name, ["products"], "bench", snap_sink)
        t0 = time.perf_counter()
        snapshot_rows = snap.snapshot()
        snapshot_s = time.perf_counter() - t0
        snap.close()

        live = rate(sink.changes, live_s)
        print(f"CDC capture, {changes:,} changes (60% insert, 30% update, 10% delete in 1,000-row "
              f"transactions), {len(frames):,} pgoutput frames")
        for label, figure in (("generator write", rate(changes, write_s)),
                              ("parse", rate(changes, parse_s)),
                              ("capture", rate(changes, capture_s)),
                              ("capture+json", rate(changes, json_s)),
                              ("decode (peer)", rate(changes, loads_s)),
                              ("live PgCapture.run", live)):
            print(f"  {label:<20} {figure:>12,.0f} changes/s   x{figure / live:5.2f} of live")
        print(f"  {'snapshot':<20} {rate(snapshot_rows, snapshot_s):>12,.0f} rows/s      "
              f"({snapshot_rows:,} rows, exported snapshot, 10,000-row chunks)")
        return 0
    finally:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            cur.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                        "WHERE database = %s AND NOT active", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cdc_capture", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=100_000)
    sys.exit(main(parser.parse_args().changes))
