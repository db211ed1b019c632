"""Events per second over a sliding window, shared by readers in any thread.

Sampled by the capture loop; read by `status()` callers (CLI, Prometheus scrape) without one
reader's call resetting what another sees.
"""
from __future__ import annotations

import time
from collections import deque


class EventRate:
    def __init__(self, window_s: float = 10.0, every_s: float = 1.0, now: float | None = None):
        self.every_s = every_s
        self._samples: deque[tuple[float, int]] = deque(maxlen=max(2, int(window_s / every_s) + 1))
        self._samples.append((time.monotonic() if now is None else now, 0))

    def sample(self, total: int, now: float | None = None) -> None:
        """Record the running total; cheap enough to call on every loop turn."""
        now = time.monotonic() if now is None else now
        if now - self._samples[-1][0] >= self.every_s:
            self._samples.append((now, total))

    def per_second(self, total: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        start, start_total = self._samples[0]
        return (total - start_total) / (now - start) if now > start else 0.0
