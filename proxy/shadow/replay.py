"""Replaying one captured request to a backend, off the client's path.

The copy carries the primary's headers (Host included, so both sides build the same absolute
URLs), `X-Strangler-Shadow: 1`, and `X-Strangler-Dry-Run: 1` for writes. The answer is read whole
up to a size limit; anything short of a comparable answer raises `ShadowError(kind)`.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from proxy.decision import Backend
from proxy.exchange import Exchange
from proxy.shadow.compare import Answer

DRY_RUN_HEADER = "X-Strangler-Dry-Run"
SHADOW_HEADER = "X-Strangler-Shadow"
# Framing and hop-by-hop headers the client session sets itself.
NOT_REPLAYED = frozenset({"content-length", "transfer-encoding", "connection", "expect",
                          "keep-alive", "te", "trailer", "upgrade", DRY_RUN_HEADER.lower()})


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


async def replay(session: aiohttp.ClientSession, ex: Exchange, backend: Backend, *,
                 limit: int, timeout_s: float, dry_run: bool) -> Replayed:
    headers = [(k, v) for k, v in ex.request_headers if k.lower() not in NOT_REPLAYED]
    headers.append((SHADOW_HEADER, "1"))
    if dry_run:
        headers.append((DRY_RUN_HEADER, "1"))
    started = time.perf_counter()
    try:
        async with session.request(
                ex.method, backend.url.rstrip("/") + ex.target, headers=headers,
                data=ex.request_body or None, allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            if (resp.content_length or 0) > limit:
                raise ShadowError("response-too-large")
            chunks, size = [], 0
            async for chunk in resp.content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise ShadowError("response-too-large")
                chunks.append(chunk)
            if dry_run and resp.headers.get(DRY_RUN_HEADER, "").lower() != "rolled-back":
                raise ShadowError("dry-run-not-honoured")
            answer = Answer(resp.status, tuple(resp.headers.items()), b"".join(chunks))
    except asyncio.TimeoutError:
        raise ShadowError("timeout") from None
    except aiohttp.ClientConnectionError:
        raise ShadowError("connect") from None
    except aiohttp.ClientError:
        raise ShadowError("protocol") from None
    return Replayed(answer, time.perf_counter() - started)


def error_kind(exc: BaseException) -> str:
    return exc.kind if isinstance(exc, ShadowError) else type(exc).__name__.lower()
