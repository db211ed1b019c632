"""The embedded (no broker) transport: same event format, per-consumer offsets, at least once, pruning."""
from __future__ import annotations

import json

from cdc.events import ChangeEvent
from cdc.transport_embedded import EmbeddedSink, EmbeddedSource

A, B = "legacy.public.categories", "legacy.public.products"


def _events():
    return [ChangeEvent(A, {"id": 1}, {"op": "c", "after": {"id": 1}}, 10),
            ChangeEvent(B, {"id": 7}, {"op": "c", "after": {"id": 7, "price": "1.50"}}, 20),
            ChangeEvent(B, {"id": 7}, {"op": "d", "before": {"id": 7}}, 30),
            ChangeEvent(B, {"id": 7}, None, 30),
            ChangeEvent(A, None, {"op": "t"}, 40)]


def test_round_trip_in_order_with_tombstones_and_truncates(tmp_path):
    sink = EmbeddedSink(tmp_path / "log.db")
    for ev in _events():
        sink.send(ev)
    sink.flush(5)
    source = EmbeddedSource(tmp_path / "log.db", "c1", [A, B], lambda: {})
    got = source.poll(100, 1)
    assert [r.event for r in got] == _events()
    assert [r.offset for r in got] == sorted(r.offset for r in got)
    assert source.poll(100, 0.1) == []


def test_nothing_is_readable_before_flush_and_offsets_resume_per_topic(tmp_path):
    sink = EmbeddedSink(tmp_path / "log.db")
    for ev in _events():
        sink.send(ev)
    assert EmbeddedSource(tmp_path / "log.db", "c1", [A, B], lambda: {}).poll(10, 0.1) == []
    sink.flush(5)
    first = EmbeddedSource(tmp_path / "log.db", "c1", [A, B], lambda: {}).poll(2, 1)
    stored = {(r.topic, r.partition): r.offset + 1 for r in first}      # what apply committed
    # A restarted consumer (crash after the target commit) resumes exactly there, per topic.
    again = EmbeddedSource(tmp_path / "log.db", "c1", [A, B], lambda: stored).poll(100, 1)
    assert [r.event for r in again] == _events()[2:]
    # Only its own topics: a consumer of B never sees A's events.
    only_b = EmbeddedSource(tmp_path / "log.db", "c2", [B], lambda: {}).poll(100, 1)
    assert {r.topic for r in only_b} == {B}


def test_log_is_pruned_below_what_every_consumer_applied(tmp_path):
    sink = EmbeddedSink(tmp_path / "log.db")
    for ev in _events():
        sink.send(ev)
    sink.flush(5)
    one = EmbeddedSource(tmp_path / "log.db", "c1", [A, B], lambda: {}, prune_every_s=0)
    two = EmbeddedSource(tmp_path / "log.db", "c2", [B], lambda: {}, prune_every_s=3600)
    got = one.poll(100, 1)
    two.committed({(B, 0): got[2].offset})            # c2 has applied B up to the create only
    one.committed({(A, 0): got[-1].offset + 1, (B, 0): got[-1].offset + 1})
    left = EmbeddedSource(tmp_path / "log.db", "c3", [A, B], lambda: {}).poll(100, 1)
    assert [json.dumps(r.event.value) for r in left] == [json.dumps(e.value) for e in _events()[2:4]]
