"""A pure parser of PostgreSQL's `pgoutput` logical replication messages (proto_version 1).

No I/O here: `parse(payload)` turns one CopyData payload into a message value, and
`converters_for(relation)` gives the per-column functions that turn pgoutput's *text*
values into JSON-ready Python values (the type rules are documented in docs/cdc-events.md).
Message layouts follow PostgreSQL's "Logical Replication Message Formats" (protocol.sgml,
PG15): Begin/Commit/Origin/Relation/Type/Insert/Update/Delete/Truncate/Message.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any, Callable

# Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01 UTC).
PG_EPOCH_OFFSET_US = 946_684_800_000_000


class _Unchanged:
    """An unchanged TOASTed value (`u`): the server did not send it. Never a real value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNCHANGED_TOAST"


UNCHANGED_TOAST: Any = _Unchanged()

Tuple = list  # column values in relation order: str (text), bytes (binary), None, UNCHANGED_TOAST


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int      # LSN of the transaction's commit record
    commit_ts_us: int   # microseconds since the Unix epoch
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int        # the position to acknowledge once this transaction is durable downstream
    commit_ts_us: int


@dataclass(frozen=True, slots=True)
class Origin:
    """Sent after Begin when the transaction was replayed under a replication origin."""
    origin_lsn: int
    name: str


@dataclass(frozen=True, slots=True)
class Column:
    flags: int          # 1 = part of the replica identity (the key)
    name: str
    type_oid: int
    typmod: int

    @property
    def is_key(self) -> bool:
        return bool(self.flags & 1)


@dataclass(frozen=True, slots=True)
class Relation:
    relation_id: int
    namespace: str
    name: str
    replica_identity: str   # d default, n nothing, f full, i index
    columns: tuple[Column, ...]


@dataclass(frozen=True, slots=True)
class TypeMsg:
    type_oid: int
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class Insert:
    relation_id: int
    new: Tuple


@dataclass(frozen=True, slots=True)
class Update:
    relation_id: int
    old_kind: str | None    # 'K' key only, 'O' full old row, None when not sent
    old: Tuple | None
    new: Tuple


@dataclass(frozen=True, slots=True)
class Delete:
    relation_id: int
    old_kind: str           # 'K' or 'O'
    old: Tuple


@dataclass(frozen=True, slots=True)
class Truncate:
    options: int            # 1 CASCADE, 2 RESTART IDENTITY
    relation_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Message:
    transactional: bool
    lsn: int
    prefix: str
    content: bytes


class ProtocolError(ValueError):
    """A payload that is not a well-formed pgoutput v1 message."""


_Q = struct.Struct(">Q").unpack_from
_q = struct.Struct(">q").unpack_from
_I = struct.Struct(">I").unpack_from
_i = struct.Struct(">i").unpack_from
_H = struct.Struct(">H").unpack_from
_B_QQQ = struct.Struct(">BQQq").unpack_from


def _cstring(buf: bytes, pos: int) -> tuple[str, int]:
    end = buf.index(b"\x00", pos)
    return buf[pos:end].decode(), end + 1


def _tuple(buf: bytes, pos: int) -> tuple[Tuple, int]:
    (ncols,) = _H(buf, pos)
    pos += 2
    values: Tuple = []
    append = values.append
    for _ in range(ncols):
        kind = buf[pos]
        pos += 1
        if kind == 116:      # 't' text
            (length,) = _I(buf, pos)
            pos += 4
            append(buf[pos:pos + length].decode())
            pos += length
        elif kind == 110:    # 'n' null
            append(None)
        elif kind == 117:    # 'u' unchanged TOAST
            append(UNCHANGED_TOAST)
        elif kind == 98:     # 'b' binary
            (length,) = _I(buf, pos)
            pos += 4
            append(bytes(buf[pos:pos + length]))
            pos += length
        else:
            raise ProtocolError(f"unknown tuple column kind {chr(kind)!r}")
    return values, pos


def _parse_begin(buf: bytes) -> Begin:
    final_lsn, ts = _Q(buf, 1)[0], _q(buf, 9)[0]
    return Begin(final_lsn, ts + PG_EPOCH_OFFSET_US, _I(buf, 17)[0])


def _parse_commit(buf: bytes) -> Commit:
    flags, commit_lsn, end_lsn, ts = _B_QQQ(buf, 1)
    return Commit(flags, commit_lsn, end_lsn, ts + PG_EPOCH_OFFSET_US)


def _parse_origin(buf: bytes) -> Origin:
    name, _ = _cstring(buf, 9)
    return Origin(_Q(buf, 1)[0], name)


def _parse_relation(buf: bytes) -> Relation:
    (relid,) = _I(buf, 1)
    namespace, pos = _cstring(buf, 5)
    name, pos = _cstring(buf, pos)
    replident = chr(buf[pos])
    (ncols,) = _H(buf, pos + 1)
    pos += 3
    columns = []
    for _ in range(ncols):
        flags = buf[pos]
        colname, pos = _cstring(buf, pos + 1)
        (oid,) = _I(buf, pos)
        (typmod,) = _i(buf, pos + 4)
        pos += 8
        columns.append(Column(flags, colname, oid, typmod))
    # pgoutput sends an empty namespace for pg_catalog.
    return Relation(relid, namespace or "pg_catalog", name, replident, tuple(columns))


def _parse_type(buf: bytes) -> TypeMsg:
    (oid,) = _I(buf, 1)
    namespace, pos = _cstring(buf, 5)
    name, _ = _cstring(buf, pos)
    return TypeMsg(oid, namespace, name)


def _parse_insert(buf: bytes) -> Insert:
    if buf[5] != 78:  # 'N'
        raise ProtocolError("insert without a new tuple")
    new, _ = _tuple(buf, 6)
    return Insert(_I(buf, 1)[0], new)


def _parse_update(buf: bytes) -> Update:
    (relid,) = _I(buf, 1)
    kind = buf[5]
    old_kind = old = None
    pos = 6
    if kind in (75, 79):  # 'K' or 'O'
        old_kind = chr(kind)
        old, pos = _tuple(buf, 6)
        kind = buf[pos]
        pos += 1
    if kind != 78:
        raise ProtocolError("update without a new tuple")
    new, _ = _tuple(buf, pos)
    return Update(relid, old_kind, old, new)


def _parse_delete(buf: bytes) -> Delete:
    old, _ = _tuple(buf, 6)
    return Delete(_I(buf, 1)[0], chr(buf[5]), old)


def _parse_truncate(buf: bytes) -> Truncate:
    (count,) = _I(buf, 1)
    options = buf[5]
    ids = struct.unpack_from(f">{count}I", buf, 6)
    return Truncate(options, tuple(ids))


def _parse_message(buf: bytes) -> Message:
    flags = buf[1]
    (lsn,) = _Q(buf, 2)
    prefix, pos = _cstring(buf, 10)
    (length,) = _I(buf, pos)
    return Message(bool(flags & 1), lsn, prefix, bytes(buf[pos + 4:pos + 4 + length]))


_PARSERS: dict[int, Callable[[bytes], Any]] = {
    ord("B"): _parse_begin, ord("C"): _parse_commit, ord("O"): _parse_origin,
    ord("R"): _parse_relation, ord("Y"): _parse_type, ord("I"): _parse_insert,
    ord("U"): _parse_update, ord("D"): _parse_delete, ord("T"): _parse_truncate,
    ord("M"): _parse_message,
}


def parse(payload: bytes) -> Any:
    """Parse one pgoutput message (the payload of one XLogData frame)."""
    if not payload:
        raise ProtocolError("empty message")
    parser = _PARSERS.get(payload[0])
    if parser is None:
        raise ProtocolError(f"unknown pgoutput message type {chr(payload[0])!r}")
    try:
        return parser(payload)
    except (struct.error, IndexError, ValueError) as exc:
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError(f"truncated or malformed {chr(payload[0])!r} message: {exc}") from exc


# ---- text values → JSON-ready values -------------------------------------------------
# The replication connection runs with DateStyle=ISO and TimeZone=UTC (see capture_pg), so
# the text forms below are fixed.

def _bool(text: str) -> bool:
    return text == "t"


def _float(text: str) -> float | str:
    value = float(text)
    return value if math.isfinite(value) else text   # JSON has no NaN/Infinity


def _timestamp(text: str) -> str:
    return text.replace(" ", "T", 1)


def _timestamptz(text: str) -> str:
    text = text.replace(" ", "T", 1)
    return text[:-3] + "Z" if text.endswith("+00") else text


def _bytea(text: str) -> str:
    return text[2:] if text.startswith("\\x") else text


def _text(text: str) -> str:
    return text


CONVERTERS: dict[int, Callable[[str], Any]] = {
    16: _bool,                          # bool
    20: int, 21: int, 23: int, 26: int,  # int8, int2, int4, oid
    700: _float, 701: _float,           # float4, float8
    1700: _text,                        # numeric: kept as its exact decimal string
    1114: _timestamp,                   # timestamp
    1184: _timestamptz,                 # timestamptz
    17: _bytea,                         # bytea: hex digits
}


def converter(type_oid: int) -> Callable[[str], Any]:
    """The function turning a text value of this type into its JSON form (text by default)."""
    return CONVERTERS.get(type_oid, _text)


def lsn_to_int(lsn: str) -> int:
    """'16/B374D848' → 97500059720."""
    high, _, low = lsn.partition("/")
    if not low:
        raise ValueError(f"not an LSN: {lsn!r}")
    return (int(high, 16) << 32) | int(low, 16)


def int_to_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"
