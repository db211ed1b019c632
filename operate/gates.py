"""Promotion gates as a pure function: `evaluate(gates, figures) -> GateVerdict`.

The same judgement serves `strangler promote` (figures summed over every proxy) and the proxy's
automatic rollback (its own figures). Three outcomes, never two:

    pass   every configured gate holds on at least `min_requests` service requests
    wait   too little traffic, or a gate that cannot be measured (no shadow comparison,
           no CDC lag): low traffic never passes and never fails
    fail   a gate is broken with enough traffic behind it

Figures are counts over a window (the proxy keeps them since the capability's last rollout
change, at most WINDOW_S), so they add up across proxies; p99 comes from the summed latency
histogram (proxy.metrics.LATENCY_BUCKETS), never from averaging p99s, interpolated inside its
bucket (see `percentile`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from proxy.metrics import LATENCY_BUCKETS
from proxy.rules.capability import Gates

SIDES = ("legacy", "service")
PASS, WAIT, FAIL = "pass", "wait", "fail"
ROWS = len(LATENCY_BUCKETS) + 1         # a latency row: one count per bound, then +Inf


@dataclass(frozen=True, slots=True)
class SideFigures:
    requests: int = 0
    errors: int = 0                     # 5xx answered, plus service failures legacy covered
    latency: tuple[float, ...] = ()     # histogram counts per LATENCY_BUCKETS bound, then +Inf

    @property
    def error_rate(self) -> float | None:
        """Percent of requests that failed."""
        return 100.0 * self.errors / self.requests if self.requests else None

    @property
    def p99_s(self) -> float | None:
        return percentile(self.latency, 0.99)

    def __add__(self, other: "SideFigures") -> "SideFigures":
        return SideFigures(self.requests + other.requests, self.errors + other.errors,
                           _add_rows(self.latency, other.latency))


@dataclass(frozen=True, slots=True)
class Figures:
    """What the gates judge, for one capability over one window."""
    legacy: SideFigures = field(default_factory=SideFigures)
    service: SideFigures = field(default_factory=SideFigures)
    shadow_compared: int = 0
    shadow_matched: int = 0
    cdc_lag_s: float | None = None      # None: not measured (no CDC config, or unreachable)
    window_s: float = 0.0

    @property
    def shadow_match(self) -> float | None:
        return 100.0 * self.shadow_matched / self.shadow_compared if self.shadow_compared else None

    def side(self, name: str) -> SideFigures:
        return self.service if name == "service" else self.legacy

    def as_dict(self) -> dict[str, Any]:
        sides = {n: {"requests": s.requests, "errors": s.errors, "latency": list(s.latency),
                     "error_rate": s.error_rate, "p99_s": s.p99_s}
                 for n, s in (("legacy", self.legacy), ("service", self.service))}
        return {**sides, "shadow_compared": self.shadow_compared,
                "shadow_matched": self.shadow_matched, "shadow_match": self.shadow_match,
                "cdc_lag_s": self.cdc_lag_s, "window_s": self.window_s}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Figures":
        """The inverse of as_dict (what /admin/status carries); KeyError/TypeError/ValueError
        on a malformed document."""
        def side(s: dict[str, Any]) -> SideFigures:
            latency = tuple(float(v) for v in s["latency"])
            if latency and len(latency) != ROWS:    # another version's buckets: not comparable
                raise ValueError(f"latency row of {len(latency)} buckets, expected {ROWS}")
            return SideFigures(int(s["requests"]), int(s["errors"]), latency)
        lag = d.get("cdc_lag_s")
        return cls(side(d["legacy"]), side(d["service"]), int(d["shadow_compared"]),
                   int(d["shadow_matched"]), None if lag is None else float(lag),
                   float(d.get("window_s", 0.0)))


def combine(parts: Iterable[Figures]) -> Figures:
    """Figures of several proxies as one: request counts and histograms add; shadow counts come
    from the results store every proxy shares, so the fullest reading is kept, not a sum; the
    CDC lag (one pipeline, seen by all) is the worst reported; the window is the longest."""
    legacy, service, window = SideFigures(), SideFigures(), 0.0
    shadow = (0, 0)
    lags: list[float] = []
    for f in parts:
        legacy, service = legacy + f.legacy, service + f.service
        window = max(window, f.window_s)
        shadow = max(shadow, (f.shadow_compared, f.shadow_matched))
        if f.cdc_lag_s is not None:
            lags.append(f.cdc_lag_s)
    return Figures(legacy, service, shadow[0], shadow[1], max(lags) if lags else None, window)


@dataclass(frozen=True, slots=True)
class Check:
    gate: str                           # error_rate | p99 | shadow_match | cdc_lag | traffic
    state: str
    detail: str

    def __str__(self) -> str:
        return f"{self.gate}: {self.detail}"


@dataclass(frozen=True, slots=True)
class GateVerdict:
    state: str
    checks: tuple[Check, ...]

    @property
    def reasons(self) -> list[str]:
        """The checks that decided the state (the failures, or what is still awaited)."""
        return [str(c) for c in self.checks if c.state == self.state] if self.state != PASS \
            else [str(c) for c in self.checks]

    @property
    def failed_gates(self) -> list[str]:
        return [c.gate for c in self.checks if c.state == FAIL]

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "reasons": self.reasons,
                "checks": [{"gate": c.gate, "state": c.state, "detail": c.detail}
                           for c in self.checks]}


def evaluate(gates: Gates, figures: Figures) -> GateVerdict:
    """Judge FIGURES against GATES. A broken gate fails only with `min_requests` service requests
    behind it; otherwise the verdict is wait (and pass needs every gate measured)."""
    service, legacy = figures.service, figures.legacy
    need = max(gates.min_requests, 1)
    if service.requests < need:
        return GateVerdict(WAIT, (Check("traffic", WAIT, f"waiting: {service.requests} of "
                                        f"{need} requests on the service"),))
    checks = [Check("traffic", PASS, f"{service.requests} service requests "
                                     f"(min {gates.min_requests})")]
    if gates.max_error_rate_delta is not None:
        base = legacy.error_rate or 0.0        # no legacy traffic: judged against 0 % (stricter)
        delta = (service.error_rate or 0.0) - base
        checks.append(Check("error_rate", FAIL if delta > gates.max_error_rate_delta else PASS,
                            f"service {service.error_rate:.2f} % vs legacy {base:.2f} % "
                            f"(+{delta:.2f} points, max {gates.max_error_rate_delta:g})"))
    if gates.max_p99_ratio is not None:
        sp, lp = service.p99_s, legacy.p99_s
        if sp is None or lp is None or lp <= 0:
            checks.append(Check("p99", WAIT, "p99 not measurable yet (no latency on "
                                f"{'the service' if sp is None else 'legacy'})"))
        else:
            ratio = sp / lp
            checks.append(Check("p99", FAIL if ratio > gates.max_p99_ratio else PASS,
                                f"service {_ms(sp)} vs legacy {_ms(lp)} "
                                f"(x{ratio:.2f}, max x{gates.max_p99_ratio:g})"))
    if gates.min_shadow_match is not None:
        rate = figures.shadow_match
        if rate is None:
            checks.append(Check("shadow_match", WAIT, "no shadow comparison in the window"))
        else:
            checks.append(Check("shadow_match", FAIL if rate < gates.min_shadow_match else PASS,
                                f"{rate:.2f} % of {figures.shadow_compared} comparisons "
                                f"(min {gates.min_shadow_match:g} %)"))
    if gates.max_cdc_lag_s is not None:
        lag = figures.cdc_lag_s
        if lag is None:
            checks.append(Check("cdc_lag", WAIT, "CDC lag not measured (no CDC status for "
                                "this capability)"))
        else:
            checks.append(Check("cdc_lag", FAIL if lag > gates.max_cdc_lag_s else PASS,
                                f"{lag:.1f} s (max {gates.max_cdc_lag_s:g} s)"))
    states = {c.state for c in checks}
    state = FAIL if FAIL in states else WAIT if WAIT in states else PASS
    return GateVerdict(state, tuple(checks))


def percentile(row: tuple[float, ...] | list[float], q: float) -> float | None:
    """Quantile Q of a histogram row, interpolated linearly inside the bucket holding it, as
    Prometheus's histogram_quantile does (the first bucket starts at 0; the +Inf bucket reports
    the largest finite bound). The bucket's upper bound alone would make a p99 just over a
    bound read as the next one, and a ratio of two such p99s jump by a whole bucket step.
    None without observations."""
    counts = list(row[:ROWS])
    total = sum(counts)
    if total <= 0:
        return None
    rank, below = q * total, 0.0
    for i, count in enumerate(counts):
        if count > 0 and below + count >= rank:
            if i >= len(LATENCY_BUCKETS):
                break
            lower = LATENCY_BUCKETS[i - 1] if i else 0.0
            return lower + (LATENCY_BUCKETS[i] - lower) * max(0.0, rank - below) / count
        below += count
    return LATENCY_BUCKETS[-1]


def _add_rows(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, ...]:
    if not a:
        return tuple(b)
    if not b:
        return tuple(a)
    return tuple(x + y for x, y in zip(a, b))


def _ms(seconds: float) -> str:
    """Interpolated p99s carry noise digits; a tenth of a millisecond is what they resolve."""
    return f"{seconds * 1000:.1f} ms"
