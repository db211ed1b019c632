"""`strangler status`: every capability of the rule file with the live figures of every proxy.

The rule file says what should happen (stage, writes, percent and the next step); each proxy's
/admin/status says what happens (its gate figures since the capability's last rollout change,
breaker states, the rules version it serves). A proxy serving another version than the file is
marked: it missed a reload. Without proxies, the live columns show "-".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from operate.admin_client import AdminClient, ProxyStatus
from operate.gates import Figures, GateVerdict, combine, evaluate
from operate.history import last_recorded_table
from operate.rule_edit import compile_rules, read_rules
from proxy.rules import CompiledCapability, CompiledTable
from strangler.db import sqlite_path
from strangler.errors import OperatorError


def cdc_directions(cap: CompiledCapability) -> list[Any] | None:
    """cdc.status for the direction that must keep up: away from whoever owns the
    capability's writes in the rules the caller works with (not whichever rules the CDC file's
    `rules:` names). None when it has no CDC config (routing_rules/cdc/CAP.yaml), nothing ran
    yet, or it cannot be read."""
    from cdc.config import config_path, load_config
    if not config_path(cap.name).is_file():
        return None
    from sqlalchemy.exc import SQLAlchemyError

    from cdc import status as cdc_status
    try:
        config = load_config(cap.name, writes=cap.writes)
        if not all(_exists(side.url) for side in (config.legacy, config.service)):
            return None                       # nothing ran yet: do not create SQLite files
        return cdc_status.gather(config, interval_s=0, directions=(config.write_direction,))
    except (OperatorError, SQLAlchemyError, OSError):
        return None


def cdc_lag_s(cap: CompiledCapability) -> float | None:
    """The newest applied event's lag in the write direction, in seconds (None: unmeasured)."""
    return lag_of(cdc_directions(cap))


def lag_of(directions: list[Any] | None) -> float | None:
    lags = [t.lag_ms for d in directions or [] for t in d.tables if t.lag_ms is not None]
    return max(lags) / 1000 if lags else None


def _exists(url: str) -> bool:
    path = sqlite_path(url)
    return path is None or path.exists()


@dataclass
class Live:
    """What the proxies report, summed per capability."""
    proxies: list[ProxyStatus] = field(default_factory=list)
    client: AdminClient | None = None

    def figures(self, capability: str) -> Figures | None:
        """Summed gate figures; the shadow counts over the same window from /admin/shadow when
        the proxies did not read them (they do only for a canary gated on shadow match)."""
        figures = self._summed(capability)
        if figures is None or figures.shadow_compared or self.client is None:
            return figures
        compared, matched = self._shadow(capability, figures.window_s)
        return Figures(figures.legacy, figures.service, compared, matched, figures.cdc_lag_s,
                       figures.window_s)

    def _shadow(self, capability: str, window_s: float) -> tuple[int, int]:
        try:
            report = self.client.shadow(self.proxies[0].url, capability,
                                        since=f"{max(1, round(window_s))}s")
        except OperatorError:           # shadowing off there (404) or its store down (503)
            return 0, 0
        caps = [c for c in report["capabilities"] if c.get("name") == capability]
        if not caps:
            return 0, 0
        tried = int(caps[0]["compared"]) + int(caps[0].get("failed", 0))   # failures count against
        return tried, int(caps[0]["matched"])

    def _summed(self, capability: str) -> Figures | None:
        parts = []
        for p in self.proxies:
            entry = p.gates.get("capabilities", {}).get(capability)
            if entry is None:
                continue
            try:
                parts.append(Figures.from_dict(entry["figures"]))
            except (KeyError, TypeError, ValueError):
                raise OperatorError(f"proxy at {p.url} reported malformed gate figures for "
                                    f"{capability}; is it the same strangler version as this "
                                    "CLI?") from None
        return combine(parts) if parts else None

    def default_figures(self) -> Figures | None:
        """What no capability matched, over the proxies' last window (None: none reports it)."""
        parts = []
        for p in self.proxies:
            entry = p.gates.get("default")
            if entry:
                try:
                    parts.append(Figures.from_dict(entry))
                except (KeyError, TypeError, ValueError):
                    continue            # an older proxy: no default row from it
        return combine(parts) if parts else None

    def breaker(self, backend: str | None) -> str:
        """closed, or e.g. "open 2/4" (workers with the breaker open, over all proxies)."""
        if backend is None or not self.proxies:
            return "-"
        states: dict[str, int] = {}
        for p in self.proxies:
            per = (p.raw.get("backends") or {}).get(backend, {}).get("breaker") or {}
            for state, n in per.items():
                states[state] = states.get(state, 0) + int(n)
        if not states:
            return "none"
        total = sum(states.values())
        bad = {s: n for s, n in states.items() if s != "closed"}
        return ", ".join(f"{s} {n}/{total}" for s, n in sorted(bad.items())) or "closed"

    def autorollbacks(self) -> list[dict[str, Any]]:
        return [{"proxy": p.url, **p.gates["last_autorollback"]}
                for p in self.proxies if p.gates.get("last_autorollback")]


def live_from(client: AdminClient | None) -> Live:
    return Live(client.statuses(), client) if client is not None else Live()


def capability_view(cap: CompiledCapability, live: Live,
                    cdc_lag: float | None) -> dict[str, Any]:
    figures = live.figures(cap.name)
    if figures is not None and figures.cdc_lag_s is None and cdc_lag is not None:
        figures = Figures(figures.legacy, figures.service, figures.shadow_compared,
                          figures.shadow_matched, cdc_lag, figures.window_s)
    verdict: GateVerdict | None = evaluate(cap.gates, figures) if figures is not None else None
    return {"name": cap.name, "stage": cap.stage, "writes": cap.writes, "percent": cap.percent,
            "next_step": cap.next_step if cap.stage == "canary" else None,
            "service_percent": cap.service_percent, "gates": cap.gates.as_dict(),
            "figures": figures.as_dict() if figures is not None else None,
            "verdict": verdict.as_dict() if verdict is not None else None,
            "cdc_lag_s": cdc_lag, "breaker": live.breaker(cap.service.name if cap.service
                                                          else None)}


def gather(rules_path: str | Path, client: AdminClient | None) -> dict[str, Any]:
    """The whole status document (what --json prints and the table shows). A rule file that
    does not compile is shown as an error over the newest recorded rules, which the proxies
    most likely still serve: an incident is when the live figures matter most."""
    rules: dict[str, Any] = {"path": str(rules_path)}
    try:
        table: CompiledTable = compile_rules(read_rules(rules_path))
    except OperatorError as exc:
        recorded = last_recorded_table(rules_path)
        if recorded is None:
            raise
        rules.update(error=str(exc), shown=f"the rules of recorded change #{recorded[0]}")
        table = recorded[1]
    # A proxy that is down is part of the picture, not a reason to show none of it.
    proxies, unreachable = client.reachable_statuses() if client is not None else ([], {})
    live = Live(proxies, client)
    default = live.default_figures()
    return {"rules": {**rules, "version": table.version},
            "unreachable": [{"url": url, "error": why} for url, why in unreachable.items()],
            "proxies": [{"url": p.url, "version": p.version,
                         "stale": p.version != table.version,
                         "workers_on_other_rules": [
                             w for w in p.raw.get("workers") or []
                             if w.get("rules_version") not in (None, p.version)],
                         "last_reload_error": p.raw["rules"].get("last_reload_error")}
                        for p in live.proxies],
            "capabilities": [capability_view(c, live, cdc_lag_s(c))
                             for c in table.capabilities],
            "default": {"backend": table.default.name,
                        "figures": default.as_dict() if default is not None else None},
            "autorollbacks": live.autorollbacks()}


def rows(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["CAPABILITY", "STAGE", "WRITES", "PERCENT", "REQ/MIN L|S", "ERR% L|S",
               "P99 L|S", "SHADOW", "CDC LAG", "BREAKER", "GATES"]
    out = []
    for c in doc["capabilities"]:
        # Outside canary the percent is not used: show the share the service really answers.
        percent = f"{c['percent'] if c['stage'] == 'canary' else c['service_percent']:g}"
        if c["next_step"] is not None:
            percent += f" -> {c['next_step']:g}"
        f = c["figures"]
        lag = "n/a" if c["cdc_lag_s"] is None else f"{c['cdc_lag_s']:.1f} s"
        if f is None:
            live = ["-", "-", "-", "-"]
        else:
            minutes = f["window_s"] / 60
            live = [_pair(*(f[s]["requests"] / minutes if minutes else None
                            for s in ("legacy", "service")), "{:.0f}"),
                    _pair(f["legacy"]["error_rate"], f["service"]["error_rate"], "{:.2f}"),
                    _pair(*(None if f[s]["p99_s"] is None else f[s]["p99_s"] * 1000
                            for s in ("legacy", "service")), "{:.1f}ms"),
                    "-" if f["shadow_match"] is None else f"{f['shadow_match']:.2f}%"]
        # The gates decide promotion, which happens in canary only.
        verdict = c["verdict"]["state"] if c["verdict"] and c["stage"] == "canary" else "-"
        out.append([c["name"], c["stage"], c["writes"], percent, *live, lag, c["breaker"],
                    verdict])
    default = doc.get("default")
    if default:     # what no capability matches goes to the default backend: its outage shows
        f = default["figures"]
        live = ["-"] * 3 if f is None else [
            _pair(f["legacy"]["requests"] / (f["window_s"] / 60) if f["window_s"] else None,
                  None, "{:.0f}"),
            _pair(f["legacy"]["error_rate"], None, "{:.2f}"),
            _pair(None if f["legacy"]["p99_s"] is None else f["legacy"]["p99_s"] * 1000, None,
                  "{:.1f}ms")]
        out.append([f"(default: {default['backend']})", "-", "-", "-", *live, "-", "-", "-",
                    "-"])
    return headers, out


def _pair(a: float | None, b: float | None, fmt: str) -> str:
    def one(v: float | None) -> str:
        return "-" if v is None else fmt.format(v)
    return f"{one(a)} | {one(b)}"
