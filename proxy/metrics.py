"""Counters, gauges and histograms in memory, rendered as Prometheus text.

Each worker process owns one `Metrics`; it sends `snapshot()` to the supervisor once a second
and the admin side renders `merge(...)` of all workers. Anyone can count with it:

    metrics.inc("strangler_shadow_dropped_total", {"capability": "catalog"})
    metrics.observe("strangler_shadow_latency_seconds", {"capability": "catalog"}, 0.012)
    metrics.set("strangler_breaker_open", {"backend": "catalog"}, 1)
    metrics.describe("strangler_shadow_dropped_total", "Shadows dropped because the queue was full.")

`labels` is a mapping or a tuple of (name, value) pairs; counters must end in `_total`.
All calls are O(1) dict updates, safe on the hot path; nothing here does I/O.
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Any, Iterable, Mapping

LabelKey = tuple[tuple[str, str], ...]
Labels = Mapping[str, str] | LabelKey

# Six bounds a decade (1, 1.5, 2, 3, 5, 7.5) from 0.5 ms to 10 s, then 30 s: neighbours at most
# x1.67 apart, so the p99 the gates interpolate (operate.gates.percentile) can judge ratios like
# 1.5; a 1-2.5-5 series put 10 ms next to 25 ms and made any p99 one bucket up read as x2.5.
LATENCY_BUCKETS = (0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075,
                   0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
                   1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 30.0)

DESCRIPTIONS = {
    "strangler_requests_total": "Requests answered, by capability, side, backend and status.",
    "strangler_request_duration_seconds": "Time from request head to last response byte.",
    "strangler_upstream_errors_total": "Upstream failures (connect, timeout, protocol, 5xx), by backend.",
    "strangler_fallbacks_total": "Idempotent requests answered by legacy after the service failed.",
    "strangler_breaker_open": "Workers whose circuit breaker for the backend is open (0 = closed).",
    "strangler_breaker_half_open": "Workers whose breaker for the backend is letting a trial through.",
    "strangler_breaker_openings": "Times the backend's breaker opened (summed over workers).",
    "strangler_refused_total": "Requests refused before forwarding, by reason.",
    "strangler_reloads_total": "Rule reloads, by result (ok, error).",
    "strangler_rules_info": "The rules version currently served (value is always 1).",
}


def _key(labels: Labels) -> LabelKey:
    if isinstance(labels, tuple):
        return labels
    return tuple(sorted(labels.items()))


class Metrics:
    __slots__ = ("counters", "gauges", "histograms", "help")

    def __init__(self) -> None:
        self.counters: dict[tuple[str, LabelKey], float] = {}
        self.gauges: dict[tuple[str, LabelKey], float] = {}
        # name, labels -> [bucket counts..., +Inf count] plus running sum at the end
        self.histograms: dict[tuple[str, LabelKey], list[float]] = {}
        self.help: dict[str, str] = dict(DESCRIPTIONS)

    def describe(self, name: str, text: str) -> None:
        self.help[name] = text

    def inc(self, name: str, labels: Labels, amount: float = 1) -> None:
        key = (name, _key(labels))
        self.counters[key] = self.counters.get(key, 0) + amount

    def set(self, name: str, labels: Labels, value: float) -> None:
        self.gauges[(name, _key(labels))] = value

    def observe(self, name: str, labels: Labels, value: float) -> None:
        """Histogram observation, buckets in seconds (LATENCY_BUCKETS)."""
        key = (name, _key(labels))
        row = self.histograms.get(key)
        if row is None:
            row = self.histograms[key] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        row[bisect_left(LATENCY_BUCKETS, value)] += 1
        row[-1] += value

    # The hot path's variant: keys built once (see Engine.record), no label handling per call.
    def inc_key(self, key: tuple[str, LabelKey], amount: float = 1) -> None:
        counters = self.counters
        counters[key] = counters.get(key, 0) + amount

    def observe_key(self, key: tuple[str, LabelKey], value: float) -> None:
        row = self.histograms.get(key)
        if row is None:
            row = self.histograms[key] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        row[bisect_left(LATENCY_BUCKETS, value)] += 1
        row[-1] += value

    def counter_value(self, name: str, labels: Labels = ()) -> float:
        return self.counters.get((name, _key(labels)), 0)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-serialisable copy (sent from workers to the supervisor)."""
        return {
            "counters": [[n, list(map(list, l)), v] for (n, l), v in self.counters.items()],
            "gauges": [[n, list(map(list, l)), v] for (n, l), v in self.gauges.items()],
            "histograms": [[n, list(map(list, l)), list(v)] for (n, l), v in self.histograms.items()],
            "help": self.help,
        }


def merge(snapshots: Iterable[dict[str, Any]]) -> Metrics:
    """Sum snapshots of several workers (gauges too: e.g. how many workers have a breaker open)."""
    total = Metrics()
    for snap in snapshots:
        for name, labels, value in snap["counters"]:
            total.inc(name, tuple(map(tuple, labels)), value)
        for name, labels, value in snap["gauges"]:
            key = (name, tuple(map(tuple, labels)))
            total.gauges[key] = total.gauges.get(key, 0) + value
        for name, labels, row in snap["histograms"]:
            key = (name, tuple(map(tuple, labels)))
            mine = total.histograms.setdefault(key, [0.0] * len(row))
            for i, v in enumerate(row):
                mine[i] += v
        total.help.update(snap["help"])
    return total


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: LabelKey, extra: tuple[tuple[str, str], ...] = ()) -> str:
    pairs = labels + extra
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in pairs) + "}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render(metrics: Metrics) -> str:
    """Prometheus text exposition format 0.0.4."""
    lines: list[str] = []
    families: dict[str, tuple[str, list]] = {}
    for (name, labels), value in metrics.counters.items():
        families.setdefault(name, ("counter", []))[1].append((labels, value))
    for (name, labels), value in metrics.gauges.items():
        families.setdefault(name, ("gauge", []))[1].append((labels, value))
    for (name, labels), row in metrics.histograms.items():
        families.setdefault(name, ("histogram", []))[1].append((labels, row))
    for name in sorted(families):
        kind, samples = families[name]
        if name in metrics.help:
            lines.append(f"# HELP {name} {metrics.help[name]}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in sorted(samples):
            if kind != "histogram":
                lines.append(f"{name}{_labels(labels)} {_num(value)}")
                continue
            running = 0.0
            for bound, count in zip(LATENCY_BUCKETS, value):
                running += count
                lines.append(f"{name}_bucket{_labels(labels, (('le', repr(bound)),))} {_num(running)}")
            running += value[len(LATENCY_BUCKETS)]
            lines.append(f"{name}_bucket{_labels(labels, (('le', '+Inf'),))} {_num(running)}")
            lines.append(f"{name}_sum{_labels(labels)} {_num(value[-1])}")
            lines.append(f"{name}_count{_labels(labels)} {_num(running)}")
    return "\n".join(lines) + "\n"
