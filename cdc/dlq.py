"""Dead letters: events apply could not apply, kept in the target database with the reason.

They are written in the same transaction as the batch they came from (so the offsets that skip
them and the letters themselves commit together), listed by `strangler cdc dlq`, and replayed
with `--replay ID` / `--all` once the cause is fixed. Replaying is safe at any time: the stale
check skips a letter whose row has since moved on. Letters of kind `lookup` (a referenced row had
not arrived yet) are retried by the running pipeline on its own.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cdc.events import ChangeEvent
from cdc.records import Record
from cdc.store import DLQ, TargetStore

if TYPE_CHECKING:
    from cdc.apply import Applier, Dead


@dataclass(frozen=True)
class Letter:
    id: int
    topic: str
    partition: int | None
    offset: int | None
    position: int
    key: str | None
    value: str | None
    kind: str
    reason: str
    attempts: int
    created_at: str

    def record(self) -> Record:
        return Record(self.topic, self.partition or 0, self.offset or 0,
                      ChangeEvent(self.topic, json.loads(self.key) if self.key else None,
                                  json.loads(self.value) if self.value else None, self.position))


def write_dead(store: TargetStore, consumer: str, dead: list["Dead"]) -> None:
    if not dead:
        return
    ph = store.ph
    rows = [(consumer, d.record.topic, d.record.partition, d.record.offset, d.record.event.position,
             json.dumps(d.record.event.key) if d.record.event.key is not None else None,
             json.dumps(d.record.event.value) if d.record.event.value is not None else None,
             d.kind, d.reason) for d in dead]
    store.execute_many(
        f"INSERT INTO {DLQ} (consumer, topic, partition, kafka_offset, position, event_key, event_value, "
        f"kind, reason) VALUES ({', '.join([ph] * 9)})", rows)


def letters(store: TargetStore, consumer: str, ids: list[int] | None = None,
            kind: str | None = None) -> list[Letter]:
    ph = store.ph
    sql = (f"SELECT id, topic, partition, kafka_offset, position, event_key, event_value, kind, reason, "
           f"attempts, created_at FROM {DLQ} WHERE consumer = {ph}")
    params: list = [consumer]
    if ids is not None:
        if not ids:
            return []
        sql += f" AND id IN ({', '.join([ph] * len(ids))})"
        params += ids
    if kind is not None:
        sql += f" AND kind = {ph}"
        params.append(kind)
    cur = store.cursor()
    cur.execute(sql + " ORDER BY id", params)
    rows = cur.fetchall()
    store.rollback()
    return [Letter(*r[:10], str(r[10])) for r in rows]


def size(store: TargetStore, consumer: str) -> int:
    cur = store.cursor()
    cur.execute(f"SELECT count(*) FROM {DLQ} WHERE consumer = {store.ph}", (consumer,))
    n = cur.fetchone()[0]
    store.rollback()
    return n


def replay(applier: "Applier", found: list[Letter]) -> dict[int, str | None]:
    """Re-apply letters in their original order; returns id -> None (applied) or the new reason."""
    return applier.replay([(letter.id, letter.record()) for letter in found])


def retry_lookups(applier: "Applier") -> int:
    """Retry letters waiting for a referenced row; returns how many applied."""
    waiting = letters(applier.store, applier.consumer, kind="lookup")
    if not waiting:
        return 0
    return sum(1 for reason in replay(applier, waiting).values() if reason is None)
