"""A circuit breaker per backend (per worker process): stop sending to a backend that keeps failing.

closed --(spec.failures failures within spec.window_s)--> open --(cooldown_s)--> half-open:
one trial request is let through; success closes, failure opens again.
"""
from __future__ import annotations

import time
from collections import deque

from proxy.decision import BreakerSpec

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class Breaker:
    __slots__ = ("spec", "_failures", "_opened_at", "_trial_at", "_trial_out", "state",
                 "opened_total")

    def __init__(self, spec: BreakerSpec) -> None:
        self.spec = spec
        self._failures: deque[float] = deque()
        self._opened_at = 0.0
        self._trial_at = 0.0
        self._trial_out = False
        self.state = CLOSED
        self.opened_total = 0

    def allow(self) -> bool:
        """May a request go to this backend now? (Half-open lets exactly one trial through.)"""
        if self.state == CLOSED:
            return True
        now = time.monotonic()
        if self.state == OPEN:
            if now - self._opened_at < self.spec.cooldown_s:
                return False
            self.state = HALF_OPEN
            self._trial_out = False
        # A trial whose outcome never came back (client went away) is given up after a cooldown.
        if self._trial_out and now - self._trial_at < self.spec.cooldown_s:
            return False
        self._trial_out = True
        self._trial_at = now
        return True

    def shown(self) -> str:
        """The state the next request would meet, for status and metrics: an open breaker past
        its cooldown lets a trial through, so it reads half-open (at 0 % no request tries the
        service, and "open" would stay on every dashboard long after the service recovered)."""
        if self.state == OPEN and time.monotonic() - self._opened_at >= self.spec.cooldown_s:
            return HALF_OPEN
        return self.state

    def success(self) -> None:
        if self.state != CLOSED:
            self.state = CLOSED
            self._trial_out = False
            self._failures.clear()

    def failure(self) -> None:
        now = time.monotonic()
        if self.state == HALF_OPEN:
            self._open(now)
            return
        failures = self._failures
        failures.append(now)
        horizon = now - self.spec.window_s
        while failures and failures[0] < horizon:
            failures.popleft()
        if len(failures) >= self.spec.failures:
            self._open(now)

    def _open(self, now: float) -> None:
        self.state = OPEN
        self._opened_at = now
        self._trial_out = False
        self._failures.clear()
        self.opened_total += 1
