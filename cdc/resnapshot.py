"""Re-emit source rows through the pipeline as `op: r` events, safely, while streaming goes on.

Rows are read inside a snapshot exported by a temporary slot and positioned at the WAL position
noted just before it (see cdc/snapshot.py for why that position is safe): every change the stream
carries that is not already in the read has a higher position, so apply's stale check keeps the
newest image whichever arrives first. Used by `strangler cdc snapshot TABLE` (whole table, in key
chunks) and by `verify --repair` (only the differing keys).
"""
from __future__ import annotations

import time

import psycopg2.extensions

from cdc.config import CdcConfig, Route
from cdc.envelope import row_events, source_block
from cdc.pgoutput import converter
from cdc.snapshot import SnapshotReader, export_snapshot, libpq_dsn, table_info


def emit_rows(config: CdcConfig, route: Route, table: str, keys: list[tuple] | None = None,
              *, chunk_rows: int = 10_000) -> int:
    """Send the current rows of `table` (or only those with these keys); returns rows sent."""
    from cdc.pipeline import make_sink
    dsn = libpq_dsn(route.source.url)
    exported = export_snapshot(dsn, f"strangler_resnap_{int(time.time() * 1000)}", temporary=True)
    reader = SnapshotReader(dsn, exported.name)
    sink = make_sink(config)
    sent = 0
    try:
        with reader.conn.cursor() as cur:
            info = table_info(cur, f"{route.source.schema}.{table}")
        topic = route.topic(table)

        def send(row: dict) -> None:
            nonlocal sent
            source = source_block(connector="postgresql", name=route.source.topic_prefix,
                                  db=dsn.rsplit("/", 1)[-1].split("?", 1)[0], schema=info.schema,
                                  table=info.name, ts_ms=int(time.time() * 1000),
                                  lsn=exported.position, snapshot="incremental")
            for event in row_events(topic, info.key_columns, "r", None, row, source):
                sink.send(event)
            sent += 1

        if keys is None:
            for chunk in reader.chunks(info, None, chunk_rows):
                for row in chunk:
                    send(row)
                sink.flush(60)
        else:
            names = [c for c, _ in info.columns]
            convs = [converter(oid) for _, oid in info.columns]
            raw = psycopg2.extensions.new_type(tuple({oid for _, oid in info.columns}),
                                               "STRANGLER_RAW", lambda v, _c: v)
            cond = " AND ".join(f'"{k}" = %s' for k in info.key_columns)
            select = ", ".join(f'"{c}"' for c in names)
            with reader.conn.cursor() as cur:
                psycopg2.extensions.register_type(raw, cur)
                for key in keys:
                    cur.execute(f"SELECT {select} FROM {info.quoted} WHERE {cond}", key)
                    for r in cur.fetchall():
                        send({n: (None if v is None else conv(v)) for n, conv, v in zip(names, convs, r)})
        sink.flush(60)
    finally:
        reader.close()
        exported.close()
        close = getattr(sink, "close", None)
        if close:
            close()
    return sent
