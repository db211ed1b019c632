"""Keep-alive connection pools, one per backend per worker, with a hard size limit.

When a backend's pool is full, a request waits at most the backend's connect timeout for a
connection to come free and then gets 503: a slow backend cannot take every connection.
A pooled connection carries one exchange at a time; the exchange (`proxy.flight.Flight`)
receives the response parser's callbacks and the transport's flow-control signals.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import httptools

from proxy.decision import Backend


class PoolExhausted(Exception):
    """No connection came free within the connect timeout."""


class UpstreamConnection(asyncio.Protocol):
    __slots__ = ("pool", "transport", "parser", "flight", "tunnel", "closed", "reused",
                 "idle_since", "last_activity", "loop")

    def __init__(self, pool: "UpstreamPool") -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.flight: Any = None       # the Flight currently using this connection
        self.tunnel: Any = None       # the client connection, once upgraded (WebSocket)
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self.last_activity = 0.0

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.loop.time()
        if self.tunnel is not None:
            self.tunnel.transport.write(data)
            return
        flight = self.flight
        if flight is None or self.parser is None:
            self.abort()              # bytes nobody asked for: the connection is unusable
            return
        if flight.head_pending:
            flight.raw_head += data               # see Flight.on_headers_complete
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            flight.upstream_upgraded(data[exc.args[0]:])
        except httptools.HttpParserCallbackError:
            flight.upstream_stopped()
        except httptools.HttpParserError as exc:
            flight.upstream_failed("protocol", str(exc))

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.tunnel is not None:
            self.tunnel.transport.close()
            self.tunnel = None
        elif self.flight is not None:
            self.flight.upstream_lost()

    def pause_writing(self) -> None:
        # The upstream stopped reading what we send: its read timeout runs from here (the
        # client, paused meanwhile, is not blamed; see Flight.check_timeout).
        self.last_activity = self.loop.time()
        if self.flight is not None:
            self.flight.client.pause("upstream")
        elif self.tunnel is not None:
            self.tunnel.pause("upstream")

    def resume_writing(self) -> None:
        if self.flight is not None:
            self.flight.client.resume("upstream")
        elif self.tunnel is not None:
            self.tunnel.resume("upstream")

    # -- used by the engine -----------------------------------------------------------------
    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def abort(self) -> None:
        """Drop the connection at once (never reused: its framing state is unknown)."""
        self.flight = None
        if self.transport is not None and not self.closed:
            self.transport.abort()


class UpstreamPool:
    """Idle connections (most recently used first) and waiters for a free slot."""

    def __init__(self, backend: Backend, loop: asyncio.AbstractEventLoop) -> None:
        self.backend = backend
        self.loop = loop
        self.idle: deque[UpstreamConnection] = deque()
        self.size = 0                 # open or opening connections (idle + busy)
        self.waiters: deque[asyncio.Future] = deque()
        self.retired = False          # replaced by a reload: connections close when released
        self.host_header = f"{backend.host}:{backend.port}".encode()

    def try_acquire(self) -> UpstreamConnection | None:
        """An idle connection, without waiting (the fast path)."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    async def acquire(self, fresh: bool = False) -> UpstreamConnection:
        """An idle connection, a new one if the pool has room, or one freed within the timeout.

        `fresh` skips idle connections (after one turned out to be closed by the backend).
        """
        conn = None if fresh else self.try_acquire()
        if conn is not None:
            return conn
        timeout = self.backend.connect_timeout_s
        if self.size >= self.backend.max_connections:
            waiter = self.loop.create_future()
            self.waiters.append(waiter)
            try:
                conn = await asyncio.wait_for(waiter, timeout)
            except asyncio.TimeoutError:
                raise PoolExhausted(self.backend.name) from None
            except asyncio.CancelledError:
                # Handed a connection (or a free slot) just as the request was abandoned:
                # pass it on rather than leak it.
                if waiter.done() and not waiter.cancelled():
                    handed = waiter.result()
                    if handed is not None:
                        self.release(handed, True)
                    else:
                        self._wake()
                raise
            finally:
                if not waiter.done():
                    waiter.cancel()
                if waiter in self.waiters:        # timed out or abandoned: stop queueing
                    self.waiters.remove(waiter)
            if conn is not None and not fresh:
                return conn
            if conn is not None:
                conn.abort()
        self.size += 1
        try:
            _, conn = await asyncio.wait_for(self.loop.create_connection(
                lambda: UpstreamConnection(self), self.backend.host, self.backend.port), timeout)
        except BaseException:
            self.size -= 1
            self._wake()
            raise
        return conn

    def release(self, conn: UpstreamConnection, reuse: bool) -> None:
        conn.flight = None
        conn.parser = None
        if not reuse or self.retired or not conn.usable():
            conn.abort()
            return
        conn.reused = True
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = self.loop.time()
        self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        """A connection closed: free its slot for a waiter."""
        self.size -= 1
        try:
            self.idle.remove(conn)
        except ValueError:
            pass
        self._wake()

    def _wake(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)   # a slot is free: the waiter opens a connection
                return

    def close_idle(self, older_than: float | None = None) -> None:
        """Close idle connections (all, or those idle longer than `older_than` seconds)."""
        now = self.loop.time()
        for conn in list(self.idle):
            if older_than is None or now - conn.idle_since > older_than:
                self.idle.remove(conn)
                conn.abort()
