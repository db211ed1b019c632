"""SQLite capture: triggers write before/after images into `_cdc_changes`; we poll it in order.

Contract (the same shape as PgCapture):

    cap = SqliteCapture(path_or_url, tables, topic_prefix, sink, slot="strangler")
    cap.ensure_setup()      # WAL mode, change/offset/origin tables, AFTER INSERT/UPDATE/DELETE
                            # triggers on every captured table (re-installed when the schema changes)
    cap.snapshot()          # tables + the change table's high-water mark in ONE read transaction,
                            # emitted as op "r"; then the offset starts there. No-op once done.
    cap.run(stop_event) / cap.poll_once()
    cap.request_snapshot(table)   # re-emit one table's rows at the next poll
    cap.status()

How it works (Debezium's incubating SQLite connector does the same): each trigger inserts
`json_object(...)` images into `_cdc_changes(change_id AUTOINCREMENT, tbl, op, before_json,
after_json, ts_ms, origin)` inside the writer's own transaction, so a change and its record
commit or vanish together. SQLite has one writer at a time, so change_id order is commit order;
AUTOINCREMENT never reuses an id, even after pruning. The poller reads rows above its stored
offset in change_id order, hands them to the sink, flushes, stores the offset in
`_cdc_offsets` (keyed by `slot`), then deletes rows every capture has passed. A crash between
flush and offset write re-sends a batch: at least once, never lost.

Loop prevention: the applier marks its own write transactions by inserting a row into
`_cdc_origin` first and deleting it before commit (`applying_origin()` does both). Because
SQLite serialises writers and the marker is never committed, only triggers fired inside that
transaction see it; they copy its name into `_cdc_changes.origin`, and the poller skips such
rows (kept until pruned, so the audit trail shows what the pipeline wrote). Other writers
can never see the marker.

One SQLite rule to know: rows that `INSERT OR REPLACE` deletes to resolve a conflict fire
delete triggers only on connections with `PRAGMA recursive_triggers=ON`; writers that rely on
REPLACE must set it (`INSERT ... ON CONFLICT DO UPDATE` fires the update trigger as usual).

Values: booleans, NUMERIC(p,s), DATETIME columns are rendered by their declared type exactly as
PostgreSQL capture renders them (see cdc/envelope.py): true/false, decimal strings with the
declared scale, ISO timestamps with a "T". BLOBs become hex digits.
"""
from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy.engine import make_url

from cdc.envelope import row_events, source_block, topic_name
from cdc.event_rate import EventRate
from cdc.events import EventSink
from strangler.errors import OperatorError

CHANGES = "_cdc_changes"
OFFSETS = "_cdc_offsets"
ORIGIN = "_cdc_origin"
SCHEMA = "main"
_TS_MS_SQL = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"


def sqlite_path(path_or_url: str | Path) -> str:
    """A file path, or the database of a SQLAlchemy URL (`sqlite:///var/legacy.db`)."""
    text = str(path_or_url)
    return make_url(text).database or "" if "://" in text else text


@contextmanager
def applying_origin(conn: sqlite3.Connection, origin: str = "strangler") -> Iterator[None]:
    """Wrap the applier's write transaction so capture on this database skips its changes.

    The connection must be in autocommit mode (isolation_level=None); the block runs in one
    IMMEDIATE transaction that commits on success and rolls back on error.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(f"INSERT INTO {ORIGIN} (name) VALUES (?)", (origin,))
        yield
        conn.execute(f"DELETE FROM {ORIGIN}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


@dataclass(frozen=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    key_columns: tuple[str, ...]
    convs: tuple[Callable[[Any], Any] | None, ...]
    blobs: frozenset[str]
    topic: str


@dataclass(frozen=True)
class SqliteCaptureStatus:
    slot: str
    offset: int             # last change_id flushed to the sink
    pending_changes: int    # change rows above the offset
    events_total: int
    events_per_s: float
    skipped_by_origin: int
    last_error: str | None


def _bool(value: Any) -> Any:
    return bool(value) if isinstance(value, int) else value


def _decimal(scale: int | None) -> Callable[[Any], Any]:
    quantum = Decimal(1).scaleb(-scale) if scale is not None else None

    def convert(value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool) or \
                isinstance(value, str) and value:
            try:
                number = Decimal(str(value))
            except ArithmeticError:
                return value
            return str(number.quantize(quantum) if quantum is not None else number)
        return value
    return convert


_TIMESTAMP = re.compile(r"^(?P<base>\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d)?)"
                        r"(?:\.(?P<fraction>\d+))?(?P<zone>Z|[+-]\d\d(?::?\d\d)?)?$")


def _timestamp(value: Any) -> Any:
    """PostgreSQL's form: "T", fraction without trailing zeros, UTC as "Z" (SQLAlchemy stores
    "2026-11-28 05:31:00.000000" where PostgreSQL prints "2026-11-28T05:31:00")."""
    match = _TIMESTAMP.match(value) if isinstance(value, str) else None
    if match is None:
        return value
    zone = match["zone"] or ""
    if zone not in ("", "Z", "+00:00", "+00", "+0000"):   # another offset: shown in UTC, as PG
        utc = datetime.fromisoformat(value).astimezone(timezone.utc).replace(tzinfo=None)
        return _timestamp(utc.isoformat() + "Z")
    base = match["base"].replace(" ", "T")
    base += ":00" if base.count(":") == 1 else ""
    fraction = (match["fraction"] or "").rstrip("0")
    return base + ("." + fraction if fraction else "") + ("Z" if zone else "")


def _converter(declared: str) -> Callable[[Any], Any] | None:
    """Render a column the way PostgreSQL capture renders the matching type."""
    declared = declared.upper()
    if declared.startswith("BOOL"):
        return _bool
    if declared.startswith(("NUMERIC", "DECIMAL")):
        match = re.search(r"\(\s*\d+\s*,\s*(\d+)\s*\)", declared)
        return _decimal(int(match.group(1)) if match else None)
    if declared.startswith(("DATETIME", "TIMESTAMP")):
        return _timestamp
    return None


class SqliteCapture:
    def __init__(self, path: str | Path, tables: list[str], topic_prefix: str,
                 sink: EventSink, *, slot: str = "strangler", poll_interval_s: float = 0.05,
                 batch_rows: int = 5_000, flush_timeout_s: float = 30.0,
                 snapshot_chunk_rows: int = 10_000):
        self.path = sqlite_path(path)
        self.tables = [t.rpartition(".")[2] for t in tables]
        self.topic_prefix = topic_prefix
        self.sink = sink
        self.slot = slot
        self.poll_interval_s = poll_interval_s
        self.batch_rows = batch_rows
        self.flush_timeout_s = flush_timeout_s
        self.snapshot_chunk_rows = snapshot_chunk_rows
        self.db = Path(self.path).stem
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                     timeout=30)
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._info: dict[str, _Table] = {}
        self._schema_version = -1
        self._requests: list[str] = []
        self._lock = threading.Lock()
        self._offset: int | None = None
        self._events_total = 0
        self._skipped = 0
        self._last_error: str | None = None
        self._rate = EventRate()
        self.streaming = threading.Event()   # set once run() polls (changes from then on count)

    # ---- setup ---------------------------------------------------------------------------

    def ensure_setup(self) -> None:
        """Create the change machinery and (re)install triggers; safe on every start."""
        conn = self._conn
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {CHANGES} (change_id INTEGER PRIMARY KEY "
                         "AUTOINCREMENT, tbl TEXT NOT NULL, op TEXT NOT NULL, before_json TEXT, "
                         "after_json TEXT, ts_ms INTEGER NOT NULL, origin TEXT)")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {OFFSETS} (slot TEXT PRIMARY KEY, "
                         "change_id INTEGER NOT NULL, snapshot_pending INTEGER NOT NULL "
                         "DEFAULT 0)")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {ORIGIN} (name TEXT NOT NULL)")
            for table in self.tables:
                self._install_triggers(table)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._schema_version = self._current_schema_version()

    def _current_schema_version(self) -> int:
        return self._conn.execute("PRAGMA schema_version").fetchone()[0]

    def _table(self, table: str) -> _Table:
        info = self._info.get(table)
        if info is None:
            rows = self._conn.execute(f'PRAGMA table_info("{table}")').fetchall()
            if not rows:
                raise OperatorError(f"cannot capture {table}: no such table in {self.path}; "
                                    "fix the capture's table list")
            keys = tuple(r[1] for r in sorted((r for r in rows if r[5]), key=lambda r: r[5]))
            if not keys:
                raise OperatorError(f"cannot capture {table}: it has no primary key and CDC "
                                    "keys events by it; add one")
            info = _Table(table, tuple(r[1] for r in rows), keys,
                          tuple(_converter(r[2] or "") for r in rows),
                          frozenset(r[1] for r in rows if (r[2] or "").upper() == "BLOB"),
                          topic_name(self.topic_prefix, SCHEMA, table))
            self._info[table] = info
        return info

    def _install_triggers(self, table: str) -> None:
        self._info.pop(table, None)
        info = self._table(table)

        def image(alias: str) -> str:
            parts = []
            for column in info.columns:
                ref = f'{alias}."{column}"'
                if column in info.blobs:
                    ref = f"CASE WHEN {ref} IS NULL THEN NULL ELSE lower(hex({ref})) END"
                parts.append(f"'{column}', {ref}")
            return f"json_object({', '.join(parts)})"

        origin = f"(SELECT name FROM {ORIGIN} LIMIT 1)"
        for op, event, before, after in (("c", "INSERT", "NULL", image("NEW")),
                                         ("u", "UPDATE", image("OLD"), image("NEW")),
                                         ("d", "DELETE", image("OLD"), "NULL")):
            name = f"_cdc_{table}_{event.lower()}"
            self._conn.execute(f'DROP TRIGGER IF EXISTS "{name}"')
            self._conn.execute(
                f'CREATE TRIGGER "{name}" AFTER {event} ON "{table}" BEGIN '
                f"INSERT INTO {CHANGES} (tbl, op, before_json, after_json, ts_ms, origin) "
                f"VALUES ('{table}', '{op}', {before}, {after}, {_TS_MS_SQL}, {origin}); END")

    def _refresh_schema(self) -> None:
        """A column added to a captured table re-installs its triggers (they list columns)."""
        if self._current_schema_version() != self._schema_version:
            self.ensure_setup()

    # ---- offsets -------------------------------------------------------------------------

    def _high_water(self) -> int:
        row = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?",
                                 (CHANGES,)).fetchone()
        return row[0] if row else 0

    def _load_offset(self) -> tuple[int, bool] | None:
        """(change_id, initial snapshot still pending) for this slot, None before any start."""
        row = self._conn.execute(f"SELECT change_id, snapshot_pending FROM {OFFSETS} "
                                 "WHERE slot = ?", (self.slot,)).fetchone()
        return (row[0], bool(row[1])) if row else None

    def _store_offset(self, change_id: int, snapshot_pending: bool = False) -> None:
        self._conn.execute(f"INSERT INTO {OFFSETS} (slot, change_id, snapshot_pending) "
                           "VALUES (?, ?, ?) ON CONFLICT (slot) DO UPDATE SET change_id = "
                           "excluded.change_id, snapshot_pending = excluded.snapshot_pending",
                           (self.slot, change_id, int(snapshot_pending)))
        self._offset = None if snapshot_pending else change_id

    def _prune(self) -> None:
        """Delete change rows every capture on this database has flushed."""
        self._conn.execute(f"DELETE FROM {CHANGES} WHERE change_id <= "
                           f"(SELECT min(change_id) FROM {OFFSETS})")

    # ---- snapshot ------------------------------------------------------------------------

    def snapshot(self, tables: list[str] | None = None) -> int:
        """Emit current rows as op "r" from one read transaction; returns rows emitted.

        Without `tables` this is the initial snapshot: skipped once it has completed (or once
        streaming started without one), and the offset then starts at the change table's
        high-water mark read in the same transaction. A SQLite snapshot is not resumable
        midway; an interrupted one is simply redone.
        """
        initial = tables is None
        if initial:
            stored = self._load_offset()
            if stored is not None and not stored[1]:
                return 0
            # Hold our place first: other slots must not prune changes we will need.
            self._store_offset(self._high_water(), snapshot_pending=True)
        conn = self._conn
        emitted = 0
        conn.execute("BEGIN")
        try:
            mark = self._high_water()      # the read transaction's snapshot starts here
            wanted = self.tables if tables is None else [t.rpartition(".")[2] for t in tables]
            total = sum(conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
                        for t in wanted)
            for table in wanted:
                info = self._table(table)
                for row in self._read_table(info):
                    emitted += 1
                    marker = ("incremental" if not initial else "last" if emitted == total
                              else "first" if emitted == 1 else "true")
                    self._emit(info, "r", None, row, mark, marker, int(time.time() * 1000))
                    if emitted % self.snapshot_chunk_rows == 0:
                        self.sink.flush(self.flush_timeout_s)
        finally:
            conn.execute("COMMIT")
        self.sink.flush(self.flush_timeout_s)
        if initial:
            self._store_offset(mark)
        return emitted

    def _read_table(self, info: _Table) -> Iterator[dict[str, Any]]:
        names = ", ".join(f'"{c}"' for c in info.columns)
        keys = ", ".join(f'"{k}"' for k in info.key_columns)
        cursor = self._conn.execute(f'SELECT {names} FROM "{info.name}" ORDER BY {keys}')
        while rows := cursor.fetchmany(self.snapshot_chunk_rows):
            for values in rows:
                yield {c: (v.hex() if isinstance(v, bytes) else v)
                       for c, v in zip(info.columns, values)}

    def request_snapshot(self, table: str) -> None:
        """Re-emit one table's rows at the next poll (positions = the change table's mark, so
        any change after the read is newer and any older one is stale next to it)."""
        table = table.rpartition(".")[2]
        if table not in self.tables:
            raise ValueError(f"{table} is not captured from {self.path}")
        with self._lock:
            self._requests.append(table)

    # ---- streaming -----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Poll until `stop` is set; a full batch is followed at once by the next."""
        self._start_offset()
        self.streaming.set()
        try:
            while not stop.is_set():
                if self.poll_once() < self.batch_rows:
                    stop.wait(self.poll_interval_s)
        finally:
            self.streaming.clear()

    def _start_offset(self) -> None:
        if self._offset is None:
            stored = self._load_offset()
            if stored is None:      # streaming without a snapshot: start from now
                self._store_offset(self._high_water())
            else:
                self._offset = stored[0]

    def poll_once(self) -> int:
        """Send the next batch of changes, flush, store the offset, prune; rows read."""
        with self._lock:
            requests, self._requests = self._requests, []
        if requests:
            self.snapshot(requests)
        self._refresh_schema()
        self._start_offset()
        self._rate.sample(self._events_total)
        rows = self._conn.execute(
            f"SELECT change_id, tbl, op, before_json, after_json, ts_ms, origin FROM {CHANGES} "
            "WHERE change_id > ? ORDER BY change_id LIMIT ?",
            (self._offset, self.batch_rows)).fetchall()
        if not rows:
            return 0
        loads = json.loads
        for change_id, tbl, op, before, after, ts_ms, origin in rows:
            if origin is not None:
                self._skipped += 1
                continue
            info = self._table(tbl)
            self._emit(info, op, self._render(info, before and loads(before)),
                       self._render(info, after and loads(after)), change_id, "false", ts_ms)
        try:
            self.sink.flush(self.flush_timeout_s)
        except Exception as exc:  # not flushed: keep the offset, re-send next time
            self._last_error = f"sink flush failed: {exc}"
            return 0
        self._last_error = None
        self._store_offset(rows[-1][0])
        self._prune()
        return len(rows)

    @staticmethod
    def _render(info: _Table, row: dict[str, Any] | None) -> dict[str, Any] | None:
        if row is None:
            return None
        for column, conv in zip(info.columns, info.convs):
            if conv is not None and column in row:
                row[column] = conv(row[column])
        return row

    def _emit(self, info: _Table, op: str, before: dict | None, after: dict | None,
              position: int, snapshot: str, ts_ms: int) -> None:
        if op == "r":
            after = self._render(info, after)
        source = source_block(connector="sqlite", name=self.topic_prefix, db=self.db,
                              schema=SCHEMA, table=info.name, ts_ms=ts_ms, lsn=position,
                              snapshot=snapshot)
        for event in row_events(info.topic, info.key_columns, op, before, after, source):
            self.sink.send(event)
            self._events_total += 1

    # ---- figures -------------------------------------------------------------------------

    def status(self) -> SqliteCaptureStatus:
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            offset = self._offset if self._offset is not None else (
                (conn.execute(f"SELECT change_id FROM {OFFSETS} WHERE slot = ?",
                              (self.slot,)).fetchone() or [0])[0])
            pending = conn.execute(f"SELECT count(*) FROM {CHANGES} WHERE change_id > ?",
                                   (offset,)).fetchone()[0]
        finally:
            conn.close()
        total = self._events_total
        rate = self._rate.per_second(total)
        return SqliteCaptureStatus(self.slot, offset, pending, total, rate, self._skipped,
                                   self._last_error)

    def close(self) -> None:
        self._conn.close()
