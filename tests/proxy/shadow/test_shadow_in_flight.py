"""The dispatcher's in-flight limit: one shadow at a time for a fast target, as many as Little's
law asks for a slow one, the ceiling whenever it cannot tell."""
from __future__ import annotations

from proxy.shadow.in_flight import InFlightLimit


def window(limit: InFlightLimit, arrivals: int, seconds_each: list[float], waiting: int = 0,
           window_s: float = 0.25) -> int:
    for _ in range(arrivals):
        limit.arrived()
    for seconds in seconds_each:
        limit.completed(seconds)
    return limit.update(window_s, waiting)


def test_until_measured_the_limit_is_the_ceiling():
    assert InFlightLimit(4).limit == 4
    assert InFlightLimit(0).limit == 1          # never zero: shadows would stop


def test_a_fast_target_gets_one_shadow_at_a_time():
    limit = InFlightLimit(4)
    # 3,000 shadows/s at 100 us each: 0.3 in flight, doubled for headroom, rounds up to 1.
    assert window(limit, 750, [0.0001] * 750) == 1


def test_a_slow_target_gets_what_keeps_up_up_to_the_ceiling():
    limit = InFlightLimit(64)
    # 100/s at 50 ms each: 5 in flight, 10 with headroom.
    assert window(limit, 25, [0.05] * 25) == 10
    # 1,000/s at 200 ms: 200 wanted, 64 allowed.
    assert window(limit, 250, [0.2] * 25) == 64


def test_work_waiting_and_nothing_finished_means_the_ceiling():
    limit = InFlightLimit(8)
    assert window(limit, 100, [0.0001] * 100) == 1
    assert window(limit, 40, [], waiting=40) == 8   # the target stalled: open up at once


def test_an_idle_window_keeps_the_limit():
    limit = InFlightLimit(8)
    assert window(limit, 100, [0.0001] * 100) == 1
    assert window(limit, 0, []) == 1
    # and the counts start afresh each window
    assert window(limit, 25, [0.05] * 25) == 8


def test_work_waiting_counts_as_demand_even_when_nothing_arrives():
    """Workers shed at the source while the queue is full, so nothing arrives; the backlog
    alone must keep the limit open, or a slow target would keep the queue full for good."""
    limit = InFlightLimit(32)
    # 5 done in the window at 200 ms each, 1,000 waiting, none arrived: drain them.
    assert window(limit, 0, [0.2] * 5, waiting=1000) == 32
