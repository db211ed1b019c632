"""Whether a worker's event loop is saturated, so its shadows are shed before its clients wait.

A full shadow queue sheds too late: until it fills, shadow work keeps taking its share of the
CPUs while clients wait. Saturated: the loop's thread spent SHED_BUSY_SHARE of the last window
running or ready to run (waiting for a CPU other processes held counts: on a shared machine a
worker is starved long before its own CPU time says so). An idle loop sleeps in epoll and counts
as neither. The overload is over when a window comes in under the bar.
"""
from __future__ import annotations

import asyncio
import time

SHED_BUSY_SHARE = 0.85
BUSY_WINDOW_S = 0.1
SCHEDSTAT = "/proc/thread-self/schedstat"   # Linux: ns on the CPU, ns waiting for one, slices


async def watch(share: float, on_change) -> None:
    """Call `on_change(saturated)` after every window, for as long as the task runs."""
    busy, wall = busy_seconds(), time.monotonic()
    while True:
        await asyncio.sleep(BUSY_WINDOW_S)
        now_busy, now = busy_seconds(), time.monotonic()
        on_change(now_busy - busy >= share * (now - wall))
        busy, wall = now_busy, now


def busy_seconds() -> float:
    """This thread's time on a CPU plus waiting for one; its CPU time alone where the kernel
    does not say (no schedstat)."""
    try:
        with open(SCHEDSTAT) as f:
            on_cpu, waiting = f.read().split()[:2]
        return (int(on_cpu) + int(waiting)) / 1e9
    except (OSError, ValueError):
        return time.thread_time()
