"""Worker processes sharing the listen port (SO_REUSEPORT), and the supervisor's handles on them.

Each worker runs its own uvloop event loop, rule table, pools and breakers; the kernel spreads
connections across them. The supervisor (proxy.runtime) keeps one handle per worker: it
restarts a worker that died, tells workers to reload, and collects their counters once a
second over a pipe so the admin side can show totals. `LocalWorker` runs the same engine inside
the current process (tests, and `--workers 0` for debugging).
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.connection import Connection
from typing import Any

from proxy.access_log import AccessLog
from proxy.engine import Engine, SinkFactory
from proxy.metrics import Metrics
from proxy.reload import load_in_thread, problems_of
from proxy.server import ClientConnection
from proxy.settings import ProxySettings

log = logging.getLogger("strangler.proxy.workers")
REPORT_EVERY_S = 1.0
RELOAD_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 60.0


def listen_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


async def start_engine(settings: ProxySettings, table: Any, sink_factory: SinkFactory | None,
                       sock: socket.socket) -> tuple[Engine, asyncio.AbstractServer]:
    """The data path of one process: engine + listening server on `sock`."""
    loop = asyncio.get_running_loop()
    metrics = Metrics()
    access_log = AccessLog(settings.access_log) if settings.access_log else None
    sink = sink_factory(metrics) if sink_factory is not None else None
    engine = Engine(table, limits=settings.limits, trusted=settings.trusted_proxies,
                    metrics=metrics, access_log=access_log, sink=sink)
    sock.listen(1024)
    server = await loop.create_server(lambda: ClientConnection(engine), sock=sock, backlog=1024)
    return engine, server


async def stop_engine(engine: Engine, server: asyncio.AbstractServer, grace_s: float) -> None:
    """Stop accepting, let in-flight requests finish (up to `grace_s`), then close."""
    server.close()
    await engine.shutdown(grace_s)
    if engine.access_log is not None:
        engine.access_log.close()


def snapshot_of(engine: Engine) -> dict[str, Any]:
    engine.publish_gauges()
    return {"metrics": engine.metrics.snapshot(), "breakers": engine.breaker_states(),
            "version": engine.state.table.version, "connections": len(engine.connections)}


class LocalWorker:
    """The engine in this very process (no pipe, no restarts)."""

    def __init__(self, settings: ProxySettings, sink_factory: SinkFactory | None) -> None:
        self.settings = settings
        self.sink_factory = sink_factory
        self.engine: Engine | None = None
        self.server: asyncio.AbstractServer | None = None
        self.pid = os.getpid()
        self.restarts = 0

    async def start(self, table: Any) -> None:
        sock = listen_socket(self.settings.listen_host, self.settings.listen_port, False)
        self.engine, self.server = await start_engine(self.settings, table, self.sink_factory, sock)

    async def reload(self, table: Any) -> tuple[str, tuple[str, ...]]:
        self.engine.swap(table)
        return table.version, ()

    def snapshots(self) -> list[dict[str, Any]]:
        return [snapshot_of(self.engine)] if self.engine else []

    def info(self) -> dict[str, Any]:
        return {"pid": self.pid, "alive": True, "restarts": 0,
                "rules_version": self.engine.state.table.version if self.engine else None}

    async def stop(self, grace_s: float) -> None:
        if self.engine is not None:
            await stop_engine(self.engine, self.server, grace_s)


class ProcessWorker:
    """One worker process; restarted (with back-off) when it dies unexpectedly."""

    def __init__(self, index: int, settings: ProxySettings, sink_factory: SinkFactory | None) -> None:
        self.index = index
        self.settings = settings
        self.sink_factory = sink_factory
        self.process: multiprocessing.process.BaseProcess | None = None
        self.conn: Connection | None = None
        self.latest: dict[str, Any] | None = None
        self.retired: list[dict[str, Any]] = []   # counters of earlier incarnations
        self.restarts = 0
        self.stopping = False
        self.live = False                         # ready and not exited: it can take a reload
        self.reload_pending = False               # a reload came while it was (re)starting
        self.started_at = 0.0
        self._ready: asyncio.Future | None = None
        self._reload: asyncio.Future | None = None
        self._exited = asyncio.Event()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def start(self, table: Any = None) -> None:
        loop = asyncio.get_running_loop()
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self.process = self._process(ctx, child)
        self._ready = loop.create_future()
        self._exited = asyncio.Event()
        self.started_at = time.monotonic()
        self.process.start()
        child.close()
        self.conn = parent
        loop.add_reader(parent.fileno(), self._on_message)
        await asyncio.wait_for(self._ready, READY_TIMEOUT_S)

    def _process(self, ctx: Any, child: Connection) -> multiprocessing.process.BaseProcess:
        """The process to spawn; it talks to its supervisor over `child`."""
        return ctx.Process(target=worker_main, name=f"strangler-worker-{self.index}",
                           args=(self.settings, child, self.sink_factory), daemon=False)

    def _on_message(self) -> None:
        try:
            while self.conn.poll():
                kind, *payload = self.conn.recv()
                if kind == "ready" and not self._ready.done():
                    self.live = True
                    self._ready.set_result(None)
                    if self.reload_pending:       # it may have read the file before the save
                        self.reload_pending = False
                        self.conn.send(("reload",))
                elif kind == "failed" and not self._ready.done():
                    self._ready.set_exception(RuntimeError(payload[0]))
                elif kind == "metrics":
                    self.latest = payload[0]
                elif kind == "reloaded" and self._reload is not None and not self._reload.done():
                    self._reload.set_result((payload[0], tuple(payload[1])))
        except (EOFError, OSError):
            self._on_exit()

    def _on_exit(self) -> None:
        self.live = False
        loop = asyncio.get_running_loop()
        loop.remove_reader(self.conn.fileno())
        self.conn.close()
        if self.latest is not None:
            self.retired.append({"metrics": {**self.latest["metrics"], "gauges": []}})
            self.latest = None
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(RuntimeError("worker exited during start; see its log"))
        if self._reload is not None and not self._reload.done():
            self.reload_pending = True            # its restart loads the current rules
            self._reload.set_result(None)
        self._exited.set()
        if self.stopping:
            return
        uptime = time.monotonic() - self.started_at
        delay = 0.2 if uptime > 10 else min(10.0, 0.5 * 2 ** min(self.restarts, 5))
        self.restarts += 1
        log.error("%s (pid %s) died; restarting in %.1fs", self.process.name, self.pid, delay)
        loop.call_later(delay, lambda: loop.create_task(self._restart()))

    async def _restart(self) -> None:
        if self.stopping:
            return
        if self.process is not None:
            self.process.join(timeout=5)
        try:
            await self.start()
        except Exception as exc:
            log.error("worker %d failed to restart: %s", self.index, exc)

    async def reload(self, table: Any = None) -> tuple[str, tuple[str, ...]] | None:
        """Tell the worker to build the new table itself (off its loop) and swap it in.

        None when the worker is (re)starting: it loads the rule file as it starts, and once it
        is ready it is told to reload again, in case it read the file before this change."""
        if not self.live:
            self.reload_pending = True
            return None
        loop = asyncio.get_running_loop()
        self._reload = loop.create_future()
        try:
            self.conn.send(("reload",))
            return await asyncio.wait_for(self._reload, RELOAD_TIMEOUT_S)
        except OSError:                           # it died just now; the restart loads the rules
            self.reload_pending = True
            return None
        except asyncio.TimeoutError as exc:
            return "", (f"worker {self.index} did not reload: {exc!r}",)

    def snapshots(self) -> list[dict[str, Any]]:
        return self.retired + ([self.latest] if self.latest else [])

    def info(self) -> dict[str, Any]:
        alive = self.process is not None and self.process.is_alive()
        return {"pid": self.pid, "alive": alive, "restarting": not self.live and not self.stopping,
                "restarts": self.restarts,
                "rules_version": self.latest["version"] if self.latest else None}

    async def stop(self, grace_s: float) -> None:
        self.stopping = True
        if self.process is None or not self.process.is_alive():
            return
        self.process.terminate()                  # SIGTERM: graceful in the worker
        try:
            await asyncio.wait_for(self._exited.wait(), grace_s + 5)
        except asyncio.TimeoutError:
            self.process.kill()
        await asyncio.get_running_loop().run_in_executor(None, self.process.join, 5)


# -- inside the worker process ------------------------------------------------------------------

def worker_main(settings: ProxySettings, conn: Connection, sink_factory: SinkFactory | None) -> None:
    """Entry point of a spawned worker process."""
    import uvloop
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker[%(process)d] %(levelname)s %(message)s")
    signal.signal(signal.SIGHUP, signal.SIG_IGN)   # reloads come from the supervisor
    uvloop.run(_worker(settings, conn, sink_factory))


async def _worker(settings: ProxySettings, conn: Connection, sink_factory: SinkFactory | None) -> None:
    loop = asyncio.get_running_loop()
    try:
        table = await load_in_thread(settings.rules_path)
        sock = listen_socket(settings.listen_host, settings.listen_port, True)
        engine, server = await start_engine(settings, table, sink_factory, sock)
    except Exception as exc:
        conn.send(("failed", "; ".join(problems_of(exc))))
        return
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def reload() -> None:
        try:
            table = await load_in_thread(settings.rules_path)
        except Exception as exc:
            conn.send(("reloaded", engine.state.table.version, list(problems_of(exc))))
            return
        engine.swap(table)
        conn.send(("reloaded", table.version, []))

    def on_message() -> None:
        try:
            while conn.poll():
                kind, *_ = conn.recv()
                if kind == "reload":
                    loop.create_task(reload())
                elif kind == "stop":
                    stop.set()
        except (EOFError, OSError):
            stop.set()                            # the supervisor is gone: shut down

    async def report() -> None:
        while True:
            conn.send(("metrics", snapshot_of(engine)))
            await asyncio.sleep(REPORT_EVERY_S)

    loop.add_reader(conn.fileno(), on_message)
    conn.send(("ready", os.getpid()))
    reporter = loop.create_task(report())
    await stop.wait()
    await stop_engine(engine, server, settings.shutdown_grace_s)
    reporter.cancel()
    try:
        conn.send(("metrics", snapshot_of(engine)))
    except OSError:
        pass
