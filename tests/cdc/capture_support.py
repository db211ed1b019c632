"""Test doubles and helpers for the capture tests: our own EventSink interface, recorded.

`RecordingSink` is a double of *our* EventSink protocol (not of Kafka): it keeps every event
sent and counts how many were flushed, so tests can check what capture acknowledged.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from cdc.events import ChangeEvent


class RecordingSink:
    def __init__(self, refuse_flush: bool = False):
        self.events: list[ChangeEvent] = []
        self.flushed = 0
        self.refuse_flush = refuse_flush
        self._lock = threading.Lock()

    def send(self, event: ChangeEvent) -> None:
        with self._lock:
            self.events.append(event)

    def flush(self, timeout_s: float) -> None:
        if self.refuse_flush:
            raise TimeoutError("test sink refuses to flush")
        with self._lock:
            self.flushed = len(self.events)

    def values(self, op: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [e.value for e in self.events
                    if e.value is not None and (op is None or e.value["op"] == op)]


def apply_events(events: list[ChangeEvent], state: dict | None = None) -> dict:
    """Replay events in order onto {(topic, key tuple): row}, keeping the newest position.

    What an idempotent apply does: an event older than the row's last position is skipped,
    deletes are remembered (with their position) so an older image cannot resurrect a row.
    """
    state = {} if state is None else state
    positions: dict = state.setdefault("__positions__", {})
    for event in events:
        if event.value is None:
            continue                                    # tombstone
        if event.value["op"] == "t":
            for k in [k for k in state if k != "__positions__" and k[0] == event.topic]:
                del state[k]
            continue
        key = (event.topic, tuple(sorted(event.key.items())))
        if positions.get(key, -1) > event.position:
            continue
        positions[key] = event.position
        if event.value["op"] == "d":
            state.pop(key, None)
        else:
            row = dict(state.get(key, {}))
            row.update(event.value["after"])
            state[key] = row
    return state


def rows_of(state: dict, topic: str) -> dict:
    return {k[1]: v for k, v in state.items() if k != "__positions__" and k[0] == topic}


def wait_for(predicate: Callable[[], bool], timeout_s: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Running:
    """Run a capture's `run(stop)` in a thread for the duration of a `with` block."""

    def __init__(self, capture):
        self.capture = capture
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.capture.run(self.stop)
        except BaseException as exc:  # surfaced by __exit__
            self.error = exc

    def __enter__(self):
        self.thread.start()
        wait_for(lambda: self.capture.streaming.is_set() or not self.thread.is_alive(),
                 what="capture attached to its slot")
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join(30)
        if self.error is not None and exc_info[0] is None:
            raise self.error


def replay_in_order(events: list[ChangeEvent]) -> dict:
    """The naive consumer: every event applied in arrival order, no position checks.

    Stricter than `apply_events`: it only converges if capture never emits an older image of
    a row after a newer one.
    """
    state: dict = {}
    for event in events:
        if event.value is None:
            continue
        op = event.value["op"]
        if op == "t":
            state = {k: v for k, v in state.items() if k[0] != event.topic}
        elif op == "d":
            state.pop((event.topic, tuple(sorted(event.key.items()))), None)
        else:
            state[(event.topic, tuple(sorted(event.key.items())))] = dict(event.value["after"])
    return state
