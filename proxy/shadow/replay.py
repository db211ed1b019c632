"""Replaying one captured request to a backend, off the client's path.

The copy carries the primary's headers (Host included, so both sides build the same absolute
URLs), `X-Strangler-Shadow: 1`, and `X-Strangler-Dry-Run: 1` for writes. The answer is read whole
up to a size limit; anything short of a comparable answer raises `ShadowError(kind)`.

Why not aiohttp's client: shadow copies run on the worker's event loop, next to the clients'
requests, so their CPU is taken from the clients. One replay through an `aiohttp.ClientSession`
cost about 77 us of CPU, through the proxy's own keep-alive pools (`proxy.upstream`, httptools)
about 25 us (sequential replays of the benchmark's 500-byte answer from nginx); see
benchmarks/shadow_bench.py for what that does to client latency. `ShadowClient` keeps its pools
apart from the engine's, so a slow shadow target still only ties up shadow connections.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace

import httptools

from proxy.decision import Backend
from proxy.exchange import Exchange
from proxy.shadow.compare import Answer
from proxy.upstream import PoolExhausted, UpstreamConnection, UpstreamPool

DRY_RUN_HEADER = "X-Strangler-Dry-Run"
SHADOW_HEADER = "X-Strangler-Shadow"
# Framing and hop-by-hop headers the client sets itself.
NOT_REPLAYED = frozenset({"content-length", "transfer-encoding", "connection", "expect",
                          "keep-alive", "te", "trailer", "upgrade", DRY_RUN_HEADER.lower()})
BODILESS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "DELETE"})
# Replays past their deadline are failed by one sweep this often, not by a timer each: a timer
# armed and cancelled per replay (asyncio.timeout) cost ~3.7 us of the shadow process's ~40.
SWEEP_EVERY_S = 0.01


class ShadowError(Exception):
    """A replay that produced no comparable answer; `kind` is what gets counted."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Replayed:
    """An answer and how long it took (request start to last byte)."""
    answer: Answer
    latency_s: float


class ShadowClient:
    """Keep-alive pools for shadow copies, one per backend, at most `max_connections` each;
    and the replays in flight, failed with `timeout` once past their deadline."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self.loop = asyncio.get_running_loop()
        self._pools: dict[tuple[str, int], UpstreamPool] = {}
        self._calls: set[_Call] = set()
        self._sweep: asyncio.TimerHandle | None = None

    def track(self, call: "_Call") -> None:
        self._calls.add(call)
        if self._sweep is None:
            self._sweep = self.loop.call_later(SWEEP_EVERY_S, self._expire)

    def forget(self, call: "_Call") -> None:
        self._calls.discard(call)

    def _expire(self) -> None:
        now = self.loop.time()
        for call in [c for c in self._calls if c.deadline <= now]:
            self._calls.discard(call)
            call.expire()
        self._sweep = (self.loop.call_later(SWEEP_EVERY_S, self._expire) if self._calls
                       else None)

    def pool(self, backend: Backend) -> UpstreamPool:
        pool = self._pools.get((backend.host, backend.port))
        if pool is None:
            limit = min(backend.max_connections, self.max_connections)
            pool = UpstreamPool(replace(backend, max_connections=limit), self.loop)
            self._pools[(backend.host, backend.port)] = pool
        return pool

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for pool in self._pools.values():
            pool.retired = True           # busy connections close when released
            pool.close_idle()
        self._pools.clear()


class _Paused:
    """UpstreamConnection tells its exchange's client about upstream back-pressure; a shadow
    has no client, and its request is written whole at once."""

    def pause(self, reason: str) -> None:
        pass

    def resume(self, reason: str) -> None:
        pass


class _Call:
    """One replay on one pooled connection: the response parser's callbacks and the
    connection's signals (the interface proxy.upstream expects of the exchange it carries)."""
    __slots__ = ("conn", "head", "limit", "done", "deadline", "status", "headers", "chunks",
                 "size", "answered")
    head_pending = False      # only the engine's Flight keeps the raw response head
    client = _Paused()

    def __init__(self, conn: UpstreamConnection, head: bool, limit: int,
                 done: asyncio.Future, deadline: float) -> None:
        self.conn, self.head, self.limit, self.done = conn, head, limit, done
        self.deadline = deadline          # loop time
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.answered = False     # a byte of the answer arrived (else a lost reused
                                  # connection was simply stale and is worth a retry)

    # httptools.HttpResponseParser callbacks
    def on_message_begin(self) -> None:
        self.answered = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.done.done():
            return
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self.done.done():
            return
        self.status = self.conn.parser.get_status_code()
        if self.status < 200:         # interim (100 Continue...): the real answer follows
            self.headers = []
            return
        length = next((v for k, v in self.headers if k.lower() == "content-length"), None)
        if length is not None and length.isdigit() and int(length) > self.limit:
            self._end(ShadowError("response-too-large"), reuse=False)
        elif self.head:               # a HEAD answer has no body, whatever it announces
            self._end(None, reuse=False)

    def on_body(self, data: bytes) -> None:
        if self.done.done():
            return
        self.size += len(data)
        if self.size > self.limit:
            self._end(ShadowError("response-too-large"), reuse=False)
        else:
            self.chunks.append(data)

    def on_message_complete(self) -> None:
        if self.status >= 200 and not self.done.done():
            self._end(None, reuse=self.conn.parser.should_keep_alive())

    # UpstreamConnection's signals
    def upstream_lost(self) -> None:
        self._end(ShadowError("connect"), reuse=False)

    def upstream_failed(self, kind: str, detail: str) -> None:
        self._end(ShadowError("protocol"), reuse=False)

    def upstream_stopped(self) -> None:
        self._end(ShadowError("protocol"), reuse=False)

    def upstream_upgraded(self, rest: bytes) -> None:
        self._end(ShadowError("protocol"), reuse=False)

    def _end(self, error: ShadowError | None, reuse: bool) -> None:
        if self.done.done():
            return
        self.conn.pool.release(self.conn, reuse)
        if error is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(error)

    def abandon(self) -> None:
        """Timed out or cancelled: the connection's framing state is unknown, drop it."""
        if self.conn.flight is self:
            self.conn.pool.release(self.conn, False)

    def expire(self) -> None:
        """Past its deadline without a whole answer."""
        if not self.done.done():
            self.abandon()
            self.done.set_exception(ShadowError("timeout"))


def request_head(ex: Exchange, pool: UpstreamPool, dry_run: bool) -> bytes:
    lines = [f"{ex.method} {ex.target} HTTP/1.1"]
    host = False
    for name, value in ex.request_headers:
        lname = name.lower()
        if lname not in NOT_REPLAYED:
            lines.append(f"{name}: {value}")
            host = host or lname == "host"
    if not host:
        lines.append("Host: " + pool.host_header.decode())
    lines.append(f"{SHADOW_HEADER}: 1")
    if dry_run:
        lines.append(f"{DRY_RUN_HEADER}: 1")
    if ex.request_body or ex.method.upper() not in BODILESS:
        lines.append(f"Content-Length: {len(ex.request_body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "surrogateescape")


async def replay(client: ShadowClient, ex: Exchange, backend: Backend, *,
                 limit: int, timeout_s: float, dry_run: bool) -> Replayed:
    pool = client.pool(backend)
    head = request_head(ex, pool, dry_run)
    started = time.perf_counter()
    deadline = client.loop.time() + timeout_s
    try:
        for fresh in (False, True):
            call = await _send(client, pool, head + ex.request_body, ex.method, limit, fresh,
                               deadline)
            try:
                await call.done
            except ShadowError as exc:
                # A reused connection the backend had closed meanwhile: once more, fresh.
                stale = call.conn.reused and not call.answered
                if exc.kind == "connect" and stale and not fresh:
                    continue
                raise
            except BaseException:
                call.abandon()
                raise
            finally:
                client.forget(call)
            break
    except TimeoutError:            # no connection came free before the deadline
        raise ShadowError("timeout") from None
    except PoolExhausted:
        raise ShadowError("pool-full") from None
    except OSError:
        raise ShadowError("connect") from None
    if dry_run and next((v for k, v in call.headers if k.lower() == DRY_RUN_HEADER.lower()),
                        "").lower() != "rolled-back":
        raise ShadowError("dry-run-not-honoured")
    answer = Answer(call.status, tuple(call.headers), b"".join(call.chunks))
    return Replayed(answer, time.perf_counter() - started)


async def _send(client: ShadowClient, pool: UpstreamPool, payload: bytes, method: str,
                limit: int, fresh: bool, deadline: float) -> _Call:
    conn = None if fresh else pool.try_acquire()
    if conn is None:
        async with asyncio.timeout_at(deadline):
            conn = await pool.acquire(fresh)
    call = _Call(conn, method.upper() == "HEAD", limit, client.loop.create_future(), deadline)
    conn.flight = call
    conn.parser = httptools.HttpResponseParser(call)
    client.track(call)
    conn.transport.write(payload)
    return call


def error_kind(exc: BaseException) -> str:
    return exc.kind if isinstance(exc, ShadowError) else type(exc).__name__.lower()
