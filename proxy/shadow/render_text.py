"""The shadow report as plain text for a terminal (and the formatting helpers others share)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

VALUE_CHARS = 120


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} %"


def rate(value: float) -> str:
    """A share in percent, with two significant digits below 1 % (0.03 % is the noise rule's
    absolute threshold: 0.0 % would hide a reported field's rate)."""
    percent = 100 * value
    return f"{percent:.1f} %" if percent >= 1 or percent == 0 else f"{percent:.2g} %"


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


ABSENT = "(absent)"


def diff_side(diff: dict[str, Any], which: str) -> str:
    """One side of a diff as JSON, so a type change shows (`200` against `"200"`) and a side
    without the field reads `(absent)`, not `null`; body snippets and headers as text."""
    v = diff[which]
    if (diff["kind"], which) in (("missing", "right"), ("extra", "left")) \
            or (diff["kind"] == "header" and v is None):
        return ABSENT
    as_text = isinstance(v, str) and (diff["kind"] == "header" or diff["path"] == "body")
    text = v if as_text else json.dumps(v, ensure_ascii=False)
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS] + "…"


def tally(x: dict[str, Any]) -> str:
    """matched/tried, where tried = compared + failed (a failed shadow counts against the rate)."""
    failed = f", {x['failed']} failed" if x.get("failed") else ""
    return f"{x['matched']}/{x['compared'] + x.get('failed', 0)}{failed}"


def seen(ts: float | None) -> str:
    """When a field last differed (start of its 5-minute bucket)."""
    return "" if ts is None else \
        f"  last seen {datetime.fromtimestamp(ts, timezone.utc):%Y-%m-%d %H:%M} UTC"


def nothing(report: dict[str, Any]) -> str:
    return ("No shadow results yet." if report.get("since") is None
            else f"No shadow results since {when(report['since'])}.")


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
        out.append(nothing(report))
    for cap in report["capabilities"]:
        out.append(f"capability {cap['name']}: match rate {pct(cap['match_rate'])} "
                   f"({tally(cap)})")
        for r in cap["routes"]:
            out.append(f"  route {r['route']}: match rate {pct(r['match_rate'])} "
                       f"({tally(r)}), status mismatches "
                       f"{r['status_mismatch']}, noise samples {r['noise_samples']}")
            out.append(f"    errors: {counts(r['errors'])}; dropped: {counts(r['dropped_by'])}; "
                       f"skipped: {counts(r['skipped'])}")
            lat = r["latency"]
            out.append("    latency ms (p50/p95/p99): legacy "
                       + "/".join(ms(lat["legacy"][p]) for p in ("p50", "p95", "p99"))
                       + ", service "
                       + "/".join(ms(lat["service"][p]) for p in ("p50", "p95", "p99")))
            for f in r["fields"]:
                out.append(f"    {f['verdict']:<8} {f['field']}  raw {rate(f['raw_rate'])} "
                           f"({f['raw']})  noise {noise(f)}{seen(f.get('last_seen'))}")
            for s in r["samples"]:
                out.append(f"    sample for {s['field']}: {s['method']} {s['target']}")
                for d in s["diffs"]:
                    if d["path"] == s["field"]:
                        out.append(f"      {d['kind']}: legacy {diff_side(d, 'left')} | "
                                   f"service {diff_side(d, 'right')}")
                out.append(f"      legacy status {s['legacy']['status']} | "
                           f"service status {s['service']['status']}")
                out.append(f"      reproduce: {s['curl']['service']}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
