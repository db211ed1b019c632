"""Diffy-style noise cancellation: is a differing field a regression or just noise?

For a sample of shadowed requests legacy is asked a second time. Per capability, route and
field two rates are kept:

- raw rate   = requests where the field differs legacy vs service / requests compared
- noise rate = requests where the field differs legacy vs legacy   / noise samples taken

A field is **reported** (a likely regression) only when all of these hold, as in Diffy
(github.com/opendiffy/diffy, `DifferencesFilterFactory`), with rates in place of counts because
noise is sampled on a share of the requests only:

1. raw rate > noise rate;
2. relative difference |raw − noise| / (raw + noise) > 20 % (`RELATIVE_THRESHOLD`);
3. absolute difference |raw − noise| > 0.03 % of requests (`ABSOLUTE_THRESHOLD`).

Otherwise it is **noise** (e.g. `generated_at`, `request_id`: they differ legacy vs legacy
as often as legacy vs service, so they cancel with no ignore rule). No verdict is given before
`MIN_COMPARED` comparisons and `MIN_NOISE_SAMPLES` noise samples on the route: such a field is
**pending**, and counts as a difference (a CI gate must not pass on too little evidence).
A route short of noise samples of its own is judged with its capability's (proxy.shadow.report).
Status mismatches are never noise.
"""
from __future__ import annotations

REPORTED = "reported"
NOISE = "noise"
PENDING = "pending"

RELATIVE_THRESHOLD = 0.20
ABSOLUTE_THRESHOLD = 0.0003
MIN_COMPARED = 10
MIN_NOISE_SAMPLES = 10

THRESHOLDS = {
    "relative": RELATIVE_THRESHOLD,
    "absolute": ABSOLUTE_THRESHOLD,
    "min_compared": MIN_COMPARED,
    "min_noise_samples": MIN_NOISE_SAMPLES,
}


def rate(count: int, total: int) -> float:
    return count / total if total else 0.0


def verdict(raw: int, compared: int, noise: int, noise_samples: int) -> str:
    """The verdict for one field on one route, from its counts."""
    if compared < MIN_COMPARED or noise_samples < MIN_NOISE_SAMPLES:
        return PENDING
    raw_rate, noise_rate = rate(raw, compared), rate(noise, noise_samples)
    delta = raw_rate - noise_rate
    if delta > 0 and delta / (raw_rate + noise_rate) > RELATIVE_THRESHOLD \
            and delta > ABSOLUTE_THRESHOLD:
        return REPORTED
    return NOISE


class NoiseSampler:
    """Chooses which requests also go to legacy a second time: evenly spaced, per route.

    Deterministic (every 1/p-th request of a route) rather than random, so a route gets its
    share of noise samples even at low traffic, and tests are reproducible.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], int] = {}

    def take(self, capability: str, route: str, percent: float) -> bool:
        if percent <= 0:
            return False
        key = (capability, route)
        n = self._seen.get(key, 0) + 1
        self._seen[key] = n
        return int(n * percent / 100) > int((n - 1) * percent / 100)
