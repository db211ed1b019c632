"""Apply change events to a target database: batched, idempotent, stale-safe, exactly-once in effect.

One batch = one target transaction holding the mapped rows, the per-row source positions and the
consumed offsets, so a crash anywhere leaves either all of it or none of it. Replaying records
(at-least-once transports do) is harmless: an event whose position is below what the target
already holds for that source row is skipped, and upserts/deletes are idempotent.

A batch that fails in the database is retried event by event inside savepoints so the poison
events are isolated into the dead-letter table and everything else still applies.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from cdc.mapping import (TO_SERVICE, UNAVAILABLE, DirectedMap, Lookup, LookupMissing, Mapping,
                         MappingError)
from cdc.mapping_check import check_side
from cdc.records import Record
from cdc.store import DLQ, STATS, TABLE_WIDE, TargetStore, key_text
from strangler.errors import OperatorError


@dataclass
class Dead:
    record: Record
    kind: str           # unmappable | lookup | constraint | malformed
    reason: str


@dataclass
class Outcome:
    applied: int = 0
    skipped: int = 0                # stale, tombstones, filtered out
    dead: list[Dead] = field(default_factory=list)
    per_table: dict[str, list[int]] = field(default_factory=dict)   # source table -> [events, max source ts]
    commit_ms: int = 0
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)  # next offset per partition

    def lag_ms(self) -> dict[str, int]:
        return {t: self.commit_ms - ts for t, (_, ts) in self.per_table.items() if ts}


@dataclass
class _Op:
    # upsert: full row | update: some columns of a row that must exist | clear: null this mapping's
    # columns if the row exists (merged tables) | move: key change | delete
    kind: str
    cols: dict[str, Any]
    old: tuple | None = None        # move: the key the row had before


class RowMissing(Exception):
    """A partial update (TOASTed columns left out) found no row to update."""


class _Poison(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


STALE = "stale"        # a replayed letter a newer change of its row had overtaken


def topic_table(topic: str) -> str:
    """`<prefix>.<schema>.<table>` -> table."""
    return topic.rsplit(".", 1)[-1]


class Applier:
    """Applies records for one direction of one capability to its target database."""

    def __init__(self, store: TargetStore, mapping: Mapping, direction: str, consumer: str,
                 *, use_origin: bool = True) -> None:
        self.store = store
        self.mapping = mapping
        self.direction = direction
        self.consumer = consumer
        self._maps: dict[str, list[DirectedMap]] = {
            t: mapping.for_source(direction, t) for t in mapping.source_tables(direction)}
        self._order = mapping.target_order(direction)
        self._keys = {m.target_table: m.target_key for ms in self._maps.values() for m in ms}
        self._also_delete = {m.target_table: [(t, c) for d, t, c in m.table.also_delete
                                              if d == direction]
                             for ms in self._maps.values() for m in ms}
        self._cache: dict[tuple[Lookup, Any], Any] = {}
        self._saved_topic_ids: dict[str, str] = {}   # committed: saved again only when changed
        self._source_rank = {t: i for i, t in enumerate(mapping.source_tables(direction))}
        self._lookup_tables = {lk.table for t in mapping.tables for c in t.columns
                               for d, lk in c.lookups if d == direction}
        self._check_target()
        self.origin = None
        if use_origin and store.is_pg:
            self.origin = store.setup_origin(f"strangler_{consumer}"[:60])

    def _check_target(self) -> None:
        """The mapping's tables, columns and lookups exist in the target, before any event."""
        side = "service" if self.direction == TO_SERVICE else "legacy"
        check_side(self.mapping, side, self.store.columns)

    # --- public -----------------------------------------------------------------------------
    def stored_offsets(self) -> dict[tuple[str, int], int]:
        offsets = self.store.offsets(self.consumer)
        self.store.rollback()
        return offsets

    def stored_topic_ids(self) -> dict[str, str]:
        """The topic incarnations the stored offsets were counted in (saved with them)."""
        ids = self.store.topic_ids(self.consumer)
        self.store.rollback()
        return ids

    def apply(self, records: list[Record]) -> Outcome:
        """Apply a batch and store its offsets in the same transaction; poison goes to the DLQ."""
        if not records:
            return Outcome()
        offsets: dict[tuple[str, int], int] = {}
        topic_ids: dict[str, str] = {}
        for r in records:
            offsets[(r.topic, r.partition)] = max(offsets.get((r.topic, r.partition), 0), r.offset + 1)
            if r.topic_id is not None:
                topic_ids[r.topic] = r.topic_id
        # Lookups are cached for one batch only: other writers of the target (the service itself,
        # once it owns writes) may change the rows they read.
        self._cache.clear()
        try:
            self.store.begin()
            outcome = self._run(records, isolate=False)
            self._finish(outcome, offsets, topic_ids)
        except (*self.store.errors, RowMissing):
            self.store.rollback()
            self._cache.clear()
            self.store.begin()
            outcome = self._run(records, isolate=True)
            self._finish(outcome, offsets, topic_ids)
        outcome.offsets = offsets
        return outcome

    def replay(self, entries: list[tuple[int, Record]]) -> dict[int, str | None]:
        """Re-apply dead letters: applied ones leave the DLQ (None), so do those a newer change
        of their row has overtaken meanwhile (STALE: applying them would undo it); the others
        keep their letter with the new reason."""
        result: dict[int, str | None] = {}
        self.store.begin()
        cur = self.store.cursor()
        ph = self.store.ph
        total = Outcome()
        for dlq_id, record in entries:
            outcome = self._run([record], isolate=True)
            for table, (n, ts) in outcome.per_table.items():
                before = total.per_table.get(table, [0, 0])
                total.per_table[table] = [before[0] + n, max(before[1], ts)]
            if outcome.dead:
                d = outcome.dead[0]
                cur.execute(f"UPDATE {DLQ} SET attempts = attempts + 1, kind = {ph}, reason = {ph} "
                            f"WHERE id = {ph}", (d.kind, d.reason, dlq_id))
                result[dlq_id] = d.reason
            else:
                cur.execute(f"DELETE FROM {DLQ} WHERE id = {ph}", (dlq_id,))
                result[dlq_id] = None if outcome.applied else STALE
        self._save_stats(total, int(time.time() * 1000))
        self.store.commit()
        return result

    # --- one transaction ----------------------------------------------------------------------
    def _finish(self, outcome: Outcome, offsets: dict[tuple[str, int], int],
                topic_ids: dict[str, str]) -> None:
        from cdc.dlq import write_dead
        write_dead(self.store, self.consumer, outcome.dead)
        self.store.save_offsets(self.consumer, offsets)
        new_ids = {t: i for t, i in topic_ids.items() if self._saved_topic_ids.get(t) != i}
        self.store.save_topic_ids(self.consumer, new_ids)
        now_ms = int(time.time() * 1000)
        self._save_stats(outcome, now_ms)
        self.store.commit()
        self._saved_topic_ids.update(new_ids)
        outcome.commit_ms = int(time.time() * 1000)

    def _save_stats(self, outcome: Outcome, now_ms: int) -> None:
        if not outcome.per_table:
            return
        ph = self.store.ph
        cur = self.store.cursor()
        for tbl, (n, ts) in outcome.per_table.items():
            lag = now_ms - ts if ts else None
            cur.execute(
                f"INSERT INTO {STATS} (consumer, tbl, events, last_position, last_source_ms, last_commit_ms, "
                f"last_lag_ms) VALUES ({ph}, {ph}, {ph}, NULL, {ph}, {ph}, {ph}) "
                f"ON CONFLICT (consumer, tbl) DO UPDATE SET events = {STATS}.events + excluded.events, "
                f"last_source_ms = excluded.last_source_ms, last_commit_ms = excluded.last_commit_ms, "
                f"last_lag_ms = excluded.last_lag_ms",
                (self.consumer, tbl, n, ts, now_ms, lag))
        for tbl, pos in self._last_positions.items():
            cur.execute(f"UPDATE {STATS} SET last_position = {ph} WHERE consumer = {ph} AND tbl = {ph} "
                        f"AND (last_position IS NULL OR last_position < {ph})", (pos, self.consumer, tbl, pos))

    def _run(self, records: list[Record], isolate: bool) -> Outcome:
        outcome = Outcome()
        self._last_positions: dict[str, int] = {}
        # One TRUNCATE of several tables is one event per table, all at one source position but
        # on different topics, so they arrive in any order: the parent may come first and fail
        # on its children's foreign keys. Those of one position go together, children first
        # (the reverse of the parents-first order inserts take), where the first of them arrives.
        truncates: dict[int, list[Record]] = {}
        for r in records:
            if _is_truncate(r):
                truncates.setdefault(r.event.position, []).append(r)
        segment: list[Record] = []
        for r in records:
            if _is_truncate(r):
                self._segment(segment, outcome, isolate)
                segment = []
                for t in sorted(truncates.pop(r.event.position, ()), key=self._truncate_rank):
                    self._truncate_one(t, outcome, isolate)
            else:
                segment.append(r)
        self._segment(segment, outcome, isolate)
        return outcome

    def _truncate_rank(self, record: Record) -> int:
        """Children first: the deepest of the record's target tables in the parents-first order."""
        targets = [m.target_table for m in self._maps.get(topic_table(record.topic), ())]
        return -max((self._order.index(t) for t in targets if t in self._order), default=-1)

    def _truncate_one(self, record: Record, outcome: Outcome, isolate: bool) -> None:
        """A truncate the target refuses (rows of a child table the source did not empty still
        point at the parent) is dead-lettered like any poison event, not retried forever."""
        if not isolate:
            self._truncate(record, outcome)
            return
        self.store.savepoint("one_truncate")
        try:
            self._truncate(record, outcome)
            self.store.release("one_truncate")
        except self.store.errors as exc:
            self.store.rollback_to("one_truncate")
            self._cache.clear()
            outcome.dead.append(Dead(record, "constraint", _db_reason(exc)))

    def _segment(self, records: list[Record], outcome: Outcome, isolate: bool) -> None:
        if not records:
            return
        if not isolate:
            self._apply_records(records, outcome)
            return
        for r in records:
            self.store.savepoint("one_event")
            try:
                self._apply_records([r], outcome)
                self.store.release("one_event")
            except (*self.store.errors, RowMissing) as exc:
                self.store.rollback_to("one_event")
                self._cache.clear()
                kind = "missing_row" if isinstance(exc, RowMissing) else "constraint"
                outcome.dead.append(Dead(r, kind, _db_reason(exc)))

    # --- the core: stale filter, map, fold, write ---------------------------------------------
    def _apply_records(self, records: list[Record], outcome: Outcome) -> None:
        live: list[tuple[Record, str, str]] = []        # record, source table, pk text
        for r in records:
            ev = r.event
            if ev.value is None:
                outcome.skipped += 1                     # tombstone: the delete before it did the work
                continue
            table = topic_table(r.topic)
            if not isinstance(ev.key, dict) or not isinstance(ev.value, dict):
                outcome.dead.append(Dead(r, "malformed", "event without a key or with a non-object value"))
                continue
            pk = key_text(ev.key)
            live.append((r, table, pk))
        # Parents first (file order), so a row's lookup finds a parent that arrived in the same
        # batch from another topic; a stable sort keeps each row's own changes in order.
        live.sort(key=lambda item: self._source_rank.get(item[1], len(self._source_rank)))

        stored: dict[tuple[str, str], int] = {}
        by_topic: dict[str, set[str]] = {}
        for r, _, pk in live:
            by_topic.setdefault(r.topic, set()).update((pk, TABLE_WIDE))
        for topic, pks in by_topic.items():
            for pk, pos in self.store.positions(topic, pks).items():
                stored[(topic, pk)] = pos

        net: dict[tuple[str, tuple], _Op] = {}
        pending: dict[str, dict[tuple, _Op]] = {}        # this batch's rows of lookup tables
        resolve = self._resolver(pending)
        new_positions: dict[tuple[str, str], int] = {}
        counted: list[tuple[str, Any]] = []
        for r, table, pk in live:
            ev = r.event
            floor = max(stored.get((r.topic, pk), -1), stored.get((r.topic, TABLE_WIDE), -1),
                        new_positions.get((r.topic, pk), -1))
            if ev.position < floor:
                outcome.skipped += 1
                continue
            try:
                ops = self._map_event(table, ev.value, resolve)
            except _Poison as p:
                outcome.dead.append(Dead(r, p.kind, p.reason))
                continue
            for target_key, op in ops:
                _fold(net, target_key, op)
                if target_key[0] in self._lookup_tables:
                    pending.setdefault(target_key[0], {})[target_key[1]] = net[target_key]
            new_positions[(r.topic, pk)] = ev.position
            counted.append((table, (ev.value.get("source") or {}).get("ts_ms"), ev.position))

        self._write(net)
        self.store.save_positions([(t, pk, pos) for (t, pk), pos in new_positions.items()])
        for table, ts, position in counted:     # only now: the writes above may have raised
            n, best = outcome.per_table.get(table, [0, 0])
            outcome.per_table[table] = [n + 1, max(best, ts or 0)]
            self._last_positions[table] = max(self._last_positions.get(table, 0), position)
            outcome.applied += 1

    def _map_event(self, table: str, value: dict[str, Any], resolve) -> list[tuple[tuple[str, tuple], _Op]]:
        maps = self._maps.get(table)
        if not maps:
            raise _Poison("unmappable", f"no mapping for source table {table!r} ({self.direction})")
        op = value.get("op")
        before, after = value.get("before"), value.get("after")
        out = []
        try:
            for m in maps:
                if op in ("c", "r", "u"):
                    if not isinstance(after, dict):
                        raise _Poison("malformed", f"op {op!r} without an after image")
                    if not m.accepts(after, resolve):       # filtered out (or moved out of the filter)
                        key = m.map_key(after, resolve)
                        if key is not None:
                            out.append(((m.target_table, key), self._removal(m, key)))
                        continue
                    row = m.map_row(after, resolve)
                    key = m.target_key_of(row)
                    if key is None:
                        raise _Poison("unmappable", f"{m.target_table}: key {list(m.target_key)} "
                                      "missing from the mapped row")
                    old = m.map_key(before, resolve) if isinstance(before, dict) and op == "u" else None
                    if old is not None and old != key:
                        # The target key changed: move the row in place (referencing rows keep
                        # pointing at it where the schema cascades), else insert it anew.
                        out.append(((m.target_table, old), _Op("delete", dict(zip(m.target_key, old)))))
                        out.append(((m.target_table, key), _Op("move", row, old)))
                        continue
                    # Unchanged TOASTed values (listed in `unavailable_columns`, or Debezium's
                    # placeholder) are left out of `row`: update only the columns we have.
                    partial = bool(value.get("unavailable_columns")) or UNAVAILABLE in after.values()
                    out.append(((m.target_table, key), _Op("update" if partial else "upsert", row)))
                elif op == "d":
                    if not isinstance(before, dict):
                        raise _Poison("malformed", "delete without a before image")
                    key = m.map_key(before, resolve)
                    if key is None:
                        raise _Poison("unmappable", f"{m.target_table}: delete's before image lacks the "
                                      f"columns of key {list(m.target_key)}; set REPLICA IDENTITY FULL")
                    out.append(((m.target_table, key), self._removal(m, key)))
                else:
                    raise _Poison("malformed", f"unknown op {op!r}")
        except LookupMissing as exc:
            raise _Poison("lookup", str(exc)) from None
        except MappingError as exc:
            raise _Poison("unmappable", str(exc)) from None
        return out

    def _removal(self, m: DirectedMap, key: tuple) -> _Op:
        if m.table.on_delete == "clear":
            cols = {c: None for c in m.target_columns if c not in m.target_key}
            cols.update(zip(m.target_key, key))
            return _Op("clear", cols)
        return _Op("delete", dict(zip(m.target_key, key)))

    def _resolver(self, pending: dict[str, dict[tuple, _Op]]):
        def resolve(lookup: Lookup, value: Any) -> Any:
            for op in pending.get(lookup.table, {}).values():   # rows written earlier in this batch win
                if op.kind != "delete" and op.cols.get(lookup.match) == value and lookup.take in op.cols:
                    return op.cols[lookup.take]
            ck = (lookup, value)
            if ck not in self._cache:
                found = self.store.lookup(lookup.table, lookup.match, lookup.take, value)
                if not found:
                    raise LookupMissing(f"lookup {lookup.table}.{lookup.match} = {value!r} found no row")
                if len(found) > 1:
                    raise MappingError(f"lookup {lookup.table}.{lookup.match} = {value!r} is ambiguous")
                self._cache[ck] = found[0]
            return self._cache[ck]
        return resolve

    def _write(self, net: dict[tuple[str, tuple], _Op]) -> None:
        if not net:
            return
        by_table: dict[str, list[tuple[tuple, _Op]]] = {}
        for (table, key), op in net.items():
            by_table.setdefault(table, []).append((key, op))
        for table in self._order:                        # parents first
            key = self._keys[table]
            groups: dict[tuple[str, ...], list[tuple]] = {}
            updates: list[tuple[dict[str, Any], bool]] = []
            for _, op in by_table.get(table, ()):
                if op.kind == "move":
                    cols = list(op.cols)
                    if not self.store.update_one(table, cols, key, [op.cols[c] for c in cols] + list(op.old)):
                        groups.setdefault(tuple(cols), []).append(tuple(op.cols[c] for c in cols))
                elif op.kind == "upsert":
                    cols = tuple(op.cols)
                    groups.setdefault(cols, []).append(tuple(op.cols[c] for c in cols))
                elif op.kind in ("update", "clear"):
                    updates.append((op.cols, op.kind == "update"))
            for cols, rows in groups.items():
                self.store.upsert(table, cols, key, rows)
            for cols, must_exist in updates:
                sets = [c for c in cols if c not in key]
                if sets and not self.store.update_one(table, sets, key, [cols[c] for c in sets + list(key)]) \
                        and must_exist:
                    raise RowMissing(f"{table} {[cols[k] for k in key]}: no row to update (its insert "
                                     "never arrived); re-run the snapshot of this table")
            if groups or updates:
                self._invalidate(table)
        for table in reversed(self._order):              # children first
            keys = [key for key, op in by_table.get(table, ()) if op.kind == "delete"]
            if keys:
                for dependent, column in self._also_delete.get(table, ()):
                    self.store.delete(dependent, (column,), keys)
                self.store.delete(table, self._keys[table], keys)
                self._invalidate(table)

    def _invalidate(self, table: str) -> None:
        for ck in [ck for ck in self._cache if ck[0].table == table]:
            del self._cache[ck]

    def _truncate(self, record: Record, outcome: Outcome) -> None:
        """Empty the mapped target tables, except rows whose source changed after the truncate:
        a truncate has no key, so it may reach us after such changes, applied from other
        partitions. Their stored positions stay; older changes still on their way are skipped
        by the table-wide position saved here."""
        table = topic_table(record.topic)
        maps = self._maps.get(table)
        if not maps:
            outcome.dead.append(Dead(record, "unmappable", f"no mapping for source table {table!r}"))
            return
        position = record.event.position
        stored = self.store.positions(record.topic, [TABLE_WIDE]).get(TABLE_WIDE, -1)
        if position < stored:
            outcome.skipped += 1
            return
        newer = [json.loads(pk) for pk in self.store.positions_after(record.topic, position)]
        for m in reversed(maps):
            keep = self._target_keys(m, newer)
            if m.table.on_delete == "clear":
                cols = [c for c in m.target_columns if c not in m.target_key]
                self._clear(m.target_table, cols, m.target_key, keep)
            elif keep:
                gone = [k for k in self.store.keys(m.target_table, m.target_key) if k not in keep]
                self.store.delete(m.target_table, m.target_key, gone)
            else:
                self.store.truncate(m.target_table)
            self._invalidate(m.target_table)
        self.store.forget_positions(record.topic, position)
        self.store.save_positions([(record.topic, TABLE_WIDE, position)])
        outcome.applied += 1

    def _target_keys(self, m: DirectedMap, source_keys: list[dict[str, Any]]) -> set[tuple]:
        """The target keys of these source rows (those the mapping can still find)."""
        resolve = self._resolver({})
        found = set()
        for source_key in source_keys:
            try:
                key = m.map_key(source_key, resolve)
            except (LookupMissing, MappingError):
                continue
            if key is not None:
                found.add(tuple(key))
        return found

    def _clear(self, table: str, cols: list[str], key: tuple[str, ...], keep: set[tuple]) -> None:
        sets = ", ".join(f'"{c}" = NULL' for c in cols)
        if not keep:
            self.store.cursor().execute(f'UPDATE "{table}" SET {sets}')
            return
        where = " AND ".join(f'"{k}" = {self.store.ph}' for k in key)
        self.store.execute_many(f'UPDATE "{table}" SET {sets} WHERE {where}',
                                [k for k in self.store.keys(table, key) if k not in keep])


def _is_truncate(record: Record) -> bool:
    return record.event.value is not None and record.event.value.get("op") == "t"


def _fold(net: dict, target_key: tuple[str, tuple], op: _Op) -> None:
    """Combine successive changes of one target row within a batch into its net effect."""
    prev = net.get(target_key)
    if prev is not None and prev.kind == "delete" and op.kind == "clear":
        return                              # clearing columns of a deleted row: it stays deleted
    if prev is None or op.kind == "delete" or prev.kind == "delete":
        net[target_key] = op
    else:                                   # later columns win; the strongest kind stays
        merged = dict(prev.cols)
        merged.update(op.cols)
        kinds = (prev.kind, op.kind)
        kind = next(k for k in ("move", "upsert", "update", "clear") if k in kinds)
        net[target_key] = _Op(kind, merged, prev.old or op.old)


def _db_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0] if text else ''}"[:500]
