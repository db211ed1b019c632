"""Wait until one direction has carried every change the source had when we started waiting.

Used when write ownership switches: stop writes on the old owner, drain its direction, then let
the new owner write. Without the drain, a change still in flight from the old owner could land on
the new owner after the new owner's own write to the same row and overwrite it. Drained means:
  1. capture has made durable (slot acknowledged / SQLite capture offset stored) every change up to
     the source's position at the start, and
  2. apply's offsets stored in the target have reached the end of every partition of the
     direction's topics as they were after step 1.
"""
from __future__ import annotations

import time

from sqlalchemy import text

from cdc.capture_pg import HEARTBEAT_TABLE
from cdc.config import CdcConfig, Route
from cdc.pgoutput import lsn_to_int
from cdc.store import OFFSETS
from strangler.db import make_engine


def _source_position(route: Route) -> int:
    """The source's position now; on PostgreSQL also commit a heartbeat after it, so the slot
    (which is acknowledged at commit ends of this database) soon moves past it even when idle."""
    engine = make_engine(route.source.url)
    try:
        with engine.begin() as conn:
            if engine.dialect.name != "postgresql":
                return conn.execute(text("SELECT coalesce(max(change_id), 0) FROM _cdc_changes")).scalar_one()
            position = lsn_to_int(conn.execute(text("SELECT pg_current_wal_lsn()::text")).scalar_one())
            conn.execute(text(f"INSERT INTO public.{HEARTBEAT_TABLE} (id, ts) VALUES (2, now()) "
                              "ON CONFLICT (id) DO UPDATE SET ts = now()"))
            return position
    finally:
        engine.dispose()


def _captured_position(route: Route) -> int:
    engine = make_engine(route.source.url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                lsn = conn.execute(text("SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                                        "WHERE slot_name = :s"), {"s": route.slot}).scalar()
                return lsn_to_int(lsn) if lsn else -1
            found = conn.execute(text("SELECT change_id FROM _cdc_offsets WHERE slot = :s"),
                                 {"s": route.slot}).scalar()
            return -1 if found is None else found
    finally:
        engine.dispose()


def _log_ends(config: CdcConfig, route: Route) -> dict[tuple[str, int], int]:
    """Next offset to be written, per partition of the route's topics."""
    t = config.transport
    if t.kind == "kafka":
        from confluent_kafka import Consumer, TopicPartition

        from cdc.transport_kafka import KAFKA_LOG
        consumer = Consumer({"bootstrap.servers": t.bootstrap, "group.id": f"{route.name}-drain",
                             "logger": KAFKA_LOG})
        try:
            ends = {}
            meta = consumer.list_topics(timeout=10)
            for topic in route.topics:
                for p in (meta.topics[topic].partitions if topic in meta.topics else {}):
                    ends[(topic, p)] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            return ends
        finally:
            consumer.close()
    import sqlite3
    conn = sqlite3.connect(t.path)
    try:
        marks = ", ".join("?" for _ in route.topics)
        rows = conn.execute(f"SELECT topic, max(id) FROM cdc_log WHERE topic IN ({marks}) GROUP BY topic",
                            route.topics).fetchall()
        return {(topic, 0): last + 1 for topic, last in rows}
    finally:
        conn.close()


def _applied(route: Route) -> dict[tuple[str, int], int]:
    engine = make_engine(route.target.url)
    try:
        with engine.connect() as conn:
            return {(r[0], r[1]): r[2] for r in conn.execute(text(
                f"SELECT topic, partition, next_offset FROM {OFFSETS} WHERE consumer = :c"), {"c": route.name})}
    finally:
        engine.dispose()


def drain(config: CdcConfig, direction: str, timeout_s: float = 60.0, poll_s: float = 0.2) -> bool:
    """True once drained (see the module docstring); False if `timeout_s` passed first."""
    route = config.route(direction)
    deadline = time.monotonic() + timeout_s
    target = _source_position(route)
    while _captured_position(route) < target:
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    ends = _log_ends(config, route)
    while True:
        applied = _applied(route)
        if all(applied.get(tp, 0) >= end for tp, end in ends.items() if end > 0):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
