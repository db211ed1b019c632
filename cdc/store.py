"""The target database as apply sees it: one DBAPI connection, explicit transactions, and the
bookkeeping tables that live beside the data (offsets, row positions, dead letters, stats).

Keeping the bookkeeping in the target is what makes apply exactly-once in effect: rows, the
consumed offsets and the per-row source positions commit in one transaction or not at all.
Raw DBAPI (psycopg2 / sqlite3) rather than the ORM because apply is the pipeline's hot loop.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from strangler.db import make_engine, normalise_url
from strangler.errors import OperatorError

OFFSETS = "_cdc_apply_offsets"     # (not _cdc_offsets: SQLite capture keeps its own under that name)
TOPIC_IDS = "_cdc_apply_topic_ids"  # which incarnation of each topic the stored offsets count in
POSITIONS = "_cdc_row_positions"
DLQ = "_cdc_dlq"
STATS = "_cdc_apply_stats"
# SQLite's replication-origin equivalent (cdc/capture_sqlite.py): a row present only inside our
# own write transactions; the capture triggers copy it into each change, and capture skips those.
SQLITE_ORIGIN = "_cdc_origin"
TABLE_WIDE = "*"        # the row-positions key recording a truncate of a whole table

_DDL = {
    "postgresql": [
        f"CREATE TABLE IF NOT EXISTS {OFFSETS} (consumer TEXT NOT NULL, topic TEXT NOT NULL, "
        f"partition INTEGER NOT NULL, next_offset BIGINT NOT NULL, PRIMARY KEY (consumer, topic, partition))",
        f"CREATE TABLE IF NOT EXISTS {TOPIC_IDS} (consumer TEXT NOT NULL, topic TEXT NOT NULL, "
        f"topic_id TEXT NOT NULL, PRIMARY KEY (consumer, topic))",
        f"CREATE TABLE IF NOT EXISTS {POSITIONS} (tbl TEXT NOT NULL, pk TEXT NOT NULL, "
        f"position BIGINT NOT NULL, PRIMARY KEY (tbl, pk))",
        f"CREATE TABLE IF NOT EXISTS {DLQ} (id BIGSERIAL PRIMARY KEY, consumer TEXT NOT NULL, "
        f"topic TEXT NOT NULL, partition INTEGER, kafka_offset BIGINT, position BIGINT, "
        f"event_key TEXT, event_value TEXT, kind TEXT NOT NULL, reason TEXT NOT NULL, "
        f"attempts INTEGER NOT NULL DEFAULT 1, created_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        f"CREATE TABLE IF NOT EXISTS {STATS} (consumer TEXT NOT NULL, tbl TEXT NOT NULL, "
        f"events BIGINT NOT NULL, last_position BIGINT, last_source_ms BIGINT, last_commit_ms BIGINT, "
        f"last_lag_ms BIGINT, PRIMARY KEY (consumer, tbl))",
    ],
    "sqlite": [
        f"CREATE TABLE IF NOT EXISTS {OFFSETS} (consumer TEXT NOT NULL, topic TEXT NOT NULL, "
        f"partition INTEGER NOT NULL, next_offset INTEGER NOT NULL, PRIMARY KEY (consumer, topic, partition))",
        f"CREATE TABLE IF NOT EXISTS {TOPIC_IDS} (consumer TEXT NOT NULL, topic TEXT NOT NULL, "
        f"topic_id TEXT NOT NULL, PRIMARY KEY (consumer, topic))",
        f"CREATE TABLE IF NOT EXISTS {POSITIONS} (tbl TEXT NOT NULL, pk TEXT NOT NULL, "
        f"position INTEGER NOT NULL, PRIMARY KEY (tbl, pk))",
        f"CREATE TABLE IF NOT EXISTS {DLQ} (id INTEGER PRIMARY KEY AUTOINCREMENT, consumer TEXT NOT NULL, "
        f"topic TEXT NOT NULL, partition INTEGER, kafka_offset INTEGER, position INTEGER, "
        f"event_key TEXT, event_value TEXT, kind TEXT NOT NULL, reason TEXT NOT NULL, "
        f"attempts INTEGER NOT NULL DEFAULT 1, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
        f"CREATE TABLE IF NOT EXISTS {STATS} (consumer TEXT NOT NULL, tbl TEXT NOT NULL, "
        f"events INTEGER NOT NULL, last_position INTEGER, last_source_ms INTEGER, last_commit_ms INTEGER, "
        f"last_lag_ms INTEGER, PRIMARY KEY (consumer, tbl))",
        f"CREATE TABLE IF NOT EXISTS {SQLITE_ORIGIN} (name TEXT NOT NULL)",
    ],
}


_KEY_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def key_text(key: dict[str, Any]) -> str:
    """A row key as stable text (what row positions are stored under)."""
    return _KEY_ENCODER.encode(key)


def sqlite_timestamp(value: Any) -> Any:
    """An event's timestamp ("2026-11-28T13:04:29", "…Z") in the form SQLAlchemy stores in a
    SQLite DATETIME column ("2026-11-28 13:04:29.000000", UTC, no zone): SQLite compares
    timestamps as text, so rows applied in the event's form would sort after and outside every
    range of the rows the apps wrote. Anything else is returned as it is."""
    if not isinstance(value, str):
        return value
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed.strftime("%Y-%m-%d %H:%M:%S.%f")


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class TargetStore:
    """One connection to a target database with explicit transaction control."""

    def __init__(self, url: str) -> None:
        url = normalise_url(url)
        self.url = url
        self.backend = make_url(url).get_backend_name()
        if self.backend not in _DDL:
            raise OperatorError(f"{self.backend}: unsupported target database; use postgresql or sqlite")
        extra = {"connect_args": {"application_name": "strangler-cdc-apply"}} if self.backend == "postgresql" else {}
        self.engine = make_engine(url, poolclass=NullPool, **extra)
        try:
            self._raw = self.engine.raw_connection()
        except Exception as exc:  # noqa: BLE001 - any driver error means the same to the operator
            why = str(getattr(exc, "orig", None) or exc).strip().splitlines()[:1] or [type(exc).__name__]
            raise OperatorError(f"cannot connect to {make_url(url).render_as_string(hide_password=True)}: "
                                f"{why[0]}; check the URL and that the database runs") from None
        self.conn = self._raw.driver_connection
        self.is_pg = self.backend == "postgresql"
        self.ph = "%s" if self.is_pg else "?"
        if self.is_pg:
            self.conn.autocommit = False
            import psycopg2.extras
            self._extras = psycopg2.extras
            self.errors: tuple[type[BaseException], ...] = (self.conn.DataError, self.conn.IntegrityError,
                                                            self.conn.ProgrammingError,
                                                            self.conn.InternalError)
        else:
            self.conn.isolation_level = None     # explicit BEGIN/COMMIT, savepoints behave
            import sqlite3
            # Not OperationalError: "database is locked" is a reason to retry, not poison.
            self.errors = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError,
                           sqlite3.ProgrammingError)
        self.in_tx = False
        self._types: dict[str, dict[str, str]] = {}     # PostgreSQL: table -> column -> type
        self._stamps: dict[str, set[str]] = {}          # SQLite: table -> timestamp columns
        self.marked = False             # set below, once the marker table exists
        self.begin()
        cur = self.conn.cursor()
        if self.is_pg:      # zone-less source timestamps are UTC (capture renders them so)
            cur.execute("SET TIME ZONE 'UTC'")
        for ddl in _DDL[self.backend]:
            cur.execute(ddl)
        self.commit()
        self.marked = not self.is_pg

    # --- transactions -------------------------------------------------------------------------
    def begin(self) -> None:
        if not self.is_pg:
            self.conn.execute("BEGIN IMMEDIATE")
            if self.marked:
                self.conn.execute(f"INSERT INTO {SQLITE_ORIGIN} (name) VALUES ('strangler')")
        self.in_tx = True

    def commit(self) -> None:
        if self.is_pg:
            self.conn.commit()
        else:
            if self.marked:
                self.conn.execute(f"DELETE FROM {SQLITE_ORIGIN}")
            self.conn.execute("COMMIT")
        self.in_tx = False

    def rollback(self) -> None:
        if self.is_pg:
            self.conn.rollback()
        elif self.in_tx:
            self.conn.execute("ROLLBACK")
        self.in_tx = False

    def savepoint(self, name: str) -> None:
        self.cursor().execute(f"SAVEPOINT {name}")

    def rollback_to(self, name: str) -> None:
        self.cursor().execute(f"ROLLBACK TO SAVEPOINT {name}")

    def release(self, name: str) -> None:
        self.cursor().execute(f"RELEASE SAVEPOINT {name}")

    def cursor(self):
        return self.conn.cursor()

    def close(self) -> None:
        try:
            self.rollback()
            self._raw.close()
        except Exception:  # noqa: BLE001 - the connection is already gone: just drop it
            self._raw.invalidate()
        finally:
            self.engine.dispose()

    # --- bulk statements ----------------------------------------------------------------------
    def upsert(self, table: str, columns: Sequence[str], key: Sequence[str], rows: list[tuple]) -> None:
        cols = ", ".join(q(c) for c in columns)
        updates = [c for c in columns if c not in key]
        conflict = (f"ON CONFLICT ({', '.join(q(k) for k in key)}) DO "
                    + (("UPDATE SET " + ", ".join(f"{q(c)} = excluded.{q(c)}" for c in updates))
                       if updates else "NOTHING"))
        cur = self.cursor()
        if self.is_pg:
            # One statement whatever the batch size: a column of values per array, unnested by the
            # server (about 1.5x the rate of a multi-row VALUES list, which the server must parse).
            cur.execute(f"INSERT INTO {q(table)} ({cols}) SELECT * FROM {self._unnest(table, columns)} "
                        f"{conflict}", [list(c) for c in zip(*rows)])
        else:
            marks = ", ".join("?" for _ in columns)
            cur.executemany(f"INSERT INTO {q(table)} ({cols}) VALUES ({marks}) {conflict}",
                            self._sqlite_rows(table, columns, rows))

    def _sqlite_rows(self, table: str, columns: Sequence[str], rows: list[tuple]) -> list[tuple]:
        """Timestamps in SQLite's stored form (`sqlite_timestamp`); other values as they are."""
        stamps = self._sqlite_timestamp_columns(table)
        at = [i for i, c in enumerate(columns) if c in stamps]
        if not at:
            return rows
        out = []
        for row in rows:
            values = list(row)
            for i in at:
                values[i] = sqlite_timestamp(values[i])
            out.append(tuple(values))
        return out

    def _sqlite_timestamp_columns(self, table: str) -> set[str]:
        found = self._stamps.get(table)
        if found is None:
            info = self.cursor().execute(f"PRAGMA table_info({q(table)})").fetchall()
            found = self._stamps[table] = {r[1] for r in info
                                           if str(r[2]).upper().startswith(("DATETIME", "TIMESTAMP"))}
        return found

    def _unnest(self, table: str, columns: Sequence[str]) -> str:
        """`unnest(%s::type[], ...)`, one typed array parameter per column of `table`.

        The arrays are cast to each column's base type, without its modifier: an explicit cast
        to `varchar(64)[]` cuts a longer value to 64 characters (`char(n)` pads or cuts,
        `numeric(p,s)` and `timestamp(p)` round) without a word, where the assignment to the
        column raises "value too long" and the row is dead-lettered with that reason."""
        types = self._column_types(table)
        return "unnest(" + ", ".join(f"%s::{types[c]}[]" for c in columns) + ")"

    def _column_types(self, table: str) -> dict[str, str]:
        types = self._types.get(table)
        if types is None:
            cur = self.cursor()
            # -1, not NULL: format_type(bpchar, NULL) is "character", i.e. char(1), and would
            # cut; -1 names the unconstrained type ("bpchar", "bit").
            cur.execute("SELECT attname, format_type(atttypid, -1) FROM pg_attribute "
                        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped", (q(table),))
            types = self._types[table] = dict(cur.fetchall())
        return types

    def execute_many(self, sql: str, rows: list[tuple]) -> None:
        cur = self.cursor()
        if self.is_pg:
            self._extras.execute_batch(cur, sql, rows, page_size=500)
        else:
            cur.executemany(sql, rows)

    def delete(self, table: str, key: Sequence[str], keys: list[tuple]) -> None:
        if self.is_pg and len(key) == 1:    # one statement for the whole batch, an index scan
            array = f"%s::{self._column_types(table)[key[0]]}[]"
            self.cursor().execute(f"DELETE FROM {q(table)} WHERE {q(key[0])} = ANY({array})",
                                  ([k[0] for k in keys],))
            return
        if self.is_pg:
            match = " AND ".join(f"t.{q(k)} = d.{q(k)}" for k in key)
            self.cursor().execute(f"DELETE FROM {q(table)} AS t USING {self._unnest(table, key)} "
                                  f"AS d({', '.join(q(k) for k in key)}) WHERE {match}",
                                  [list(c) for c in zip(*keys)])
            return
        where = " AND ".join(f"{q(k)} = {self.ph}" for k in key)
        self.execute_many(f"DELETE FROM {q(table)} WHERE {where}", keys)

    def update_one(self, table: str, columns: Sequence[str], key: Sequence[str], values: list) -> bool:
        """Update some columns of one row; False when there is no such row."""
        sets = ", ".join(f"{q(c)} = {self.ph}" for c in columns)
        where = " AND ".join(f"{q(k)} = {self.ph}" for k in key)
        if not self.is_pg:
            values = [*self._sqlite_rows(table, columns, [tuple(values[:len(columns)])])[0],
                      *values[len(columns):]]
        cur = self.cursor()
        cur.execute(f"UPDATE {q(table)} SET {sets} WHERE {where}", values)
        return cur.rowcount > 0

    def truncate(self, table: str) -> None:
        self.cursor().execute(f"DELETE FROM {q(table)}")

    # --- bookkeeping --------------------------------------------------------------------------
    def positions(self, tbl: str, pks: Iterable[str]) -> dict[str, int]:
        pks = list(pks)
        cur = self.cursor()
        if self.is_pg:
            cur.execute(f"SELECT pk, position FROM {POSITIONS} WHERE tbl = %s AND pk = ANY(%s::text[])",
                        (tbl, pks))
            return dict(cur.fetchall())
        found: dict[str, int] = {}
        for i in range(0, len(pks), 500):
            chunk = pks[i:i + 500]
            marks = ", ".join("?" for _ in chunk)
            cur.execute(f"SELECT pk, position FROM {POSITIONS} WHERE tbl = ? AND pk IN ({marks})",
                        (tbl, *chunk))
            found.update(cur.fetchall())
        return found

    def positions_after(self, tbl: str, position: int) -> list[str]:
        """The row keys of TBL whose stored position is past POSITION (not the table-wide one)."""
        cur = self.cursor()
        cur.execute(f"SELECT pk FROM {POSITIONS} WHERE tbl = {self.ph} AND pk <> {self.ph} "
                    f"AND position > {self.ph}", (tbl, TABLE_WIDE, position))
        return [r[0] for r in cur.fetchall()]

    def forget_positions(self, tbl: str, up_to: int) -> None:
        """Drop TBL's stored positions up to UP_TO (a truncate there replaces them)."""
        self.cursor().execute(f"DELETE FROM {POSITIONS} WHERE tbl = {self.ph} AND position <= "
                              f"{self.ph}", (tbl, up_to))

    def keys(self, table: str, key: Sequence[str]) -> list[tuple]:
        cur = self.cursor()
        cur.execute(f"SELECT {', '.join(q(k) for k in key)} FROM {q(table)}")
        return [tuple(r) for r in cur.fetchall()]

    def save_positions(self, rows: list[tuple[str, str, int]]) -> None:
        if rows:
            self.upsert(POSITIONS, ("tbl", "pk", "position"), ("tbl", "pk"), rows)

    def save_offsets(self, consumer: str, offsets: dict[tuple[str, int], int]) -> None:
        rows = [(consumer, topic, part, nxt) for (topic, part), nxt in offsets.items()]
        if rows:
            self.upsert(OFFSETS, ("consumer", "topic", "partition", "next_offset"),
                        ("consumer", "topic", "partition"), rows)

    def save_topic_ids(self, consumer: str, ids: dict[str, str]) -> None:
        if ids:
            self.upsert(TOPIC_IDS, ("consumer", "topic", "topic_id"), ("consumer", "topic"),
                        [(consumer, topic, topic_id) for topic, topic_id in ids.items()])

    def topic_ids(self, consumer: str) -> dict[str, str]:
        cur = self.cursor()
        cur.execute(f"SELECT topic, topic_id FROM {TOPIC_IDS} WHERE consumer = {self.ph}", (consumer,))
        return dict(cur.fetchall())

    def offsets(self, consumer: str) -> dict[tuple[str, int], int]:
        cur = self.cursor()
        cur.execute(f"SELECT topic, partition, next_offset FROM {OFFSETS} WHERE consumer = {self.ph}",
                    (consumer,))
        return {(t, p): o for t, p, o in cur.fetchall()}

    def columns(self, table: str) -> set[str] | None:
        """The table's column names, None if there is no such table."""
        cur = self.cursor()
        if self.is_pg:
            cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                        "AND table_schema = current_schema()", (table,))
            found = {r[0] for r in cur.fetchall()}
            self.rollback()
        else:
            found = {r[1] for r in cur.execute(f"PRAGMA table_info({q(table)})").fetchall()}
        return found or None

    def lookup(self, table: str, match: str, take: str, value: Any) -> list[Any]:
        cur = self.cursor()
        cur.execute(f"SELECT {q(take)} FROM {q(table)} WHERE {q(match)} = {self.ph}", (value,))
        return [r[0] for r in cur.fetchall()]

    def setup_origin(self, base: str) -> str:
        """Tag this session's transactions with a replication origin so capture drops them.

        An origin can be active in one session at a time, so each apply process takes the first
        free name of `base_0`, `base_1`, ... (a bounded set, reused after restarts).
        """
        cur = self.cursor()
        for i in range(64):
            name = f"{base}_{i}"
            try:
                cur.execute("SAVEPOINT origin")
                cur.execute("SELECT pg_replication_origin_oid(%s)", (name,))
                if cur.fetchone()[0] is None:
                    cur.execute("SELECT pg_replication_origin_create(%s)", (name,))
                cur.execute("SELECT pg_replication_origin_session_setup(%s)", (name,))
                cur.execute("RELEASE SAVEPOINT origin")
                self.commit()
                self.begin()
                return name
            except self.conn.Error:      # in use by another session (55006): try the next name
                cur.execute("ROLLBACK TO SAVEPOINT origin")
        raise OperatorError(f"no free replication origin named {base}_0..63; stop stale apply processes")
