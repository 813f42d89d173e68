"""The restart schedule of `minisql up` (minisql/supervise.py), Given/Then."""

from minisql.supervise import Backoff


def test_delays_double_while_a_child_keeps_dying_and_stop_at_the_cap():
    b = Backoff(initial=1.0, cap=8.0, stable=60.0, started_at=0.0)
    delays = []
    now = 10.0
    for _ in range(6):
        delay = b.died(now)
        delays.append(delay)
        assert not b.ready(now) and b.ready(now + delay)
        now += delay
        b.launched(now)
        now += 1.0  # dies a second after each restart
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert b.restarts == 6


def test_a_child_that_stayed_up_starts_again_from_the_first_delay():
    b = Backoff(initial=1.0, cap=30.0, stable=60.0, started_at=0.0)
    assert b.died(5.0) == 1.0
    b.launched(6.0)
    assert b.died(7.0) == 2.0
    b.launched(9.0)
    assert b.died(9.0 + 61.0) == 1.0  # ran for more than `stable`


def test_a_failed_relaunch_counts_as_another_death():
    b = Backoff(initial=1.0, cap=30.0, stable=60.0, started_at=0.0)
    b.died(1.0)
    assert b.ready(2.0)
    assert b.died(2.0) == 2.0  # launch raised (port still busy): not launched, later again
    assert b.due == 4.0 and b.restarts == 0
