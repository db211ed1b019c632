"""The ShadowSink the forwarding engine feeds: queue, replay to the other side, compare, record.

Shadows never hurt the client: `submit` and `skip` only do `put_nowait` and counter updates;
when the queue is full — by count, or by the bytes of bodies held — the exchange is dropped and
counted. Consumer tasks, as many at once as keep up with the arrivals (`in_flight`, at most
`workers`), replay exchanges through the dispatcher's OWN connection pools (`replay.ShadowClient`:
its own connection limit, bodies never decompressed, per-capability timeout), so a slow or dead
shadow target only ever ties up shadow connections. Comparison, redaction and sampling of large
answers run in one dedicated thread so large bodies do not stall the event loop that serves
clients; small ones are compared on the loop, which is cheaper than the handoff (see
INLINE_COMPARE_BYTES).

Sides. The comparison is always legacy (left) vs service (right):
- forward shadow (stage `shadow`: legacy answered): replay to the service; for a noise sample,
  also replay to legacy again, concurrently, so the second legacy answer is taken at the same
  moment as the service's (as Diffy runs its secondary next to its candidate);
- reverse shadow (`canary`/`cutover`: the service answered): replay to legacy; for a noise
  sample, replay to legacy twice concurrently and measure noise between those two — the noise of
  legacy is what we learn, whoever answered the client.
Noise samples are taken for safe methods only: replaying a write, even as a dry run, after the
primary committed it is answered differently (e.g. 409 duplicate) and would teach false noise.

Unsafe methods are replayed only with the plan's dry-run flag and a target that honours
`X-Strangler-Dry-Run`; a target that answers without `X-Strangler-Dry-Run: rolled-back` is
recorded as the error `dry-run-not-honoured` and its answer is not compared.
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import re
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache, partial
from typing import Callable

from proxy.decision import SAFE_METHODS, SERVICE, Backend, Decision
from proxy.exchange import Capture, Exchange, ShadowSink
from proxy.metrics import Metrics
from proxy.shadow.compare import STATUS, Answer, diff_answers
from proxy.shadow.in_flight import WINDOW_S as IN_FLIGHT_WINDOW_S
from proxy.shadow.in_flight import InFlightLimit
from proxy.shadow.noise import NoiseSampler
from proxy.shadow.paths import compile_paths
from proxy.shadow import saturation
from proxy.shadow.replay import Replayed, ShadowClient, error_kind, replay
from proxy.shadow.samples import build_sample
from proxy.shadow.store import Observation, ShadowStore, default_store_url
from proxy.shadow_settings import CompareSettings, ShadowSettings

log = logging.getLogger(__name__)

_DEFAULT_SETTINGS = ShadowSettings()
# Answers up to this many bytes (all sides together) are compared on the event loop: that takes
# tens of microseconds, while handing the work to the comparison thread costs the loop more
# (the thread takes the GIL just as the loop wants it back: ~200 us of loop time per handoff in
# benchmarks/shadow_bench.py). Larger ones go to the thread so a big body cannot stall clients.
INLINE_COMPARE_BYTES = 64 << 10

DESCRIPTIONS = {
    "strangler_shadow_submitted_total": "Exchanges queued for shadowing.",
    "strangler_shadow_dropped_total": "Shadows dropped: queue full, worker overloaded, shutdown.",
    "strangler_shadow_skipped_total": "Planned shadows not sent, by reason.",
    "strangler_shadow_compared_total": "Shadow answers compared.",
    "strangler_shadow_errors_total": "Shadows that failed (timeout, connect, compare...), by kind.",
    "strangler_shadow_latency_seconds": "Shadow requests: start to last byte, by target side.",
}


class ShadowDispatcher:
    """Implements proxy.exchange.ShadowSink. `start()` inside a running loop, `await close()`
    at shutdown; or `async with`. With `owns_store` it also starts and closes the store."""

    def __init__(self, store: ShadowStore, metrics: Metrics | None = None, *,
                 queue_size: int = 1024, queue_bytes: int = 64 << 20, workers: int = 32,
                 max_connections: int = 32, owns_store: bool = False,
                 shed_busy_share: float | None = None) -> None:
        self.store = store
        self.owns_store = owns_store
        self.metrics = metrics if metrics is not None else Metrics()
        for name, text in DESCRIPTIONS.items():
            self.metrics.describe(name, text)
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes  # bodies held (queued or in flight): the memory bound
        self._held_bytes = 0
        self.workers = workers
        self.max_connections = max_connections
        self.noise = NoiseSampler()
        # None: never shed for load (the loop is not the proxy's alone, e.g. in-process tests).
        self.shed_busy_share = shed_busy_share
        self.overloaded = False
        self._queue: asyncio.Queue[Exchange] | None = None
        self._tasks: list[asyncio.Task] = []
        self._client: ShadowClient | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight = InFlightLimit(workers)
        self._active = 0                    # shadows being worked on
        self._holding = 0                   # taken from the queue, waiting for a slot
        self._slot_free = asyncio.Event()

    def start(self) -> None:
        if self.owns_store:
            self.store.start()
        self._queue = asyncio.Queue(self.queue_size)
        self._client = ShadowClient(self.max_connections)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="shadow-compare")
        self._tasks = [asyncio.create_task(self._consume(i), name=f"shadow-{i}")
                       for i in range(self.workers)]
        self._tasks.append(asyncio.create_task(self._size_in_flight(), name="shadow-in-flight"))
        if self.shed_busy_share is not None:
            self._tasks.append(asyncio.create_task(
                saturation.watch(self.shed_busy_share, self._set_overloaded), name="shadow-load"))

    async def drain(self) -> None:
        """Wait until every queued exchange has been handled (tests, graceful shutdown)."""
        if self._queue is not None:
            await self._queue.join()

    async def close(self) -> None:
        """Stop at once: shadows still queued are dropped (and counted), never waited for."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        while self._queue is not None and not self._queue.empty():
            exchange = self._queue.get_nowait()
            self._held_bytes -= _size(exchange)
            self._drop(exchange.decision, "shutdown")
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown, wait=True)
        self._queue = None
        if self.owns_store:
            await asyncio.to_thread(self.store.close)

    async def __aenter__(self) -> "ShadowDispatcher":
        self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # ---- the ShadowSink contract: both return at once ------------------------------------
    def fill(self) -> float:
        """Share of the queue's bound in use (by count or by bytes held), 1.0 when stopped."""
        if self._queue is None:
            return 1.0
        return max(self._queue.qsize() / self.queue_size, self._held_bytes / self.queue_bytes)

    def admit(self, decision: Decision) -> bool:
        """Whether an exchange would be queued now; when not, it is counted as dropped, so the
        engine does not capture bodies for nothing."""
        if self._queue is None or self.overloaded or self._queue.full():
            self._drop(decision, "not-running" if self._queue is None
                       else "overload" if self.overloaded else "queue-full")
            return False
        return True

    def submit_capture(self, capture: Capture) -> None:
        """The engine's (or a worker's, via the shadow process) unparsed capture."""
        self.submit(capture.exchange())

    def submit(self, exchange: Exchange) -> None:
        labels = {"capability": exchange.decision.capability or "-"}
        if self._queue is None:
            self._drop(exchange.decision, "not-running")
            return
        if self.overloaded:
            self._drop(exchange.decision, "overload")
            return
        size = _size(exchange)
        if self._held_bytes + size > self.queue_bytes:
            self._drop(exchange.decision, "queue-full")
            return
        try:
            self._queue.put_nowait(exchange)
        except asyncio.QueueFull:
            self._drop(exchange.decision, "queue-full")
            return
        self._held_bytes += size
        self._in_flight.arrived()
        self.metrics.inc("strangler_shadow_submitted_total", labels)

    def skip(self, decision: Decision, reason: str) -> None:
        self.metrics.inc("strangler_shadow_skipped_total",
                         {"capability": decision.capability or "-", "reason": reason})
        self.store.count(decision.capability or "-", decision.route, f"skipped:{reason}")

    def _drop(self, decision: Decision, reason: str) -> None:
        self.metrics.inc("strangler_shadow_dropped_total",
                         {"capability": decision.capability or "-", "reason": reason})
        self.store.count(decision.capability or "-", decision.route, f"dropped:{reason}")

    def _error(self, decision: Decision, kind: str) -> None:
        self.metrics.inc("strangler_shadow_errors_total",
                         {"capability": decision.capability or "-", "kind": kind})
        self.store.count(decision.capability or "-", decision.route, f"error:{kind}")

    # ---- consumers -----------------------------------------------------------------------
    def _set_overloaded(self, saturated: bool) -> None:
        self.overloaded = saturated

    async def _size_in_flight(self) -> None:
        assert self._queue is not None
        last = time.monotonic()
        while True:
            await asyncio.sleep(IN_FLIGHT_WINDOW_S)
            now = time.monotonic()
            self._in_flight.update(now - last, self._queue.qsize() + self._holding)
            self._slot_free.set()           # the limit may have grown
            last = now

    async def _slot(self) -> None:
        """Wait until fewer shadows than the limit are being worked on, then take a place."""
        while self._active >= self._in_flight.limit:
            self._holding += 1
            self._slot_free.clear()
            try:
                await self._slot_free.wait()
            finally:
                self._holding -= 1
        self._active += 1

    async def _consume(self, index: int) -> None:
        """Consumer number `index` (from 0): it leaves the queue alone while the in-flight limit
        is `index` or less, and a shadow it took before the limit shrank waits for a place."""
        assert self._queue is not None
        while True:
            while index >= self._in_flight.limit:
                await asyncio.sleep(IN_FLIGHT_WINDOW_S)
            exchange = await self._queue.get()
            taken: float | None = None
            try:
                await self._slot()
                taken = time.monotonic()
                if self.overloaded:      # queued before the overload began: shed it too
                    self._drop(exchange.decision, "overload")
                    continue
                await self._shadow(exchange)
            except asyncio.CancelledError:
                if taken is None:        # closed while it waited for a place: count it
                    self._drop(exchange.decision, "shutdown")
                raise
            except Exception:  # contained: a shadow bug is counted and logged, never spreads
                log.exception("shadow: unexpected failure")
                self._error(exchange.decision, "internal")
            finally:
                if taken is not None:
                    self._active -= 1
                    self._slot_free.set()
                    self._in_flight.completed(time.monotonic() - taken)
                self._held_bytes -= _size(exchange)
                self._queue.task_done()

    async def _shadow(self, ex: Exchange) -> None:
        decision, plan = ex.decision, ex.decision.shadow
        if plan is None:
            return
        settings: ShadowSettings = plan.compare or _DEFAULT_SETTINGS
        if settings_problem(settings.compare) is not None:
            self._error(decision, "bad-compare-settings")
            return
        unsafe = ex.method.upper() not in SAFE_METHODS
        if unsafe and not (plan.dry_run and plan.target.honours_dry_run):
            self.skip(decision, "unsafe-method")
            return
        if len(ex.request_body) > plan.max_body_bytes:
            self.skip(decision, "body-too-large")
            return
        capability = decision.capability or "-"
        noise = not unsafe and self.noise.take(
            capability, self.store.kept_route(capability, decision.route), settings.noise_percent)
        reverse = decision.side == SERVICE
        legacy_backend = plan.target if reverse else decision.backend
        assert self._client is not None
        limits = {"limit": plan.max_body_bytes, "timeout_s": settings.timeout_s}
        first = replay(self._client, ex, plan.target, dry_run=plan.dry_run, **limits)
        if noise:
            results = await asyncio.gather(
                first, replay(self._client, ex, legacy_backend, dry_run=False, **limits),
                return_exceptions=True)
        else:   # the usual case: awaited in place, no task of its own to schedule
            try:
                results = [await first]
            except Exception as exc:
                results = [exc]
        shadow = results[0]
        if isinstance(shadow, BaseException):
            kind = error_kind(shadow)
            self._error(decision, kind)
            if kind == "timeout":
                self.store.record_latency(capability, decision.route, plan.target_side,
                                          settings.timeout_s, at=ex.started_at)
            return
        self.metrics.observe("strangler_shadow_latency_seconds",
                             {"capability": capability, "side": plan.target_side},
                             shadow.latency_s)
        second = results[1] if noise and not isinstance(results[1], BaseException) else None
        if noise and second is None:
            self._error(decision, "noise-" + error_kind(results[1]))
        primary = Replayed(Answer(ex.status, ex.response_headers, ex.response_body), ex.latency_s)
        legacy, service = (shadow, primary) if reverse else (primary, shadow)
        observe = partial(self._observe, ex, settings, legacy, service, second,
                          legacy_backend, plan.target if not reverse else decision.backend)
        bodies = (len(legacy.answer.body) + len(service.answer.body)
                  + (len(second.answer.body) if second is not None else 0))
        try:
            if bodies <= INLINE_COMPARE_BYTES:
                observation = observe()
            else:
                observation = await asyncio.get_running_loop().run_in_executor(
                    self._executor, observe)
        except Exception:
            log.exception("shadow: comparison failed for %s %s", ex.method, decision.route)
            self._error(decision, "compare")
            return
        self.store.record(observation)
        self.metrics.inc("strangler_shadow_compared_total", {"capability": capability})

    # ---- comparison (thread or loop) ---------------------------------------------------------
    def _observe(self, ex: Exchange, settings: ShadowSettings, legacy: Replayed,
                 service: Replayed, second: Replayed | None, legacy_backend: Backend,
                 service_backend: Backend) -> Observation:
        decision = ex.decision
        capability = decision.capability or "-"
        raw = diff_answers(legacy.answer, service.answer, settings.compare)
        noise = (diff_answers(legacy.answer, second.answer, settings.compare)
                 if second is not None else None)
        status_mismatch = any(d.kind == STATUS for d in raw)
        raw_fields = frozenset(d.path for d in raw if d.kind != STATUS)
        wanted = tuple(f for f in sorted(raw_fields | ({STATUS} if status_mismatch else set()))
                       if self.store.wants_sample(capability, decision.route, f))
        sample = None
        if wanted:
            sample = build_sample(ex, settings, legacy, service, raw, legacy_backend,
                                  service_backend)
        return Observation(
            capability=capability, route=decision.route, at=ex.started_at,
            status_mismatch=status_mismatch, raw_fields=raw_fields,
            noise_fields=(frozenset(d.path for d in noise if d.kind != STATUS)
                          if noise is not None else None),
            legacy_latency_s=legacy.latency_s, service_latency_s=service.latency_s,
            sample=sample, sample_fields=wanted)


def sink_factory(store_url: str | None = None, **options) -> Callable[[Metrics], ShadowSink]:
    """What the proxy runtime takes as `sink_factory`: picklable, so each worker process builds
    its own dispatcher and store writer (all writing to the one shared store).
    `options` are ShadowDispatcher's keyword arguments (queue_size, queue_bytes, workers,
    max_connections)."""
    return partial(_make_sink, store_url or default_store_url(), options)


def _make_sink(store_url: str, options: dict, metrics: Metrics) -> ShadowDispatcher:
    # Only in a worker process is the loop the proxy's alone, so its CPU share means overload.
    worker = multiprocessing.parent_process() is not None
    options = {"shed_busy_share": saturation.SHED_BUSY_SHARE if worker else None, **options}
    dispatcher = ShadowDispatcher(ShadowStore(store_url), metrics, owns_store=True, **options)
    dispatcher.start()
    return dispatcher


def _size(exchange: Exchange) -> int:
    return len(exchange.request_body) + len(exchange.response_body)


@lru_cache(maxsize=64)
def settings_problem(compare: CompareSettings) -> str | None:
    """Why these compare settings cannot work (said once in the log), or None.

    The rules check catches most mistakes; this keeps one that slips through from failing
    every comparison with a traceback each."""
    try:
        compile_paths(compare.ignore)
        compile_paths(compare.unordered_arrays)
        for pattern in compare.text_patterns:
            re.compile(pattern)
    except (ValueError, re.error) as exc:
        log.error("shadow: compare settings unusable, shadows not compared: %s", exc)
        return str(exc)
    return None
