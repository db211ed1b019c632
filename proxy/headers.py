"""Header rewriting between client and upstream, on raw bytes (the hot path builds no objects).

Follows RFC 9110 §7.6: hop-by-hop headers and every header named in `Connection` are removed
in both directions; `Via` is appended; `X-Forwarded-*` are set for the upstream, and incoming
ones are kept only when the peer is a configured trusted proxy. `traceparent`/`tracestate` pass
through untouched; `X-Request-Id` is generated when absent.
"""
from __future__ import annotations

import ipaddress
import os
from typing import Iterable

from proxy.settings import Network

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"transfer-encoding", b"upgrade", b"proxy-connection",
})
# Set by us for the upstream; the client's copies are dropped unless the peer is trusted.
FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"})
VIA = b"1.1 strangler"
REQUEST_ID = b"x-request-id"
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


def connection_tokens(headers: RawHeaders) -> set[bytes]:
    """Lower-case header names listed in `Connection` (they are hop-by-hop too)."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return tokens


def new_request_id() -> str:
    return os.urandom(16).hex()


def valid_request_id(value: bytes) -> bool:
    """Accept a client's id only if it is short and printable (it lands in logs)."""
    return 0 < len(value) <= MAX_REQUEST_ID and all(33 <= c < 127 for c in value)


def upstream_request_head(method: bytes, target: bytes, headers: RawHeaders, *, peer: str,
                          trusted: bool, strip: frozenset[bytes], upgrade: bytes | None,
                          framing: bytes, fallback_host: bytes, request_id: bytes) -> bytes:
    """The request head to send upstream, carrying `request_id` as X-Request-Id.

    `framing` is the body framing header line(s) the engine chose (b"" for no body).
    `upgrade` is the client's Upgrade value when the request asks for one (WebSocket).
    """
    named = connection_tokens(headers)
    out = [method, b" ", target, b" HTTP/1.1\r\n"]
    xff = proto = fhost = host = via = None
    for name, value in headers:
        lname = name.lower()
        if lname in HOP_BY_HOP or lname in named or lname in strip or lname == b"content-length":
            continue
        if lname in FORWARDED:
            if trusted:
                if lname == b"x-forwarded-for":
                    xff = value if xff is None else xff + b", " + value
                elif lname == b"x-forwarded-proto" and proto is None:
                    proto = value
                elif lname == b"x-forwarded-host" and fhost is None:
                    fhost = value
                elif lname == b"forwarded":
                    out += (name, b": ", value, b"\r\n")
            continue
        if lname == b"host":
            if host is not None:
                continue
            host = value
        elif lname == b"via":
            via = value if via is None else via + b", " + value
            continue
        elif lname == REQUEST_ID:
            continue
        out += (name, b": ", value, b"\r\n")
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


def client_response_head(version: bytes, status: int, reason: bytes, headers: RawHeaders, *,
                         framing: bytes, keep_alive: bool, upgrade: bool = False) -> bytes:
    """The response head for the client: hop-by-hop removed, our framing and Via added.

    `framing` is b"Content-Length: n\\r\\n", b"Transfer-Encoding: chunked\\r\\n" or b"".
    """
    named = connection_tokens(headers)
    out = [version, b" ", str(status).encode(), b" ", reason, b"\r\n"]
    via = None
    for name, value in headers:
        lname = name.lower()
        if lname in HOP_BY_HOP or lname in named or lname == b"content-length":
            if upgrade and lname == b"upgrade":
                out += (name, b": ", value, b"\r\n")
            continue
        if lname == b"via":
            via = value if via is None else via + b", " + value
            continue
        out += (name, b": ", value, b"\r\n")
    out += (b"Via: ", VIA if via is None else via + b", " + VIA, b"\r\n", framing)
    if upgrade:
        out.append(b"Connection: upgrade\r\n")
    elif not keep_alive:
        out.append(b"Connection: close\r\n")
    out.append(b"\r\n")
    return b"".join(out)


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
