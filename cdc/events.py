"""A change event as it travels from capture through the transport to apply.

`key` and `value` are Debezium's JSON payloads (schemas off): the key holds the primary-key
fields; the value holds before/after/source/op/ts_ms/transaction. A tombstone has value None.
A truncate has key None. `position` only grows per source, so apply can skip stale events.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    topic: str                      # <prefix>.<schema>.<table>
    key: dict[str, Any] | None
    value: dict[str, Any] | None
    position: int                   # PostgreSQL: the change's LSN; SQLite: the change-table id


class EventSink(Protocol):
    """The capture side's view of a transport (Kafka or embedded)."""

    def send(self, event: ChangeEvent) -> None:
        """Hand one event over; may block while the transport's buffer is full."""
        ...

    def flush(self, timeout_s: float) -> None:
        """Return once every event sent so far is durable in the transport; raise if not."""
        ...
