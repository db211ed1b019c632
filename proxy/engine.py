"""The forwarding engine of one worker process: the current rule table and everything per backend.

`Engine.state` is swapped whole by one assignment on reload (table, pools and breakers
together), so a request sees either the old rules or the new ones, never a mix. Requests
in flight keep the pool they started with; pools of removed or changed backends are drained.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from proxy.access_log import AccessLog
from proxy.breaker import HALF_OPEN, OPEN, Breaker
from proxy.decision import RuleTable
from proxy.exchange import ShadowSink
from proxy.headers import RequestIds, TrustedProxies
from proxy.metrics import Metrics
from proxy.settings import Limits, Network
from proxy.upstream import UpstreamPool

SinkFactory = Callable[[Metrics], ShadowSink]
log = logging.getLogger("strangler.proxy")
TIMEOUT_TICK_S = 0.1


@dataclass(frozen=True, slots=True)
class EngineState:
    table: RuleTable
    pools: dict[str, UpstreamPool]
    breakers: dict[str, Breaker]
    strip: frozenset[bytes]          # table.strip_headers as bytes, computed once per table
    trusted: TrustedProxies          # the command line's trusted proxies plus the table's


class Engine:
    def __init__(self, table: RuleTable, *, limits: Limits, trusted: tuple[Network, ...] = (),
                 metrics: Metrics, access_log: AccessLog | None = None,
                 sink: ShadowSink | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.limits = limits
        self.trusted_networks = trusted
        self.metrics = metrics
        self.access_log = access_log
        self.sink = sink
        self.connections: set[Any] = set()   # ClientConnection objects
        self.inflight: set[Any] = set()      # Flights waiting on an upstream (timeouts)
        self.new_request_id = RequestIds()
        self._metric_keys: dict[tuple, tuple] = {}   # label tuples built once per combination
        self.closing = False
        self.state = self._build_state(table, None)
        self._sweeper = self.loop.create_task(self._sweep())
        self._timeouts = self.loop.create_task(self._check_timeouts())

    def _build_state(self, table: RuleTable, old: EngineState | None) -> EngineState:
        pools: dict[str, UpstreamPool] = {}
        breakers: dict[str, Breaker] = {}
        for name, backend in table.backends.items():
            kept = old.pools.get(name) if old else None
            if kept is not None and kept.backend == backend:
                kept.backend = backend           # same settings; identity keeps pool_for fast
                pools[name] = kept
            else:
                pools[name] = UpstreamPool(backend, self.loop)
            if backend.breaker is not None:
                prior = old.breakers.get(name) if old else None
                breakers[name] = prior if prior is not None and prior.spec == backend.breaker \
                    else Breaker(backend.breaker)
        return EngineState(table=table, pools=pools, breakers=breakers,
                           strip=frozenset(h.lower().encode() for h in table.strip_headers),
                           trusted=TrustedProxies(self.trusted_networks + tuple(
                               getattr(table, "trusted_proxies", ()))))

    def swap(self, table: RuleTable) -> None:
        """Serve `table` from the next request on (one assignment); drain replaced pools."""
        old = self.state
        self.state = self._build_state(table, old)
        for name, pool in old.pools.items():
            if self.state.pools.get(name) is not pool:
                pool.retired = True               # in-flight requests finish, then it empties
                pool.close_idle()

    def pool_for(self, state: EngineState, backend: Any) -> UpstreamPool:
        """The pool of a backend named in the rules (a decision never names anything else)."""
        pool = state.pools.get(backend.name)
        if pool is None or (pool.backend is not backend and pool.backend != backend):
            # A table whose decisions name a backend missing from `backends` is a rules bug;
            # still only the decision's own backend is contacted.
            pool = state.pools[backend.name] = UpstreamPool(backend, self.loop)
        return pool

    # -- accounting (called once per request; dict updates only) --------------------------------
    def record(self, flight: Any) -> None:
        decision = flight.decision
        status = flight.status
        end = time.perf_counter()
        duration = end - flight.t0               # the client's whole time (access log)
        if decision is not None:
            capability = decision.capability or "default"
            side = "legacy" if flight.fell_back else decision.side
        else:
            capability, side = "default", "none"
        backend = flight.backend.name if flight.backend is not None else ""
        keys = self._metric_keys.get((backend, capability, side, status))
        if keys is None:
            keys = self._metric_keys[(backend, capability, side, status)] = (
                ("strangler_requests_total", (("backend", backend), ("capability", capability),
                                              ("side", side), ("status", str(status)))),
                ("strangler_request_duration_seconds",
                 (("backend", backend), ("capability", capability))))
        metrics = self.metrics
        metrics.inc_key(keys[0])
        if flight.upstream_status:
            # The backend's latency (the p99 gate reads it): only answers a backend gave, from
            # the request being forwarded whole (its body's last byte, else the head) to the
            # end. A 408/499 or a slow upload is the client's time, not the backend's.
            start = flight.t_whole
            metrics.observe_key(keys[1], end - (start if start > flight.t0 else flight.t0))
        if self.access_log is not None:
            path, _, query = flight.target.decode("latin-1").partition("?")
            entry = {
                "ts": flight.wall_start(), "request_id": flight.request_id,
                "method": flight.method,
                "path": path, "status": status, "capability": decision and decision.capability,
                "side": side, "backend": backend, "duration_ms": round(duration * 1000, 3),
                "bytes": flight.resp_bytes, "fallback": flight.fell_back,
                "upstream_status": flight.upstream_status or None,
            }
            if query:
                entry["query"] = query          # redacted by the log's writer thread
            if flight.fell_back:
                entry["fallback_reason"] = flight.fallback_reason
            if flight.error:
                entry["error"] = flight.error
            self.access_log.write(entry)

    def count_upstream_error(self, backend: str, kind: str) -> None:
        self.metrics.inc("strangler_upstream_errors_total", (("backend", backend), ("kind", kind)))

    def count_fallback(self, decision: Any, reason: str) -> None:
        self.metrics.inc("strangler_fallbacks_total", (
            ("capability", decision.capability or "default"), ("reason", reason)))

    def count_refused(self, status: int) -> None:
        self.metrics.inc("strangler_refused_total", (("status", str(status)),))

    def log_exception(self, what: str) -> None:
        log.exception(what)

    def publish_gauges(self) -> None:
        """Breaker states as gauges (called before each metrics snapshot)."""
        for name, breaker in self.state.breakers.items():
            labels = (("backend", name),)
            shown = breaker.shown()
            self.metrics.set("strangler_breaker_open", labels, 1 if shown == OPEN else 0)
            self.metrics.set("strangler_breaker_openings", labels, breaker.opened_total)
            self.metrics.set("strangler_breaker_half_open", labels, 1 if shown == HALF_OPEN else 0)

    def breaker_states(self) -> dict[str, str]:
        return {name: b.shown() for name, b in self.state.breakers.items()}

    async def _sweep(self) -> None:
        """Close idle client connections and stale pooled upstream connections."""
        limits = self.limits
        period = max(0.2, min(5.0, limits.keepalive_timeout_s / 2, limits.upstream_idle_s / 2))
        while True:
            await asyncio.sleep(period)
            now = self.loop.time()
            for conn in list(self.connections):
                conn.close_if_idle(now, limits.keepalive_timeout_s)
            for pool in self.state.pools.values():
                pool.close_idle(limits.upstream_idle_s)

    async def _check_timeouts(self) -> None:
        """Upstream read/total timeouts, checked every 100 ms (no timer per request)."""
        while True:
            await asyncio.sleep(TIMEOUT_TICK_S)
            now = self.loop.time()
            for flight in list(self.inflight):
                flight.check_timeout(now)

    async def shutdown(self, grace_s: float) -> None:
        """Finish in-flight requests (up to `grace_s`), closing connections as they go idle."""
        self.closing = True
        for conn in list(self.connections):
            conn.close_if_idle(self.loop.time(), 0.0)
        deadline = self.loop.time() + grace_s
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.transport.abort()
        self._sweeper.cancel()
        self._timeouts.cancel()
        for pool in self.state.pools.values():
            pool.close_idle()
        closer = getattr(self.sink, "close", None)
        if closer is not None:
            await closer()
