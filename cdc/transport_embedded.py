"""Embedded transport for `make demo`: no broker, an append-only log table in a SQLite file.

Same contract as Kafka: capture appends events (the same Debezium JSON) and `flush()` returns
once they are committed to the file; apply reads them in order from the offset stored in its
target database (the log id is the offset; one partition per topic). Delivery is at least once:
a crash between reading and the target commit re-reads from the stored offset. Consumers report
their committed offsets back so the log can prune what every consumer has applied.
"""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Callable

from cdc.envelope import encode
from cdc.events import ChangeEvent
from cdc.records import Record

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS cdc_log (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
    "key TEXT, value TEXT, position INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS cdc_log_topic ON cdc_log (topic, id)",
    "CREATE TABLE IF NOT EXISTS cdc_log_consumers (consumer TEXT NOT NULL, topic TEXT NOT NULL, "
    "next_offset INTEGER NOT NULL, PRIMARY KEY (consumer, topic))",
]


def _connect(path: str | Path) -> sqlite3.Connection:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")        # flushed means on disk
    conn.execute("PRAGMA busy_timeout=30000")
    for ddl in _SCHEMA:
        conn.execute(ddl)
    return conn


class EmbeddedSink:
    """EventSink: buffer sends, append them in one transaction on flush."""

    def __init__(self, path: str | Path, *, buffer_events: int = 5000) -> None:
        self._conn = _connect(path)
        self._buffer: list[tuple] = []
        self._limit = buffer_events

    def send(self, event: ChangeEvent) -> None:
        key = json.dumps(event.key, separators=(",", ":"), default=str) if event.key is not None else None
        value = encode(event.value)
        self._buffer.append((event.topic, key, value.decode() if value is not None else None, event.position))
        if len(self._buffer) >= self._limit:
            self._append()

    def _append(self) -> None:
        if not self._buffer:
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany("INSERT INTO cdc_log (topic, key, value, position) VALUES (?, ?, ?, ?)",
                                   self._buffer)
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._buffer.clear()

    def flush(self, timeout_s: float) -> None:
        self._append()

    def close(self) -> None:
        self._append()
        self._conn.close()


class EmbeddedSource:
    """EventSource: read the log in id order from the offsets the target database holds."""

    def __init__(self, path: str | Path, consumer: str, topics: list[str],
                 stored_offsets: Callable[[], dict[tuple[str, int], int]],
                 *, prune_every_s: float = 5.0) -> None:
        self._conn = _connect(path)
        self.consumer = consumer
        self.topics = list(topics)
        stored = stored_offsets()
        self._next = {t: stored.get((t, 0), 0) for t in self.topics}
        self._prune_every_s = prune_every_s
        self._last_prune = time.monotonic()

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        deadline = time.monotonic() + timeout_s
        marks = ", ".join("?" for _ in self.topics)
        while True:
            start = min(self._next.values())
            rows = self._conn.execute(
                f"SELECT id, topic, key, value, position FROM cdc_log WHERE id >= ? AND topic IN ({marks}) "
                f"ORDER BY id LIMIT ?", (start, *self.topics, max_records)).fetchall()
            out = []
            for id_, topic, key, value, position in rows:
                if id_ < self._next[topic]:
                    continue
                self._next[topic] = id_ + 1
                out.append(Record(topic, 0, id_, ChangeEvent(
                    topic, json.loads(key) if key is not None else None,
                    json.loads(value) if value is not None else None, position)))
            if out or time.monotonic() >= deadline:
                return out
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def committed(self, offsets: dict[tuple[str, int], int]) -> None:
        """Record progress; now and then prune what every known consumer has applied."""
        self._conn.executemany(
            "INSERT INTO cdc_log_consumers (consumer, topic, next_offset) VALUES (?, ?, ?) "
            "ON CONFLICT (consumer, topic) DO UPDATE SET next_offset = excluded.next_offset",
            [(self.consumer, t, o) for (t, _), o in offsets.items()])
        if time.monotonic() - self._last_prune >= self._prune_every_s:
            self.prune()

    def prune(self) -> int:
        self._last_prune = time.monotonic()
        cur = self._conn.execute(
            "DELETE FROM cdc_log WHERE id < (SELECT min(c.next_offset) FROM cdc_log_consumers c "
            "WHERE c.topic = cdc_log.topic)")
        return cur.rowcount

    def close(self) -> None:
        self._conn.close()
