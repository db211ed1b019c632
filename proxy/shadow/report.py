"""One report data structure built from the results store; every renderer and gate reads it.

Noise evidence: a route's own noise samples when it has at least MIN_NOISE_SAMPLES, else the
whole capability's (`noise_scope: capability`).

Match rate = matched / (compared + failed). A comparison matches when the status matched and
every field it differed in is judged noise (see proxy.shadow.noise) with all evidence in the
reported window; pending fields count as differences. A shadow that failed (timeout, connect,
dry-run not honoured, compare error) is a request the service did not answer like legacy, so it
counts against the rate ("failed"), listed by kind under errors; a failure of the second legacy
call that samples noise (`noise-*`) does not. Drops and skips are not counted, only listed.

A route with fewer than noise.MIN_COMPARED comparisons of its own is judged with its
capability's evidence for each field (raw and noise counts over all its routes), so a quiet
route differing only in `generated_at` matches instead of staying pending.

The window starts at the beginning of the store's 5-minute bucket holding `--since`'s time
(`since` in the report says so); each field carries `last_seen`, the start of the newest
bucket where it differed, so a fixed field can be told from a live one.
"""
from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from typing import Any

from proxy.shadow import noise as noise_rules
from proxy.shadow.store import BUCKET_S, Snapshot, ShadowStore, bin_upper_ms

FORMAT_VERSION = 2          # of the JSON shape (README.md: "The report's JSON"); 2 added failed
MAX_TIMELINE_POINTS = 48
SAMPLES_PER_FIELD = 3
TOP_FIELDS = 20


def build_report(store: ShadowStore, *, capability: str | None = None,
                 since_s: float | None = None, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    since = (now - since_s) // BUCKET_S * BUCKET_S if since_s is not None else None
    report = report_from_snapshot(store.snapshot(capability, since))
    report.update(generated_at=now, since=since, capability_filter=capability)
    return report


def report_from_snapshot(snap: Snapshot) -> dict[str, Any]:
    routes: dict[tuple[str, str], dict[str, Any]] = defaultdict(_empty_route)
    for cap, route, bucket, name, value in snap.counters:
        r = routes[(cap, route)]
        if name.startswith("skipped:"):
            _add(r["skipped"], name.split(":", 1)[1], value)
        elif name.startswith("error:"):
            kind = name.split(":", 1)[1]
            _add(r["errors"], kind, value)
            if not kind.startswith("noise-"):
                r["failed"] += value
                _add(r["_timeline_failed"], bucket, value)
        elif name == "dropped" or name.startswith("dropped:"):     # reason-less: older proxies
            r["dropped"] += value
            _add(r["dropped_by"], name.partition(":")[2] or "unrecorded", value)
        elif name in ("compared", "status_mismatch", "noise_samples"):
            r[name] += value
            if name == "compared":
                _add(r["_timeline_compared"], bucket, value)
    for cap, route, fkey, raw, noise in snap.fields:
        routes[(cap, route)]["_fields"][fkey] = (int(raw), int(noise))
    for cap, route, *_ in snap.signatures + snap.latency + snap.samples:
        routes[(cap, route)]  # every route gets its fields judged below, whatever table named it
    # Capability-wide evidence, for routes too quiet (or write-only) to have their own.
    whole: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"compared": 0, "noise_samples": 0, "raw": {}, "noise": {}})
    for (cap, route), r in routes.items():
        w = whole[cap]
        w["compared"] += r["compared"]
        w["noise_samples"] += r["noise_samples"]
        for fkey, (raw, noise) in r["_fields"].items():
            _add(w["raw"], fkey, raw)
            _add(w["noise"], fkey, noise)
    last_seen: dict[tuple[str, str, str], int] = {}
    for cap, route, bucket, _, fields_json, _ in snap.signatures:
        for f in json.loads(fields_json):
            key = (cap, route, f)
            last_seen[key] = max(last_seen.get(key, 0), int(bucket))
    for (cap, route), r in routes.items():
        r["fields"] = _fields(r, whole[cap], lambda f: last_seen.get((cap, route, f)))
    for cap, route, bucket, mismatch, fields_json, count in snap.signatures:
        r = routes[(cap, route)]
        if not mismatch and all(r["_verdicts"].get(f) == noise_rules.NOISE
                                for f in json.loads(fields_json)):
            r["matched"] += count
            _add(r["_timeline_matched"], bucket, count)
    latency: dict[tuple[str, str], dict[str, dict[int, int]]] = defaultdict(
        lambda: {"legacy": {}, "service": {}})
    for cap, route, side, bin_, count in snap.latency:
        latency[(cap, route)].setdefault(side, {})[int(bin_)] = int(count)
    for cap, route, fkey, at, data in snap.samples:
        r = routes[(cap, route)]
        if r["_verdicts"].get(fkey) != noise_rules.NOISE:  # "status" has no verdict: shown
            shown = r["_sample_counts"].get(fkey, 0)
            if shown < SAMPLES_PER_FIELD:
                r["_sample_counts"][fkey] = shown + 1
                r["samples"].append({"field": fkey, **json.loads(data)})

    capabilities: dict[str, dict[str, Any]] = {}
    for (cap, route), r in sorted(routes.items()):
        rank = {f["field"]: i for i, f in enumerate(r["fields"])}
        r["samples"].sort(key=lambda s: rank.get(s["field"], len(rank)))  # stable: newest first
        r["route"] = route
        r["match_rate"] = _pct(r["matched"], r["compared"] + r["failed"])
        r["latency"] = _latency(latency.get((cap, route), {"legacy": {}, "service": {}}))
        tried = dict(r.pop("_timeline_compared"))
        for bucket, n in r.pop("_timeline_failed").items():
            _add(tried, bucket, n)
        r["timeline"] = _timeline(tried, r.pop("_timeline_matched"))
        for key in ("_fields", "_verdicts", "_sample_counts"):
            r.pop(key)
        c = capabilities.setdefault(cap, {"name": cap, "compared": 0, "failed": 0, "matched": 0,
                                          "routes": []})
        for key in ("compared", "failed", "matched"):
            c[key] += r[key]
        c["routes"].append(r)
    for c in capabilities.values():
        c["match_rate"] = _pct(c["matched"], c["compared"] + c["failed"])
    return {"format_version": FORMAT_VERSION, "thresholds": dict(noise_rules.THRESHOLDS),
            "bucket_s": BUCKET_S, "capabilities": list(capabilities.values())}


def gate(report: dict[str, Any], fail_under: float) -> list[str]:
    """Why the report fails a match-rate bar (percent); empty when it passes.

    Every capability is held to the bar, and so is every route with enough comparisons for a
    verdict (noise.MIN_COMPARED); a route below that still weighs in its capability's rate,
    pending fields counting as differences. No comparison at all never passes."""
    failures = []
    for cap in report["capabilities"]:
        scopes = [(cap["name"], cap)] + [
            (f"{cap['name']} {r['route']}", r) for r in cap["routes"]
            if r["compared"] + r["failed"] >= noise_rules.MIN_COMPARED]
        for name, x in scopes:
            if x["match_rate"] is not None and x["match_rate"] < fail_under:
                failed = f", {x['failed']} failed" if x["failed"] else ""
                failures.append(f"{name}: match rate {x['match_rate']:.2f} % < {fail_under:g} % "
                                f"({x['matched']}/{x['compared'] + x['failed']}{failed})")
    if not any(cap["compared"] for cap in report["capabilities"]):
        failures.append("no shadow comparisons in the window: nothing shows the service matches")
    return failures


def _empty_route() -> dict[str, Any]:
    return {"compared": 0, "failed": 0, "matched": 0, "status_mismatch": 0, "noise_samples": 0,
            "dropped": 0, "dropped_by": {}, "skipped": {}, "errors": {}, "samples": [],
            "_fields": {}, "_verdicts": {}, "_sample_counts": {},
            "_timeline_compared": {}, "_timeline_failed": {}, "_timeline_matched": {}}


def _fields(r: dict[str, Any], whole: dict[str, Any], last_seen) -> list[dict[str, Any]]:
    """Verdicts per field. Noise evidence: the route's own when it has enough noise samples,
    else the capability's (so write routes, never replayed twice, still learn `generated_at` is
    noise). Raw evidence: the route's own when it has enough comparisons, else the
    capability's, so a quiet route is not held pending on a field its capability has judged."""
    own_noise = r["noise_samples"] >= noise_rules.MIN_NOISE_SAMPLES
    own_raw = r["compared"] >= noise_rules.MIN_COMPARED
    samples = r["noise_samples"] if own_noise else whole["noise_samples"]
    compared = r["compared"] if own_raw else whole["compared"]
    out = []
    for fkey, (raw, noise) in r["_fields"].items():
        noise = noise if own_noise else whole["noise"].get(fkey, 0)
        judged_raw = raw if own_raw else whole["raw"].get(fkey, 0)
        v = noise_rules.verdict(judged_raw, compared, noise, samples)
        r["_verdicts"][fkey] = v
        if raw == 0:
            continue
        out.append({"field": fkey, "raw": raw, "noise": noise,
                    "raw_rate": noise_rules.rate(raw, r["compared"]),
                    "noise_rate": noise_rules.rate(noise, samples),
                    "noise_scope": "route" if own_noise else "capability",
                    "verdict_scope": "route" if own_raw else "capability",
                    "last_seen": last_seen(fkey), "verdict": v})
    order = {noise_rules.REPORTED: 0, noise_rules.PENDING: 1, noise_rules.NOISE: 2}
    out.sort(key=lambda f: (order[f["verdict"]], -f["raw_rate"], f["field"]))
    return out[:TOP_FIELDS]


def _latency(sides: dict[str, dict[int, int]]) -> dict[str, Any]:
    """Percentiles per side, and both histograms over one contiguous range of bins (empty bins
    included, so a chart's x axis stays proportional)."""
    used = [b for bins in sides.values() for b in bins]
    span = range(min(used), max(used) + 1) if used else range(0)
    out: dict[str, Any] = {}
    for side in ("legacy", "service"):
        bins = sides.get(side, {})
        n = sum(bins.values())
        out[side] = {"count": n, **{f"p{p}": _percentile(bins, n, p / 100)
                                    for p in (50, 95, 99)},
                     "histogram": [[round(bin_upper_ms(b), 3), bins.get(b, 0)] for b in span]}
    return out


def _percentile(bins: dict[int, int], n: int, q: float) -> float | None:
    """Upper edge of the histogram bin holding the q-th request (at most 10 % high)."""
    if n == 0:
        return None
    rank, seen = max(1, math.ceil(q * n)), 0
    for b in sorted(bins):
        seen += bins[b]
        if seen >= rank:
            return round(bin_upper_ms(b), 3)
    return None


def _timeline(compared: dict[int, int], matched: dict[int, int]) -> list[dict[str, Any]]:
    if not compared:
        return []
    first, last = min(compared), max(compared)
    width = max(BUCKET_S, math.ceil((last - first + BUCKET_S) / MAX_TIMELINE_POINTS / BUCKET_S)
                * BUCKET_S)
    points: dict[int, list[int]] = {}
    for bucket, n in compared.items():
        slot = first + (bucket - first) // width * width
        p = points.setdefault(slot, [0, 0])
        p[0] += n
        p[1] += matched.get(bucket, 0)
    return [{"at": at, "compared": n, "matched": m, "match_rate": _pct(m, n)}
            for at, (n, m) in sorted(points.items())]


def _add(d: dict, key: Any, value: int) -> None:
    d[key] = d.get(key, 0) + int(value)


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 3) if whole else None
