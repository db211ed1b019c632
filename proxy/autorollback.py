"""The proxy's gate watcher: gate figures per capability, and automatic rollback during canary.

Runs in the supervisor (one per proxy process group), off the request path: every INTERVAL_S
it reads the workers' merged counters and keeps, per capability, the figures since its last
rollout change (stage, percent or backends moved), at most WINDOW_S. Those figures and the gate
verdict are in /admin/status (`gates`), which is what `strangler status` and `promote` read.

During canary with percent > 0, a `fail` verdict (a gate broken on at least min_requests
service requests; see operate.gates) makes the proxy set the percent to 0 through
operate.actions.set_percent with the rules version it serves as the expected version: if
another proxy already did it nothing is written (one history entry, no fight); if someone else
changed the rules, nothing is written and the new rules are judged afresh. It then reloads at
once; every other proxy watching the file follows within its poll interval. It never raises a
percent, and a rolled-back capability stays at 0 until an operator promotes it again.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from operate.gates import FAIL, Figures, GateVerdict, SideFigures, evaluate
from proxy.metrics import LATENCY_BUCKETS, Metrics

if TYPE_CHECKING:
    from proxy.runtime import Runtime

log = logging.getLogger("strangler.proxy.autorollback")
INTERVAL_S = 1.0
WINDOW_S = 300.0
SLOW_FIGURES_S = 5.0        # shadow match and CDC lag read databases: not more often than this
ROWS = len(LATENCY_BUCKETS) + 1
METRIC = "strangler_autorollback_total"
DEFAULT_ROUTE = "default"    # the capability label of requests no capability matched

Raw = dict[str, Any]        # side -> [requests, errors, latency row]; "fallbacks" -> n


class GateWatch:
    def __init__(self, runtime: "Runtime", *, interval_s: float = INTERVAL_S,
                 window_s: float = WINDOW_S) -> None:
        self.runtime = runtime
        self.interval_s = interval_s
        self.window_s = window_s
        self.shadow_store: str | None = None      # set by `strangler proxy` when shadowing
        self.who = f"proxy:{socket.gethostname()}:{os.getpid()}"
        self._samples: deque[tuple[float, dict[str, Raw]]] = deque()
        self._since: dict[str, tuple[tuple, float]] = {}   # cap -> (rollout key, since)
        self._figures: dict[str, Figures] = {}
        self._verdicts: dict[str, GateVerdict] = {}
        self._slow: dict[str, tuple[float, tuple[int, int], float | None]] = {}
        # cap -> (rollout change time, shadow counts then): what later counts start from
        self._shadow_base: dict[str, tuple[float, tuple[int, int]]] = {}
        self._tried: set[tuple[str, str]] = set()          # (capability, version) acted upon
        self.rollbacks: dict[tuple[str, str], int] = {}     # (capability, gate) -> count
        self.last_autorollback: dict[str, Any] | None = None
        self._judged_version: str | None = None     # the rules the figures were judged under
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.tick()
            except Exception:
                log.exception("gate watch: evaluation failed; retrying next interval")

    # -- one evaluation ----------------------------------------------------------------------
    async def tick(self, now: float | None = None) -> None:
        table = self.runtime.rules.table
        if table is None:
            return
        now = time.time() if now is None else now
        if not self._since:     # workers started with zero counts: traffic before the first
            self._samples.append((self.runtime.started_at, {}))      # tick counts too
        self._samples.append((now, _raw(self.runtime.merged_metrics(), table)))
        while self._samples and self._samples[0][0] < now - self.window_s - self.interval_s:
            self._samples.popleft()
        figures, verdicts = {}, {}
        for cap in table.capabilities:
            # A new step, or a new release behind the same name (its URL changed): the figures
            # of what served before are not this one's.
            key = (cap.stage, cap.percent, cap.legacy.name, cap.legacy.url,
                   cap.service and cap.service.name, cap.service and cap.service.url)
            prior = self._since.get(cap.name)
            if prior is None or prior[0] != key:
                first = prior is None and self._samples[0][1] == {}
                self._since[cap.name] = prior = (key, self._samples[0][0] if first else now)
                self._slow.pop(cap.name, None)     # shadow counts of the old step are stale
            start = max(prior[1], now - self.window_s)
            shadow, lag = await self._slow_figures(cap, prior[1], now)
            figures[cap.name] = _window(self._samples, cap.name, start, shadow, lag)
            verdicts[cap.name] = evaluate(cap.gates, figures[cap.name])
        # What no capability matches (checkouts, carts...): the default backend's last window,
        # so an outage there shows in `strangler status` too.
        figures[DEFAULT_ROUTE] = _window(self._samples, DEFAULT_ROUTE, now - self.window_s,
                                         (0, 0), None)
        self._figures, self._verdicts = figures, verdicts
        self._judged_version = table.version
        for cap in table.capabilities:
            if cap.stage == "canary" and cap.percent > 0 and verdicts[cap.name].state == FAIL \
                    and (cap.name, table.version) not in self._tried:
                self._tried.add((cap.name, table.version))
                await self._roll_back(cap.name, table.version, verdicts[cap.name],
                                      figures[cap.name])

    async def _slow_figures(self, cap: Any, changed_at: float,
                            now: float) -> tuple[tuple[int, int], float | None]:
        """(compared, matched) shadows since the rollout change at CHANGED_AT and the CDC lag,
        only for a canary whose gates need them, cached SLOW_FIGURES_S (each reads a database).

        The store counts in 5-minute buckets, so a window read alone would count comparisons of
        the previous step too (an operator saw a rollback judged on them): the counts found at
        the first reading after the change are subtracted from every later one."""
        if cap.stage != "canary" or (cap.gates.min_shadow_match is None
                                     and cap.gates.max_cdc_lag_s is None):
            return (0, 0), None
        cached = self._slow.get(cap.name)
        if cached is not None and now - cached[0] < SLOW_FIGURES_S:
            return cached[1], cached[2]
        shadow, lag = (0, 0), None
        if cap.gates.min_shadow_match is not None and self.shadow_store:
            total = await asyncio.to_thread(shadow_counts, self.shadow_store, cap.name,
                                            now - changed_at, now)
            base = self._shadow_base.get(cap.name)
            if base is None or base[0] != changed_at:
                base = self._shadow_base[cap.name] = (changed_at, total)
            shadow = (max(0, total[0] - base[1][0]), max(0, total[1] - base[1][1]))
        if cap.gates.max_cdc_lag_s is not None:
            from operate.status import cdc_lag_s      # the CDC side loads only when gated on
            lag = await asyncio.to_thread(cdc_lag_s, cap)
        self._slow[cap.name] = (now, shadow, lag)
        return shadow, lag

    async def _roll_back(self, capability: str, version: str, verdict: GateVerdict,
                         figures: Figures) -> None:
        from operate.actions import set_percent      # rule editing loads only when needed
        from operate.rule_edit import RulesChanged
        from strangler.errors import OperatorError
        gates = verdict.failed_gates
        why = (f"automatic rollback: {'; '.join(verdict.reasons)} "
               f"(window {figures.window_s:.0f} s)")
        try:
            change = await asyncio.to_thread(set_percent, self.runtime.settings.rules_path,
                                             capability, 0, self.who, why, version)
        except RulesChanged:
            log.info("gate watch: %s failed its gates but the rules changed meanwhile; "
                     "judging the new rules", capability)
            return
        except OperatorError as exc:
            log.error("gate watch: %s failed its gates (%s) but the rollback could not be "
                      "written: %s", capability, why, exc)
            return
        if not change.changed:
            log.info("gate watch: %s already rolled back (by another proxy)", capability)
            return
        for gate in gates:
            self.rollbacks[(capability, gate)] = self.rollbacks.get((capability, gate), 0) + 1
        self.last_autorollback = {"capability": capability, "gates": gates,
                                  "reasons": verdict.reasons, "at": time.time(),
                                  "who": self.who, "history_id": change.entry_id,
                                  "rules_before": change.before, "rules_after": change.after,
                                  "figures": figures.as_dict()}
        log.warning("autorollback %s", json.dumps(
            {"event": "autorollback", "capability": capability, "gates": gates,
             "reasons": verdict.reasons, "who": self.who, "history_id": change.entry_id,
             "rules": [change.before, change.after]}))
        await self.runtime.reload("autorollback")

    # -- what the admin API shows ------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {"interval_s": self.interval_s, "window_s": self.window_s,
                "rules_version": self._judged_version,
                "capabilities": {name: {"since": self._since[name][1],
                                        "figures": f.as_dict(),
                                        "verdict": self._verdicts[name].as_dict()}
                                 for name, f in self._figures.items() if name != DEFAULT_ROUTE},
                "default": (self._figures[DEFAULT_ROUTE].as_dict()
                            if DEFAULT_ROUTE in self._figures else None),
                "last_autorollback": self.last_autorollback}

    def publish(self, metrics: Metrics) -> None:
        """Add strangler_autorollback_total to a merged metrics view."""
        metrics.describe(METRIC, "Automatic rollbacks this proxy took, by capability and gate.")
        for (capability, gate), count in self.rollbacks.items():
            metrics.counters[(METRIC, (("capability", capability), ("gate", gate)))] = count


def shadow_counts(store_url: str, capability: str, since_s: float,
                  now: float | None = None) -> tuple[int, int]:
    """(tried, matched) for CAPABILITY over the last SINCE_S (from the start of the store's
    bucket holding that time) from the shadow results store, judged by the shadow report's
    own rules (noise-aware; a failed shadow is tried and not matched)."""
    from proxy.shadow.report import build_report
    from proxy.shadow.store import ShadowStore
    store = ShadowStore(store_url)
    try:
        report = build_report(store, capability=capability, since_s=since_s, now=now)
    except Exception:
        log.warning("gate watch: shadow store unreadable; the shadow gate waits", exc_info=True)
        return 0, 0
    finally:
        store.engine.dispose()
    caps = [c for c in report["capabilities"] if c["name"] == capability]
    return (caps[0]["compared"] + caps[0]["failed"], caps[0]["matched"]) if caps else (0, 0)


def _raw(metrics: Metrics, table: Any) -> dict[str, Raw]:
    """Cumulative per-capability counts from the merged worker metrics (service failures that
    legacy covered by a fallback count as service requests and errors, not legacy ones)."""
    sides: dict[str, dict[str, str]] = {DEFAULT_ROUTE: {table.default.name: "legacy"}}
    out: dict[str, Raw] = {DEFAULT_ROUTE: {"legacy": [0, 0, [0.0] * ROWS],
                                           "service": [0, 0, [0.0] * ROWS], "fallbacks": 0}}
    for cap in table.capabilities:
        sides[cap.name] = {cap.legacy.name: "legacy"}
        if cap.service is not None:
            sides[cap.name][cap.service.name] = "service"
        out[cap.name] = {"legacy": [0, 0, [0.0] * ROWS], "service": [0, 0, [0.0] * ROWS],
                         "fallbacks": 0}
    for (name, labels), value in metrics.counters.items():
        if name == "strangler_requests_total":
            lab = dict(labels)
            raw = out.get(lab.get("capability", ""))
            side = lab.get("side")
            if side in ("default", "none"):     # the default backend's: legacy's side of things
                side = "legacy"
            if raw is None or side not in ("legacy", "service"):
                continue
            row = raw[side]
            row[0] += value
            if lab.get("status", "").startswith("5"):
                row[1] += value
        elif name == "strangler_fallbacks_total":
            raw = out.get(dict(labels).get("capability", ""))
            if raw is not None:
                raw["fallbacks"] += value
    for (name, labels), hist in metrics.histograms.items():
        if name != "strangler_request_duration_seconds":
            continue
        lab = dict(labels)
        side = sides.get(lab.get("capability", ""), {}).get(lab.get("backend", ""))
        if side is not None:
            row = out[lab["capability"]][side][2]
            for i in range(ROWS):
                row[i] += hist[i]
    return out


def _window(samples: deque, capability: str, start: float, shadow: tuple[int, int],
            lag: float | None) -> Figures:
    """Figures between the first sample at or after START and the newest one."""
    newest_t, newest = samples[-1]
    base_t, base = next(((t, s) for t, s in samples if t >= start), (newest_t, newest))
    now, then = newest.get(capability), base.get(capability)
    if now is None:
        return Figures(window_s=newest_t - base_t)
    then = then or {"legacy": [0, 0, [0.0] * ROWS], "service": [0, 0, [0.0] * ROWS],
                    "fallbacks": 0}
    fallbacks = now["fallbacks"] - then["fallbacks"]

    def side(name: str) -> tuple[int, int, tuple[float, ...]]:
        a, b = now[name], then[name]
        return (max(0, int(a[0] - b[0])), max(0, int(a[1] - b[1])),
                tuple(max(0.0, x - y) for x, y in zip(a[2], b[2])))
    lreq, lerr, lhist = side("legacy")
    sreq, serr, shist = side("service")
    fallbacks = int(fallbacks)
    return Figures(SideFigures(max(0, lreq - fallbacks), lerr, lhist),
                   SideFigures(sreq + fallbacks, serr + fallbacks, shist),
                   shadow[0], shadow[1], lag, newest_t - base_t)
