"""The contract between the rule table and the forwarding engine: immutable values.

The rule table (built from routing_rules/*.yaml off the request path) answers one question per
request, `decide(...) -> Decision`; the engine forwards accordingly. Nothing here does I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

LEGACY = "legacy"
SERVICE = "service"
DEFAULT = "default"

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


@dataclass(frozen=True, slots=True)
class BreakerSpec:
    """Open after `failures` failures within `window_s`; try again after `cooldown_s`."""
    failures: int = 5
    window_s: float = 10.0
    cooldown_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Backend:
    """An upstream named in the rules; the proxy talks to nothing else."""
    name: str
    url: str                      # as written, e.g. http://127.0.0.1:8002
    host: str
    port: int
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 30.0   # between bytes of the answer
    total_timeout_s: float = 60.0  # whole exchange
    max_connections: int = 256     # per proxy process; a slow backend cannot take more
    breaker: BreakerSpec | None = None
    honours_dry_run: bool = False  # runs writes in a rolled-back transaction on X-Strangler-Dry-Run


@dataclass(frozen=True, slots=True)
class ShadowPlan:
    """Copy this request to the side that did not answer, and compare the answers."""
    target: Backend
    target_side: str              # LEGACY or SERVICE
    max_body_bytes: int           # request/response bodies larger than this are not compared
    dry_run: bool                 # send X-Strangler-Dry-Run: 1 (unsafe methods, opted in)
    compare: Any = None           # the capability's compare settings (owned by proxy.shadow)


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one request goes, and why."""
    capability: str | None        # None when the default backend answers
    route: str                    # route template for grouping, e.g. /api/products/{id}
    side: str                     # LEGACY, SERVICE or DEFAULT
    backend: Backend
    fallback: Backend | None      # legacy, when the service answers an idempotent request
    reason: str                   # rollout | override | stage | write-owner | default
    shadow: ShadowPlan | None = None
    shadow_skipped: str | None = None  # why a shadow was wanted but not sent (e.g. unsafe-method)


class RuleTable(Protocol):
    """A compiled, frozen rule table. Swapped whole by one assignment on reload."""
    version: str                               # content hash of the rule files
    backends: Mapping[str, Backend]
    strip_headers: frozenset[str]              # lower-case request headers never forwarded

    def decide(self, method: str, path: str, query: str,
               headers: Mapping[str, str]) -> Decision:
        """`headers` has lower-case names (first value wins). Pure apart from the injected
        randomness used for requests without a sticky key."""
        ...
