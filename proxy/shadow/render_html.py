"""The shadow report as one self-contained HTML page: inline CSS and inline SVG charts.

No scripts, fonts, images or links to anywhere: the page reads the same offline, attached to a
ticket or opened from a CI artefact. Every value from the store is escaped.
"""
from __future__ import annotations

import json
from html import escape
from typing import Any

from proxy.shadow.render_text import (counts, gate_lines, ms, noise, pct, rate, thresholds,
                                       diff_side, nothing, seen, tally, when)

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d232a;background:#fff}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:2px solid #dde3ea}
h3{font-size:15px;margin-top:22px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #d4dae1;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f1f4f7}
.bad{color:#b3261e;font-weight:600}.good{color:#17773a;font-weight:600}.muted{color:#667}
code,pre{font:12px/1.4 ui-monospace,monospace}pre{background:#f6f8fa;padding:8px;
white-space:pre-wrap;word-break:break-all;margin:4px 0}
.sbs{display:grid;grid-template-columns:1fr 1fr;gap:8px}.sbs pre{max-height:240px;overflow:auto}
.charts{display:flex;flex-wrap:wrap;gap:16px}svg{background:#fbfcfd;border:1px solid #e3e8ee}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
"""
LEGACY_COLOUR = "#4a6fa5"
SERVICE_COLOUR = "#e07b39"


def render_html(report: dict[str, Any], bar: float | None = None) -> str:
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<title>Shadow report</title><style>", CSS, "</style></head><body>",
             "<h1>Shadow report</h1>",
             f"<p class='muted'>Generated {escape(when(report.get('generated_at')))}, since "
             f"{escape(when(report.get('since')))}.</p>",
             f"<p class='muted'>Noise rule: {escape(thresholds(report))}.</p>"]
    gate = gate_lines(report)
    if gate:
        cls = "good" if report["gate"]["passed"] else "bad"
        parts.append(f"<p class='{cls}'>{escape(gate[0])}</p><ul>")
        parts += [f"<li>{escape(line.strip())}</li>" for line in gate[1:]]
        parts.append("</ul>")
    if not report["capabilities"]:
        parts.append(f"<p>{escape(nothing(report))}</p>")
    for cap in report["capabilities"]:
        parts.append(f"<h2>Capability {escape(cap['name'])}: "
                     f"{_rate_span(cap['match_rate'], bar)} match "
                     f"({escape(tally(cap))})</h2>")
        parts.append(_route_table(cap, bar))
        for r in cap["routes"]:
            parts.append(_route_section(r))
    parts.append("</body></html>")
    return "".join(parts)


def _rate_span(value_: float | None, bar: float | None) -> str:
    good = value_ is not None and value_ >= (bar if bar is not None else 99.5)
    return f"<span class='{'good' if good else 'bad'}'>{escape(pct(value_))}</span>"


def _route_table(cap: dict[str, Any], bar: float | None) -> str:
    rows = ["<table><tr><th>route</th><th>match rate</th><th>matched / tried</th>"
            "<th>status mismatches</th><th>errors</th><th>dropped</th><th>skipped</th>"
            "<th>legacy p50 / p95 / p99 ms</th><th>service p50 / p95 / p99 ms</th></tr>"]
    for r in cap["routes"]:
        lat = r["latency"]
        rows.append(
            f"<tr><td><code>{escape(r['route'])}</code></td>"
            f"<td>{_rate_span(r['match_rate'], bar)}</td>"
            f"<td>{escape(tally(r))}</td><td>{r['status_mismatch']}</td>"
            f"<td>{escape(counts(r['errors']))}</td><td>{escape(counts(r['dropped_by']))}</td>"
            f"<td>{escape(counts(r['skipped']))}</td>"
            f"<td>{' / '.join(ms(lat['legacy'][p]) for p in ('p50', 'p95', 'p99'))}</td>"
            f"<td>{' / '.join(ms(lat['service'][p]) for p in ('p50', 'p95', 'p99'))}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _route_section(r: dict[str, Any]) -> str:
    parts = [f"<h3>Route <code>{escape(r['route'])}</code></h3>", "<div class='charts'>",
             _timeline_svg(r), _latency_svg(r), "</div>"]
    if r["fields"]:
        parts.append("<table><tr><th>field</th><th>verdict</th><th>raw rate</th>"
                     "<th>noise rate</th><th>last seen</th></tr>")
        for f in r["fields"]:
            cls = {"reported": "bad", "pending": "", "noise": "muted"}[f["verdict"]]
            parts.append(f"<tr><td><code>{escape(f['field'])}</code></td>"
                         f"<td class='{cls}'>{escape(f['verdict'])}</td>"
                         f"<td>{escape(rate(f['raw_rate']))} ({f['raw']})</td>"
                         f"<td>{escape(noise(f))}</td>"
                         f"<td>{escape(seen(f.get('last_seen')).strip()[10:])}</td></tr>")
        parts.append("</table>")
    for s in r["samples"]:
        parts.append(f"<h4>Sample: <code>{escape(s['field'])}</code> — "
                     f"<code>{escape(s['method'])} {escape(s['target'])}</code></h4>")
        parts.append("<table><tr><th>field</th><th>kind</th><th>legacy</th><th>service</th></tr>")
        for d in s["diffs"]:
            if d["path"] == s["field"]:
                parts.append(f"<tr><td><code>{escape(d['path'])}</code></td>"
                             f"<td>{escape(d['kind'])}</td>"
                             f"<td><code>{escape(diff_side(d, 'left'))}</code></td>"
                             f"<td><code>{escape(diff_side(d, 'right'))}</code></td></tr>")
        parts.append("</table><div class='sbs'>")
        for side in ("legacy", "service"):
            a = s[side]
            parts.append(f"<div><b>{side}</b> — status {escape(str(a['status']))}, "
                         f"{escape(str(a['latency_ms']))} ms"
                         f"<pre>{escape(_pretty(a['body']))}</pre></div>")
        parts.append("</div>")
        parts.append(f"<p>Reproduce against the service:</p><pre>{escape(s['curl']['service'])}"
                     f"</pre><p>and against legacy:</p><pre>{escape(s['curl']['legacy'])}</pre>")
    return "".join(parts)


def _pretty(body: str) -> str:
    """JSON bodies indented, so the two sides read line by line."""
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body


def _timeline_svg(r: dict[str, Any], width: int = 420, height: int = 160) -> str:
    """Match rate (0–100 %) per time slot."""
    pts = [p for p in r["timeline"] if p["match_rate"] is not None]
    pad = 30
    svg = [f"<svg role='img' aria-label='match rate over time' width='{width}' "
           f"height='{height}' viewBox='0 0 {width} {height}'>",
           f"<text x='{pad}' y='14' font-size='11'>match rate over time</text>",
           f"<line x1='{pad}' y1='{height - pad}' x2='{width - 8}' y2='{height - pad}' "
           "stroke='#889'/>"]
    for level in (0, 50, 100):
        y = height - pad - (height - 2 * pad) * level / 100
        svg.append(f"<text x='2' y='{y + 4:.1f}' font-size='10'>{level}%</text>"
                   f"<line x1='{pad}' y1='{y:.1f}' x2='{width - 8}' y2='{y:.1f}' "
                   "stroke='#e3e8ee'/>")
    if pts:
        span = max(1, pts[-1]["at"] - pts[0]["at"])
        coords = []
        for p in pts:
            x = pad + (width - pad - 16) * ((p["at"] - pts[0]["at"]) / span if len(pts) > 1
                                             else 0.5)
            y = height - pad - (height - 2 * pad) * p["match_rate"] / 100
            coords.append(f"{x:.1f},{y:.1f}")
            svg.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='{SERVICE_COLOUR}'>"
                       f"<title>{escape(when(p['at']))}: {escape(pct(p['match_rate']))} "
                       f"of {p['compared']}</title></circle>")
        svg.append(f"<polyline fill='none' stroke='{SERVICE_COLOUR}' stroke-width='2' "
                   f"points='{' '.join(coords)}'/>")
        svg.append(f"<text x='{pad}' y='{height - 8}' font-size='10'>"
                   f"{escape(when(pts[0]['at']))} → {escape(when(pts[-1]['at']))}</text>")
    svg.append("</svg>")
    return "".join(svg)


def _latency_svg(r: dict[str, Any], width: int = 420, height: int = 160) -> str:
    """Latency histograms of both sides on a shared log-scale axis (bins 10 % wide)."""
    lat = r["latency"]
    hist = {side: dict((edge, c) for edge, c in lat[side]["histogram"])
            for side in ("legacy", "service")}
    edges = sorted(set(hist["legacy"]) | set(hist["service"]))
    pad = 30
    svg = [f"<svg role='img' aria-label='latency distribution' width='{width}' "
           f"height='{height}' viewBox='0 0 {width} {height}'>",
           "<text x='30' y='14' font-size='11'>latency distribution (ms)"
           f"<tspan fill='{LEGACY_COLOUR}'> ■ legacy</tspan>"
           f"<tspan fill='{SERVICE_COLOUR}'> ■ service</tspan></text>",
           f"<line x1='{pad}' y1='{height - pad}' x2='{width - 8}' y2='{height - pad}' "
           "stroke='#889'/>"]
    if edges:
        top = max(max(hist["legacy"].values(), default=0), max(hist["service"].values(),
                                                               default=0))
        slot = (width - pad - 16) / len(edges)
        for i, edge in enumerate(edges):
            for j, side in enumerate(("legacy", "service")):
                n = hist[side].get(edge, 0)
                if not n:
                    continue
                h = (height - 2 * pad) * n / top
                x = pad + i * slot + j * slot / 2
                colour = LEGACY_COLOUR if side == "legacy" else SERVICE_COLOUR
                svg.append(f"<rect x='{x:.1f}' y='{height - pad - h:.1f}' "
                           f"width='{max(slot / 2 - 1, 1):.1f}' height='{h:.1f}' "
                           f"fill='{colour}'><title>{side} ≤ {edge} ms: {n}</title></rect>")
        svg.append(f"<text x='{pad}' y='{height - 12}' font-size='10'>{edges[0]} ms</text>"
                   f"<text x='{width - 70}' y='{height - 12}' font-size='10'>{edges[-1]} ms"
                   "</text>")
    svg.append("</svg>")
    return "".join(svg)
