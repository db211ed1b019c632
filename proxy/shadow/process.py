"""The shadow process: one per proxy, next to the workers, running the ShadowDispatcher.

Replaying, comparing and storing shadows costs ~85 us of CPU each; on a worker's event loop that
is time its clients wait. So workers only batch exchanges (proxy.shadow.relay) and send them
over a unix socket to this process, which runs the dispatcher (replay, compare, store) on its
own loop. The supervisor keeps it like a worker (`ShadowProcess`, a ProcessWorker): restarted
when it dies, its counters collected once a second and merged into /metrics.
"""
from __future__ import annotations

import asyncio
import logging
import os
import pickle
import shutil
import signal
import tempfile
import time
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

from proxy.decision import Decision
from proxy.engine import SinkFactory
from proxy.exchange import Capture
from proxy.metrics import Metrics
from proxy.settings import ProxySettings
from proxy.shadow.dispatcher import ShadowDispatcher
from proxy.shadow.relay import ACCEPTING, FRAME, SHEDDING, make_relay_sink
from proxy.shadow.store import ShadowStore
from proxy.workers import REPORT_EVERY_S, ProcessWorker

log = logging.getLogger(__name__)
SOCKET_NAME = "shadow.sock"
SHADOW_NICENESS = 10
# Workers are told to shed once the dispatcher's queue is this full, and to send again once it
# is below RESUME_FILL (checked on every batch and every FILL_CHECK_S).
SHED_FILL, RESUME_FILL = 0.9, 0.5
FILL_CHECK_S = 0.02
CPU_METRIC = "strangler_shadow_process_cpu_seconds_total"
STORE_FAILURES_METRIC = "strangler_shadow_store_flush_failures_total"


class ShadowProcess(ProcessWorker):
    """The supervisor's handle on the shadow process, and the sink factory its workers use."""

    def __init__(self, settings: ProxySettings, store_url: str, **options: Any) -> None:
        super().__init__(0, settings, None)
        self.store_url = store_url
        self.options = options
        self.dir = tempfile.mkdtemp(prefix="strangler-shadow-")   # mode 0700: ours alone
        self.path = os.path.join(self.dir, SOCKET_NAME)
        # What the workers (not this process) build their sinks with.
        self.sink_factory: SinkFactory = partial(make_relay_sink, self.path)

    def _process(self, ctx: Any, child: Connection) -> Any:
        return ctx.Process(target=shadow_main, name="strangler-shadow",
                           args=(self.store_url, self.options, self.path, child), daemon=False)

    async def stop(self, grace_s: float) -> None:
        await super().stop(grace_s)
        shutil.rmtree(self.dir, ignore_errors=True)


_RECEIVERS: set["_Receiver"] = set()     # one per connected worker


class _Receiver(asyncio.Protocol):
    """Frames of pickled (captures, counts) batches from one worker, into the dispatcher."""

    def __init__(self, dispatcher: ShadowDispatcher) -> None:
        self.dispatcher = dispatcher
        self.buffer = bytearray()
        self.decisions: dict[int, Decision] = {}   # numbered by the worker (relay.RelaySink)
        self.transport: asyncio.Transport | None = None
        self.shedding = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        _RECEIVERS.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        _RECEIVERS.discard(self)

    def tell(self) -> None:
        """Tell the worker when it should start or stop shedding."""
        fill = self.dispatcher.fill()
        shedding = fill >= SHED_FILL if not self.shedding else fill >= RESUME_FILL
        if shedding != self.shedding and self.transport is not None:
            self.shedding = shedding
            self.transport.write(SHEDDING if shedding else ACCEPTING)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= FRAME.size:
            (size,) = FRAME.unpack_from(self.buffer)
            end = FRAME.size + size
            if len(self.buffer) < end:
                return
            reset, new, exchanges, counts = pickle.loads(self.buffer[FRAME.size:end])
            del self.buffer[:end]
            if reset:
                self.decisions.clear()
            self.decisions.update(new)
            for ref, *fields in exchanges:
                self.dispatcher.submit_capture(Capture(self.decisions[ref], *fields))
            store = self.dispatcher.store
            for (capability, route, name), amount in counts.items():
                store.count(capability, route, name, amount)
        self.tell()


def shadow_main(store_url: str, options: dict, path: str, conn: Connection) -> None:
    """Entry point of the spawned shadow process."""
    import uvloop
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s shadow[%(process)d] %(levelname)s %(message)s")
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # Clients first: when the workers want the CPUs this process has, the kernel gives them
    # (shadows fall behind, then are shed as the queue and the socket buffers fill).
    os.nice(SHADOW_NICENESS)
    uvloop.run(_serve(store_url, options, path, conn))


async def _serve(store_url: str, options: dict, path: str, conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    metrics = Metrics()
    dispatcher = ShadowDispatcher(ShadowStore(store_url), metrics, owns_store=True, **options)
    try:
        dispatcher.start()
        if os.path.exists(path):             # left by an earlier incarnation that died
            os.unlink(path)
        server = await loop.create_unix_server(lambda: _Receiver(dispatcher), path)
    except Exception as exc:
        conn.send(("failed", f"shadow process: {exc}"))
        return
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def on_message() -> None:
        try:
            while conn.poll():
                if conn.recv()[0] == "stop":
                    stop.set()
        except (EOFError, OSError):
            stop.set()                        # the supervisor is gone: shut down

    # What shadowing costs the proxy's host, next to strangler_shadow_compared_total.
    metrics.describe(CPU_METRIC, "CPU time of the shadow process (replay, compare, store).")
    metrics.describe(STORE_FAILURES_METRIC, "Flushes to the shadow results store that failed "
                     "(results wait in memory and are retried).")
    spent, failures = 0.0, 0

    async def report() -> None:
        nonlocal spent, failures
        while True:
            now = time.process_time()
            metrics.inc(CPU_METRIC, (), now - spent)
            spent = now
            metrics.inc(STORE_FAILURES_METRIC, (), dispatcher.store.failures - failures)
            failures = dispatcher.store.failures
            conn.send(("metrics", {"metrics": metrics.snapshot(), "version": None}))
            await asyncio.sleep(REPORT_EVERY_S)

    async def watch_fill() -> None:     # workers that shed send nothing: tell them when to resume
        while True:
            await asyncio.sleep(FILL_CHECK_S)
            for receiver in list(_RECEIVERS):
                receiver.tell()

    loop.add_reader(conn.fileno(), on_message)
    conn.send(("ready", os.getpid()))
    reporter = loop.create_task(report())
    watcher = loop.create_task(watch_fill())
    await stop.wait()
    server.close()
    await dispatcher.close()
    reporter.cancel()
    watcher.cancel()
    try:
        conn.send(("metrics", {"metrics": metrics.snapshot(), "version": None}))
    except OSError:
        pass
