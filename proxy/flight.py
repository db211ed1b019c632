"""One client request on its way through the proxy: forward, relay the answer, fall back.

A Flight is created when a request head arrives and lives until the client has its answer.
It receives the upstream response parser's callbacks directly (no intermediate objects) and
writes bytes straight to the client transport, re-framing bodies as needed:
Content-Length bodies pass as they are; chunked or close-delimited bodies go out chunked to
HTTP/1.1 clients. Only bodies the strict llhttp parser validated are forwarded. A request body
up to `Limits.buffer_body_bytes` is read whole before an upstream connection is taken (a slow
upload must not hold a pooled connection); a larger one streams.

Fallback (the lead's rule): only GET/HEAD/OPTIONS routed to the service with a fallback
backend, and only before any response byte reached the client, are retried on legacy after a
connect error, timeout, 5xx or open breaker. Writes are never replayed anywhere.
"""
from __future__ import annotations

import asyncio
import json
import time
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

import httptools

from proxy.decision import SAFE_METHODS, Decision
from proxy.exchange import Capture
from proxy.headers import (STATUS_LINES, client_response_head, http_date_line,
                           split_response_headers, upstream_request_head,
                           valid_request_id)
from proxy.upstream import PoolExhausted, UpstreamConnection, UpstreamPool

if TYPE_CHECKING:
    from proxy.server import ClientConnection

FALLBACK_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
RETRY_METHODS = FALLBACK_METHODS            # a stale pooled connection may be retried once
NO_BODY, RAW, CHUNKED = 0, 1, 2
BUFFER_PAUSE = 256 * 1024                   # pause the client when this much waits for upstream
ERROR_STATUS = {
    "connect": 502, "connect-timeout": 504, "timeout": 504, "protocol": 502,
    "connection-lost": 502, "pool-full": 503, "breaker-open": 503, "routing": 500,
}
BREAKER_FAILURES = frozenset({"connect", "connect-timeout", "timeout", "protocol",
                              "connection-lost", "5xx"})
_LOWER_NAMES: dict[bytes, str] = {}         # raw header name -> lower-case str (per process)
NEVER = float("inf")
REASONS = {400: "Bad Request", 405: "Method Not Allowed", 408: "Request Timeout",
           413: "Content Too Large",
           431: "Request Header Fields Too Large", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


class _Stop(Exception):
    """Raised inside a response parser callback to stop parsing this response."""


ERROR_CODES = {400: "bad_request", 405: "method_not_allowed", 408: "request_timeout",
               413: "too_large", 431: "headers_too_large", 500: "internal", 502: "bad_gateway",
               503: "unavailable", 504: "gateway_timeout"}
# Upstream failures before the request could reach the backend: it cannot have been applied.
NOT_SENT = frozenset({"connect", "connect-timeout", "pool-full", "breaker-open", "routing"})


def canned_response(status: int, message: str, *, keep_alive: bool, request_id: bytes,
                    outcome: str | None = None) -> bytes:
    """The proxy's own answer (refusals, upstream errors), with Date and the request's id, in
    the apps' error shape (`{"error": {"code", "message"}}`, docs/catalog-api.md) so a client
    of the shop's API reads it like theirs. OUTCOME, for an upstream failure: "not_sent" (the
    backend never got the request) or "unknown" (it may have applied a write: check first)."""
    error = {"code": ERROR_CODES.get(status, "error"), "message": message,
             "request_id": request_id.decode("latin-1")}
    if outcome is not None:
        error["outcome"] = outcome
    body = json.dumps({"error": error}).encode() + b"\n"
    return (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n".encode() + http_date_line()
            + b"Content-Type: application/json\r\n"
            + b"Content-Length: %d\r\nX-Request-Id: %b\r\n" % (len(body), request_id)
            + (b"" if keep_alive else b"Connection: close\r\n") + b"\r\n" + body)


class Flight:
    # Defaults live on the class (immutable values only), so creating a Flight per request
    # sets just the few attributes below; everything else is assigned when it happens.
    method = ""
    method_b = b""
    version = "1.1"
    keep_alive = False
    lower: Mapping[str, str] = MappingProxyType({})
    upgrade: bytes | None = None
    host_problem = ""               # RFC 9112 §3.2: none or several Host headers -> 400
    content_length: int | None = None
    chunked = False
    head_done = False               # the head is parsed: later "headers" are trailers
    expect_continue = False
    head = b""
    buffered = 0
    body_len = 0
    body_done = False
    replay: list[bytearray] | None = None    # [one bytearray]: the body kept for a retry/shadow
    replay_len = 0
    replay_limit = 0
    canned: tuple[int, str] | None = None
    started = False
    finished = False
    t0 = 0.0
    t_whole = 0.0                   # perf_counter when the body's last byte came (and went on)
    decision: Decision | None = None
    backend: Any = None
    request_id = ""
    request_id_b = b""
    conn: UpstreamConnection | None = None
    acquiring: asyncio.Task | None = None
    deadline = NEVER                # the upstream's total timeout, from the body's last byte
    continued = False               # the upstream sent 100 Continue
    awaiting_body = False           # routed; reading the body whole before taking a connection
    own_continue = False            # we answered Expect: 100-continue ourselves
    fell_back = False
    fallback_reason = ""
    retried_stale = False
    status = 0
    upstream_status = 0
    head_sent = False
    resp_bytes = 0
    capture: list[bytes] | None = None
    capture_len = 0
    shadow_skip = ""
    error = ""
    stop_for_fallback = False
    interim = False
    out_mode = NO_BODY
    client_keep = False
    pending_out: bytes | None = None
    raw_head = b""                  # the upstream's bytes until its response head is complete
    head_pending = False
    resp_lines: list[bytes] = []    # the upstream's raw header lines (replaced, never appended)

    def __init__(self, client: "ClientConnection") -> None:
        self.client = client
        self.engine = client.engine
        self.loop = client.loop
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body_parts: list[bytearray] = []   # empty, or the one bytearray of a kept body

    # -- request side (called by ClientConnection) ----------------------------------------------
    def headers_complete(self, parser: httptools.HttpRequestParser) -> None:
        """Collect what routing and framing need from the (already validated) head."""
        self.method_b = parser.get_method()
        self.method = self.method_b.decode("ascii")
        self.version = parser.get_http_version()
        self.keep_alive = parser.should_keep_alive()
        lower: dict[str, str] = {}
        names = _LOWER_NAMES
        for name, value in self.headers:
            key = names.get(name)
            if key is None:
                key = name.decode("latin-1").lower()
                if len(names) < 4096:            # clients repeat the same few names
                    names[name] = key
            if key not in lower:
                lower[key] = value.decode("latin-1")
            elif key == "host":
                self.host_problem = "more than one Host header"
        self.lower = lower
        if "host" not in lower and self.version == "1.1":
            self.host_problem = "no Host header"
        cl = lower.get("content-length")
        self.content_length = int(cl) if cl is not None else None
        self.chunked = "transfer-encoding" in lower
        self.head_done = True       # llhttp reports a chunked body's trailers as headers too
        self.expect_continue = lower.get("expect", "").lower() == "100-continue"
        # WebSocket only: any other upgrade (h2c...) is forwarded as a plain request, since a
        # tunnel past this request would escape the rules for everything sent through it.
        if lower.get("upgrade", "").strip().lower() == "websocket" \
                and "upgrade" in lower.get("connection", "").lower():
            self.upgrade = b"websocket"
        if self.content_length is None and not self.chunked:
            self.body_done = True   # no body at all (the parser still calls message_complete)

    def client_body(self, data: bytes) -> None:
        # Bodies kept (buffered, queued, or for a replay) grow ONE bytearray each, never a list
        # of llhttp's pieces: a chunked body of 2-byte chunks would cost ~30x its payload in
        # bytes objects and list slots. Only a body streaming to a connection is not kept.
        self.body_len += len(data)
        replay = self.replay
        if replay is not None:
            self.replay_len += len(data)
            if self.replay_len > self.replay_limit:
                self.replay = None
            else:
                replay[0] += data
            if self.capture is not None and (self.replay is None or
                                             self.body_len > self.decision.shadow.max_body_bytes):
                self._skip_shadow("body-too-large")
        conn = self.conn
        if conn is not None:
            conn.transport.write(b"%x\r\n%b\r\n" % (len(data), data) if self.chunked else data)
            return
        parts = self.body_parts
        if parts:
            parts[0] += data                     # the one bytearray (see above)
        else:
            parts.append(bytearray(data))
        self.buffered += len(data)
        if self.awaiting_body:
            if self.buffered <= self.engine.limits.buffer_body_bytes:
                return                           # keep reading: the body may still fit
            # A chunked body outgrew the buffer: stream it from here, as an unbuffered one.
            self.awaiting_body = False
            self.dispatch(self.decision.backend)
            if self.conn is not None or self.finished:
                return
        if self.buffered > BUFFER_PAUSE:
            self.client.pause("buffer")

    def client_body_done(self) -> None:
        self.body_done = True
        # The backend's latency (the duration histogram) runs from here, not from the head:
        # a slow uploader's time is not the backend's. Bodiless requests use t0.
        self.t_whole = time.perf_counter()
        conn = self.conn
        if conn is not None:
            if self.chunked:
                conn.transport.write(b"0\r\n\r\n")
            # The request is forwarded whole: from now on the upstream's time to answer runs.
            now = conn.last_activity = self.loop.time()
            self.deadline = now + self.backend.total_timeout_s
        elif self.awaiting_body:
            self.awaiting_body = False           # buffered whole: now take a connection
            self.dispatch(self.decision.backend)

    # -- routing --------------------------------------------------------------------------------
    def start(self) -> None:
        """Our turn (pipelined requests are answered in order): decide and dispatch."""
        if self.canned is not None:
            status, message = self.canned
            self.respond_error(status, message, close=True)
            return
        self.started = True
        self.t0 = time.perf_counter()
        engine = self.engine
        state = self.state = engine.state
        path, _, query = self.target.partition(b"?")
        try:
            decision = state.table.decide(self.method, path.decode("latin-1"),
                                          query.decode("latin-1"), self.lower)
        except Exception:  # a rules bug must not take the worker down
            engine.log_exception("rule table decide() failed")
            self.respond_error(500, "routing failed; see the proxy log", close=not self.body_done)
            return
        self.decision = decision
        rid = self.lower.get("x-request-id")
        self.request_id = rid if rid and valid_request_id(rid) else engine.new_request_id()
        self.request_id_b = self.request_id.encode("latin-1")
        sink = engine.sink
        if sink is not None:
            if decision.shadow_skipped:
                sink.skip(decision, decision.shadow_skipped)
            # Asked before capturing a shadow's bodies: a sink that is shedding says no (and counts).
            if decision.shadow is not None and sink.admit(decision):
                self.capture = []
                self.replay_limit = decision.shadow.max_body_bytes
        if self.body_len or not self.body_done:   # bodiless requests are replayable as they are
            if self.method in RETRY_METHODS:
                self.replay_limit = max(self.replay_limit, engine.limits.replay_buffer_bytes)
            size = max(self.content_length or 0, self.body_len)
            if self.replay_limit and size <= self.replay_limit:
                # Keep the body for a retry/shadow, starting with what arrived while queued.
                self.replay = [bytearray().join(self.body_parts)]   # a copy: both grow
                self.replay_len = self.body_len
            if self.capture is not None and (self.replay is None
                                             or size > decision.shadow.max_body_bytes):
                self._skip_shadow("body-too-large")
            limit = engine.limits.buffer_body_bytes
            if limit and not self.body_done and size <= limit and self.upgrade is None:
                self.await_body(decision.backend)
                return
        self.dispatch(decision.backend)

    def await_body(self, backend: Any) -> None:
        """Read a body that fits `buffer_body_bytes` whole before taking an upstream connection
        (nginx's proxy_request_buffering): a slow upload then holds no pooled connection, and
        the upstream gets the request in one go. client_body_done (or a chunked body outgrowing
        the buffer) dispatches."""
        self.awaiting_body = True
        self.backend = backend                   # for the accounting, should it end here
        if self.expect_continue:
            # The client waits for a 100 before sending the body, and no upstream is asked
            # yet: answer it ourselves, and do not forward the Expect (the body comes whole).
            self.expect_continue = False
            self.own_continue = True
            if self.version == "1.1" and not self.body_len:
                self.client.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.engine.inflight.add(self)           # the sweep runs the client body timeout

    def dispatch(self, backend: Any, fresh: bool = False) -> None:
        self.backend = backend
        pool = self.state.pools.get(backend.name)
        if pool is None or pool.backend is not backend:
            pool = self.engine.pool_for(self.state, backend)
        breaker = self.state.breakers.get(backend.name)
        if breaker is not None and not breaker.allow():
            self.fail("breaker-open")
            return
        conn = None if fresh else pool.try_acquire()
        if conn is not None:
            self.send(conn)
        else:
            self.acquiring = self.loop.create_task(self._acquire(pool, fresh))

    async def _acquire(self, pool: UpstreamPool, fresh: bool) -> None:
        try:
            conn = await pool.acquire(fresh)
        except PoolExhausted:
            self.acquiring = None
            self.fail("pool-full")
            return
        except TimeoutError:
            self.acquiring = None
            self.fail("connect-timeout")
            return
        except OSError as exc:
            self.acquiring = None
            self.error = str(exc)
            self.fail("connect")
            return
        self.acquiring = None
        if self.finished:
            pool.release(conn, True)
            return
        self.send(conn)

    def send(self, conn: UpstreamConnection) -> None:
        self.conn = conn
        conn.flight = self
        conn.parser = httptools.HttpResponseParser(self)
        self.raw_head = b""
        self.head_pending = True
        self.interim = False
        if self.client.writing_paused:
            conn.transport.pause_reading()
        # A chunked body read whole (buffered, or while queued) goes with a Content-Length.
        chunked = self.chunked and not self.body_done
        if chunked:
            framing = b"Transfer-Encoding: chunked\r\n"
        elif self.content_length is not None:
            framing = b"Content-Length: %d\r\n" % self.content_length
        elif self.chunked:
            framing = b"Content-Length: %d\r\n" % self.body_len
        else:
            framing = b""
        headers = self.headers
        if self.own_continue:
            headers = [h for h in headers if h[0].lower() != b"expect"]
        self.head = upstream_request_head(
            self.method_b, self.target, headers, peer=self.client.peer,
            trusted=self.client.peer in self.state.trusted, strip=self.state.strip,
            upgrade=self.upgrade,
            framing=framing, fallback_host=conn.pool.host_header,
            request_id=self.request_id_b)
        body = self.replay if self.replay is not None else self.body_parts
        if body or chunked:
            parts = [self.head]
            if chunked:
                parts += [b"%x\r\n%b\r\n" % (len(p), p) for p in body if p]   # 0 would end it
            else:
                parts += body
            self.body_parts = []
            if self.buffered:
                self.buffered = 0
                self.client.resume("buffer")
            conn.transport.write(b"".join(parts))
        else:
            conn.transport.write(self.head)      # the common case: a bodiless request
        now = conn.last_activity = self.loop.time()
        # While the client is still sending the body the upstream's clocks do not run
        # (client_body_done starts them): a client's pause is not the upstream's slowness.
        self.deadline = now + self.backend.total_timeout_s if self.body_done else NEVER
        self.engine.inflight.add(self)           # the engine's timeout sweep watches it

    def check_timeout(self, now: float) -> None:
        """Called by the engine's sweep (every 100 ms): the upstream's read and total timeouts
        once the request is forwarded whole; before that, the client body timeout."""
        conn = self.conn
        if conn is None or self.finished:
            if self.awaiting_body and not self.finished and now - self.client.last_activity \
                    >= self.engine.limits.client_body_timeout_s:
                self.client_body_timed_out()     # buffering: the silence is the client's
            return
        client = self.client
        if client.half_closed and client.reset_by_peer():
            client.transport.abort()             # connection_lost follows: 499, upstream dropped
            return
        if client.writing_paused:
            # We stopped reading the upstream because the client does not read its answer:
            # that silence is the client's, and only the client send timeout runs.
            if now - client.write_paused_at >= self.engine.limits.client_send_timeout_s:
                self.client_send_timed_out()
            return
        if not self.body_done and not self.upstream_status:
            # Still uploading. Waiting on the upstream is the upstream's time (it stopped
            # reading the body and we paused the client, or the client awaits its 100
            # Continue); any other silence is the client's, counted from its last byte (or
            # from the upstream's last sign of life, which includes the forward itself).
            if "upstream" not in client.paused and (
                    not self.expect_continue or self.continued or self.body_len):
                if now - max(client.last_activity, conn.last_activity) \
                        >= self.engine.limits.client_body_timeout_s:
                    self.client_body_timed_out()
                return
        if now >= self.deadline or now - conn.last_activity >= self.backend.read_timeout_s:
            self.error = "upstream timed out"
            self.upstream_failed("timeout", "")

    def client_body_timed_out(self) -> None:
        """The client stopped sending its body: 408 (or a cut, if the upstream answered
        already) and close. Not an upstream error, a breaker failure or a reason to fall back."""
        self.error = "client body timeout"
        self.client.dead = True                  # parse nothing more from this client
        self.client_failed(408, "client body timeout: no request body bytes for "
                                f"{self.engine.limits.client_body_timeout_s:g} s")

    def client_send_timed_out(self) -> None:
        """The client read nothing of its answer for the send timeout: cut it (logged 499).
        Not an upstream error, a breaker failure or a reason to fall back; the upstream
        connection is closed (its answer is unfinished), not blamed."""
        self.error = ("client stopped reading its answer: nothing read for "
                      f"{self.engine.limits.client_send_timeout_s:g} s")
        client = self.client
        client.dead = True
        if self.capture is not None:
            self._skip_shadow("client-gone")
        self._release(False)
        self.status = 499
        self._done(keep_alive=False)
        client.transport.abort()

    # -- response side: httptools.HttpResponseParser callbacks ----------------------------------
    def on_headers_complete(self) -> None:
        # No on_header callbacks: the head's raw lines are cut from the bytes llhttp just
        # validated (UpstreamConnection collects them into raw_head), one split instead.
        raw = self.raw_head
        end = raw.find(b"\r\n\r\n")
        first = raw.find(b"\r\n")
        self.resp_lines = raw[first + 2:end].split(b"\r\n") if end > first else []
        status = self.conn.parser.get_status_code()
        if status < 200 and status != 101:
            # Interim answer (100 Continue, 103): relay to HTTP/1.1 clients, await the final one.
            self.interim = True
            if status == 100:
                self.continued = True
            self.raw_head = raw[end + 4:]
            if self.version == "1.1" and (status != 100 or self.expect_continue):
                self.client.transport.write(
                    (STATUS_LINES.get(status) or b"HTTP/1.1 %d Continue" % status) + b"\r\n\r\n")
            return
        self.head_pending = False
        self.raw_head = b""
        self.upstream_status = status
        if status == 101:
            return                               # the parser raises HttpParserUpgrade next
        breaker = self.state.breakers.get(self.backend.name)
        if status >= 500:
            self.engine.count_upstream_error(self.backend.name, "5xx")
            if breaker is not None:
                breaker.failure()
            if self.may_fall_back():
                self.stop_for_fallback = True
                raise _Stop
        elif breaker is not None:
            breaker.success()
        self.status = status
        parts, cl, te, via = split_response_headers(self.resp_lines)
        head_only = self.method == "HEAD"
        if head_only or status == 204 or status == 304:
            self.out_mode = NO_BODY
            framing = b"Content-Length: %b\r\n" % cl if cl is not None and status != 204 else b""
        elif cl is not None and not te:
            self.out_mode = RAW
            framing = b"Content-Length: %b\r\n" % cl
        elif self.version == "1.1":
            self.out_mode = CHUNKED
            framing = b"Transfer-Encoding: chunked\r\n"
        else:
            self.out_mode = RAW                  # HTTP/1.0 client: delimit by closing
            framing = b""
            self.keep_alive = False
        self.client_keep = keep = (self.keep_alive and self.body_done and self.upgrade is None
                                   and not self.engine.closing)
        self.pending_out = client_response_head(status, parts, via, framing=framing,
                                                keep_alive=keep, request_id=self.request_id_b)
        self.head_sent = True
        if head_only:
            self._finish(reuse=True)
            raise _Stop                          # llhttp cannot know a HEAD answer has no body

    def on_body(self, data: bytes) -> None:
        if self.capture is not None:
            self.capture_len += len(data)
            if self.capture_len > self.decision.shadow.max_body_bytes:
                self._skip_shadow("body-too-large")
            else:
                self.capture.append(data)
        self.resp_bytes += len(data)
        if self.out_mode == CHUNKED:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        if self.pending_out is not None:
            data = self.pending_out + data
            self.pending_out = None
        self.client.transport.write(data)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        if self.finished or self.upstream_status == 101:
            return
        self._finish(reuse=self.conn.parser.should_keep_alive())

    def _finish(self, reuse: bool) -> None:
        out = self.pending_out or b""
        if self.out_mode == CHUNKED:
            out += b"0\r\n\r\n"
        if out:
            self.client.transport.write(out)
        self.pending_out = None
        self._release(reuse and self.body_done)
        self._done(self.client_keep)

    # -- upstream trouble (called by UpstreamConnection) ----------------------------------------
    def upstream_upgraded(self, rest: bytes) -> None:
        """101 Switching Protocols: from now on both connections are a byte tunnel."""
        conn = self.conn
        if self.upstream_status != 101 or self.upgrade is None:
            self.upstream_failed("protocol", "unexpected upgrade")
            return
        self.engine.inflight.discard(self)
        self.status = 101
        parts, _, _, via = split_response_headers(self.resp_lines, upgrade=True)
        self.client.transport.write(client_response_head(
            101, parts, via, framing=b"", keep_alive=True, request_id=self.request_id_b,
            upgrade=True) + rest)
        self.conn = None
        conn.flight = None
        self._done(keep_alive=False, tunnel=conn)

    def upstream_stopped(self) -> None:
        """A parser callback raised: a HEAD answer is complete, or a 5xx is being replaced."""
        if self.finished:
            return
        if self.stop_for_fallback:
            self.stop_for_fallback = False
            self._release(False)
            self.fall_back("5xx")
        else:
            self.engine.log_exception("response relay failed")
            self.upstream_failed("protocol", "internal error")

    def upstream_lost(self) -> None:
        """The upstream closed the connection while we were using it."""
        if self.finished:
            return
        if self.head_sent and self.upstream_status and not self.has_length():
            self._finish(reuse=False)            # a close-delimited body ends here
            return
        self.upstream_failed("connection-lost", "upstream closed the connection")

    def has_length(self) -> bool:
        for line in self.resp_lines:
            lname = line.partition(b":")[0].lower()
            if lname == b"content-length" or lname == b"transfer-encoding":
                return True
        return False

    def upstream_failed(self, kind: str, detail: str) -> None:
        if self.finished:
            return
        if detail:
            self.error = detail
        if self.head_sent:
            # Part of the answer is with the client already: all we can do is cut it off.
            self.engine.count_upstream_error(self.backend.name, kind)
            breaker = self.state.breakers.get(self.backend.name)
            if breaker is not None:
                breaker.failure()
            if self.capture is not None:
                self._skip_shadow("upstream-error")
            self._release(False)
            self.status = self.status or 502
            self._done(keep_alive=False)
            self.client.transport.abort()
            return
        self.fail(kind)

    def fail(self, kind: str) -> None:
        """Nothing was sent to the client yet: retry, fall back, or answer with an error."""
        stale = (kind == "connection-lost" and self.conn is not None and self.conn.reused
                 and not self.upstream_status)
        self._release(False)
        if kind != "breaker-open" and kind != "pool-full":
            self.engine.count_upstream_error(self.backend.name, kind)
        if stale and not self.retried_stale and self.method in RETRY_METHODS and self.replayable():
            self.retried_stale = True            # a pooled connection the backend had closed
            self.dispatch(self.backend, fresh=True)
            return
        if kind in BREAKER_FAILURES:
            breaker = self.state.breakers.get(self.backend.name)
            if breaker is not None:
                breaker.failure()
        if self.may_fall_back():
            self.fall_back(kind)
            return
        self.error = self.error or kind
        outcome = "not_sent" if kind in NOT_SENT else "unknown"
        unsafe = outcome == "unknown" and self.method not in SAFE_METHODS
        self.respond_error(ERROR_STATUS.get(kind, 502), f"upstream {self.backend.name}: {kind}"
                           + ("; it may have been applied: check before retrying" if unsafe
                              else ""), close=not self.body_done, outcome=outcome)

    def replayable(self) -> bool:
        return self.replay is not None or (self.body_done and not self.body_len)

    def may_fall_back(self) -> bool:
        decision = self.decision
        return (not self.fell_back and decision.fallback is not None
                and self.method in FALLBACK_METHODS and self.backend is decision.backend
                and not self.head_sent and self.replayable())

    def fall_back(self, reason: str) -> None:
        decision = self.decision
        self.fell_back = True
        self.fallback_reason = reason
        self.upstream_status = 0
        self.engine.count_fallback(decision, reason)
        self.dispatch(decision.fallback)

    # -- endings --------------------------------------------------------------------------------
    def respond_error(self, status: int, message: str, close: bool,
                      outcome: str | None = None) -> None:
        self.status = status
        keep = (self.started and self.keep_alive and not close and not self.engine.closing
                and self.upgrade is None)
        if self.capture is not None:
            self._skip_shadow("error-answer")
        if not self.request_id_b:                 # refused before routing: no id chosen yet
            rid = self.lower.get("x-request-id")
            self.request_id = rid if rid and valid_request_id(rid) else self.engine.new_request_id()
            self.request_id_b = self.request_id.encode("latin-1")
        self.client.transport.write(canned_response(status, message, keep_alive=keep,
                                                    request_id=self.request_id_b,
                                                    outcome=outcome))
        self._done(keep)

    def client_failed(self, status: int, message: str) -> None:
        """The request turned out bad mid-body (bad chunk, too large): stop and answer."""
        if self.finished:
            return
        self._release(False)
        if self.head_sent:
            self.status = status
            self._done(keep_alive=False)
            self.client.transport.abort()
        else:
            self.respond_error(status, message, close=True)

    def client_gone(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self.acquiring is not None:
            self.acquiring.cancel()
        self._release(False)
        if self.started:
            self.status = 499                     # nginx's "client closed request"
            self.engine.record(self)

    def _release(self, reuse: bool) -> None:
        self.engine.inflight.discard(self)
        conn = self.conn
        if conn is not None:
            self.conn = None
            if self.client.writing_paused and conn.transport is not None:
                conn.transport.resume_reading()
            conn.pool.release(conn, reuse)

    def _done(self, keep_alive: bool, tunnel: UpstreamConnection | None = None) -> None:
        self.finished = True
        if self.started:
            self.engine.record(self)
            if self.capture is not None:
                if self.body_done and self.replay is not None or not self.body_len:
                    self.engine.sink.submit_capture(self.shadow_capture())
                else:
                    self._skip_shadow("body-incomplete")
        self.client.flight_done(self, keep_alive, tunnel)

    def _skip_shadow(self, reason: str) -> None:
        if not self.shadow_skip:
            self.shadow_skip = reason
            self.capture = None
            self.engine.sink.skip(self.decision, reason)

    def shadow_capture(self) -> Capture:
        latency = time.perf_counter() - self.t0
        return Capture(self.decision, self.method, self.target, self.head,
                       [bytes(part) for part in self.replay or ()],
                       self.status, self.resp_lines, self.capture or [], latency,
                       time.time() - latency)

    def wall_start(self) -> float:
        """time.time() when the request started (derived: one clock read per request)."""
        return time.time() - (time.perf_counter() - self.t0)
