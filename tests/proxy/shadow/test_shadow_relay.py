"""The workers' relay sink and the shadow process's receiver over a real unix socket: captures
arrive whole with their decisions and are parsed there into the exchanges the worker saw (sent once each, numbered, renumbered past MAX_DECISIONS),
while the shadow process is down or its queue is full, shadows are dropped and counted in the
worker, before capture."""
from __future__ import annotations

import asyncio
import dataclasses
import time

from proxy.exchange import Capture, Exchange
from proxy.metrics import Metrics
from proxy.shadow import relay
from proxy.shadow.dispatcher import ShadowDispatcher
from proxy.shadow.process import _RECEIVERS, _Receiver
from proxy.shadow.relay import RelaySink
from proxy.shadow.saturation import BUSY_WINDOW_S
from proxy.shadow.store import ShadowStore
from tests.proxy.shadow.test_shadow_overload import exchange


def capture_of(ex: Exchange) -> Capture:
    """What a worker's flight hands over for `ex`: head bytes, header lines, body chunks."""
    head = (f"{ex.method} {ex.target} HTTP/1.1\r\n".encode()
            + b"".join(f"{name}: {value}\r\n".encode("latin-1")
                       for name, value in ex.request_headers) + b"\r\n")
    return Capture(ex.decision, ex.method, ex.target.encode(), head, [ex.request_body],
                   ex.status, [f"{n}: {v}".encode("latin-1") for n, v in ex.response_headers],
                   [ex.response_body[:1], ex.response_body[1:]], ex.latency_s, ex.started_at)


async def test_relay_delivers_exchanges_and_drops_while_the_shadow_process_is_down(
        tmp_path, monkeypatch):
    monkeypatch.setattr(relay, "MAX_DECISIONS", 2)
    store = ShadowStore(f"sqlite:///{tmp_path / 'shadow.sqlite3'}")
    # No consumers: what arrives stays queued, and five fill the queue.
    dispatcher = ShadowDispatcher(store, workers=0, queue_size=5)
    dispatcher.start()
    path = str(tmp_path / "shadow.sock")
    metrics = Metrics()
    sink = RelaySink(path, metrics)
    ex = exchange(tmp_path)
    server = None
    try:
        assert not sink.admit(ex.decision)
        sink.submit_capture(capture_of(ex))
        assert metrics.counter_value("strangler_shadow_dropped_total",
                                     {"capability": "catalog", "reason": "not-running"}) == 2

        server = await asyncio.get_running_loop().create_unix_server(
            lambda: _Receiver(dispatcher), path)
        deadline = time.monotonic() + 10
        while not sink.admit(ex.decision):       # it connects on its own
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        sent = [dataclasses.replace(ex, target=f"/items/{i}",
                                    request_headers=(("Host", "shop"), ("X-Request-Id", f"r{i}")),
                                    response_headers=(("Content-Type", "application/json"),),
                                    decision=dataclasses.replace(ex.decision, reason=f"r{i}"))
                for i in range(5)]
        for one in sent:
            sink.submit_capture(capture_of(one))
        sink.skip(ex.decision, "unsafe-method")
        submitted = {"capability": "catalog"}
        while dispatcher.metrics.counter_value("strangler_shadow_submitted_total", submitted) < 5:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        full = {"capability": "catalog", "reason": "queue-full"}
        while sink.admit(ex.decision):           # told the queue is full: sheds before capture
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert metrics.counter_value("strangler_shadow_dropped_total", full) == 1
        assert dispatcher._queue is not None
        assert [dispatcher._queue.get_nowait() for _ in sent] == sent
        for receiver in _RECEIVERS:              # the shadow process checks this periodically
            receiver.tell()
        while not sink.admit(ex.decision):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert metrics.counter_value("strangler_shadow_skipped_total",
                                     {"capability": "catalog", "reason": "unsafe-method"}) == 1
    finally:
        await sink.close()
        if server is not None:
            server.close()
        await dispatcher.close()
        store.engine.dispose()


async def test_a_worker_whose_loop_is_saturated_sheds_at_the_source_until_it_has_room(tmp_path):
    """The shadow process has room, yet a saturated worker drops its shadows (reason
    `overload`) before capturing them: its clients come first."""
    store = ShadowStore(f"sqlite:///{tmp_path / 'shadow.sqlite3'}")
    dispatcher = ShadowDispatcher(store, workers=0)
    dispatcher.start()
    path = str(tmp_path / "shadow.sock")
    server = await asyncio.get_running_loop().create_unix_server(
        lambda: _Receiver(dispatcher), path)
    metrics = Metrics()
    sink = RelaySink(path, metrics, shed_busy_share=0.05)  # low: this machine may be shared
    decision = exchange(tmp_path).decision
    overload = {"capability": "catalog", "reason": "overload"}
    try:
        deadline = time.monotonic() + 10
        while sink._transport is None:                 # it connects on its own
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        while sink.admit(decision):
            assert time.monotonic() < deadline, "the loop never counted as saturated"
            spin_until = time.thread_time() + 0.01     # the loop burns CPU, as under overload
            while time.thread_time() < spin_until:
                pass
            await asyncio.sleep(0)
        assert metrics.counter_value("strangler_shadow_dropped_total", overload) >= 1
        await asyncio.sleep(3 * BUSY_WINDOW_S)         # an idle loop: the overload is over
        assert sink.admit(decision)
    finally:
        await sink.close()
        server.close()
        await dispatcher.close()
        store.engine.dispose()
