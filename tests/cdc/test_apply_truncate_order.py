"""TRUNCATE of a parent and a child table: one event per table at one source position, on
different topics, so the parent's may arrive first. Apply takes them children first; one the
target still refuses is dead-lettered and the direction goes on (real PostgreSQL)."""
from __future__ import annotations

from sqlalchemy import text

from cdc_apply_helpers import Events, category, product, rows
from strangler.db import make_engine


def _truncates(ev: Events, *tables: str) -> list:
    position = ev.pos + 10                   # one TRUNCATE statement: one position for all
    return [ev.record(t, "t", None, None, None, position=position) for t in tables]


def _fill(ev: Events, cat: int, products: range) -> list:
    return [ev.insert("categories", category(cat))] + [
        ev.insert("products", product(i, category_id=cat)) for i in products]


def test_repeated_parent_and_child_truncates_with_inserts_between_converge(service):
    url, applier = service
    ev = Events()
    for round_ in range(3):
        assert applier.apply(_fill(ev, 1, range(1, 51))).dead == []
        # The parent's truncate first, as it may come off its partition first; inserts after it.
        truncates = _truncates(ev, "categories", "products")
        later = _fill(ev, 2, range(100 + round_, 101 + round_))
        outcome = applier.apply(truncates + later)
        assert outcome.dead == [] and outcome.applied == 4, outcome.dead
        assert rows(url, "SELECT id, category_slug FROM products") == [(100 + round_, "cat-2")]
        assert rows(url, "SELECT slug FROM categories") == [("cat-2",)]
        assert applier.apply(_truncates(ev, "products", "categories")).dead == []  # either order
        assert rows(url, "SELECT count(*) FROM products") == [(0,)]


def test_a_parent_truncate_arriving_alone_is_dead_lettered_and_later_changes_still_apply(service):
    url, applier = service
    ev = Events()
    applier.apply(_fill(ev, 1, range(1, 51)))
    parent, child = _truncates(ev, "categories", "products")
    refused = applier.apply([parent])          # its child's truncate is in the next batch
    assert [d.kind for d in refused.dead] == ["constraint"]
    assert "foreign key" in refused.dead[0].reason
    outcome = applier.apply([child] + _fill(ev, 2, range(200, 202)))
    assert outcome.dead == [] and outcome.applied == 4
    assert rows(url, "SELECT id FROM products ORDER BY id") == [(200,), (201,)]
    assert rows(url, "SELECT slug FROM categories ORDER BY slug") == [("cat-1",), ("cat-2",)]
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT kind FROM _cdc_dlq WHERE consumer = :c"),
                            {"c": applier.consumer}).all() == [("constraint",)]
    engine.dispose()
