"""Debezium's change-event envelope: topic names, keys, values, tombstones, JSON bytes.

Events are Debezium JSON payloads with schemas off (docs/cdc-events.md has one example per
op). Value rendering, the same for PostgreSQL and SQLite so apply sees one format:
  * numeric/decimal  → exact decimal *string* ("12.50"), like Debezium's
    `decimal.handling.mode=string` (a JSON number would round through a double);
  * timestamp        → ISO-8601 string without zone ("2026-11-28T05:34:55.123456");
    timestamptz      → ISO-8601 UTC string ending in "Z" (Debezium's ZonedTimestamp form);
    date             → "YYYY-MM-DD";
  * bool → true/false; integers → numbers; float → number (NaN/±Infinity as strings);
  * bytea/blob → hex digits (`binary.handling.mode=hex`); json/jsonb, uuid, others → text.
Unchanged TOASTed values the server did not send are never given a fake value: the column is
left out of `after` and named in the value's `unavailable_columns` list (see capture_pg).
"""
from __future__ import annotations

import re
import time
from typing import Any, Iterable

import orjson

from cdc.events import ChangeEvent

VERSION = "strangler-0.1.0"
_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def topic_name(prefix: str, schema: str, table: str) -> str:
    """`<prefix>.<schema>.<table>`; characters Kafka does not allow become `_` (as Debezium)."""
    return ".".join(_TOPIC_UNSAFE.sub("_", part) for part in (prefix, schema, table))


def source_block(*, connector: str, name: str, db: str, schema: str, table: str,
                 ts_ms: int, lsn: int, snapshot: str = "false", tx_id: int | None = None,
                 sequence: str | None = None) -> dict[str, Any]:
    """Debezium's `source` (PostgreSQL connector field set; SQLite fills what applies)."""
    return {"version": VERSION, "connector": connector, "name": name, "ts_ms": ts_ms,
            "snapshot": snapshot, "db": db, "sequence": sequence, "schema": schema,
            "table": table, "txId": tx_id, "lsn": lsn, "xmin": None}


def key_of(row: dict[str, Any], key_columns: Iterable[str]) -> dict[str, Any]:
    return {column: row.get(column) for column in key_columns}


def row_events(topic: str, key_columns: tuple[str, ...], op: str,
               before: dict[str, Any] | None, after: dict[str, Any] | None,
               source: dict[str, Any], unavailable: list[str] | None = None,
               ts_ms: int | None = None) -> list[ChangeEvent]:
    """The event(s) for one row change: c/u/r → one event; d → the delete and its tombstone.

    A primary-key change is emitted as delete + tombstone + create, as Debezium does, so
    each key's topic partition tells a complete story.
    """
    ts_ms = int(time.time() * 1000) if ts_ms is None else ts_ms
    position = source["lsn"]
    if op == "u" and before is not None:
        old_key = key_of(before, key_columns)
        new_key = key_of(after or {}, key_columns)
        if old_key != new_key and all(v is not None for v in old_key.values()):
            return (row_events(topic, key_columns, "d", before, None, source, ts_ms=ts_ms)
                    + row_events(topic, key_columns, "c", None, after, source,
                                 unavailable, ts_ms=ts_ms))
    value: dict[str, Any] = {"before": before, "after": after, "source": source, "op": op,
                             "ts_ms": ts_ms, "transaction": None}
    if unavailable:
        value["unavailable_columns"] = unavailable
    if op == "d":
        key = key_of(before or {}, key_columns)
        return [ChangeEvent(topic, key, value, position), ChangeEvent(topic, key, None, position)]
    return [ChangeEvent(topic, key_of(after or {}, key_columns), value, position)]


def truncate_event(topic: str, source: dict[str, Any], ts_ms: int | None = None) -> ChangeEvent:
    """`op: t`: one event per table, null key (every row of the table is gone)."""
    ts_ms = int(time.time() * 1000) if ts_ms is None else ts_ms
    value = {"before": None, "after": None, "source": source, "op": "t", "ts_ms": ts_ms,
             "transaction": None}
    return ChangeEvent(topic, None, value, source["lsn"])


def encode(payload: dict[str, Any] | None) -> bytes | None:
    """Compact UTF-8 JSON as the transport carries it; None (tombstone) stays None."""
    return None if payload is None else orjson.dumps(payload)


def decode(data: bytes | str | None) -> dict[str, Any] | None:
    return None if data is None else orjson.loads(data)
