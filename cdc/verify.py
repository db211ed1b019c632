"""Compare the two stores of a capability after mapping, while writes continue (Ghostferry style).

Per table mapping, both sides are read in chunks of the source primary key (the target keeps the
source key in a plain column, e.g. `legacy_category_id`), source rows are mapped to the target's
shape in Python, and each side's chunk is hashed from canonical values. Equal digests end the
chunk; otherwise the differing rows are listed. Rows that differ may just be in flight, so they
are re-read on both sides a few times while the pipeline catches up; only rows that still
differ are reported. Memory stays bounded by the chunk size, so 100,000-row tables are fine.

`repair` re-emits the differing rows through the pipeline: for PostgreSQL sources they are
re-read inside an exported snapshot (a temporary slot) and sent as `op: r` events positioned at
that snapshot, so any newer streamed change still wins the stale check; for other sources the
rows are touched (`UPDATE t SET k = k`) so capture sends them. Target rows with no source row
are removed on the target as apply removes them (replication origin, `also_delete`, a
savepoint per row); one the target refuses is reported with its reason, never a crash.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Callable

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Engine

from cdc.config import CdcConfig, Route
from cdc.mapping import DirectedMap, Lookup, LookupMissing, MappingError
from cdc.store import q
from strangler.db import make_engine
from strangler.errors import OperatorError

log = logging.getLogger(__name__)


@dataclass
class TableReport:
    source: str
    target: str
    source_rows: int = 0
    target_rows: int = 0
    chunks: int = 0
    chunks_differing: int = 0
    missing: list[tuple] = field(default_factory=list)      # in source, not in target
    extra: list[tuple] = field(default_factory=list)        # in target, not in source
    different: list[tuple] = field(default_factory=list)    # in both, values differ
    samples: list[dict[str, Any]] = field(default_factory=list)
    repair_failures: list[tuple[tuple, str]] = field(default_factory=list)  # (key, reason), still differing

    @property
    def differences(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.different)


@dataclass
class VerifyReport:
    direction: str
    tables: list[TableReport]
    repaired: int = 0

    @property
    def differences(self) -> int:
        return sum(t.differences for t in self.tables)

    def as_dict(self) -> dict[str, Any]:
        return {"direction": self.direction, "differences": self.differences, "repaired": self.repaired,
                "tables": [{"source": t.source, "target": t.target, "source_rows": t.source_rows,
                            "target_rows": t.target_rows, "chunks": t.chunks,
                            "chunks_differing": t.chunks_differing, "missing": t.missing[:20],
                            "extra": t.extra[:20], "different": t.different[:20],
                            "samples": t.samples[:5],
                            "repair_failures": [{"key": list(k), "reason": r}
                                                for k, r in t.repair_failures[:20]]}
                           for t in self.tables]}


_DECIMAL = re.compile(r"-?\d{1,30}\.\d{1,30}")


KEYS_PER_QUERY = 1000      # suspects rechecked per query


def canonical(value: Any) -> Any:
    """One representation per value whichever database or driver it came from."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value.normalize())
    if isinstance(value, float):
        return int(value) if value.is_integer() else repr(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    if isinstance(value, str) and _DECIMAL.fullmatch(value):      # "1.00" from a conversion
        return canonical(Decimal(value))
    if isinstance(value, str) and len(value) >= 10 and value[4:5] == "-" and value[:4].isdigit():
        try:
            return canonical(datetime.fromisoformat(value.replace(" ", "T", 1)))
        except ValueError:
            return value
    return value


def _digest(rows: dict[tuple, dict]) -> str:
    h = hashlib.sha256()
    for key in sorted(rows, key=repr):
        h.update(json.dumps([repr(key), rows[key]], sort_keys=True, default=str).encode())
    return h.hexdigest()


class _Side:
    """Keyed, chunked reads of one table mapping on both sides, mapped to canonical target rows."""

    def __init__(self, m: DirectedMap, source: Engine, target: Engine) -> None:
        carried = m.source_key_in_target()
        missing = [k for k in m.source_key if k not in carried]
        if missing:
            raise OperatorError(f"cannot verify {m.source_table} -> {m.target_table}: source key column(s) "
                                f"{missing} are not kept unchanged in a target column; map them by rename")
        self.m, self.source, self.target = m, source, target
        self.skey = list(m.source_key)
        self.tkey = [carried[k] for k in self.skey]
        self._cache: dict[tuple[Lookup, Any], Any] = {}

    def _resolve(self, lookup: Lookup, value: Any) -> Any:
        ck = (lookup, value)
        if ck not in self._cache:
            with self.target.connect() as conn:
                found = [r[0] for r in conn.execute(text(
                    f"SELECT {q(lookup.take)} FROM {q(lookup.table)} WHERE {q(lookup.match)} = :v"), {"v": value})]
            if not found:
                raise LookupMissing(f"{lookup.table}.{lookup.match} = {value!r}")
            self._cache[ck] = found[0]
        return self._cache[ck]

    def _mapped(self, row: dict[str, Any]) -> dict[str, Any] | None:
        try:
            if not self.m.accepts(row, self._resolve):
                return None
            mapped = self.m.map_row(row, self._resolve)
        except MappingError as exc:            # shows up as a difference, with the reason
            return {"__unmappable__": str(exc)}
        return {c: canonical(mapped.get(c)) for c in self.m.target_columns}

    def _key(self, row: dict[str, Any], cols: list[str]) -> tuple:
        return tuple(canonical(row[c]) for c in cols)

    def source_chunk(self, after: tuple | None, limit: int) -> list[dict[str, Any]]:
        keys = ", ".join(q(k) for k in self.skey)
        where, params = self._after(self.skey, after, "a")
        sql = f"SELECT * FROM {q(self.m.source_table)} {where} ORDER BY {keys} LIMIT :limit"
        with self.source.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(sql), {**params, "limit": limit})]

    def target_range(self, after: tuple | None, upto: tuple | None) -> list[dict[str, Any]]:
        cols = ", ".join(q(c) for c in dict.fromkeys([*self.m.target_columns, *self.m.target_key]))
        where, params = self._after(self.tkey, after, "a")
        if upto is not None:
            tk = ", ".join(q(k) for k in self.tkey)
            marks = ", ".join(f":u{i}" for i in range(len(upto)))
            where += (" AND " if where else "WHERE ") + f"({tk}) <= ({marks})"
            params.update({f"u{i}": v for i, v in enumerate(upto)})
        with self.target.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(f"SELECT {cols} FROM {q(self.m.target_table)} {where}"),
                                                           params)]

    @staticmethod
    def _after(cols: list[str], after: tuple | None, prefix: str) -> tuple[str, dict]:
        if after is None:
            return "", {}
        keys = ", ".join(q(k) for k in cols)
        marks = ", ".join(f":{prefix}{i}" for i in range(len(after)))
        return f"WHERE ({keys}) > ({marks})", {f"{prefix}{i}": v for i, v in enumerate(after)}

    def rows_by_key(self, keys: list[tuple]) -> tuple[dict[tuple, dict], dict[tuple, dict], dict[tuple, dict]]:
        """(source mapped, target canonical, target raw) for exactly these source keys."""
        src: dict[tuple, dict] = {}
        tgt: dict[tuple, dict] = {}
        raw: dict[tuple, dict] = {}
        cols = ", ".join(q(c) for c in dict.fromkeys([*self.m.target_columns, *self.m.target_key]))
        with self.source.connect() as sconn, self.target.connect() as tconn:
            for scond, tcond, params in self._key_conditions(keys):
                select_s = text(f"SELECT * FROM {q(self.m.source_table)} WHERE {scond}")
                select_t = text(f"SELECT {cols} FROM {q(self.m.target_table)} WHERE {tcond}")
                if "keys" in params:
                    select_s = select_s.bindparams(bindparam("keys", expanding=True))
                    select_t = select_t.bindparams(bindparam("keys", expanding=True))
                for r in sconn.execute(select_s, params):
                    row = dict(r._mapping)
                    mapped = self._mapped(row)
                    if mapped is not None:
                        src[self._key(row, self.skey)] = mapped
                for r in tconn.execute(select_t, params):
                    row = dict(r._mapping)
                    key = self._key(row, self.tkey)
                    tgt[key] = {c: canonical(row.get(c)) for c in self.m.target_columns}
                    raw[key] = row
        return src, tgt, raw

    def _key_conditions(self, keys: list[tuple]):
        """WHERE conditions (source, target) and their parameters covering KEYS: a thousand at a
        time for one-column keys (a drifted table has tens of thousands of suspects, rechecked
        several rounds), one by one for composite keys."""
        if len(self.skey) == 1 and len(self.tkey) == 1:
            for i in range(0, len(keys), KEYS_PER_QUERY):
                yield (f"{q(self.skey[0])} IN :keys", f"{q(self.tkey[0])} IN :keys",
                       {"keys": [k[0] for k in keys[i:i + KEYS_PER_QUERY]]})
            return
        scond = " AND ".join(f"{q(k)} = :k{i}" for i, k in enumerate(self.skey))
        tcond = " AND ".join(f"{q(k)} = :k{i}" for i, k in enumerate(self.tkey))
        for key in keys:
            yield scond, tcond, {f"k{i}": v for i, v in enumerate(key)}


def _compare(src: dict[tuple, dict], tgt: dict[tuple, dict]) -> tuple[list, list, list]:
    missing = [k for k in src if k not in tgt]
    extra = [k for k in tgt if k not in src]
    different = [k for k in src if k in tgt and src[k] != tgt[k]]
    return missing, extra, different


def verify_table(m: DirectedMap, source: Engine, target: Engine, *, chunk_rows: int = 2000,
                 recheck_rounds: int = 5, recheck_wait_s: float = 1.0,
                 repair: Callable[[_Side, list[tuple], dict[tuple, dict]],
                                  tuple[int, list[tuple[tuple, str]]]] | None = None) -> tuple[TableReport, int]:
    side = _Side(m, source, target)
    report = TableReport(m.source_table, m.target_table)
    suspects: list[tuple] = []
    after: tuple | None = None
    while True:
        chunk = side.source_chunk(after, chunk_rows)
        last = side._key(chunk[-1], side.skey) if len(chunk) == chunk_rows else None
        src = {}
        for row in chunk:
            mapped = side._mapped(row)
            if mapped is not None:
                src[side._key(row, side.skey)] = mapped
        tgt = {side._key(r, side.tkey): {c: canonical(r.get(c)) for c in m.target_columns}
               for r in side.target_range(after, last)}
        report.chunks += 1
        report.source_rows += len(src)
        report.target_rows += len(tgt)
        if _digest(src) != _digest(tgt):
            report.chunks_differing += 1
            missing, extra, different = _compare(src, tgt)
            suspects += missing + extra + different
        if last is None:
            break
        after = last

    repaired = 0
    failed: dict[tuple, str] = {}
    for round_ in range(recheck_rounds + 1):
        if not suspects:
            break
        if round_:
            time.sleep(recheck_wait_s)       # rows in flight settle once the pipeline applies them
        src, tgt, raw = side.rows_by_key(suspects)
        missing, extra, different = _compare(src, tgt)
        suspects = missing + extra + different
        if repair and suspects and round_ == recheck_rounds // 2:
            done, failures = repair(side, suspects, raw)
            repaired += done
            failed.update(failures)
            for key, reason in failures:
                log.warning("verify %s -> %s: repair of key %s failed: %s", m.source_table,
                            m.target_table, list(key), reason)
    if suspects:
        src, tgt, _ = side.rows_by_key(suspects)
        report.missing, report.extra, report.different = _compare(src, tgt)
        # Rows whose repair failed first, with the reason: they are what the operator must settle.
        ordered = sorted(suspects, key=lambda k: k not in failed)
        report.samples = [{"key": list(k), "source": src.get(k), "target": tgt.get(k),
                           **({"repair_failed": failed[k]} if k in failed else {})} for k in ordered[:5]]
        report.repair_failures = [(k, failed[k]) for k in suspects if k in failed]
    return report, repaired


class Repairer:
    """Re-emit differing rows through the pipeline (see the module docstring).

    Target rows with no source row are removed the way apply removes them: under a replication
    origin (capture drops the transaction, so the delete does not echo back to the other side),
    the mapping's `also_delete` rows first, `on_delete: clear` nulls only this mapping's columns,
    each row in its own savepoint. A removal the target refuses (a foreign key: the row is still
    referenced) is not a crash: the row stays, and its key and reason are reported with the
    table's remaining differences."""

    def __init__(self, config: CdcConfig, route: Route, source: Engine, target: Engine) -> None:
        self.config, self.route, self.source, self.target = config, route, source, target
        self._store: Any = None

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def _target_store(self):
        if self._store is None:
            from cdc.store import TargetStore
            store = TargetStore(self.route.target.url)
            if store.is_pg:
                try:
                    store.setup_origin(f"strangler_{self.route.name}_repair"[:60])
                except BaseException:
                    store.close()
                    raise
            self._store = store
        return self._store

    def __call__(self, side: _Side, keys: list[tuple], raw_target: dict[tuple, dict]) -> tuple[int, list[tuple[tuple, str]]]:
        """Repair KEYS; (rows repaired or re-emitted, [(key, reason) of repairs that failed])."""
        present = []
        with self.source.connect() as conn:
            cond = " AND ".join(f"{q(k)} = :k{i}" for i, k in enumerate(side.skey))
            for key in keys:
                params = {f"k{i}": v for i, v in enumerate(key)}
                if conn.execute(text(f"SELECT 1 FROM {q(side.m.source_table)} WHERE {cond}"), params).first():
                    present.append(key)
        gone = [k for k in keys if k not in present and k in raw_target]
        failed: list[tuple[tuple, str]] = []
        removed = self._remove(side, gone, raw_target, failed) if gone else 0
        if present:
            if self.source.dialect.name == "postgresql":
                self._reemit_pg(side, present)
            else:
                self._touch(side, present)
        return len(present) + removed, failed

    def _remove(self, side: _Side, gone: list[tuple], raw_target: dict[tuple, dict],
                failed: list[tuple[tuple, str]]) -> int:
        """Remove target rows whose source row is gone, as apply would; failures go to FAILED."""
        from cdc.apply import _db_reason
        m = side.m
        store = self._target_store()
        also = [(t, c) for d, t, c in m.table.also_delete if d == self.route.direction]
        clear = [c for c in m.target_columns if c not in m.target_key] if m.table.on_delete == "clear" else None
        removed = 0
        store.begin()
        try:
            for key in gone:
                tkey = tuple(raw_target[key][c] for c in m.target_key)
                store.savepoint("repair_row")
                try:
                    if clear is not None:
                        if clear:
                            store.update_one(m.target_table, clear, m.target_key,
                                             [None] * len(clear) + list(tkey))
                    else:
                        for dependent, column in also:
                            store.delete(dependent, (column,), [tkey])
                        store.delete(m.target_table, m.target_key, [tkey])
                    store.release("repair_row")
                    removed += 1
                except store.errors as exc:
                    store.rollback_to("repair_row")
                    failed.append((key, f"cannot remove {m.target_table} {list(tkey)} (no source row): "
                                        f"{_db_reason(exc)}"))
            store.commit()
        except BaseException:
            store.rollback()
            raise
        return removed

    def _touch(self, side: _Side, keys: list[tuple]) -> None:
        k0 = q(side.skey[0])
        cond = " AND ".join(f"{q(k)} = :k{i}" for i, k in enumerate(side.skey))
        with self.source.begin() as conn:
            for key in keys:
                conn.execute(text(f"UPDATE {q(side.m.source_table)} SET {k0} = {k0} WHERE {cond}"),
                             {f"k{i}": v for i, v in enumerate(key)})

    def _reemit_pg(self, side: _Side, keys: list[tuple]) -> None:
        from cdc.resnapshot import emit_rows
        emit_rows(self.config, self.route, side.m.source_table, keys)


def verify(config: CdcConfig, direction: str, *, repair: bool = False, chunk_rows: int = 2000,
           recheck_rounds: int = 5, recheck_wait_s: float = 1.0) -> VerifyReport:
    route = config.route(direction)
    source, target = make_engine(route.source.url), make_engine(route.target.url)
    fixer = Repairer(config, route, source, target) if repair else None
    try:
        report = VerifyReport(direction, [])
        for table in config.mapping.tables:
            m = table.directed(direction)
            one, repaired = verify_table(m, source, target, chunk_rows=chunk_rows,
                                         recheck_rounds=recheck_rounds, recheck_wait_s=recheck_wait_s,
                                         repair=fixer)
            report.tables.append(one)
            report.repaired += repaired
        return report
    finally:
        if fixer is not None:
            fixer.close()
        source.dispose()
        target.dispose()
