"""The YAML mapping: validation errors name file:line and field; both directions; split and merge."""
from __future__ import annotations

import pytest

from cdc.apply import Applier
from cdc.mapping import TO_LEGACY, TO_SERVICE, UNAVAILABLE, MappingError, load_mapping_text
from cdc.store import TargetStore
from cdc_apply_helpers import Events, mapping, rows
from strangler.errors import OperatorError


def _no_lookup(lookup, value):
    raise AssertionError("no lookup expected")


def test_the_catalog_mapping_round_trips_a_product_both_ways():
    m = mapping()
    resolve = {("categories", "legacy_category_id", 3): "lamps", ("categories", "slug", "lamps"): 3}
    look = lambda lk, v: resolve[(lk.table, lk.match, v)]  # noqa: E731
    (forward,) = m.for_source(TO_SERVICE, "products")
    legacy = {"id": 5, "sku": "S5", "name": "Lamp", "description": "d", "price": "49.99",
              "currency": "EUR", "category_id": 3, "updated_at": "2026-01-01T00:00:00Z"}
    service = forward.map_row(legacy, look)
    assert service == {"id": 5, "sku": "S5", "title": "Lamp", "description": "d", "price_cents": 4999,
                       "currency": "EUR", "category_slug": "lamps", "updated_at": "2026-01-01T00:00:00Z"}
    (backward,) = m.for_source(TO_LEGACY, "products")
    assert backward.map_row(service, look) == legacy
    assert forward.map_row({"id": 5, "description": UNAVAILABLE}, look) == {"id": 5}


@pytest.mark.parametrize("price,cents", [(49.99, 4999), ("0.1", 10), (3, 300), ("99999999.99", 9999999999)])
def test_price_to_cents_is_exact(price, cents):
    (forward,) = mapping().for_source(TO_SERVICE, "products")
    assert forward.map_row({"price": price}, _no_lookup) == {"price_cents": cents}


@pytest.mark.parametrize("price", ["1.001", "abc", "1e-3"])
def test_prices_that_cents_cannot_hold_are_unmappable(price):
    (forward,) = mapping().for_source(TO_SERVICE, "products")
    with pytest.raises(MappingError, match="products.price -> products.price_cents"):
        forward.map_row({"price": price}, _no_lookup)


BAD = [
    ("tables:\n  - legacy: a\n    service: b\n    key: id\n    columns:\n      id: id\n      p: {service: q, convert: cents}\n",
     "m.yaml:7: tables[0].columns.p.convert: unknown conversion 'cents'"),
    ("tables:\n  - legacy: a\n    service: b\n    key: nope\n    columns:\n      id: id\n",
     "m.yaml:4: tables[0].key: key column(s) ['nope'] are not in columns"),
    ("tables:\n  - legacy: a\n    service: b\n    key: id\n    colums: {}\n",
     "m.yaml:5: tables[0].colums: unknown field"),
    ("tables:\n  - legacy: a\n    service: b\n    key: id\n    columns:\n      id: id\n      s:\n        values: {A: 1, B: 1}\n",
     "m.yaml:8: tables[0].columns.s.values: two legacy values map to one service value"),
    ("tables:\n  - legacy: a\n    service: b\n    key: id\n    columns:\n      id: x\n      y: x\n",
     "m.yaml:5: tables[0].columns: service column(s) ['x'] mapped twice"),
    ("tables:\n  - legacy: a\n    service: b\n    key: id\n    columns:\n      id: id\n"
     "    also_delete:\n      to_legacy: [stock]\n",
     "m.yaml:8: tables[0].also_delete.to_legacy: 'stock' is not TABLE.COLUMN"),
    ("tables:\n  - legacy: a\n    service: b\n    key: id\n    columns:\n      id: id\n"
     "    also_delete: {backwards: [s.id]}\n",
     "m.yaml:7: tables[0].also_delete: map a direction"),
    ("tables: [\n", "m.yaml: not valid YAML"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_mistakes_are_reported_with_file_line_and_field(text, message):
    with pytest.raises(OperatorError) as err:
        load_mapping_text(text, "m.yaml")
    assert str(err.value).startswith(message)


SPLIT_MERGE = """
tables:
  - legacy: items
    service: goods
    key: id
    columns: {id: id, name: label, state: {service: status, values: {A: active, R: retired}}}
    filter: {column: state, in: [A, R]}
  - legacy: items                 # split: the price goes to a table of its own
    service: prices
    key: id
    columns: {id: item_id, price: {service: cents, convert: decimal_to_cents}}
  - legacy: stock                 # merge: stock lives on the goods row in the service
    service: goods
    key: id
    on_delete: clear
    columns: {id: id, qty: quantity}
"""


def test_split_merge_value_map_and_filter_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'svc.db'}"
    store = TargetStore(url)
    cur = store.cursor()
    cur.execute("CREATE TABLE goods (id INTEGER PRIMARY KEY, label TEXT NOT NULL DEFAULT '', status TEXT, quantity INTEGER)")
    cur.execute("CREATE TABLE prices (item_id INTEGER PRIMARY KEY, cents INTEGER NOT NULL)")
    applier = Applier(store, load_mapping_text(SPLIT_MERGE, "x.yaml"), TO_SERVICE, "t")
    ev = Events()
    applier.apply([ev.insert("items", {"id": 1, "name": "one", "state": "A", "price": "2.50"}),
                   ev.insert("items", {"id": 2, "name": "two", "state": "X", "price": "1.00"}),
                   ev.insert("stock", {"id": 1, "qty": 7})])
    assert rows(url, "SELECT id, label, status, quantity FROM goods") == [(1, "one", "active", 7)]
    assert rows(url, "SELECT item_id, cents FROM prices ORDER BY item_id") == [(1, 250), (2, 100)]
    applier.apply([ev.delete("stock", {"id": 1, "qty": 7}),
                   ev.update("items", None, {"id": 1, "name": "one", "state": "Z", "price": "2.50"})])
    # The row left the filter: removed from goods (the split-off price stays, it has no filter).
    assert rows(url, "SELECT count(*) FROM goods") == [(0,)]
    applier.apply([ev.update("items", None, {"id": 1, "name": "uno", "state": "R", "price": "3.00"})])
    assert rows(url, "SELECT id, label, status, quantity FROM goods") == [(1, "uno", "retired", None)]
    store.close()


def test_a_mapping_that_does_not_fit_the_target_schema_is_refused_at_start(tmp_path):
    url = f"sqlite:///{tmp_path / 'svc.db'}"
    store = TargetStore(url)
    store.cursor().execute("CREATE TABLE goods (id INTEGER PRIMARY KEY, label TEXT, status TEXT)")
    with pytest.raises(OperatorError) as err:
        Applier(store, load_mapping_text(SPLIT_MERGE, "x.yaml"), TO_SERVICE, "t")
    assert str(err.value).startswith("x.yaml:8: tables[1].service: table 'prices' does not exist")
    store.cursor().execute("CREATE TABLE prices (item_id INTEGER PRIMARY KEY, cents INTEGER NOT NULL)")
    with pytest.raises(OperatorError) as err:
        Applier(store, load_mapping_text(SPLIT_MERGE, "x.yaml"), TO_SERVICE, "t")
    assert str(err.value).startswith("x.yaml:16: tables[2].columns.qty: service column 'quantity' is not in "
                                     "table 'goods' (id, label, status)")
    store.close()
