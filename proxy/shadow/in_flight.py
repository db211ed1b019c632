"""How many shadows the dispatcher works on at once: as few as keep up with the arrivals.

Little's law: to keep up with λ arrivals per second when each takes W seconds (replay and
compare), about λ·W must be in flight. A fast target needs one: then shadows reach the machine
one after another instead of in bursts, and a burst of replays (with the target's own work) is
what delays the clients sharing the machine (shadow benchmark: p99 1.66x of 0 % shadowing with
four at once, 1.34-1.38x with one). A slow target needs many, up to the dispatcher's `workers`.
The rate counts the work still waiting as if it had arrived in the window: when the workers
shed at the source (the queue is full) nothing arrives, and a limit sized on arrivals alone
would fall to one and keep the queue full for good. Until a window has measured both, and
whenever work is waiting but nothing completed, the limit is the ceiling: a slow target is
never starved by a low guess.
"""
from __future__ import annotations

import math

WINDOW_S = 0.25         # how often the limit is recomputed
HEADROOM = 2.0          # in flight = HEADROOM * rate * time per shadow, rounded up


class InFlightLimit:
    """The limit, recomputed from what one window saw (`update`)."""

    def __init__(self, ceiling: int) -> None:
        self.ceiling = max(1, ceiling)
        self.limit = self.ceiling
        self._arrivals = 0
        self._completions = 0
        self._busy_s = 0.0

    def arrived(self) -> None:
        self._arrivals += 1

    def completed(self, seconds: float) -> None:
        """One shadow done, `seconds` after a consumer took it."""
        self._completions += 1
        self._busy_s += seconds

    def update(self, window_s: float, waiting: int) -> int:
        """The new limit after a window of `window_s` with `waiting` shadows still queued."""
        if self._completions:
            rate = (self._arrivals + waiting) / window_s
            per_shadow = self._busy_s / self._completions
            wanted = math.ceil(HEADROOM * rate * per_shadow - 1e-9)   # 10.000000001 is 10
            self.limit = min(self.ceiling, max(1, wanted))
        elif waiting:
            self.limit = self.ceiling       # work waits and none finished: the target is slow
        self._arrivals = self._completions = 0
        self._busy_s = 0.0
        return self.limit
