"""End-to-end CDC speed through Kafka: `python -m benchmarks.cdc_bench [--changes 100000]`.

Needs the PostgreSQL and Kafka of `make services` (STRANGLER_TEST_PG_URL, STRANGLER_TEST_KAFKA).
Legacy PostgreSQL -> capture process -> Kafka (3 partitions) -> apply process (`--members`
consumer-group members, default 2) -> service PostgreSQL, with the catalog mapping (renames, NUMERIC price -> integer cents, category id ->
slug lookup). Measured in the same run, so the bottleneck is visible:

  generator     the change generator alone (inserts/updates/deletes, 100 per transaction)
  kafka         bare produce+flush, then consume, of the same number of real-sized events
  insert        bare batched upserts of mapped rows into the target (2,000 per transaction)
  apply         the Applier alone on pre-built events (mapping, stale check, offsets, commit)
  snapshot      PgCapture.snapshot() of the seeded table into Kafka (bar: 50,000 rows/s)
  e2e           changes written as fast as the generator can, until the last is in the target
                (bar: 10,000 changes/s)
  lag           at a fixed rate (default 1,000 changes/s): time from the source commit until
                the row is visible in the target, p50/p99 (bar: p99 under 1 s)
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg2
import psycopg2.extras

ADMIN = os.environ.get("STRANGLER_TEST_PG_URL", "postgresql://postgres:strangler@127.0.0.1:5432/postgres")
KAFKA = os.environ.get("STRANGLER_TEST_KAFKA", "127.0.0.1:19092")
ROOT = Path(__file__).resolve().parent.parent
CATEGORIES = 5


def _url(db: str) -> str:
    return ADMIN.rsplit("/", 1)[0] + "/" + db


def _connect(db: str):
    from cdc.snapshot import libpq_dsn
    conn = psycopg2.connect(libpq_dsn(_url(db)))
    conn.autocommit = False
    return conn


def _create_db(name: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    from strangler.db import make_engine, normalise_url
    admin = create_engine(normalise_url(ADMIN), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    engine = make_engine(_url(name))
    if schema == "legacy":
        from legacy_monolith.models import Base
    else:
        from extracted_services.catalog.models import Base
    Base.metadata.create_all(engine)
    engine.dispose()


def _seed(legacy: str, service_like: list[str], rows: int) -> None:
    with _connect(legacy) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO categories (id, name, slug) SELECT i, 'Cat ' || i, 'cat-' || i "
                    f"FROM generate_series(1, {CATEGORIES}) i")
        cur.execute("INSERT INTO products (id, sku, name, description, price, currency, category_id, updated_at) "
                    "SELECT i, 'SKU-' || i, 'Product ' || i, repeat('d', 80), (i % 10000) / 100.0 + 1, 'EUR', "
                    f"1 + i % {CATEGORIES}, now() FROM generate_series(1, {rows}) i")
    for db in service_like:
        with _connect(db) as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO categories (slug, display_name, legacy_category_id) "
                        f"SELECT 'cat-' || i, 'Cat ' || i, i FROM generate_series(1, {CATEGORIES}) i")


class Generator:
    """Mixed changes into legacy products: 50 % inserts, 35 % updates, 15 % deletes."""

    def __init__(self, db: str, next_id: int, update_ids: range, delete_from: int) -> None:
        self.conn = _connect(db)
        self.next_id, self.update_ids, self.next_delete = next_id, update_ids, delete_from

    def batch(self, n: int) -> int:
        inserts, updates = n * 50 // 100, n * 35 // 100
        deletes = n - inserts - updates
        ids = list(range(self.next_id, self.next_id + inserts))
        self.next_id += inserts
        with self.conn.cursor() as cur:
            psycopg2.extras.execute_values(
                cur, "INSERT INTO products (id, sku, name, description, price, currency, category_id, updated_at) "
                     "VALUES %s", [(i, f"G-{i}", f"gen {i}", "generated", "9.99", "EUR", 1 + i % CATEGORIES)
                                   for i in ids], template="(%s, %s, %s, %s, %s, %s, %s, now())", page_size=1000)
            cur.execute("UPDATE products SET price = price + 0.01, updated_at = now() WHERE id = ANY(%s)",
                        (random.sample(self.update_ids, updates),))
            changed = cur.rowcount
            cur.execute("DELETE FROM products WHERE id = ANY(%s)",
                        (list(range(self.next_delete, self.next_delete + deletes)),))
            changed += cur.rowcount
            self.next_delete += deletes
        self.conn.commit()
        return inserts + changed

    def insert_one_batch(self, k: int) -> int:
        ids = list(range(self.next_id, self.next_id + k))
        self.next_id += k
        with self.conn.cursor() as cur:
            psycopg2.extras.execute_values(
                cur, "INSERT INTO products (id, sku, name, description, price, currency, category_id, updated_at) "
                     "VALUES %s", [(i, f"L-{i}", "lag", "", "1.00", "EUR", 1) for i in ids],
                template="(%s, %s, %s, %s, %s, %s, %s, now())")
        self.conn.commit()
        return ids[-1]

    def close(self) -> None:
        self.conn.close()


def _sample_event(topic: str, i: int) -> "object":
    from cdc.events import ChangeEvent
    row = {"id": i, "sku": f"SKU-{i}", "name": f"Product {i}", "description": "d" * 80, "price": "12.34",
           "currency": "EUR", "category_id": 1 + i % CATEGORIES, "updated_at": "2026-11-28T05:00:00.123456"}
    value = {"before": None, "after": row, "op": "c", "ts_ms": int(time.time() * 1000), "transaction": None,
             "source": {"version": "x", "connector": "postgresql", "name": "bench", "ts_ms": int(time.time() * 1000),
                        "snapshot": "false", "db": "legacy", "sequence": None, "schema": "public",
                        "table": "products", "txId": 1, "lsn": 1000 + i, "xmin": None}}
    return ChangeEvent(topic, {"id": i}, value, 1000 + i)


def bench_kafka(n: int, topic: str) -> tuple[float, float]:
    from cdc.transport_kafka import KafkaSink, KafkaSource, ensure_topics
    ensure_topics(KAFKA, [topic], 3)
    events = [_sample_event(topic, i) for i in range(n)]
    sink = KafkaSink(KAFKA, partitions=3)
    t0 = time.perf_counter()
    for ev in events:
        sink.send(ev)
    sink.flush(120)
    produce = n / (time.perf_counter() - t0)
    source = KafkaSource(KAFKA, f"bench-{uuid.uuid4().hex[:6]}", [topic], lambda: {})
    got = 0
    source.poll(1, 10)                      # join the group first: not part of the rate
    t0 = time.perf_counter()
    while got < n - 1:
        got += len(source.poll(5000, 1.0))
    consume = n / (time.perf_counter() - t0)
    source.close()
    return produce, consume


def bench_insert(db: str, n: int) -> float:
    from cdc.store import TargetStore
    store = TargetStore(_url(db))
    rows = [(i, f"SKU-{i}", f"Product {i}", "d" * 80, 1234, "EUR", f"cat-{1 + i % CATEGORIES}",
             "2026-11-28T05:00:00") for i in range(1, n + 1)]
    cols = ("id", "sku", "title", "description", "price_cents", "currency", "category_slug", "updated_at")
    t0 = time.perf_counter()
    for i in range(0, n, 2000):
        store.begin()
        store.upsert("products", cols, ("id",), rows[i:i + 2000])
        store.commit()
    rate = n / (time.perf_counter() - t0)
    cur = store.cursor()
    cur.execute("TRUNCATE products")        # the apply run that follows starts on a clean table too
    store.commit()
    store.close()
    return rate


def bench_apply(db: str, n: int, mapping) -> float:
    from cdc.apply import Applier
    from cdc.mapping import TO_SERVICE
    from cdc.records import Record
    from cdc.store import TargetStore
    topic = "bench.public.products"
    records = [Record(topic, i % 3, i, _sample_event(topic, i + 1)) for i in range(n)]
    store = TargetStore(_url(db))
    applier = Applier(store, mapping, TO_SERVICE, f"bench_{uuid.uuid4().hex[:6]}")
    t0 = time.perf_counter()
    for i in range(0, n, 2000):
        applier.apply(records[i:i + 2000])
    rate = n / (time.perf_counter() - t0)
    origin = applier.origin
    store.close()
    with _connect(db) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_replication_origin_drop(%s)", (origin,))
    return rate


def _count(db: str, sql: str) -> int:
    with _connect(db) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def _wait_for(db: str, sql: str, want: int, timeout_s: float, poll_s: float = 0.02) -> float:
    """Poll until the query's value reaches `want`; returns the time.perf_counter() it did."""
    conn = _connect(db)
    conn.autocommit = True
    deadline = time.monotonic() + timeout_s
    try:
        with conn.cursor() as cur:
            while True:
                cur.execute(sql)
                if (cur.fetchone()[0] or 0) >= want:
                    return time.perf_counter()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{sql} did not reach {want} in {timeout_s}s")
                time.sleep(poll_s)
    finally:
        conn.close()


def _config_file(directory: Path, cap: str, legacy: str, service: str, members: int = 2) -> Path:
    tables = (ROOT / "routing_rules" / "cdc" / "catalog.yaml").read_text().split("\ntables:\n", 1)[1]
    path = directory / f"{cap}.yaml"
    path.write_text(f"version: 1\ncapability: {cap}\nlegacy:\n  url: {_url(legacy)}\n  topic_prefix: {cap}_legacy\n"
                    f"service:\n  url: {_url(service)}\n  topic_prefix: {cap}_catalog\nwrites: legacy\n"
                    f"transport:\n  kind: kafka\n  bootstrap: {KAFKA}\n  partitions: 3\n"
                    f"apply:\n  batch_size: 5000\n  members: {members}\ntables:\n{tables}")
    return path


def _start(cap: str, config: Path, part: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "strangler", "cdc", "run", cap, "--config", str(config),
                             "--only", part], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(log, "a"),
                            start_new_session=True)


def _cpu_seconds(pids: dict[str, list[int]]) -> dict[str, dict[int, float]]:
    """CPU time (user + system) used so far by each process of each group, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, dict[int, float]] = {}
    for name, group in pids.items():
        out[name] = {}
        for pid in group:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                out[name][pid] = (int(fields[11]) + int(fields[12])) / tick
            except (OSError, IndexError, ValueError):
                pass
    return out


def _cpu_used(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    """Per group, CPU seconds between the two readings (a process gone by then counts as idle)."""
    return {name: sum(after[name].get(pid, start) - start for pid, start in group.items())
            for name, group in before.items()}


def _backends(*dbs: str) -> list[int]:
    """The PostgreSQL backends serving these databases (generator, walsender, apply sessions);
    not the server's shared WAL writer and checkpointer, nor other users' sessions."""
    conn = _connect(dbs[0])
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = ANY(%s) AND pid <> pg_backend_pid()",
                        (list(dbs),))
            return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()


def _pids_named(comm: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == comm:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main(changes: int = 100_000, snapshot_rows: int = 100_000, rate: int = 1000, lag_seconds: float = 10.0,
         members: int = 2) -> int:
    from cdc.capture_pg import PgCapture
    from cdc.config import load_config
    from cdc.mapping import TO_SERVICE
    from cdc.transport_kafka import KafkaSink, ensure_topics

    cap = f"bench{uuid.uuid4().hex[:6]}"
    legacy, service, scratch = f"{cap}_legacy", f"{cap}_service", f"{cap}_scratch"
    tmp = Path(tempfile.mkdtemp(prefix="cdc-bench-"))
    procs: list[subprocess.Popen] = []
    results: dict[str, float] = {}
    try:
        _create_db(legacy, "legacy")
        _create_db(service, "service")
        _create_db(scratch, "service")
        _seed(legacy, [service, scratch], snapshot_rows)
        config = load_config(cap, str(_config_file(tmp, cap, legacy, service, members)))
        route = config.route(TO_SERVICE)
        print(f"CDC benchmark: {changes:,} changes, {snapshot_rows:,}-row snapshot, lag at {rate:,}/s "
              f"for {lag_seconds:g} s, {members} apply member(s); PostgreSQL 15 + Kafka on this machine "
              f"({os.cpu_count()} cores)", flush=True)

        # --- the parts, alone --------------------------------------------------------------------
        gen = Generator(legacy, next_id=10_000_000, update_ids=range(1, snapshot_rows // 2),
                        delete_from=snapshot_rows // 2)
        done, t0 = 0, time.perf_counter()
        while done < changes // 4:
            done += gen.batch(100)
        results["generator"] = done / (time.perf_counter() - t0)
        produce, consume = bench_kafka(changes, f"{cap}_raw.public.products")
        results["kafka produce"], results["kafka consume"] = produce, consume
        results["kafka"] = 1 / (1 / produce + 1 / consume)
        results["insert"] = bench_insert(scratch, changes)
        results["apply"] = bench_apply(scratch, changes, config.mapping)

        # --- snapshot into Kafka, then the apply process catches up -----------------------------
        ensure_topics(KAFKA, route.topics, config.transport.partitions)
        sink = KafkaSink(KAFKA, partitions=config.transport.partitions)
        capture = PgCapture(route.source.url, route.slot, route.slot,
                            [f"public.{t}" for t in route.source_tables], route.source.topic_prefix, sink)
        capture.ensure_setup()
        total = _count(legacy, "SELECT count(*) FROM products")
        t0 = time.perf_counter()
        rows = capture.snapshot()
        results["snapshot"] = rows / (time.perf_counter() - t0)
        capture.close()
        sink.close()
        t0 = time.perf_counter()
        procs.append(_start(cap, tmp / f"{cap}.yaml", "apply", tmp / "apply.log"))
        seen = _wait_for(service, "SELECT count(*) FROM products", total, 300)
        results["snapshot applied"] = total / (seen - t0)

        # --- end to end, as fast as the generator writes ------------------------------------------
        procs.append(_start(cap, tmp / f"{cap}.yaml", "capture", tmp / "capture.log"))
        _wait_for(legacy, f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{route.slot}' AND active",
                  1, 60)
        groups = {"capture process": [procs[1].pid], "apply process": [procs[0].pid],
                  "generator (this process)": [os.getpid()],
                  "postgres (our sessions)": _backends(legacy, service),
                  "kafka broker": _pids_named("java")}
        cpu0 = _cpu_seconds(groups)
        done, t0 = 0, time.perf_counter()
        while done < changes:
            done += gen.batch(min(100, changes - done))
        written = time.perf_counter()
        sentinel = gen.insert_one_batch(1)
        seen = _wait_for(service, f"SELECT count(*) FROM products WHERE id = {sentinel}", 1, 600)
        cpu = _cpu_used(cpu0, _cpu_seconds(groups))
        results["e2e"] = (done + 1) / (seen - t0)
        results["generator under load"] = done / (written - t0)

        # --- lag at a fixed rate ------------------------------------------------------------------
        time.sleep(1)
        lags, commits = [], []
        stop = threading.Event()
        base = gen.next_id

        def poll() -> None:
            conn = _connect(service)
            conn.autocommit = True
            i = 0
            with conn.cursor() as cur:
                while not stop.is_set() or i < len(commits):
                    cur.execute("SELECT max(id) FROM products WHERE id >= %s", (base,))
                    top, now = cur.fetchone()[0] or 0, time.perf_counter()
                    while i < len(commits) and commits[i][0] <= top:
                        lags.append(now - commits[i][1])
                        i += 1
                    time.sleep(0.005)
            conn.close()

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        per_tick, tick = max(1, rate // 100), 0.01
        start = time.perf_counter()
        n = 0
        while time.perf_counter() - start < lag_seconds:
            last = gen.insert_one_batch(per_tick)
            commits.append((last, time.perf_counter()))
            n += 1
            delay = start + n * tick - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        achieved = n * per_tick / (time.perf_counter() - start)
        stop.set()
        poller.join(60)
        gen.close()
        results["lag p50 ms"], results["lag p99 ms"] = _pct(lags, 50) * 1000, _pct(lags, 99) * 1000

        e2e = results["e2e"]
        print(f"\n{'part':<24} {'rate /s':>12} {'vs e2e':>8}")
        for name in ("generator", "generator under load", "kafka produce", "kafka consume", "kafka", "insert",
                     "apply", "snapshot", "snapshot applied", "e2e"):
            print(f"{name:<24} {results[name]:>12,.0f} {results[name] / e2e:>7.2f}x")
        wall = changes / e2e
        print(f"\nCPU during the e2e run ({wall:.1f} s wall, {os.cpu_count()} cores = "
              f"{wall * os.cpu_count():.1f} CPU-s available): "
              + ", ".join(f"{k} {v:.1f} s" for k, v in cpu.items()))
        per_change = {k: v / (done + 1) * 1e6 for k, v in cpu.items()}
        total = sum(per_change.values())
        print("CPU per change (us): " + ", ".join(f"{k} {v:.0f}" for k, v in per_change.items())
              + f"; total {total:.0f} us, so these {os.cpu_count()} cores, given to the pipeline alone, "
              f"carry at most {os.cpu_count() * 1e6 / total:,.0f} changes/s")
        print(f"lag at {achieved:,.0f} changes/s (inserts, {len(lags)} transactions): "
              f"p50 {results['lag p50 ms']:.0f} ms, p99 {results['lag p99 ms']:.0f} ms, "
              f"mean {statistics.mean(lags) * 1000:.0f} ms")
        print(f"bars: e2e >= 10,000/s: {'met' if e2e >= 10_000 else 'NOT met'}; "
              f"lag p99 < 1 s: {'met' if results['lag p99 ms'] < 1000 else 'NOT met'}; "
              f"snapshot >= 50,000 rows/s: {'met' if results['snapshot'] >= 50_000 else 'NOT met'}")
        print(json.dumps({k: round(v, 1) for k, v in results.items()}))
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
        _cleanup(cap, [legacy, service, scratch])
        shutil.rmtree(tmp, ignore_errors=True)


def _cleanup(cap: str, dbs: list[str]) -> None:
    from confluent_kafka.admin import AdminClient
    conn = psycopg2.connect(ADMIN.replace("postgresql+psycopg2://", "postgresql://"))
    conn.autocommit = True
    with conn.cursor() as cur:
        for db in dbs:
            cur.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                        "WHERE database = %s AND NOT active", (db,))
            cur.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        cur.execute("SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname LIKE %s",
                    (f"strangler_{cap}%",))
    conn.close()
    admin = AdminClient({"bootstrap.servers": KAFKA})
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(cap)]
    if topics:
        for future in admin.delete_topics(topics).values():   # wait: the process exits next
            future.result(30)


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cdc_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=100_000, help="changes in the throughput runs")
    parser.add_argument("--snapshot-rows", type=int, default=100_000, help="rows seeded before the snapshot")
    parser.add_argument("--rate", type=int, default=1000, help="changes/s of the lag run")
    parser.add_argument("--lag-seconds", type=float, default=10.0, help="length of the lag run")
    parser.add_argument("--members", type=int, default=2, help="apply consumer-group members (apply.members)")
    args = parser.parse_args(argv)
    return main(args.changes, args.snapshot_rows, args.rate, args.lag_seconds, args.members)


if __name__ == "__main__":
    sys.exit(cli())
