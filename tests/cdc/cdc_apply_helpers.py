"""Shared pieces of the apply-side CDC tests: the two schemas and hand-built Debezium events."""
from __future__ import annotations

import time
import uuid
from pathlib import Path

from sqlalchemy import text

from cdc.events import ChangeEvent
from cdc.mapping import load_mapping
from cdc.records import Record
from strangler.db import make_engine

MAPPING_PATH = Path(__file__).resolve().parents[2] / "routing_rules" / "cdc" / "catalog.yaml"



def mapping():
    return load_mapping(MAPPING_PATH)


def create_service_schema(url: str) -> None:
    from extracted_services.catalog.models import Base
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()


def create_legacy_schema(url: str) -> None:
    from legacy_monolith.models import Base
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()


def new_stores(make_database, prefix: str, products: int = 0) -> tuple[str, str, str]:
    """A capability name unique to the test (`prefix` + 8 hex), and its legacy and service
    databases with their schemas; legacy seeded with `products` when asked."""
    capability = f"{prefix}{uuid.uuid4().hex[:8]}"
    legacy, service = make_database("legacy"), make_database("service")
    create_legacy_schema(legacy)
    create_service_schema(service)
    if products:
        seed_legacy(legacy, products=products)
    return capability, legacy, service


def execute(url: str, *statements: str, params: list[dict] | dict | None = None) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        for sql in statements:
            conn.execute(text(sql), params or {})
    engine.dispose()


def seed_legacy(url: str, categories: int = 3, products: int = 200) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO categories (id, name, slug) VALUES (:id, :name, :slug)"),
                     [category(i) for i in range(1, categories + 1)])
        conn.execute(text("INSERT INTO products (id, sku, name, description, price, currency, category_id, "
                          "updated_at) VALUES (:id, :sku, :name, :description, :price, :currency, "
                          ":category_id, :updated_at)"),
                     [product(i, category_id=1 + i % categories) for i in range(1, products + 1)])
    engine.dispose()


def write_config(tmp_path: Path, capability: str, legacy_url: str, service_url: str, *,
                 kafka: str | None = None, writes: str = "legacy", batch_size: int = 2000) -> Path:
    """A copy of the catalog CDC config pointing at the test's databases and transport."""
    tables = MAPPING_PATH.read_text().split("\ntables:\n", 1)[1]
    transport = (f"  kind: kafka\n  bootstrap: {kafka}\n  partitions: 3\n" if kafka
                 else f"  kind: embedded\n  path: {tmp_path / 'cdc-log.db'}\n")
    path = tmp_path / f"{capability}.yaml"
    path.write_text(
        f"version: 1\ncapability: {capability}\n"
        f"legacy:\n  url: {legacy_url}\n  topic_prefix: {capability}_legacy\n"
        f"service:\n  url: {service_url}\n  topic_prefix: {capability}_catalog\n"
        f"writes: {writes}\ntransport:\n{transport}apply:\n  batch_size: {batch_size}\n"
        f"tables:\n{tables}")
    return path


def cleanup_cdc(admin_url: str, capability: str, kafka: str | None) -> None:
    """Drop what a test's pipeline left outside its databases: replication origins and topics."""
    engine = make_engine(admin_url)
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin "
                          "WHERE roname LIKE :p"), {"p": f"strangler_{capability}%"})
    engine.dispose()
    if kafka:
        from confluent_kafka.admin import AdminClient
        admin = AdminClient({"bootstrap.servers": kafka})
        topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(capability)]
        if topics:
            for future in admin.delete_topics(topics).values():   # else a test process exiting
                future.result(30)                                # may never send the request


def wait_synced(config, direction: str, timeout_s: float = 60.0, expected: int = 0):
    """Verify until `expected` differences (the pipeline caught up) or the deadline; the last report."""
    from cdc.verify import verify
    deadline = time.monotonic() + timeout_s
    while True:
        report = verify(config, direction, recheck_rounds=0)
        if report.differences <= expected or time.monotonic() > deadline:
            return verify(config, direction, recheck_rounds=2, recheck_wait_s=0.5)
        time.sleep(0.5)


def wait_streaming(pipeline) -> None:
    """Until every capture streams (the reverse one takes no snapshot: it starts at its slot)."""
    deadline = time.monotonic() + 30
    while not all(c.capture is not None and c.capture.streaming.is_set() for c in pipeline.captures):
        assert time.monotonic() < deadline and not pipeline.errors, pipeline.errors
        time.sleep(0.05)


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
