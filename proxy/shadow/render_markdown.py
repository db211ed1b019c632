"""The shadow report as Markdown (for pull requests, chat and wikis)."""
from __future__ import annotations

from typing import Any

from proxy.shadow.render_text import (counts, gate_lines, ms, noise, pct, rate, thresholds,
                                       diff_side, nothing, seen, tally, when)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _code(text: Any) -> str:
    """Inline code safe for a table cell, whatever backticks the value holds."""
    text = _cell(text)
    fence = "``" if "`" in text else "`"
    return f"{fence} {text} {fence}" if fence == "``" else f"`{text}`"


def render_markdown(report: dict[str, Any]) -> str:
    out = ["# Shadow report", "",
           f"Generated {when(report.get('generated_at'))}, since {when(report.get('since'))}.",
           "", f"Noise rule: {thresholds(report)}.", ""]
    gate = gate_lines(report)
    if gate:
        out += [f"**{gate[0]}**", ""] + [f"- {line.strip()}" for line in gate[1:]] + [""]
    if not report["capabilities"]:
        out.append(nothing(report))
    for cap in report["capabilities"]:
        out += [f"## {cap['name']}: {pct(cap['match_rate'])} match "
                f"({tally(cap)})", "",
                "| route | match rate | matched/tried | status mismatches | errors | dropped "
                "| skipped | legacy p50/p95/p99 ms | service p50/p95/p99 ms |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in cap["routes"]:
            lat = r["latency"]
            out.append("| " + _code(r["route"]) + " | " + " | ".join(_cell(x) for x in (
                pct(r["match_rate"]), tally(r),
                r["status_mismatch"], counts(r["errors"]), counts(r["dropped_by"]),
                counts(r["skipped"]),
                "/".join(ms(lat["legacy"][p]) for p in ("p50", "p95", "p99")),
                "/".join(ms(lat["service"][p]) for p in ("p50", "p95", "p99")))) + " |")
        for r in cap["routes"]:
            if not r["fields"] and not r["samples"]:
                continue
            out += ["", f"### {_code(r['route'])}", ""]
            if r["fields"]:
                out += ["| field | verdict | raw rate | noise rate | last seen |",
                        "| --- | --- | --- | --- | --- |"]
                out += [f"| {_code(f['field'])} | {f['verdict']} | {rate(f['raw_rate'])} "
                        f"({f['raw']}) | {noise(f)} | {seen(f.get('last_seen')).strip()[10:]} |"
                        for f in r["fields"]]
            for s in r["samples"]:
                request = _code(f"{s['method']} {s['target']}")
                out += ["", f"**{_cell(s['field'])}** — {request} "
                        f"(legacy {s['legacy']['status']}, "
                        f"service {s['service']['status']})", "",
                        "| kind | legacy | service |", "| --- | --- | --- |"]
                out += [f"| {d['kind']} | {_code(diff_side(d, 'left'))} | "
                        f"{_code(diff_side(d, 'right'))} |"
                        for d in s["diffs"] if d["path"] == s["field"]]
                out += ["", "```sh", s["curl"]["service"], "```"]
        out.append("")
    return "\n".join(out).rstrip() + "\n"
