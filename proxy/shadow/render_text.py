"""The shadow report as plain text for a terminal (and the formatting helpers others share)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

VALUE_CHARS = 120


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} %"


def rate(value: float) -> str:
    return f"{100 * value:.1f} %"


def noise(field: dict[str, Any]) -> str:
    """A field's noise rate and count, marked when borrowed from the whole capability."""
    scope = ", capability-wide" if field.get("noise_scope") == "capability" else ""
    return f"{rate(field['noise_rate'])} ({field['noise']}{scope})"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def when(ts: float | None) -> str:
    if ts is None:
        return "the beginning"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def value(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS] + "…"


def counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(d.items())) or "none"


def thresholds(report: dict[str, Any]) -> str:
    t = report["thresholds"]
    return (f"a field is reported when raw rate > noise rate, |raw-noise|/(raw+noise) > "
            f"{100 * t['relative']:g} % and |raw-noise| > {100 * t['absolute']:g} % of requests; "
            f"no verdict before {t['min_compared']} comparisons and {t['min_noise_samples']} "
            f"noise samples per route (a quieter route borrows its capability's noise "
            f"evidence; pending fields count as differences)")


def gate_lines(report: dict[str, Any]) -> list[str]:
    """The --fail-under verdict, when one was asked for."""
    gate = report.get("gate")
    if not gate:
        return []
    verdict = "passed" if gate["passed"] else "FAILED"
    return [f"Gate (match rate >= {gate['fail_under']:g} %): {verdict}"] + \
        [f"  {line}" for line in gate["failures"]]


def render_text(report: dict[str, Any]) -> str:
    out = [f"Shadow report, generated {when(report.get('generated_at'))}, "
           f"since {when(report.get('since'))}",
           f"Noise rule: {thresholds(report)}", *gate_lines(report), ""]
    if not report["capabilities"]:
        out.append("No shadow results yet.")
    for cap in report["capabilities"]:
        out.append(f"capability {cap['name']}: match rate {pct(cap['match_rate'])} "
                   f"({cap['matched']}/{cap['compared']})")
        for r in cap["routes"]:
            out.append(f"  route {r['route']}: match rate {pct(r['match_rate'])} "
                       f"({r['matched']}/{r['compared']}), status mismatches "
                       f"{r['status_mismatch']}, noise samples {r['noise_samples']}")
            out.append(f"    errors: {counts(r['errors'])}; dropped {r['dropped']}; "
                       f"skipped: {counts(r['skipped'])}")
            lat = r["latency"]
            out.append("    latency ms (p50/p95/p99): legacy "
                       + "/".join(ms(lat["legacy"][p]) for p in ("p50", "p95", "p99"))
                       + ", service "
                       + "/".join(ms(lat["service"][p]) for p in ("p50", "p95", "p99")))
            for f in r["fields"]:
                out.append(f"    {f['verdict']:<8} {f['field']}  raw {rate(f['raw_rate'])} "
                           f"({f['raw']})  noise {noise(f)}")
            for s in r["samples"]:
                out.append(f"    sample for {s['field']}: {s['method']} {s['target']}")
                for d in s["diffs"]:
                    if d["path"] == s["field"]:
                        out.append(f"      {d['kind']}: legacy {value(d['left'])} | "
                                   f"service {value(d['right'])}")
                out.append(f"      legacy status {s['legacy']['status']} | "
                           f"service status {s['service']['status']}")
                out.append(f"      reproduce: {s['curl']['service']}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
