"""Per table and direction: events/s, end-to-end lag, last applied position, retained WAL, DLQ size.

Everything is read from the databases (apply's stats/offsets/DLQ tables in the target, the slot
in the source), so `strangler cdc status` works from any shell, whether or not the pipeline runs
in this process. Events/s is the difference of two readings `interval_s` apart.
Lag = the target's commit time minus the source commit time (`source.ts_ms`) of the newest event.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import inspect, text

from cdc.config import CdcConfig, Route
from cdc.mapping import DIRECTIONS
from cdc.store import DLQ, STATS
from strangler.db import make_engine


@dataclass(frozen=True)
class TableStatus:
    direction: str
    table: str
    events: int
    events_per_s: float
    lag_ms: int | None
    last_position: int | None
    idle_s: float | None            # since the last applied event


@dataclass(frozen=True)
class DirectionStatus:
    direction: str
    consumer: str
    retained_wal_bytes: int | None
    slot_active: bool | None
    dlq_size: int
    tables: list[TableStatus]


def _stats(route: Route) -> tuple[dict[str, tuple], int]:
    engine = make_engine(route.target.url)
    try:
        if not inspect(engine).has_table(STATS):
            return {}, 0
        with engine.connect() as conn:
            rows = {r[0]: tuple(r[1:]) for r in conn.execute(text(
                f"SELECT tbl, events, last_position, last_lag_ms, last_commit_ms FROM {STATS} "
                "WHERE consumer = :c"), {"c": route.name})}
            dlq = conn.execute(text(f"SELECT count(*) FROM {DLQ} WHERE consumer = :c"),
                               {"c": route.name}).scalar_one()
        return rows, dlq
    finally:
        engine.dispose()


def _slot(route: Route) -> tuple[int | None, bool | None]:
    engine = make_engine(route.source.url)
    try:
        if engine.dialect.name != "postgresql":
            return None, None
        with engine.connect() as conn:
            row = conn.execute(text(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, active "
                "FROM pg_replication_slots WHERE slot_name = :s"), {"s": route.slot}).first()
        return (int(row[0]) if row and row[0] is not None else None), (row[1] if row else None)
    finally:
        engine.dispose()


def gather(config: CdcConfig, *, interval_s: float = 1.0,
           directions: tuple[str, ...] = DIRECTIONS) -> list[DirectionStatus]:
    routes = [config.route(d) for d in directions]
    first = {r.name: _stats(r)[0] for r in routes}
    if interval_s > 0:
        time.sleep(interval_s)
    now_ms = time.time() * 1000
    out = []
    for route in routes:
        rows, dlq = _stats(route)
        wal, active = _slot(route)
        tables = []
        for table in route.source_tables:
            events, position, lag, commit_ms = rows.get(table, (0, None, None, None))
            before = first[route.name].get(table, (0,))[0]
            tables.append(TableStatus(route.direction, table, int(events),
                                      (events - before) / interval_s if interval_s > 0 else 0.0,
                                      lag, position, (now_ms - commit_ms) / 1000 if commit_ms else None))
        out.append(DirectionStatus(route.direction, route.name, wal, active, dlq, tables))
    return out


def render_text(capability: str, status: list[DirectionStatus]) -> str:
    lines = [f"{'direction':<11} {'table':<20} {'events':>9} {'ev/s':>8} {'lag ms':>8} "
             f"{'position':>14} {'idle s':>7}"]
    for d in status:
        for t in d.tables:
            lines.append(f"{d.direction:<11} {t.table:<20} {t.events:>9} {t.events_per_s:>8.1f} "
                         f"{_opt(t.lag_ms):>8} {_opt(t.last_position):>14} "
                         f"{_opt(None if t.idle_s is None else round(t.idle_s, 1)):>7}")
        wal = "n/a" if d.retained_wal_bytes is None else f"{d.retained_wal_bytes} bytes"
        slot = "no slot" if d.slot_active is None else ("active" if d.slot_active else "inactive")
        lines.append(f"{d.direction:<11} slot {slot}, retained WAL {wal}, DLQ {d.dlq_size}")
    return f"CDC {capability}\n" + "\n".join(lines)


def _opt(value) -> str:
    return "-" if value is None else str(value)


def render_prometheus(capability: str, status: list[DirectionStatus]) -> str:
    """The same figures in Prometheus text exposition format."""
    out: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[dict, float | None]]) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if value is not None:
                lbl = ",".join(f'{k}="{v}"' for k, v in {"capability": capability, **labels}.items())
                out.append(f"{name}{{{lbl}}} {value}")

    per_table = [(d, t) for d in status for t in d.tables]
    metric("strangler_cdc_events_total", "counter", "Change events applied.",
           [({"direction": d.direction, "table": t.table}, t.events) for d, t in per_table])
    metric("strangler_cdc_events_per_second", "gauge", "Change events applied per second.",
           [({"direction": d.direction, "table": t.table}, round(t.events_per_s, 3)) for d, t in per_table])
    metric("strangler_cdc_lag_seconds", "gauge", "Target commit time minus source commit time.",
           [({"direction": d.direction, "table": t.table},
             None if t.lag_ms is None else t.lag_ms / 1000) for d, t in per_table])
    metric("strangler_cdc_last_position", "gauge", "Source position (LSN) of the last applied event.",
           [({"direction": d.direction, "table": t.table}, t.last_position) for d, t in per_table])
    metric("strangler_cdc_retained_wal_bytes", "gauge", "WAL the source keeps for the slot.",
           [({"direction": d.direction}, d.retained_wal_bytes) for d in status])
    metric("strangler_cdc_dlq_size", "gauge", "Dead-lettered events awaiting replay.",
           [({"direction": d.direction}, d.dlq_size) for d in status])
    return "\n".join(out) + "\n"
