"""Consistent snapshots of PostgreSQL tables for CDC: exported snapshot, PK chunks, progress.

Why the rows come out exactly once, with no gap, in effect:

* **Initial snapshot.** We note `S = pg_current_wal_lsn()`, then create the slot with
  `EXPORT_SNAPSHOT` on a replication connection and read every table inside that snapshot
  (REPEATABLE READ + `SET TRANSACTION SNAPSHOT`) while the connection stays open. The stream
  then starts at the slot's consistent point C: the snapshot holds exactly the transactions
  committed before C, the stream exactly those committed after. Snapshot rows carry
  position/`source.lsn` = S, not C: a transaction that commits after C may have written its
  change records *before* C, but never before S (any transaction holding an xid at S had to
  finish before the slot became consistent), so every streamed change of a row is positioned
  above the snapshot's and stale-skipping by position can never drop it.
* **Chunked and resumable.** Tables are read in primary-key order, `chunk_rows` at a time
  (keyset pagination). After each chunk the sink is flushed and the last key is stored in
  the source table `strangler_cdc_snapshot` (durable, visible to `strangler cdc status`,
  gone with the database it describes). An exported snapshot dies with its connection, so a
  resumed snapshot reads the remaining keys from a *new* exported snapshot (a temporary slot),
  positioned at a new S'. The main slot has not advanced (nothing is acknowledged while
  snapshotting), so the stream replays every change after C; changes above S' land after
  the snapshot rows, older ones are stale next to them or already inside them.
* **Re-snapshot of one table while streaming** (`PgCapture.request_snapshot`): a temporary
  slot's exported snapshot gives a consistent read at C' with position S'. Chunks are read
  between stream batches; before a chunk is emitted, keys the stream has already emitted with
  a position above S' since the re-snapshot began are dropped from it (the stream carried a
  newer image; re-sending the older one after it would reorder that key, e.g. resurrect a
  deleted row). Every other change to the table commits after C' or is contained in the read,
  and lands after the chunk with a higher position: no row is lost or reordered.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from cdc.pgoutput import converter, lsn_to_int

PROGRESS_TABLE = "strangler_cdc_snapshot"
# int2/int4/int8/oid, text/varchar/bpchar/name: psycopg2 returns what our converters would.
DRIVER_NATIVE = frozenset({20, 21, 23, 26, 25, 1043, 1042, 19})
_IDENTITY = converter(25)
SESSION_OPTIONS = "-c DateStyle=ISO -c TimeZone=UTC -c extra_float_digits=1"


def libpq_dsn(url: str) -> str:
    """Accept SQLAlchemy-style URLs (`postgresql+psycopg2://`) as libpq connection strings."""
    for prefix in ("postgresql+psycopg2://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url


def connect(dsn: str, **kwargs: Any) -> psycopg2.extensions.connection:
    """A connection whose text forms of dates and times are the ones pgoutput's decoder expects."""
    return psycopg2.connect(libpq_dsn(dsn), options=SESSION_OPTIONS, **kwargs)


@dataclass(frozen=True)
class TableInfo:
    schema: str
    name: str
    key_columns: tuple[str, ...]
    columns: tuple[tuple[str, int], ...]   # (name, type oid) in attribute order

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def quoted(self) -> str:
        return f'"{self.schema}"."{self.name}"'


def split_name(table: str) -> tuple[str, str]:
    schema, _, name = table.rpartition(".")
    return (schema or "public"), name


def table_info(cur, table: str) -> TableInfo:
    """Columns and primary key of a table, from the catalogue (a table without one is refused)."""
    schema, name = split_name(table)
    cur.execute(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')", (schema, name))
    row = cur.fetchone()
    if row is None:
        raise LookupError(f"table {schema}.{name} does not exist")
    cur.execute(
        "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = %s AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum", (row[0],))
    columns = tuple((n, int(t)) for n, t in cur.fetchall())
    cur.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
        "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = %s AND i.indisprimary "
        "ORDER BY array_position(i.indkey::int2[], a.attnum)", (row[0],))
    keys = tuple(r[0] for r in cur.fetchall())
    if not keys:
        raise LookupError(f"table {schema}.{name} has no primary key; CDC keys events by it")
    return TableInfo(schema, name, keys, columns)


@dataclass
class ExportedSnapshot:
    """A replication connection holding an exported snapshot (valid while it stays open)."""
    conn: Any
    dsn: str
    slot: str
    name: str
    consistent_lsn: int
    position: int           # S: the WAL position noted before the slot was created

    def close(self) -> None:
        self.conn.close()
        wait_slot_released(self.dsn, self.slot)


def wait_slot_released(dsn: str, slot: str, timeout_s: float = 10.0) -> None:
    """Wait until no walsender holds the slot: its backend exits a moment after we hang up,
    and until then the slot can neither be re-attached nor dropped."""
    deadline = time.monotonic() + timeout_s
    conn = connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            while time.monotonic() < deadline:
                cur.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s "
                            "AND active", (slot,))
                if cur.fetchone() is None:
                    return
                time.sleep(0.01)
    finally:
        conn.close()


def export_snapshot(dsn: str, slot: str, *, temporary: bool) -> ExportedSnapshot:
    with connect(dsn) as plain:
        with plain.cursor() as cur:
            cur.execute("SELECT pg_current_wal_lsn()::text")
            position = lsn_to_int(cur.fetchone()[0])
    plain.close()
    conn = psycopg2.connect(libpq_dsn(dsn),
                            connection_factory=psycopg2.extras.LogicalReplicationConnection)
    cur = conn.cursor()
    kind = "TEMPORARY LOGICAL" if temporary else "LOGICAL"
    cur.execute(f'CREATE_REPLICATION_SLOT "{slot}" {kind} pgoutput EXPORT_SNAPSHOT')
    _slot, consistent, snapshot_name, _plugin = cur.fetchone()
    return ExportedSnapshot(conn, dsn, slot, snapshot_name, lsn_to_int(consistent), position)


class SnapshotReader:
    """One REPEATABLE READ transaction inside an exported snapshot, read in PK chunks.

    Values come back as PostgreSQL's output text (no driver type conversion) and go through
    the same converters as streamed values, so a snapshot row and a streamed row render alike.
    """

    def __init__(self, dsn: str, snapshot_name: str):
        self.conn = connect(dsn)
        self.conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with self.conn.cursor() as cur:
            cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot_name,))

    def chunks(self, table: TableInfo, after_key: list[Any] | None,
               chunk_rows: int) -> Iterator[list[dict[str, Any]]]:
        """Yield chunks of converted rows in key order, starting after `after_key`."""
        names = [c for c, _ in table.columns]
        # Integers and text come through psycopg2's own C casters (same values the stream's
        # converters give); every other type arrives as output text and is converted here.
        raw_oids = tuple({oid for _, oid in table.columns if oid not in DRIVER_NATIVE})
        raw = psycopg2.extensions.new_type(raw_oids, "STRANGLER_RAW", lambda v, _c: v)
        post = [(n, conv) for n, oid in table.columns
                if oid not in DRIVER_NATIVE and (conv := converter(oid)) is not _IDENTITY]
        key_list = ", ".join(f'"{k}"' for k in table.key_columns)
        select = ", ".join(f'"{c}"' for c in names)
        key_index = [names.index(k) for k in table.key_columns]
        while True:
            with self.conn.cursor() as cur:
                if raw_oids:
                    psycopg2.extensions.register_type(raw, cur)
                if after_key is None:
                    cur.execute(f"SELECT {select} FROM {table.quoted} ORDER BY {key_list} "
                                f"LIMIT %s", (chunk_rows,))
                else:
                    marks = ", ".join(["%s"] * len(after_key))
                    cur.execute(f"SELECT {select} FROM {table.quoted} WHERE ({key_list}) > "
                                f"({marks}) ORDER BY {key_list} LIMIT %s",
                                (*after_key, chunk_rows))
                rows = cur.fetchall()
            if not rows:
                return
            last = rows[-1]
            after_key = [last[i] for i in key_index]   # output text: PG casts it back
            chunk = [dict(zip(names, r)) for r in rows]
            for name, conv in post:
                for row in chunk:
                    value = row[name]
                    if value is not None:
                        row[name] = conv(value)
            yield chunk
            if len(rows) < chunk_rows:
                return

    def close(self) -> None:
        self.conn.close()


@dataclass
class TableProgress:
    last_key: list[Any] | None = None
    done: bool = False
    rows: int = 0


@dataclass
class ProgressStore:
    """Snapshot progress per (slot, table) in `strangler_cdc_snapshot` in the source database."""
    dsn: str
    slot: str
    _conn: Any = field(default=None, repr=False)

    def _cursor(self):
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.dsn)
            self._conn.autocommit = True
        return self._conn.cursor()

    def ensure_table(self) -> None:
        with self._cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} (slot text NOT NULL, "
                        "table_name text NOT NULL, last_key jsonb, done boolean NOT NULL "
                        "DEFAULT false, rows bigint NOT NULL DEFAULT 0, updated_at timestamptz "
                        "NOT NULL DEFAULT now(), PRIMARY KEY (slot, table_name))")

    def load(self) -> dict[str, TableProgress]:
        with self._cursor() as cur:
            cur.execute(f"SELECT table_name, last_key, done, rows FROM {PROGRESS_TABLE} "
                        "WHERE slot = %s", (self.slot,))
            return {t: TableProgress(k, d, r) for t, k, d, r in cur.fetchall()}

    def start(self, tables: list[str]) -> None:
        with self._cursor() as cur:
            for table in tables:
                cur.execute(f"INSERT INTO {PROGRESS_TABLE} (slot, table_name) VALUES (%s, %s) "
                            "ON CONFLICT (slot, table_name) DO UPDATE SET last_key = NULL, "
                            "done = false, rows = 0, updated_at = now()", (self.slot, table))

    def save(self, table: str, progress: TableProgress) -> None:
        with self._cursor() as cur:
            cur.execute(f"UPDATE {PROGRESS_TABLE} SET last_key = %s, done = %s, rows = %s, "
                        "updated_at = now() WHERE slot = %s AND table_name = %s",
                        (json.dumps(progress.last_key), progress.done, progress.rows,
                         self.slot, table))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
