"""What a transport hands to apply: an event plus where it came from (topic, partition, offset)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cdc.events import ChangeEvent


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    event: ChangeEvent
    topic_id: str | None = None   # Kafka's id of this incarnation of the topic (None: unknown)


class EventSource(Protocol):
    """The apply side's view of a transport (Kafka consumer group or the embedded log)."""

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to `max_records` records in partition order; empty after `timeout_s` if none."""
        ...

    def committed(self, offsets: dict[tuple[str, int], int]) -> None:
        """Told after the target committed: the transport may report progress or prune."""
        ...

    def close(self) -> None:
        ...
