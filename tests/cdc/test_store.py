"""The apply target on SQLite stores timestamps the way the apps' SQLAlchemy models do, so rows
CDC wrote and rows an app wrote sort and compare together (SQLite compares them as text)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cdc.store import TargetStore, sqlite_timestamp
from cdc_apply_helpers import create_legacy_schema, execute, product, rows
from legacy_monolith.models import Product
from strangler.db import make_engine, sqlite_url

COLUMNS = ("id", "sku", "name", "description", "price", "currency", "category_id", "updated_at")


def test_event_timestamps_land_in_the_apps_stored_form(tmp_path):
    url = sqlite_url(tmp_path / "legacy.db")
    create_legacy_schema(url)
    execute(url, "INSERT INTO categories (id, name, slug) VALUES (1, 'One', 'one')")
    engine = make_engine(url)
    with Session(engine) as session, session.begin():      # a row the app writes
        session.add(Product(id=1, sku="A-1", name="by the app", description="", price="1.00",
                            currency="EUR", category_id=1, updated_at=datetime(2026, 11, 28, 13, 4, 29)))
    store = TargetStore(url)
    store.begin()
    store.upsert("products", COLUMNS, ("id",), [tuple(product(
        2, description="2026-11-28T13:04:29", updated_at="2026-11-28T13:04:29.5Z")[c] for c in COLUMNS)])
    assert store.update_one("products", ["updated_at"], ["id"], ["2026-11-28T13:04:30+01:00", 1])
    store.commit()
    store.close()
    assert rows(url, "SELECT id, updated_at, description FROM products ORDER BY updated_at") == [
        (1, "2026-11-28 12:04:30.000000", ""),               # +01:00 stored as UTC
        (2, "2026-11-28 13:04:29.500000", "2026-11-28T13:04:29")]   # text columns untouched
    with Session(engine) as session:                        # and the models read them back
        assert session.scalars(select(Product.updated_at).order_by(Product.id)).all() == [
            datetime(2026, 11, 28, 12, 4, 30), datetime(2026, 11, 28, 13, 4, 29, 500000)]
    engine.dispose()


def test_only_timestamps_are_rewritten():
    assert sqlite_timestamp("2026-11-28T05:31:00") == "2026-11-28 05:31:00.000000"
    assert sqlite_timestamp("not a time") == "not a time"
    assert sqlite_timestamp(None) is None and sqlite_timestamp(7) == 7
