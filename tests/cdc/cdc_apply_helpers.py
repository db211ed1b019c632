"""Shared pieces of the apply-side CDC tests: the two schemas and hand-built Debezium events."""
from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import text

from cdc.events import ChangeEvent
from cdc.mapping import load_mapping
from cdc.records import Record
from strangler.db import make_engine

MAPPING_PATH = Path(__file__).resolve().parents[2] / "routing_rules" / "cdc" / "catalog.yaml"

# The legacy shop's catalog tables (same shape as legacy_monolith.models).
LEGACY_DDL = [
    "CREATE TABLE categories (id INTEGER PRIMARY KEY, name VARCHAR(200) NOT NULL, slug VARCHAR(64) NOT NULL UNIQUE)",
    "CREATE TABLE products (id INTEGER PRIMARY KEY, sku VARCHAR(64) NOT NULL UNIQUE, name VARCHAR(200) NOT NULL, "
    "description TEXT NOT NULL DEFAULT '', price NUMERIC(10,2) NOT NULL, currency CHAR(3) NOT NULL, "
    "category_id INTEGER REFERENCES categories(id), updated_at TIMESTAMP WITH TIME ZONE NOT NULL)",
]


def mapping():
    return load_mapping(MAPPING_PATH)


def create_service_schema(url: str) -> None:
    from extracted_services.catalog.models import Base
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()


def create_legacy_schema(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        for ddl in LEGACY_DDL:
            conn.execute(text(ddl))
    engine.dispose()


def rows(url: str, sql: str) -> list[tuple]:
    engine = make_engine(url)
    with engine.connect() as conn:
        out = [tuple(r) for r in conn.execute(text(sql))]
    engine.dispose()
    return out


class Events:
    """Builds Debezium change events (schemas off) with growing positions, like a capture would."""

    def __init__(self, prefix: str = "legacy", schema: str = "public", start: int = 1000) -> None:
        self.prefix, self.schema, self.pos, self.offset = prefix, schema, start, 0

    def topic(self, table: str) -> str:
        return f"{self.prefix}.{self.schema}.{table}"

    def _source(self, table: str) -> dict:
        return {"version": "strangler", "connector": "postgresql", "name": self.prefix,
                "ts_ms": int(time.time() * 1000), "snapshot": "false", "db": "legacy",
                "schema": self.schema, "table": table, "txId": 1, "lsn": self.pos, "xmin": None}

    def record(self, table: str, op: str, key: dict | None, before=None, after=None,
               position: int | None = None, tombstone: bool = False) -> Record:
        self.pos += 10
        pos = self.pos if position is None else position
        self.offset += 1
        value = None if tombstone else {
            "before": before, "after": after, "source": {**self._source(table), "lsn": pos},
            "op": op, "ts_ms": int(time.time() * 1000), "transaction": None}
        return Record(self.topic(table), 0, self.offset, ChangeEvent(self.topic(table), key, value, pos))

    def insert(self, table: str, row: dict, key: str = "id", **kw) -> Record:
        return self.record(table, "c", {key: row[key]}, None, row, **kw)

    def update(self, table: str, before: dict | None, row: dict, key: str = "id", **kw) -> Record:
        return self.record(table, "u", {key: row[key]}, before, row, **kw)

    def delete(self, table: str, before: dict, key: str = "id", **kw) -> Record:
        return self.record(table, "d", {key: before[key]}, before, None, **kw)


def category(i: int, **over) -> dict:
    return {"id": i, "name": f"Category {i}", "slug": f"cat-{i}", **over}


def product(i: int, category_id: int = 1, **over) -> dict:
    return {"id": i, "sku": f"SKU-{i:06d}", "name": f"Product {i}", "description": f"about {i}",
            "price": "12.34", "currency": "EUR", "category_id": category_id,
            "updated_at": "2026-01-01T00:00:00Z", **over}
