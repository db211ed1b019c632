"""The proxy's wiring: one explicit, ordered list of parts, started in order, stopped in reverse.

    rules    load and validate the rule file(s); refuse to start on errors
    shadow   the shadow process (proxy.shadow.process), when shadows run apart from the workers
    workers  the data path: N processes on SO_REUSEPORT (or one engine in this process)
    admin    the admin API (status, reload, metrics) on its own loopback port
    watch    poll the rule files and reload on change
    gates    gate figures per capability; automatic rollback in canary (proxy.autorollback)

Reloads (file change, SIGHUP, POST /admin/reload) validate first; only a valid table is sent
to the workers, and an invalid one leaves the old table serving with the error visible.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import Any, Sequence

from aiohttp import web

from proxy.admin import make_admin_app
from proxy.autorollback import GateWatch
from proxy.engine import SinkFactory
from proxy.metrics import merge, render
from proxy.reload import LoadResult, RulesSource
from proxy.settings import ProxySettings
from proxy.workers import LocalWorker, ProcessWorker, listen_socket
from strangler.errors import OperatorError

log = logging.getLogger("strangler.proxy")


class Runtime:
    PARTS = ("rules", "shadow", "workers", "admin", "watch", "gates")

    def __init__(self, settings: ProxySettings, *, sink_factory: SinkFactory | None = None,
                 admin_routes: Sequence[web.RouteDef] = (), in_process: bool = False,
                 shadow_process: Any = None) -> None:
        """`sink_factory(metrics) -> ShadowSink` is called once per worker, inside its loop (it
        must be picklable for worker processes); a sink with `async close()` is closed at stop.
        `admin_routes` are mounted in the admin app behind its token. `shadow_process` (a
        proxy.shadow.process.ShadowProcess) is started before the workers and kept like one."""
        if not settings.admin_token:
            raise OperatorError("no admin token; pass --admin-token-file or set STRANGLER_ADMIN_TOKEN")
        self.settings = settings
        self.sink_factory = sink_factory
        self.admin_routes = tuple(admin_routes)
        self.shadow_process = shadow_process
        self.rules = RulesSource(settings.rules_path)
        if in_process:
            self.workers: list[Any] = [LocalWorker(settings, sink_factory)]
        else:
            self.workers = [ProcessWorker(i, settings, sink_factory)
                            for i in range(settings.workers)]
        self.started_at = time.time()
        self._admin: web.AppRunner | None = None
        self._watch: asyncio.Task | None = None
        self._started: list[str] = []
        self._reload_lock = asyncio.Lock()
        self.gates = GateWatch(self)

    # -- parts, in PARTS order ------------------------------------------------------------------
    async def start(self) -> None:
        try:
            for part in self.PARTS:
                await getattr(self, f"_start_{part}")()
                self._started.append(part)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for part in reversed(self._started):
            try:
                await getattr(self, f"_stop_{part}")()
            except Exception:
                log.exception("stopping %s failed", part)
        self._started = []

    async def _start_rules(self) -> None:
        result, _ = await self.rules.load()
        if not result.ok:
            raise OperatorError("the rules have errors, the proxy did not start:\n  "
                                + "\n  ".join(result.problems))

    async def _stop_rules(self) -> None:
        pass

    async def _start_shadow(self) -> None:
        if self.shadow_process is not None:
            try:
                await self.shadow_process.start()
            except RuntimeError as exc:
                raise OperatorError(f"the shadow process failed to start: {exc}") from None

    async def _stop_shadow(self) -> None:
        if self.shadow_process is not None:
            await self.shadow_process.stop(self.settings.shutdown_grace_s)

    async def _start_workers(self) -> None:
        s = self.settings
        try:
            if not isinstance(self.workers[0], LocalWorker):
                # Workers bind with SO_REUSEPORT, which would silently share the port with
                # another such process (a stale proxy): make sure nobody else has it first.
                listen_socket(s.listen_host, s.listen_port, reuse_port=False).close()
            try:
                await asyncio.gather(*(w.start(self.rules.table) for w in self.workers))
            except BaseException:
                await self._stop_workers()      # no orphans when one worker fails to start
                raise
        except OSError as exc:
            raise OperatorError(f"cannot listen on {self.settings.listen_host}:"
                                f"{self.settings.listen_port}: {exc.strerror}; pick another "
                                "--listen address") from None
        except RuntimeError as exc:
            raise OperatorError(f"a worker failed to start: {exc}") from None

    async def _stop_workers(self) -> None:
        await asyncio.gather(*(w.stop(self.settings.shutdown_grace_s) for w in self.workers))

    async def _start_admin(self) -> None:
        s = self.settings
        if not _loopback(s.admin_host) and not s.admin_allow_remote:
            raise OperatorError(f"refusing to bind the admin API to {s.admin_host}: it controls "
                                "the proxy; use a loopback address such as 127.0.0.1, or pass "
                                "--admin-allow-remote")
        self._admin = web.AppRunner(make_admin_app(self, s.admin_token, self.admin_routes), access_log=None)
        await self._admin.setup()
        try:
            await web.TCPSite(self._admin, s.admin_host, s.admin_port).start()
        except OSError as exc:
            raise OperatorError(f"cannot bind the admin API on {s.admin_host}:{s.admin_port}: "
                                f"{exc.strerror}; pick another --admin address") from None

    async def _stop_admin(self) -> None:
        if self._admin is not None:
            await self._admin.cleanup()

    async def _start_watch(self) -> None:
        self._watch = asyncio.get_running_loop().create_task(
            self.rules.watch(self.settings.reload_poll_s, lambda: self.reload("file-change")))

    async def _stop_watch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()

    async def _start_gates(self) -> None:
        await self.gates.start()

    async def _stop_gates(self) -> None:
        await self.gates.stop()

    # -- operations ------------------------------------------------------------------------------
    async def reload(self, trigger: str) -> LoadResult:
        """Validate the rule files; when valid, every worker swaps to the new table.
        One reload at a time (file watch, SIGHUP and the admin API may coincide)."""
        async with self._reload_lock:
            return await self._reload(trigger)

    async def _reload(self, trigger: str) -> LoadResult:
        result, table = await self.rules.load()
        if not result.ok:
            return result
        outcomes = await asyncio.gather(*(w.reload(table) for w in self.workers))
        # A worker that is (re)starting (None) loads the current rules as it comes up.
        restarting = tuple(i for i, o in enumerate(outcomes) if o is None)
        problems = tuple(p for o in outcomes if o is not None for p in o[1])
        if problems:
            self.rules.last_error = problems
            log.error("reload (%s): some workers kept their old rules: %s", trigger, problems)
            return LoadResult(False, result.version, problems, restarting)
        log.info("reload (%s): serving rules %s%s", trigger, result.version,
                 f" (workers {list(restarting)} restarting, they load it as they start)"
                 if restarting else "")
        return LoadResult(True, result.version, restarting=restarting)

    def merged_metrics(self):
        parts = self.workers + ([self.shadow_process] if self.shadow_process else [])
        merged = merge(s["metrics"] for w in parts for s in w.snapshots())
        for outcome, count in self.rules.reloads.items():
            merged.counters[("strangler_reloads_total", (("result", outcome),))] = count
        version = self.rules.table.version if self.rules.table else ""
        merged.gauges[("strangler_rules_info", (("version", version),))] = 1
        self.gates.publish(merged)
        return merged

    def metrics_text(self) -> str:
        return render(self.merged_metrics())

    def status(self) -> dict[str, Any]:
        metrics = self.merged_metrics()
        backends: dict[str, dict[str, Any]] = {}
        capabilities: dict[str, dict[str, Any]] = {}
        for (name, labels), value in metrics.counters.items():
            lab = dict(labels)
            if name == "strangler_requests_total":
                b = backends.setdefault(lab["backend"], {"requests": 0, "errors": 0})
                b["requests"] += value
                c = capabilities.setdefault(lab["capability"], {"requests": 0, "fallbacks": 0,
                                                                "by_side": {}})
                c["requests"] += value
                c["by_side"][lab["side"]] = c["by_side"].get(lab["side"], 0) + value
            elif name == "strangler_upstream_errors_total":
                backends.setdefault(lab["backend"], {"requests": 0, "errors": 0})["errors"] += value
            elif name == "strangler_fallbacks_total":
                capabilities.setdefault(lab["capability"], {"requests": 0, "fallbacks": 0,
                                                            "by_side": {}})["fallbacks"] += value
        breakers: dict[str, dict[str, int]] = {}
        for w in self.workers:
            for snap in w.snapshots()[-1:]:
                for backend, state in snap.get("breakers", {}).items():
                    per = breakers.setdefault(backend, {})
                    per[state] = per.get(state, 0) + 1
        rules = self.rules.status()
        for cap in rules.get("capabilities", []):
            live = capabilities.setdefault(cap["name"], {"requests": 0, "fallbacks": 0, "by_side": {}})
            live.update(stage=cap["stage"], percent=cap["percent"],
                        service_percent=cap.get("service_percent"))
        for name, per in breakers.items():   # breaker state -> number of workers in it
            backends.setdefault(name, {"requests": 0, "errors": 0})["breaker"] = per
        return {
            "rules": rules,
            "capabilities": capabilities,
            "backends": backends,
            "fallbacks": sum(c["fallbacks"] for c in capabilities.values()),
            "workers": [w.info() for w in self.workers],
            "shadow_process": self.shadow_process.info() if self.shadow_process else None,
            "started_at": self.started_at,
            "gates": self.gates.status(),
        }


def _loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: reachable from this host only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
