"""Replays against real servers on loopback: deadlines kept by the client's sweep (which stops
when nothing is in flight), connections dropped after a timeout and reused after an answer."""
from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from proxy.exchange import Exchange
from proxy.shadow.replay import SWEEP_EVERY_S, ShadowClient, ShadowError, replay
from tests.proxy.shadow.shadow_helpers import serve, stuck_target


def get(path: str) -> Exchange:
    return Exchange(None, "GET", path, (("Host", "shop.test"),), b"", 200, (), b"", 0.001,  # type: ignore[arg-type]
                    time.time())


async def test_a_replay_past_its_deadline_fails_with_timeout_and_drops_its_connection():
    client = ShadowClient(4)
    try:
        async with stuck_target() as stuck:
            started = time.monotonic()
            with pytest.raises(ShadowError) as failed:
                await replay(client, get("/slow"), stuck.backend, limit=1 << 20, timeout_s=0.2,
                             dry_run=False)
            waited = time.monotonic() - started
            assert failed.value.kind == "timeout"
            assert waited >= 0.2                      # never before its deadline
            assert stuck.held == ["/slow"]            # the request did reach the target
            pool = client.pool(stuck.backend)
            assert len(pool.idle) == 0 and pool.size == 0     # not reused: dropped
            assert client._calls == set() and client._sweep is None    # nothing left to sweep
    finally:
        client.close()


async def test_answered_replays_leave_nothing_to_sweep_and_reuse_their_connection():
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path})

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner, backend = await serve(app)
    client = ShadowClient(4)
    try:
        first = await replay(client, get("/a"), backend, limit=1 << 20, timeout_s=5,
                             dry_run=False)
        second = await replay(client, get("/b"), backend, limit=1 << 20, timeout_s=5,
                              dry_run=False)
        assert (first.answer.status, first.answer.body) == (200, b'{"path": "/a"}')
        assert second.answer.body == b'{"path": "/b"}'
        assert client._calls == set()
        assert client.pool(backend).size == 1         # one keep-alive connection, used twice
        await asyncio.sleep(SWEEP_EVERY_S * 3)
        assert client._sweep is None                   # idle: no sweep wakes the process
    finally:
        client.close()
        await runner.cleanup()
