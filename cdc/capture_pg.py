"""PostgreSQL capture: a pgoutput replication slot turned into Debezium events on an EventSink.

Contract for whoever drives it (the pipeline, the CLI, tests):

    cap = PgCapture(dsn, slot, publication, tables, topic_prefix, sink)
    cap.ensure_setup()      # publication (+ heartbeat table), REPLICA IDENTITY FULL; idempotent
    cap.snapshot()          # initial snapshot (creates the slot) or resumes an unfinished one;
                            # a no-op once done. Skip it to stream only new changes.
    cap.run(stop_event)     # stream until the event is set;
                            # creates the slot if snapshot() did not; `cap.streaming` is set
                            # once attached (changes committed from then on are captured)
    cap.request_snapshot(t) # re-snapshot one table while run() keeps streaming (thread-safe)
    cap.status()            # CaptureStatus: flushed LSN, retained WAL bytes, events/s, ...
    cap.close()

Acknowledgement: the flush LSN sent to the server is only ever the end of a transaction
whose events were all handed to the sink *and* `sink.flush()` returned afterwards. A sink
that cannot flush holds the slot where it is; a restart resumes from the acknowledged
position, so delivery is at least once and never lossy.

One subtlety: psycopg2 moves the flush LSN on to a keepalive's WAL end by itself whenever the
last message received starts at or below the LSN we acknowledged. A transaction that began
before an acknowledged commit (interleaved writers) starts below it, so before consuming such a
transaction everything already sent is flushed and acknowledged first; if the sink cannot flush
then, run() stops with SinkStalled and the caller restarts it from the acknowledged position.
(The keepalive's WAL end never passes the commit of the transaction being received, so that
transaction itself is replayed after a restart.)

Loop prevention: transactions carrying an Origin message (replayed by our apply under a
replication origin, `pg_replication_origin_session_setup`) are dropped whole. PostgreSQL 15's
pgoutput sends that message right after Begin (verified by tests/cdc/test_capture_pg.py).

Heartbeats: every `heartbeat_interval_s` a row in `strangler_heartbeat` (in the publication)
is updated. Its commit reaches us even while the captured tables are idle, so the slot is
acknowledged forward and retained WAL stays bounded. Heartbeat rows are not emitted.
"""
from __future__ import annotations

import logging
import queue
import select
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from cdc import pgoutput
from cdc.envelope import row_events, source_block, topic_name, truncate_event
from cdc.event_rate import EventRate
from cdc.events import ChangeEvent, EventSink
from cdc.pgoutput import UNCHANGED_TOAST, int_to_lsn
from cdc.snapshot import (SESSION_OPTIONS, ExportedSnapshot, ProgressStore, SnapshotReader,
                          TableInfo, TableProgress, connect, export_snapshot, libpq_dsn,
                          split_name, table_info, wait_slot_released)
from strangler.errors import OperatorError

log = logging.getLogger(__name__)

HEARTBEAT_TABLE = "strangler_heartbeat"
CHORE_INTERVAL_S = 0.02
_RELATION_ID = struct.Struct(">I").unpack_from


class SinkStalled(RuntimeError):
    """The sink could not flush at a point where streaming on would be unsafe (see _handle)."""


@dataclass(frozen=True)
class CaptureStatus:
    slot: str
    received_lsn: str | None        # end of the last transaction received from the stream
    flushed_lsn: str | None         # last LSN acknowledged to the server (durable downstream)
    confirmed_flush_lsn: str | None  # what the server holds for the slot
    retained_wal_bytes: int | None  # pg_current_wal_lsn() - restart_lsn
    events_total: int
    events_per_s: float
    transactions_skipped_by_origin: int
    resnapshots_completed: int
    last_error: str | None


@dataclass
class _Rel:
    """What the stream needs to know about one relation, rebuilt on every Relation message."""
    schema: str
    name: str
    topic: str
    names: list[str]
    convs: list[Any]
    key_columns: tuple[str, ...]
    captured: bool


@dataclass
class _Resnapshot:
    table: TableInfo
    exported: ExportedSnapshot
    reader: SnapshotReader
    chunks: Any
    touched: set[tuple]


class PgCapture:
    def __init__(self, dsn: str, slot: str, publication: str, tables: list[str],
                 topic_prefix: str, sink: EventSink, *, heartbeat_interval_s: float = 10.0,
                 flush_interval_s: float = 0.2, flush_every_events: int = 20_000,
                 flush_timeout_s: float = 30.0, snapshot_chunk_rows: int = 10_000):
        self.dsn = libpq_dsn(dsn)
        self.slot = slot
        self.publication = publication
        self.tables = [".".join(split_name(t)) for t in tables]
        self.topic_prefix = topic_prefix
        self.sink = sink
        self.heartbeat_interval_s = heartbeat_interval_s
        self.flush_interval_s = flush_interval_s
        self.flush_every_events = flush_every_events
        self.flush_timeout_s = flush_timeout_s
        self.snapshot_chunk_rows = snapshot_chunk_rows
        self.db = psycopg2.extensions.parse_dsn(self.dsn).get("dbname", "")
        self._info: dict[str, TableInfo] = {}
        self._topics: dict[str, str] = {}
        self._rels: dict[int, _Rel] = {}
        self._requests: queue.Queue[str] = queue.Queue()
        self._resnapshot: _Resnapshot | None = None
        self._admin: Any = None
        self._cur: Any = None               # the replication cursor while run() streams
        self.streaming = threading.Event()   # set once run() is attached to the slot
        # stream state
        self._skip_tx = False
        self._tx_xid = 0
        self._tx_ts_ms = 0
        self._tx_commit_lsn = 0
        self._last_commit_end = 0
        self._unflushed = 0
        self._last_flush = time.monotonic()
        self._last_heartbeat = 0.0
        # figures for status()
        self._flushed_lsn = 0
        self._events_total = 0
        self._skipped_by_origin = 0
        self._resnapshots_done = 0
        self._last_error: str | None = None
        self._rate = EventRate()

    # ---- setup ---------------------------------------------------------------------------

    def _admin_cursor(self):
        if self._admin is None or self._admin.closed:
            self._admin = connect(self.dsn)
            self._admin.autocommit = True
        return self._admin.cursor()

    def _table_info(self, table: str) -> TableInfo:
        if table not in self._info:
            with self._admin_cursor() as cur:
                try:
                    self._info[table] = table_info(cur, table)
                except LookupError as exc:
                    raise OperatorError(f"cannot capture {table}: {exc}; fix the table or "
                                        "the capture's table list") from None
        return self._info[table]

    def ensure_setup(self) -> None:
        """Create what capture needs in the source; safe to call on every start."""
        for table in self.tables:       # refuse a missing table or one without a key first
            self._table_info(table)
        with self._admin_cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS public.{HEARTBEAT_TABLE} "
                        "(id int PRIMARY KEY, ts timestamptz NOT NULL DEFAULT now())")
            wanted = self.tables + [f"public.{HEARTBEAT_TABLE}"]
            for table in wanted:      # ALTER takes an exclusive lock: only when needed
                schema, name = split_name(table)
                cur.execute("SELECT relreplident FROM pg_class c JOIN pg_namespace n ON "
                            "n.oid = c.relnamespace WHERE nspname = %s AND relname = %s",
                            (schema, name))
                if cur.fetchone()[0] != "f":
                    cur.execute(f'ALTER TABLE "{schema}"."{name}" REPLICA IDENTITY FULL')
            cur.execute("SELECT schemaname || '.' || tablename FROM pg_publication_tables "
                        "WHERE pubname = %s", (self.publication,))
            present = {r[0] for r in cur.fetchall()}
            cur.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (self.publication,))
            quoted = ", ".join('"{}"."{}"'.format(*split_name(t)) for t in wanted
                               if t not in present)
            if cur.fetchone() is None:
                cur.execute(f'CREATE PUBLICATION "{self.publication}" FOR TABLE {quoted}')
            elif quoted:
                cur.execute(f'ALTER PUBLICATION "{self.publication}" ADD TABLE {quoted}')
        store = ProgressStore(self.dsn, self.slot)
        store.ensure_table()
        store.close()

    def _slot_exists(self) -> bool:
        with self._admin_cursor() as cur:
            cur.execute("SELECT database = current_database() FROM pg_replication_slots "
                        "WHERE slot_name = %s", (self.slot,))
            row = cur.fetchone()
        if row is not None and not row[0]:
            raise OperatorError(f"replication slot {self.slot} belongs to another database; "
                                "choose a slot name unique to this source")
        return row is not None

    # ---- snapshot ------------------------------------------------------------------------

    def snapshot(self) -> int:
        """Initial snapshot (creating the slot), the rest of an interrupted one, or the first
        snapshot of a table added to the capture later; returns rows emitted.

        A slot created by run() alone (stream-only start) has no progress rows: nothing to do.
        """
        store = ProgressStore(self.dsn, self.slot)
        try:
            if not self._slot_exists():
                store.start(self.tables)   # first, so a crash right after creating the slot
                exported = export_snapshot(self.dsn, self.slot, temporary=False)  # still resumes
            else:
                progress = store.load()
                if not progress:
                    return 0
                new = [t for t in self.tables if t not in progress]
                if not new and all(progress[t].done for t in self.tables):
                    return 0
                store.start(new)
                exported = export_snapshot(self.dsn, f"{self.slot}_resume_{int(time.time())}",
                                           temporary=True)
            progress = store.load()
            pending = [t for t in self.tables if not progress[t].done]
            try:
                return self._emit_snapshot(exported, pending, progress, store)
            finally:
                exported.close()
        finally:
            store.close()

    def _emit_snapshot(self, exported: ExportedSnapshot, pending: list[str],
                       progress: dict[str, TableProgress], store: ProgressStore) -> int:
        """Emit pending tables chunk by chunk; progress only ever names flushed rows.

        One row is held back so the very last one can be marked `snapshot: "last"`.
        """
        reader = SnapshotReader(self.dsn, exported.name)
        held: tuple[str, TableInfo, dict[str, Any]] | None = None
        emitted = 0

        def release(marker: str) -> None:
            nonlocal emitted
            assert held is not None
            table, info, row = held
            self._send_snapshot_row(info, row, exported.position, marker)
            state = progress[table]
            state.last_key = [row[k] for k in info.key_columns]
            state.rows += 1
            emitted += 1

        try:
            for table in pending:
                info = self._table_info(table)
                for rows in reader.chunks(info, progress[table].last_key,
                                          self.snapshot_chunk_rows):
                    for row in rows:
                        if held is not None:
                            release("first" if emitted == 0 else "true")
                        held = (table, info, row)
                    self.sink.flush(self.flush_timeout_s)
                    for name in pending:
                        store.save(name, progress[name])
            if held is not None:
                release("last")
            self.sink.flush(self.flush_timeout_s)
            for table in pending:
                progress[table].done = True
                store.save(table, progress[table])
        finally:
            reader.close()
        return emitted

    def _send_snapshot_row(self, info: TableInfo, row: dict[str, Any], position: int,
                           marker: str) -> None:
        ts_ms = int(time.time() * 1000)
        source = source_block(connector="postgresql", name=self.topic_prefix, db=self.db,
                              schema=info.schema, table=info.name, ts_ms=ts_ms, lsn=position,
                              snapshot=marker)
        topic = self._topics.get(info.qualified)
        if topic is None:
            topic = self._topics[info.qualified] = topic_name(self.topic_prefix, info.schema,
                                                              info.name)
        for event in row_events(topic, info.key_columns, "r", None, row, source, ts_ms=ts_ms):
            self.sink.send(event)
        self._events_total += 1

    def request_snapshot(self, table: str) -> None:
        """Ask the running stream to re-snapshot one captured table (see cdc/snapshot.py).

        Held in memory only: a re-snapshot cut short by a restart must be requested again.
        """
        table = ".".join(split_name(table))
        if table not in self.tables:
            raise ValueError(f"{table} is not captured by slot {self.slot}")
        self._requests.put(table)

    def _start_resnapshot(self, table: str) -> None:
        info = self._table_info(table)
        exported = export_snapshot(self.dsn, f"{self.slot}_re_{int(time.time() * 1000)}",
                                   temporary=True)
        reader = SnapshotReader(self.dsn, exported.name)
        self._resnapshot = _Resnapshot(info, exported, reader,
                                       reader.chunks(info, None, self.snapshot_chunk_rows), set())

    def _resnapshot_step(self) -> None:
        job = self._resnapshot
        assert job is not None
        chunk = next(job.chunks, None)
        if chunk is None:
            job.reader.close()
            job.exported.close()
            self._resnapshot = None
            self._resnapshots_done += 1
            return
        info = job.table
        for row in chunk:
            if tuple(row[k] for k in info.key_columns) not in job.touched:
                self._send_snapshot_row(info, row, job.exported.position, "incremental")
                self._unflushed += 1

    # ---- streaming -----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Stream changes into the sink until `stop` is set; acknowledge only flushed ones."""
        if not self._slot_exists():
            with self._admin_cursor() as cur:
                cur.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')",
                            (self.slot,))
        conn = psycopg2.connect(self.dsn, options=SESSION_OPTIONS,
                                connection_factory=psycopg2.extras.LogicalReplicationConnection)
        cur = self._cur = conn.cursor()
        try:
            cur.start_replication(slot_name=self.slot, decode=False, status_interval=1,
                                  options={"proto_version": "1",
                                           "publication_names": self.publication})
            self.streaming.set()
            self._stream(cur, stop)
            self._flush_and_ack()
        finally:
            self.streaming.clear()
            self._cur = None
            conn.close()
            wait_slot_released(self.dsn, self.slot)
            if self._resnapshot is not None:
                self._resnapshot.reader.close()
                self._resnapshot.exported.close()
                self._resnapshot = None

    def _stream(self, cur, stop: threading.Event) -> None:
        handle = self._handle
        fileno = cur.connection.fileno()
        next_chores = 0.0
        busy = 0
        while not stop.is_set():
            msg = cur.read_message()
            if msg is not None:
                handle(msg.payload, msg.data_start)
                if self._unflushed >= self.flush_every_events:
                    self._flush_and_ack()
                busy += 1
                if busy < 512:      # look at the clock now and then, even under load
                    continue
            busy = 0
            now = time.monotonic()
            if now >= next_chores:
                next_chores = now + CHORE_INTERVAL_S
                self._chores(now)
            if msg is None:
                select.select([fileno], [], [], CHORE_INTERVAL_S)

    def _chores(self, now: float) -> None:
        """Periodic work beside the stream: acknowledge, heartbeat, re-snapshot chunks."""
        self._rate.sample(self._events_total, now)
        owed = self._unflushed or self._last_commit_end > self._flushed_lsn
        if owed and now - self._last_flush >= self.flush_interval_s:
            self._flush_and_ack()
        if now - self._last_heartbeat >= self.heartbeat_interval_s:
            self._heartbeat()
        if self._resnapshot is not None:
            self._resnapshot_step()
        elif not self._requests.empty():
            self._start_resnapshot(self._requests.get())

    def _flush_and_ack(self) -> bool:
        """Flush the sink; on success acknowledge the last commit whose events all went in."""
        candidate = self._last_commit_end
        self._last_flush = time.monotonic()
        try:
            self.sink.flush(self.flush_timeout_s)
        except Exception as exc:  # the transport's failure must not advance the slot
            error = f"sink flush failed: {exc}"
            if error != self._last_error:
                log.warning("CDC sink flush failed; slot %s stays at %s: %s", self.slot,
                            int_to_lsn(self._flushed_lsn), exc)
            self._last_error = error
            return False
        self._unflushed = 0
        self._last_error = None
        if candidate > self._flushed_lsn:
            self._cur.send_feedback(flush_lsn=candidate, reply=True)
            self._flushed_lsn = candidate
        return True

    def _heartbeat(self) -> None:
        self._last_heartbeat = time.monotonic()
        with self._admin_cursor() as cur:
            cur.execute(f"INSERT INTO public.{HEARTBEAT_TABLE} (id, ts) VALUES (1, now()) "
                        "ON CONFLICT (id) DO UPDATE SET ts = now()")

    def _handle(self, payload: bytes, lsn: int) -> None:
        kind = payload[0]
        if kind == 73 or kind == 85 or kind == 68:           # I, U, D
            if self._skip_tx:
                return
            rel = self._rels[_RELATION_ID(payload, 1)[0]]
            if rel.captured:                # heartbeats and unlisted tables are not parsed
                self._emit_row(rel, pgoutput.parse(payload), lsn)
        elif kind == 66:                                      # B
            begin = pgoutput.parse(payload)
            if lsn <= self._flushed_lsn and self._unflushed and not self._flush_and_ack():
                raise SinkStalled(f"the sink cannot flush ({self._last_error}); streaming "
                                  "stops so no keepalive can acknowledge unflushed events")
            self._skip_tx = False
            self._tx_xid = begin.xid
            self._tx_ts_ms = begin.commit_ts_us // 1000
            self._tx_commit_lsn = begin.final_lsn
        elif kind == 67:                                      # C
            commit = pgoutput.parse(payload)
            self._last_commit_end = commit.end_lsn
        elif kind == 79:                                      # O
            self._skip_tx = True
            self._skipped_by_origin += 1
        elif kind == 82:                                      # R
            self._relation(pgoutput.parse(payload))
        elif kind == 84:                                      # T
            if not self._skip_tx:
                self._truncate(pgoutput.parse(payload), lsn)
        # Y (type) and M (message) carry nothing capture needs.

    def _relation(self, rel: pgoutput.Relation) -> None:
        qualified = f"{rel.namespace}.{rel.name}"
        captured = qualified in self.tables
        keys: tuple[str, ...] = ()
        if captured:
            self._info.pop(qualified, None)   # columns may have changed: re-read the catalogue
            keys = self._table_info(qualified).key_columns
        self._rels[rel.relation_id] = _Rel(
            rel.namespace, rel.name, topic_name(self.topic_prefix, rel.namespace, rel.name),
            [c.name for c in rel.columns], [pgoutput.converter(c.type_oid) for c in rel.columns],
            keys, captured)

    def _row(self, rel: _Rel, values: list) -> tuple[dict[str, Any], list[str]]:
        row: dict[str, Any] = {}
        missing: list[str] = []
        for name, conv, value in zip(rel.names, rel.convs, values):
            if value is None:
                row[name] = None
            elif value is UNCHANGED_TOAST:
                missing.append(name)
            else:
                row[name] = conv(value)
        return row, missing

    def _source(self, rel: _Rel, lsn: int) -> dict[str, Any]:
        return source_block(connector="postgresql", name=self.topic_prefix, db=self.db,
                            schema=rel.schema, table=rel.name, ts_ms=self._tx_ts_ms, lsn=lsn,
                            tx_id=self._tx_xid,
                            sequence=f'["{self._tx_commit_lsn}","{lsn}"]')

    def _emit_row(self, rel: _Rel, msg: Any, lsn: int) -> None:
        before = after = None
        unavailable: list[str] = []
        if isinstance(msg, pgoutput.Insert):
            op = "c"
            after, unavailable = self._row(rel, msg.new)
        elif isinstance(msg, pgoutput.Update):
            op = "u"
            after, unavailable = self._row(rel, msg.new)
            if msg.old is not None:
                before, _ = self._row(rel, msg.old)
                # An unchanged TOASTed column equals its old value when the old row carried it
                # (REPLICA IDENTITY FULL); otherwise it stays out of `after`, never faked.
                still: list[str] = []
                for name in unavailable:
                    if name in before:
                        after[name] = before[name]
                    else:
                        still.append(name)
                unavailable = still
        else:
            op = "d"
            before, _ = self._row(rel, msg.old)
        events = row_events(rel.topic, rel.key_columns, op, before, after,
                            self._source(rel, lsn), unavailable or None)
        job = self._resnapshot
        if job is not None and lsn > job.exported.position and \
                (rel.schema, rel.name) == (job.table.schema, job.table.name):
            for event in events:
                if event.key is not None:
                    job.touched.add(tuple(event.key[k] for k in rel.key_columns))
        self._send(events)

    def _truncate(self, msg: pgoutput.Truncate, lsn: int) -> None:
        events = [truncate_event(rel.topic, self._source(rel, lsn))
                  for rel in (self._rels[i] for i in msg.relation_ids) if rel.captured]
        self._send(events)

    def _send(self, events: list[ChangeEvent]) -> None:
        send = self.sink.send
        for event in events:
            send(event)
        self._unflushed += len(events)
        self._events_total += len(events)

    # ---- figures -------------------------------------------------------------------------

    def status(self) -> CaptureStatus:
        """Figures for `strangler cdc status`; safe to call from another thread."""
        with connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute("SELECT confirmed_flush_lsn::text, "
                        "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint "
                        "FROM pg_replication_slots WHERE slot_name = %s", (self.slot,))
            row = cur.fetchone()
        conn.close()
        total = self._events_total
        rate = self._rate.per_second(total)
        return CaptureStatus(
            slot=self.slot,
            received_lsn=int_to_lsn(self._last_commit_end) if self._last_commit_end else None,
            flushed_lsn=int_to_lsn(self._flushed_lsn) if self._flushed_lsn else None,
            confirmed_flush_lsn=row[0] if row else None,
            retained_wal_bytes=int(row[1]) if row and row[1] is not None else None,
            events_total=total, events_per_s=rate,
            transactions_skipped_by_origin=self._skipped_by_origin,
            resnapshots_completed=self._resnapshots_done,
            last_error=self._last_error)

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()

