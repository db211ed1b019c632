"""The proxy's runtime settings: parsed once at start (CLI or tests), never on the request path."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Limits:
    """What a client may send before it gets a 4xx instead of a forward."""
    max_header_bytes: int = 16 * 1024      # request line + header block -> 431
    max_headers: int = 100                 # header count -> 431
    max_body_bytes: int = 100 * 1024 * 1024  # request body -> 413
    keepalive_timeout_s: float = 75.0      # idle client connection is closed after this
    upstream_idle_s: float = 30.0          # pooled upstream connection idle longer is closed
    replay_buffer_bytes: int = 64 * 1024   # request bodies kept for a fallback retry (safe methods)
    client_body_timeout_s: float = 10.0    # client silent this long mid-body -> 408 (nginx's default)
    client_send_timeout_s: float = 60.0    # client reading none of its answer this long -> cut
                                           # (nginx's send_timeout); not the upstream's fault
    buffer_body_bytes: int = 64 * 1024     # bodies up to this are read whole before an upstream
                                           # connection is taken (0: stream every body)


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """Everything the runtime needs; `rules_path` is a file or a directory of *.yaml."""
    rules_path: Path
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    admin_host: str = "127.0.0.1"
    admin_port: int = 8081
    admin_token: str = ""
    admin_allow_remote: bool = False
    workers: int = 1
    trusted_proxies: tuple[Network, ...] = ()
    access_log: str | None = None          # a path, "-" for stdout, None for off
    limits: Limits = field(default_factory=Limits)
    reload_poll_s: float = 1.0             # rules file watch interval
    shutdown_grace_s: float = 30.0         # in-flight requests get this long on SIGTERM


def parse_networks(values: list[str] | tuple[str, ...]) -> tuple[Network, ...]:
    """CIDRs (or bare addresses) of proxies whose X-Forwarded-* headers are trusted."""
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)
