"""EventRate: a sliding-window rate that readers do not disturb."""
from cdc.event_rate import EventRate


def test_rate_over_the_window_and_readers_do_not_reset_it():
    start = 1000.0
    rate = EventRate(window_s=3, every_s=1, now=start)
    for second in range(1, 6):
        rate.sample(100 * second, now=start + second)
    # The window keeps the last 4 samples (t=2..5): 300 events in 3 seconds.
    assert rate.per_second(500, now=start + 5) == 100
    assert rate.per_second(500, now=start + 5) == 100       # reading twice changes nothing
    rate.sample(510, now=start + 5.5)                        # too soon: not a new sample
    assert rate.per_second(510, now=start + 5) == 310 / 3


def test_no_time_elapsed_is_zero_not_a_division_error():
    rate = EventRate(now=5.0)
    assert rate.per_second(10, now=5.0) == 0.0
