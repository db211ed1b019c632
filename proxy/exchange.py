"""What the forwarding engine hands the shadow side after a client has been answered.

The engine captures an exchange only when the rule table planned a shadow for the request and
both bodies fit within the plan's `max_body_bytes`. It hands over a `Capture`: the parts as the
worker already holds them (head bytes, header lines, body chunks): parsing them into an
`Exchange` took several microseconds per shadowed request on the loop that serves the clients
(capture cost the benchmark's clients up to 10 % at p50), so whoever shadows it parses it, in the
shadow process. The sink must never block the
engine (it drops and counts when its queue is full).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

from proxy.decision import Decision
from proxy.headers import header_pairs, parse_head_headers

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


class Capture(NamedTuple):
    """An exchange as the worker holds it, unparsed; `exchange()` parses it."""
    decision: Decision
    method: str
    target: bytes                   # origin-form request target as received
    head: bytes                     # the request head as forwarded to the primary
    request_body: list[bytes]       # chunks
    status: int
    response_lines: list[bytes]     # the primary's header lines, b"Name: value"
    response_body: list[bytes]      # chunks, as the upstream sent them
    latency_s: float
    started_at: float

    def body_bytes(self) -> int:
        return sum(map(len, self.request_body)) + sum(map(len, self.response_body))

    def exchange(self) -> Exchange:
        return Exchange(self.decision, self.method, self.target.decode("latin-1"),
                        parse_head_headers(self.head), b"".join(self.request_body), self.status,
                        header_pairs(self.response_lines), b"".join(self.response_body),
                        self.latency_s, self.started_at)


class ShadowSink(Protocol):
    """Where the engine drops exchanges to shadow. All calls return at once."""

    def admit(self, decision: Decision) -> bool:
        """Whether an exchange would be taken now; when not, it is counted as dropped, so the
        engine does not capture bodies for nothing."""
        ...

    def submit_capture(self, capture: Capture) -> None:
        """Queue the capture for shadowing, or drop it (and count it) when the queue is full."""
        ...

    def skip(self, decision: Decision, reason: str) -> None:
        """Count a planned shadow that was not sent (e.g. 'body-too-large', 'unsafe-method')."""
        ...
