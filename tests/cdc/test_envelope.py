"""Debezium envelope: topic names, keys, tombstones, key changes, truncates, JSON bytes."""
from __future__ import annotations

from cdc.envelope import (VERSION, decode, encode, row_events, source_block, topic_name,
                          truncate_event)


def _source(lsn=100, snapshot="false"):
    return source_block(connector="postgresql", name="shop", db="legacy", schema="public",
                        table="products", ts_ms=1_700_000_000_000, lsn=lsn, snapshot=snapshot,
                        tx_id=7, sequence='["120","100"]')


def test_topic_name_is_prefix_schema_table_with_unsafe_characters_replaced():
    assert topic_name("shop", "public", "products") == "shop.public.products"
    assert topic_name("my shop", "public", "order items$") == "my_shop.public.order_items_"


def test_source_block_has_debeziums_fields():
    src = _source()
    assert src == {"version": VERSION, "connector": "postgresql", "name": "shop",
                   "ts_ms": 1_700_000_000_000, "snapshot": "false", "db": "legacy",
                   "sequence": '["120","100"]', "schema": "public", "table": "products",
                   "txId": 7, "lsn": 100, "xmin": None}


def test_create_event_keyed_by_primary_key_positioned_at_lsn():
    [event] = row_events("shop.public.products", ("id",), "c", None,
                         {"id": 1, "name": "Lamp"}, _source(), ts_ms=5)
    assert event.topic == "shop.public.products"
    assert event.key == {"id": 1}
    assert event.position == 100
    assert event.value == {"before": None, "after": {"id": 1, "name": "Lamp"},
                           "source": _source(), "op": "c", "ts_ms": 5, "transaction": None}


def test_delete_is_followed_by_a_tombstone_with_the_same_key():
    delete, tombstone = row_events("t", ("id",), "d", {"id": 3, "name": "x"}, None, _source())
    assert delete.value["op"] == "d" and delete.value["after"] is None
    assert delete.value["before"] == {"id": 3, "name": "x"}
    assert tombstone.key == {"id": 3} and tombstone.value is None
    assert tombstone.position == delete.position


def test_primary_key_change_becomes_delete_tombstone_create():
    events = row_events("t", ("id",), "u", {"id": 1, "n": "a"}, {"id": 2, "n": "a"}, _source())
    assert [(e.key, e.value and e.value["op"]) for e in events] == \
        [({"id": 1}, "d"), ({"id": 1}, None), ({"id": 2}, "c")]


def test_composite_keys_keep_column_order():
    [event] = row_events("t", ("cart_id", "product_id"), "u", {"cart_id": 1, "product_id": 2,
                         "q": 1}, {"cart_id": 1, "product_id": 2, "q": 3}, _source())
    assert list(event.key.items()) == [("cart_id", 1), ("product_id", 2)]
    assert event.value["op"] == "u"


def test_unavailable_columns_are_named_not_faked():
    [event] = row_events("t", ("id",), "u", None, {"id": 1}, _source(), unavailable=["doc"])
    assert "doc" not in event.value["after"]
    assert event.value["unavailable_columns"] == ["doc"]


def test_truncate_has_null_key_and_no_images():
    event = truncate_event("shop.public.products", _source(lsn=300), ts_ms=9)
    assert event.key is None and event.position == 300
    assert event.value["op"] == "t"
    assert event.value["before"] is None and event.value["after"] is None


def test_json_round_trip_is_compact_utf8_and_tombstone_stays_none():
    value = {"after": {"name": "Crème", "price": "12.50"}, "op": "c"}
    data = encode(value)
    assert data == '{"after":{"name":"Crème","price":"12.50"},"op":"c"}'.encode()
    assert decode(data) == value
    assert encode(None) is None and decode(None) is None
