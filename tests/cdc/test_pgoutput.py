"""pgoutput v1 parsing from hand-built frames laid out as PostgreSQL's protocol docs describe."""
from __future__ import annotations

import struct

import pytest

from cdc.pgoutput import (UNCHANGED_TOAST, Begin, Commit, Delete, Insert, Message, Origin,
                          ProtocolError, Relation, Truncate, TypeMsg, Update, converter,
                          int_to_lsn, lsn_to_int, parse)

PG_EPOCH_US = 946_684_800_000_000


def cstr(s: str) -> bytes:
    return s.encode() + b"\x00"


def tuple_data(*values) -> bytes:
    out = struct.pack(">H", len(values))
    for v in values:
        if v is None:
            out += b"n"
        elif v is UNCHANGED_TOAST:
            out += b"u"
        elif isinstance(v, bytes):
            out += b"b" + struct.pack(">I", len(v)) + v
        else:
            data = v.encode()
            out += b"t" + struct.pack(">I", len(data)) + data
    return out


def test_begin_commit_carry_lsns_time_and_xid():
    ts = 123_456_789
    begin = parse(b"B" + struct.pack(">Qqi", 0x1_0000_0010, ts, 771))
    assert begin == Begin(final_lsn=0x1_0000_0010, commit_ts_us=ts + PG_EPOCH_US, xid=771)
    commit = parse(b"C" + struct.pack(">BQQq", 0, 0x10, 0x38, ts))
    assert commit == Commit(flags=0, commit_lsn=0x10, end_lsn=0x38, commit_ts_us=ts + PG_EPOCH_US)


def test_origin_names_the_replaying_origin():
    assert parse(b"O" + struct.pack(">Q", 99) + cstr("strangler_apply")) == \
        Origin(origin_lsn=99, name="strangler_apply")


def test_relation_lists_columns_with_key_flags_and_types():
    payload = (b"R" + struct.pack(">I", 16384) + cstr("public") + cstr("products") + b"f"
               + struct.pack(">H", 2)
               + b"\x01" + cstr("id") + struct.pack(">Ii", 23, -1)
               + b"\x00" + cstr("price") + struct.pack(">Ii", 1700, 655366))
    rel = parse(payload)
    assert isinstance(rel, Relation)
    assert (rel.relation_id, rel.namespace, rel.name, rel.replica_identity) == \
        (16384, "public", "products", "f")
    assert [(c.name, c.type_oid, c.typmod, c.is_key) for c in rel.columns] == \
        [("id", 23, -1, True), ("price", 1700, 655366, False)]


def test_empty_namespace_means_pg_catalog():
    payload = b"R" + struct.pack(">I", 1) + cstr("") + cstr("t") + b"d" + struct.pack(">H", 0)
    assert parse(payload).namespace == "pg_catalog"


def test_type_message():
    assert parse(b"Y" + struct.pack(">I", 600) + cstr("public") + cstr("mood")) == \
        TypeMsg(600, "public", "mood")


def test_insert_tuple_kinds_text_null_unchanged_binary():
    msg = parse(b"I" + struct.pack(">I", 7) + b"N" + tuple_data("1", None, UNCHANGED_TOAST,
                                                                  b"\x00\x01", "héllo"))
    assert msg == Insert(7, ["1", None, UNCHANGED_TOAST, b"\x00\x01", "héllo"])


def test_update_with_full_old_row_and_without_old():
    full = parse(b"U" + struct.pack(">I", 7) + b"O" + tuple_data("1", "a") + b"N"
                 + tuple_data("1", "b"))
    assert full == Update(7, "O", ["1", "a"], ["1", "b"])
    key = parse(b"U" + struct.pack(">I", 7) + b"K" + tuple_data("1", None) + b"N"
                + tuple_data("2", "b"))
    assert key == Update(7, "K", ["1", None], ["2", "b"])
    bare = parse(b"U" + struct.pack(">I", 7) + b"N" + tuple_data("1", "c"))
    assert bare == Update(7, None, None, ["1", "c"])


def test_delete_and_truncate():
    assert parse(b"D" + struct.pack(">I", 7) + b"O" + tuple_data("1", "a")) == \
        Delete(7, "O", ["1", "a"])
    assert parse(b"T" + struct.pack(">IB", 2, 2) + struct.pack(">II", 7, 8)) == \
        Truncate(options=2, relation_ids=(7, 8))


def test_logical_message():
    payload = b"M" + b"\x01" + struct.pack(">Q", 42) + cstr("hb") + struct.pack(">I", 3) + b"abc"
    assert parse(payload) == Message(True, 42, "hb", b"abc")


@pytest.mark.parametrize("payload", [b"", b"Z123", b"B\x00\x01", b"I" + struct.pack(">I", 1) + b"X",
                                     b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">H", 1) + b"q"])
def test_malformed_messages_raise_protocol_error(payload):
    with pytest.raises(ProtocolError):
        parse(payload)


@pytest.mark.parametrize("oid,text,expected", [
    (16, "t", True), (16, "f", False),
    (20, "9007199254740993", 9007199254740993), (21, "-3", -3), (23, "42", 42),
    (700, "1.5", 1.5), (701, "NaN", "NaN"), (701, "-Infinity", "-Infinity"),
    (1700, "12.50", "12.50"), (1700, "NaN", "NaN"),
    (1114, "2026-11-28 05:34:55.123456", "2026-11-28T05:34:55.123456"),
    (1184, "2026-11-28 05:34:55+00", "2026-11-28T05:34:55Z"),
    (1082, "2026-11-28", "2026-11-28"),
    (17, "\\x00ff", "00ff"),
    (3802, '{"a": 1}', '{"a": 1}'), (2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                                     "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    (25, "plain", "plain"),
])
def test_text_values_convert_by_type_oid(oid, text, expected):
    assert converter(oid)(text) == expected


def test_lsn_round_trip():
    assert lsn_to_int("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert int_to_lsn(lsn_to_int("16/B374D848")) == "16/B374D848"
    assert int_to_lsn(0) == "0/0"
    with pytest.raises(ValueError):
        lsn_to_int("garbage")

