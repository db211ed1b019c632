"""The ShadowSink the forwarding engine feeds: queue, replay to the other side, compare, record.

Shadows never hurt the client: `submit` and `skip` only do `put_nowait` and counter updates;
when the bounded queue is full the exchange is dropped and counted. A fixed number of consumer
tasks replay exchanges through the dispatcher's OWN `aiohttp.ClientSession` (its own connector
and connection limit, `auto_decompress=False`, per-capability timeout), so a slow or dead shadow
target only ever ties up shadow connections. Comparison, redaction and sampling run in one
dedicated thread so large bodies do not stall the event loop that serves clients.

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
import json
import logging
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Callable

import aiohttp

from proxy.decision import SAFE_METHODS, SERVICE, Backend, Decision
from proxy.exchange import Exchange, ShadowSink
from proxy.metrics import Metrics
from proxy.shadow.compare import STATUS, Answer, FieldDiff, decoded_body, diff_answers
from proxy.shadow.noise import NoiseSampler
from proxy.shadow.redact import redact_body, redact_field, redact_headers, redact_text
from proxy.shadow.store import Observation, ShadowStore, default_store_url
from proxy.shadow_settings import ShadowSettings

log = logging.getLogger(__name__)

DRY_RUN_HEADER = "X-Strangler-Dry-Run"
SHADOW_HEADER = "X-Strangler-Shadow"
SAMPLE_BODY_CHARS = 16 * 1024
# Replayed as the primary got them (Host included, so both sides build the same absolute URLs),
# minus framing and hop-by-hop headers the client session sets itself.
_NOT_REPLAYED = frozenset({"content-length", "transfer-encoding", "connection",
                           "expect", "keep-alive", "te", "trailer", "upgrade",
                           DRY_RUN_HEADER.lower()})
_DEFAULT_SETTINGS = ShadowSettings()

DESCRIPTIONS = {
    "strangler_shadow_submitted_total": "Exchanges queued for shadowing.",
    "strangler_shadow_dropped_total": "Shadows dropped because the shadow queue was full.",
    "strangler_shadow_skipped_total": "Planned shadows not sent, by reason.",
    "strangler_shadow_compared_total": "Shadow answers compared.",
    "strangler_shadow_errors_total": "Shadows that failed (timeout, connect, compare...), by kind.",
}


class ShadowError(Exception):
    """A replay that produced no comparable answer; `kind` is what gets counted."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Replayed:
    answer: Answer
    latency_s: float


class ShadowDispatcher:
    """Implements proxy.exchange.ShadowSink. `start()` inside a running loop, `await close()`
    at shutdown; or `async with`. With `owns_store` it also starts and closes the store."""

    def __init__(self, store: ShadowStore, metrics: Metrics | None = None, *,
                 queue_size: int = 1024, workers: int = 4, max_connections: int = 32,
                 owns_store: bool = False) -> None:
        self.store = store
        self.owns_store = owns_store
        self.metrics = metrics if metrics is not None else Metrics()
        for name, text in DESCRIPTIONS.items():
            self.metrics.describe(name, text)
        self.queue_size = queue_size
        self.workers = workers
        self.max_connections = max_connections
        self.noise = NoiseSampler()
        self._queue: asyncio.Queue[Exchange] | None = None
        self._tasks: list[asyncio.Task] = []
        self._session: aiohttp.ClientSession | None = None
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        if self.owns_store:
            self.store.start()
        self._queue = asyncio.Queue(self.queue_size)
        connector = aiohttp.TCPConnector(limit=self.max_connections, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"))
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="shadow-compare")
        self._tasks = [asyncio.create_task(self._consume(), name=f"shadow-{i}")
                       for i in range(self.workers)]

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
            self._drop(self._queue.get_nowait().decision, "shutdown")
        if self._session is not None:
            await self._session.close()
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
    def submit(self, exchange: Exchange) -> None:
        labels = {"capability": exchange.decision.capability or "-"}
        if self._queue is None:
            self._drop(exchange.decision, "not-running")
            return
        try:
            self._queue.put_nowait(exchange)
        except asyncio.QueueFull:
            self._drop(exchange.decision, "queue-full")
            return
        self.metrics.inc("strangler_shadow_submitted_total", labels)

    def skip(self, decision: Decision, reason: str) -> None:
        self.metrics.inc("strangler_shadow_skipped_total",
                         {"capability": decision.capability or "-", "reason": reason})
        self.store.count(decision.capability or "-", decision.route, f"skipped:{reason}")

    def _drop(self, decision: Decision, reason: str) -> None:
        self.metrics.inc("strangler_shadow_dropped_total",
                         {"capability": decision.capability or "-", "reason": reason})
        self.store.count(decision.capability or "-", decision.route, "dropped")

    def _error(self, decision: Decision, kind: str) -> None:
        self.metrics.inc("strangler_shadow_errors_total",
                         {"capability": decision.capability or "-", "kind": kind})
        self.store.count(decision.capability or "-", decision.route, f"error:{kind}")

    # ---- consumers -----------------------------------------------------------------------
    async def _consume(self) -> None:
        assert self._queue is not None
        while True:
            exchange = await self._queue.get()
            try:
                await self._shadow(exchange)
            except asyncio.CancelledError:
                raise
            except Exception:  # contained: a shadow bug is counted and logged, never spreads
                log.exception("shadow: unexpected failure")
                self._error(exchange.decision, "internal")
            finally:
                self._queue.task_done()

    async def _shadow(self, ex: Exchange) -> None:
        decision, plan = ex.decision, ex.decision.shadow
        if plan is None:
            return
        settings: ShadowSettings = plan.compare or _DEFAULT_SETTINGS
        unsafe = ex.method.upper() not in SAFE_METHODS
        if unsafe and not (plan.dry_run and plan.target.honours_dry_run):
            self.skip(decision, "unsafe-method")
            return
        if len(ex.request_body) > plan.max_body_bytes:
            self.skip(decision, "body-too-large")
            return
        capability = decision.capability or "-"
        noise = not unsafe and self.noise.take(capability, decision.route,
                                               settings.noise_percent)
        reverse = decision.side == SERVICE
        legacy_backend = plan.target if reverse else decision.backend
        calls = [self._replay(ex, plan.target, plan.max_body_bytes, settings, plan.dry_run)]
        if noise:
            calls.append(self._replay(ex, legacy_backend, plan.max_body_bytes, settings, False))
        results = await asyncio.gather(*calls, return_exceptions=True)
        shadow = results[0]
        if isinstance(shadow, BaseException):
            self._error(decision, _error_kind(shadow))
            return
        second = results[1] if noise and not isinstance(results[1], BaseException) else None
        if noise and second is None:
            self._error(decision, "noise-" + _error_kind(results[1]))
        primary = Replayed(Answer(ex.status, ex.response_headers, ex.response_body), ex.latency_s)
        legacy, service = (shadow, primary) if reverse else (primary, shadow)
        loop = asyncio.get_running_loop()
        try:
            observation = await loop.run_in_executor(
                self._executor, self._observe, ex, settings, legacy, service, second,
                legacy_backend, plan.target if not reverse else decision.backend)
        except Exception:
            log.exception("shadow: comparison failed for %s %s", ex.method, decision.route)
            self._error(decision, "compare")
            return
        self.store.record(observation)
        self.metrics.inc("strangler_shadow_compared_total", {"capability": capability})

    async def _replay(self, ex: Exchange, backend: Backend, limit: int,
                      settings: ShadowSettings, dry_run: bool) -> Replayed:
        assert self._session is not None
        headers = [(k, v) for k, v in ex.request_headers if k.lower() not in _NOT_REPLAYED]
        headers.append((SHADOW_HEADER, "1"))
        if dry_run:
            headers.append((DRY_RUN_HEADER, "1"))
        started = time.perf_counter()
        try:
            async with self._session.request(
                    ex.method, backend.url.rstrip("/") + ex.target, headers=headers,
                    data=ex.request_body or None, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=settings.timeout_s)) as resp:
                if (resp.content_length or 0) > limit:
                    raise ShadowError("response-too-large")
                chunks, size = [], 0
                async for chunk in resp.content.iter_any():
                    size += len(chunk)
                    if size > limit:
                        raise ShadowError("response-too-large")
                    chunks.append(chunk)
                body = b"".join(chunks)
                if dry_run and resp.headers.get(DRY_RUN_HEADER, "").lower() != "rolled-back":
                    raise ShadowError("dry-run-not-honoured")
                answer = Answer(resp.status, tuple(resp.headers.items()), body)
        except asyncio.TimeoutError:
            raise ShadowError("timeout") from None
        except aiohttp.ClientConnectionError:
            raise ShadowError("connect") from None
        except aiohttp.ClientError:
            raise ShadowError("protocol") from None
        return Replayed(answer, time.perf_counter() - started)

    # ---- comparison thread ----------------------------------------------------------------
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
            sample = _sample(ex, settings, legacy, service, raw, legacy_backend, service_backend)
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
    `options` are ShadowDispatcher's keyword arguments (queue_size, workers, max_connections)."""
    return partial(_make_sink, store_url or default_store_url(), options)


def _make_sink(store_url: str, options: dict, metrics: Metrics) -> ShadowDispatcher:
    dispatcher = ShadowDispatcher(ShadowStore(store_url), metrics, owns_store=True, **options)
    dispatcher.start()
    return dispatcher


def _sample(ex: Exchange, settings: ShadowSettings, legacy: Replayed, service: Replayed,
            diffs: list[FieldDiff], legacy_backend: Backend, service_backend: Backend) -> str:
    """One request, both answers and the diffs, redacted, as JSON text for the store."""
    sensitive = frozenset(f.lower() for f in settings.sensitive_fields)
    req_headers = redact_headers(ex.request_headers, sensitive)
    req_body = redact_body(ex.request_body, sensitive, SAMPLE_BODY_CHARS)
    target = redact_text(ex.target, sensitive)
    dry_run = ex.decision.shadow is not None and ex.decision.shadow.dry_run

    def side(r: Replayed) -> dict:
        try:
            body = decoded_body(r.answer)
        except Exception:
            body = r.answer.body
        return {"status": r.answer.status,
                "headers": redact_headers(r.answer.headers, sensitive),
                "body": redact_body(body, sensitive, SAMPLE_BODY_CHARS),
                "latency_ms": round(r.latency_s * 1000, 3)}

    def curl(backend: Backend) -> str:
        parts = ["curl", "-sS", "-i", "-X", ex.method]
        for key, value in req_headers:
            if key.lower() not in _NOT_REPLAYED:
                parts += ["-H", f"{key}: {value}"]
        if dry_run or ex.method.upper() not in SAFE_METHODS:
            parts += ["-H", f"{DRY_RUN_HEADER}: 1"]
        if ex.request_body:
            parts += ["--data-binary", req_body]
        parts.append(backend.url.rstrip("/") + target)
        return " ".join(shlex.quote(p) for p in parts)

    return json.dumps({
        "at": ex.started_at, "method": ex.method, "target": target,
        "request_headers": req_headers, "request_body": req_body,
        "legacy": side(legacy), "service": side(service),
        "diffs": [{"path": d.path, "kind": d.kind,
                   "left": redact_field(d.path, d.left, sensitive),
                   "right": redact_field(d.path, d.right, sensitive)} for d in diffs],
        "curl": {"legacy": curl(legacy_backend), "service": curl(service_backend)},
    }, ensure_ascii=False, default=str)


def _error_kind(exc: BaseException) -> str:
    return exc.kind if isinstance(exc, ShadowError) else type(exc).__name__.lower()
