"""Header rewriting between client and upstream, on raw bytes (the hot path builds no objects).

Follows RFC 9110 §7.6: hop-by-hop headers and every header named in `Connection` are removed
in both directions; `Via` is appended; `X-Forwarded-*` are set for the upstream, and incoming
ones (and other client-address or URL-override headers front proxies set: X-Real-IP,
True-Client-IP, X-Original-URL...) are kept only when the peer is a configured trusted proxy. `traceparent`/`tracestate` pass
through untouched; `X-Request-Id` is generated when absent and echoed to the client.
"""
from __future__ import annotations

import ipaddress
import os
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Iterable

from proxy.settings import Network

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"transfer-encoding", b"upgrade", b"proxy-connection",
})
# Set by us for the upstream; the client's copies are dropped unless the peer is trusted.
FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded",
                       b"x-real-ip", b"true-client-ip", b"x-client-ip", b"cf-connecting-ip",
                       b"fastly-client-ip", b"x-cluster-client-ip", b"x-original-url",
                       b"x-rewrite-url", b"x-original-forwarded-for"})
ALWAYS_DROPPED = HOP_BY_HOP | {b"close", b""}
SIMPLE_CONNECTION = frozenset({b"keep-alive", b"close"})   # name nothing else: nothing to do
# First bytes of the response header names we act on (hop-by-hop, Content-Length, Via,
# X-Request-Id).
MAYBE_SPECIAL = frozenset(b"ckptuvxCKPTUVX")
VIA = b"1.1 strangler"
REQUEST_ID = b"x-request-id"
_DROP, _FORWARDED, _HOST, _VIA = "drop", "forwarded", "host", "via"
# What the request rewrite does with each header it treats specially (one dict lookup each).
_REQUEST_ACTIONS = {
    **{name: _DROP for name in HOP_BY_HOP}, b"content-length": _DROP, REQUEST_ID: _DROP,
    **{name: _FORWARDED for name in FORWARDED}, b"host": _HOST, b"via": _VIA,
}
MAX_REQUEST_ID = 200

RawHeaders = list[tuple[bytes, bytes]]


class TrustedProxies:
    """Is this peer allowed to tell us who the client was? Answers cached per address."""

    def __init__(self, networks: Iterable[Network]) -> None:
        self._networks = tuple(networks)
        self._cache: dict[str, bool] = {}

    def __contains__(self, peer: str) -> bool:
        known = self._cache.get(peer)
        if known is None:
            if not self._networks:
                known = False
            else:
                try:
                    addr = ipaddress.ip_address(peer)
                except ValueError:
                    addr = None
                known = addr is not None and any(addr in net for net in self._networks)
            if len(self._cache) < 10_000:
                self._cache[peer] = known
        return known


def connection_tokens(value: bytes) -> set[bytes]:
    """Lower-case header names listed in a `Connection` value (they are hop-by-hop too), less
    those dropped anyway (`Connection: keep-alive` is the common case: nothing more to do)."""
    return {t.strip().lower() for t in value.split(b",")} - ALWAYS_DROPPED


def _drop_named(out: list[bytes], named: set[bytes]) -> list[bytes]:
    """Remove the headers `Connection` listed (rare, so a second pass). `out` is a start line
    (4 items) followed by (name, b": ", value, b"\r\n") groups."""
    kept = out[:4]
    for i in range(4, len(out), 4):
        if out[i].lower() not in named:
            kept += out[i:i + 4]
    return kept


class RequestIds:
    """Request ids for requests that came without one: unique per process, cheap to make
    (a random per-process prefix and a counter; they need to be unique, not secret)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._next = 0

    def __call__(self) -> str:
        self._next += 1
        return f"{self._prefix}{self._next:016x}"


def valid_request_id(value: str) -> bool:
    """Accept a client's id only if it is short and printable (it lands in logs)."""
    return len(value) <= MAX_REQUEST_ID and value.isascii() and value.isprintable() \
        and " " not in value


def upstream_request_head(method: bytes, target: bytes, headers: RawHeaders, *, peer: str,
                          trusted: bool, strip: frozenset[bytes], upgrade: bytes | None,
                          framing: bytes, fallback_host: bytes, request_id: bytes) -> bytes:
    """The request head to send upstream, carrying `request_id` as X-Request-Id.

    `framing` is the body framing header line(s) the engine chose (b"" for no body).
    `upgrade` is the client's Upgrade value when the request asks for one (WebSocket).
    """
    out = [method, b" ", target, b" HTTP/1.1\r\n"]
    xff = proto = fhost = host = via = named = None
    for name, value in headers:
        lname = name.lower()
        action = _REQUEST_ACTIONS.get(lname)
        if action is None:                        # an ordinary header: passed on
            if lname not in strip:
                out += (name, b": ", value, b"\r\n")
        elif action is _DROP:
            if lname == b"connection":
                named = connection_tokens(value) | (named or set())
        elif action is _FORWARDED:
            if trusted:
                if lname == b"x-forwarded-for":
                    xff = value if xff is None else xff + b", " + value
                elif lname == b"x-forwarded-proto" and proto is None:
                    proto = value
                elif lname == b"x-forwarded-host" and fhost is None:
                    fhost = value
                elif lname not in (b"x-forwarded-proto", b"x-forwarded-host"):
                    out += (name, b": ", value, b"\r\n")     # Forwarded, X-Real-IP, ...
        elif action is _HOST:
            host = value
            out += (name, b": ", value, b"\r\n")
        elif action is _VIA:
            via = value if via is None else via + b", " + value
    if named:
        out = _drop_named(out, named)
        if host is not None and b"host" in named:
            host = None
    if host is None:
        host = fallback_host
        out += (b"Host: ", host, b"\r\n")
    peer_b = peer.encode()
    out += (
        b"X-Forwarded-For: ", peer_b if xff is None else xff + b", " + peer_b, b"\r\n",
        b"X-Forwarded-Proto: ", proto or b"http", b"\r\n",
        b"X-Forwarded-Host: ", fhost or host, b"\r\n",
        b"Via: ", VIA if via is None else via + b", " + VIA, b"\r\n",
        b"X-Request-Id: ", request_id, b"\r\n",
    )
    if upgrade is not None:
        out += (b"Connection: upgrade\r\nUpgrade: ", upgrade, b"\r\n")
    out += (framing, b"\r\n")
    return b"".join(out)


def split_response_headers(lines: list[bytes], upgrade: bool = False
                           ) -> tuple[list[bytes], bytes | None, bool, bytes | None]:
    """One pass over the upstream's raw header lines (`Name: value`, validated by llhttp):
    (lines kept as they are, Content-Length value, whether Transfer-Encoding was present,
    the upstream's Via). Hop-by-hop headers and those `Connection` names go."""
    out: list[bytes] = [b""]                     # the status line goes here
    cl = via = named = None
    te = False
    for line in lines:
        if line[0] not in MAYBE_SPECIAL:          # Date, Server, ETag, X-...: kept as they are
            out.append(line)
            continue
        name, _, value = line.partition(b":")
        lname = name.lower()
        if lname in HOP_BY_HOP or lname == b"content-length":
            if lname == b"content-length":
                cl = value.strip()
            elif lname == b"transfer-encoding":
                te = True
            elif lname == b"connection":
                if value.strip().lower() not in SIMPLE_CONNECTION:
                    named = connection_tokens(value) | (named or set())
            elif upgrade and lname == b"upgrade":
                out.append(line)
            continue
        if lname == b"via":
            via = value.strip() if via is None else via + b", " + value.strip()
            continue
        if lname == REQUEST_ID:
            continue                              # the client gets ours (the upstream's too)
        out.append(line)
    if named:
        named = named - {b"upgrade"} if upgrade else named
        out = out[:1] + [line for line in out[1:] if line.partition(b":")[0].lower() not in named]
    return out, cl, te, via


def client_response_head(status: int, lines: list[bytes], via: bytes | None, *, framing: bytes,
                         keep_alive: bool, request_id: bytes, upgrade: bool = False) -> bytes:
    """The response head for the client from `split_response_headers` lines, with our framing
    (b"Content-Length: n\r\n", b"Transfer-Encoding: chunked\r\n" or b""), Via, X-Request-Id
    and Connection. The reason phrase is the standard one (RFC 9112 §4: clients ignore it)."""
    lines[0] = STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown" % status
    lines.append(b"Via: " + (VIA if via is None else via + b", " + VIA))
    tail = b"\r\nX-Request-Id: " + request_id + b"\r\n" + framing
    if upgrade:
        tail += b"Connection: upgrade\r\n"
    elif not keep_alive:
        tail += b"Connection: close\r\n"
    return b"\r\n".join(lines) + tail + b"\r\n"


def header_pairs(lines: list[bytes]) -> tuple[tuple[str, str], ...]:
    """Raw header lines as (name, value) strings (shadow captures only, off the fast path)."""
    pairs = []
    for line in lines:
        name, _, value = line.partition(b":")
        pairs.append((name.decode("latin-1"), value.strip().decode("latin-1")))
    return tuple(pairs)


class HttpDate:
    """The `Date` header line for the proxy's own answers, formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._line


http_date_line = HttpDate()

STATUS_LINES = {s.value: b"HTTP/1.1 %d %b" % (s.value, s.phrase.encode()) for s in HTTPStatus}


def parse_head_headers(head: bytes) -> tuple[tuple[str, str], ...]:
    """Headers of a head we built, as strings (for shadow captures only, off the fast path)."""
    lines = head.split(b"\r\n")[1:]
    pairs = []
    for line in lines:
        if not line:
            break
        name, _, value = line.partition(b":")
        pairs.append((name.decode("latin-1"), value.strip().decode("latin-1")))
    return tuple(pairs)
