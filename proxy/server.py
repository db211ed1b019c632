"""The client side: one asyncio.Protocol per client connection, parsing with llhttp (strict).

Refused before anything is forwarded (answered, then the connection is closed):
absolute-form targets (400: not an open proxy), CONNECT (405), a head over the size limit or
with too many headers (431), a body over the limit (413), and anything llhttp rejects (400:
Content-Length with Transfer-Encoding, duplicate Content-Length, bad chunk sizes, ...).
Pipelined requests are answered strictly in order; while one is being answered the next is
only parsed, and reading pauses so a pipelining client cannot make us buffer without bound.
A connection closed before its request was read whole (a refusal, 408, an early answer) closes
lingering, like nginx: FIN first, then what the client still sends is read and discarded for a
while, so the kernel does not answer those bytes with a reset that can destroy our answer.
"""
from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import TYPE_CHECKING

import httptools

from proxy.flight import Flight
from proxy.upstream import UpstreamConnection

if TYPE_CHECKING:
    from proxy.engine import Engine

TCP_INFO = getattr(socket, "TCP_INFO", None)   # Linux: tcp_info's first byte is the TCP state
TCP_CLOSE = 7
LINGER_S = 5.0                  # lingering close: read and discard for at most this long...
LINGER_BYTES = 8 * 1024 * 1024  # ...or this many bytes, then close


class _Refused(Exception):
    """Raised inside a request parser callback to stop parsing; `ClientConnection.refusal` says why."""


class ClientConnection(asyncio.Protocol):
    __slots__ = ("engine", "loop", "limits", "transport", "parser", "peer", "flights",
                 "receiving", "head_bytes", "header_count", "paused", "writing_paused", "tunnel",
                 "refusal", "dead", "last_activity", "upgrade_flight", "upgrade_pending",
                 "half_closed", "refused", "lingering", "linger_left", "linger_timer",
                 "write_paused_at")

    def __init__(self, engine: "Engine") -> None:
        self.engine = engine
        self.loop = engine.loop
        self.limits = engine.limits
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.peer = ""
        self.flights: deque[Flight] = deque()   # [0] is being answered, the rest wait in order
        self.receiving: Flight | None = None     # the request whose bytes are arriving
        self.head_bytes = 0
        self.header_count = 0
        self.paused: set[str] = set()
        self.writing_paused = False
        self.write_paused_at = 0.0               # loop time writing last paused (send timeout)
        self.tunnel: UpstreamConnection | None = None
        self.refusal: tuple[int, str] = (400, "bad request")
        self.dead = False                        # no more requests are parsed on this connection
        self.last_activity = 0.0
        self.upgrade_flight: Flight | None = None
        self.upgrade_pending: list[bytes] = []
        self.half_closed = False                 # the client sent its FIN after a whole request
        self.refused = False                     # parsing stopped on a bad request
        self.lingering = False                   # answered, FIN sent: discarding what comes
        self.linger_left = 0
        self.linger_timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else "unknown"
        self.last_activity = self.loop.time()
        self.engine.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.loop.time()
        if self.tunnel is not None:
            self.tunnel.transport.write(data)
            return
        if self.dead:
            if self.upgrade_flight is not None:
                self.upgrade_pending.append(data)
            elif self.lingering:
                self.linger_left -= len(data)    # discarded
                if self.linger_left < 0:
                    self.transport.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # The request asked to switch protocols: what follows is not HTTP any more.
            self.dead = True
            self.pause("upgrade")
            self.upgrade_flight = self.flights[-1] if self.flights else None
            rest = data[exc.args[0]:]
            if rest:
                self.upgrade_pending.append(rest)
        except httptools.HttpParserCallbackError as exc:
            if self.transport.is_closing():
                return                           # we stopped parsing because we are closing
            if not isinstance(exc.__cause__ or exc.__context__, _Refused):
                self.engine.log_exception("request handling failed")
                self.refusal = (500, "internal error; see the proxy log")
            self._refuse(*self.refusal)
        except httptools.HttpParserError as exc:
            self._refuse(400, f"malformed request: {exc}; fix the client's HTTP framing")

    def eof_received(self) -> bool:
        """The client shut its sending side (FIN). After a complete request that is a legal
        half-close and the client still reads: stop parsing, answer every request received
        (the last with Connection: close), then close. In the middle of a request (or with
        nothing to answer) the client is gone: closing frees a slow upstream's slot at once
        and the request is logged as 499."""
        if self.lingering:
            return False                         # it read our answer and closes: so do we
        flight = self.receiving
        if not self.flights or flight is None or not flight.body_done or flight.finished \
                or self.tunnel is not None or self.upgrade_flight is not None:
            return False
        self.dead = True                         # flight_done closes after the last answer
        self.half_closed = True
        if not flight.head_sent:
            flight.keep_alive = False            # its answer says Connection: close
        return True

    def reset_by_peer(self) -> bool:
        """After a half-close nothing is read any more, so a client that then really goes away
        (a reset) would go unnoticed until its answer is written: ask the kernel. Called by the
        timeout sweep for half-closed clients only."""
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return False
        try:
            if TCP_INFO is not None:
                return sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, 1)[0] == TCP_CLOSE
            return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0
        except OSError:
            return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.engine.connections.discard(self)
        if self.linger_timer is not None:
            self.linger_timer.cancel()
            self.linger_timer = None
        for flight in self.flights:
            flight.client_gone()
        self.flights.clear()
        if self.tunnel is not None:
            self.tunnel.tunnel = None
            self.tunnel.transport.close()
            self.tunnel = None

    def pause_writing(self) -> None:
        """The client reads slower than the upstream sends: stop reading the upstream. While
        paused the client is the slow side: the upstream's read and total timeouts stop, the
        client send timeout runs (Flight.check_timeout)."""
        self.writing_paused = True
        self.write_paused_at = self.loop.time()
        upstream = self.tunnel or (self.flights[0].conn if self.flights else None)
        if upstream is not None and upstream.transport is not None:
            upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        flight = self.flights[0] if self.flights else None
        upstream = self.tunnel or (flight.conn if flight is not None else None)
        if upstream is not None and upstream.transport is not None:
            if flight is not None and upstream is flight.conn:
                # The upstream's clocks stood still while we did not read it.
                now = self.loop.time()
                flight.deadline += now - self.write_paused_at
                if upstream.last_activity < now:
                    upstream.last_activity = now
            upstream.transport.resume_reading()

    # -- flow control -----------------------------------------------------------------------
    def pause(self, reason: str) -> None:
        if not self.paused:
            self.transport.pause_reading()
        self.paused.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self.paused:
            self.paused.discard(reason)
            if not self.paused and not self.transport.is_closing():
                self.transport.resume_reading()
                # Idle time (client body timeout, keep-alive) counts only while we read.
                self.last_activity = self.loop.time()

    # -- httptools.HttpRequestParser callbacks ----------------------------------------------
    def on_message_begin(self) -> None:
        if self.transport.is_closing():
            raise _Refused                       # answered and closing: parse no further
        self.receiving = Flight(self)
        self.head_bytes = 0
        self.header_count = 0

    def on_url(self, url: bytes) -> None:
        self.receiving.target += url
        self.head_bytes += len(url)
        if self.head_bytes > self.limits.max_header_bytes:
            self._stop(431, "request line and headers too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        self.header_count += 1
        if self.head_bytes > self.limits.max_header_bytes:
            self._stop(431, f"header block over {self.limits.max_header_bytes} bytes")
        if self.header_count > self.limits.max_headers:
            self._stop(431, f"more than {self.limits.max_headers} headers")
        if self.receiving.head_done:
            return          # a chunked body's trailer: never forwarded, never a header
        self.receiving.headers.append((name, value))

    def on_headers_complete(self) -> None:
        flight = self.receiving
        flight.headers_complete(self.parser)
        if flight.method == "CONNECT":
            self._stop(405, "CONNECT is not supported: this is a reverse proxy, not a tunnel")
        target = flight.target
        if not target.startswith(b"/") and not (target == b"*" and flight.method == "OPTIONS"):
            self._stop(400, "absolute-form request targets are refused: this is not an open proxy;"
                            " send origin-form (GET /path HTTP/1.1)")
        if flight.host_problem:
            self._stop(400, f"{flight.host_problem}; an HTTP/1.1 request carries exactly one")
        if (flight.content_length or 0) > self.limits.max_body_bytes:
            self._stop(413, f"request body over {self.limits.max_body_bytes} bytes")
        self.flights.append(flight)
        if len(self.flights) == 1:
            flight.start()
        else:
            self.pause("pipeline")

    def on_body(self, body: bytes) -> None:
        flight = self.receiving
        if flight.body_len + len(body) > self.limits.max_body_bytes:
            self._stop(413, f"request body over {self.limits.max_body_bytes} bytes")
        if not flight.finished:
            flight.client_body(body)

    def on_message_complete(self) -> None:
        flight = self.receiving
        if not flight.finished and (flight.chunked or not flight.body_done):
            flight.client_body_done()            # (bodiless requests are done already)

    # -- engine side ------------------------------------------------------------------------
    def _stop(self, status: int, message: str) -> None:
        self.refusal = (status, message)
        raise _Refused

    def _refuse(self, status: int, message: str) -> None:
        """Answer a bad request in order, then close: nothing more is read from this client."""
        self.dead = True
        self.refused = True
        self.pause("dead")
        self.engine.count_refused(status)
        flight = self.receiving
        if flight is None or flight.finished:
            flight = Flight(self)
        if flight in self.flights:
            if flight.started:
                flight.client_failed(status, message)
                return
        else:
            self.flights.append(flight)
        flight.canned = (status, message)
        if self.flights[0] is flight:
            flight.start()

    def flight_done(self, flight: Flight, keep_alive: bool,
                    tunnel: UpstreamConnection | None = None) -> None:
        """A response is complete: go on with the next pipelined request, or close."""
        if self.flights and self.flights[0] is flight:
            self.flights.popleft()
        if tunnel is not None:
            self.tunnel = tunnel
            tunnel.tunnel = self
            if self.upgrade_pending:
                tunnel.transport.write(b"".join(self.upgrade_pending))
                self.upgrade_pending = []
            if self.writing_paused:
                tunnel.transport.pause_reading()
            self.paused.clear()
            self.transport.resume_reading()
            return
        if not keep_alive or (self.dead and not self.flights and self.upgrade_flight is None) \
                or (not self.flights and self.engine.closing):
            self.dead = True
            receiving = self.receiving
            if not self.half_closed and (self.refused or (receiving is not None
                                                          and not receiving.body_done)):
                self.linger()                    # answered before the request was read whole
            else:
                self.transport.close()
            return
        if self.upgrade_flight is flight:
            self.transport.close()               # the upgrade was declined: the rest is not HTTP
            return
        if self.flights:
            self.loop.call_soon(self._next)
        if self.paused and len(self.flights) <= 1:
            self.resume("pipeline")

    def linger(self) -> None:
        """Close after an answer sent while the client may still be sending (nginx's lingering
        close): closing with its bytes unread makes the kernel send a reset, which can destroy
        the answer before the client reads it (and fails the client's sends, so many clients
        never read it). Send our FIN once the answer is out, then read and discard until the
        client closes, LINGER_BYTES have come, or LINGER_S have passed."""
        transport = self.transport
        if transport.is_closing() or self.lingering:
            return
        self.lingering = True
        self.linger_left = LINGER_BYTES
        try:
            transport.write_eof()                # after the buffered answer
        except (OSError, RuntimeError, NotImplementedError):
            transport.close()
            return
        self.paused.clear()
        transport.resume_reading()
        self.linger_timer = self.loop.call_later(LINGER_S, transport.close)

    def _next(self) -> None:
        if self.flights and not self.flights[0].started and not self.flights[0].finished \
                and not self.transport.is_closing():
            self.flights[0].start()

    def close_if_idle(self, now: float, idle_s: float) -> None:
        if self.flights or self.tunnel is not None:
            return
        if now - self.last_activity >= idle_s:
            self.transport.close()
