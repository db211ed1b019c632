"""What the forwarding engine hands the shadow side after a client has been answered.

The engine captures an exchange only when the rule table planned a shadow for the request and
both bodies fit within the plan's `max_body_bytes`. Captures are immutable values; the sink
must never block the engine (it drops and counts when its queue is full).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from proxy.decision import Decision

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and the answer the client got (the primary side's)."""
    decision: Decision
    method: str
    target: str              # origin-form request target as received: path[?query]
    request_headers: Headers # as forwarded to the primary (hop-by-hop removed, X-Forwarded-* set)
    request_body: bytes      # complete
    status: int
    response_headers: Headers
    response_body: bytes     # complete, as the upstream sent it (never decompressed)
    latency_s: float         # primary side: request start to last response byte
    started_at: float        # wall clock (time.time()) when the request arrived


class ShadowSink(Protocol):
    """Where the engine drops exchanges to shadow. Both calls return at once."""

    def submit(self, exchange: Exchange) -> None:
        """Queue the exchange for shadowing, or drop it (and count it) when the queue is full."""
        ...

    def skip(self, decision: Decision, reason: str) -> None:
        """Count a planned shadow that was not sent (e.g. 'body-too-large', 'unsafe-method')."""
        ...
