"""The fault harness's pure parts (tests/fault): the seeded schedule and the
gap report."""

from tests.fault.bank import gaps
from tests.fault.harness import KINDS, schedule


def test_the_schedule_is_a_function_of_the_seed_and_covers_every_kind():
    a = schedule(7, duration=600, interval=30)
    assert a == schedule(7, duration=600, interval=30) and a != schedule(8, duration=600, interval=30)
    assert [f.at for f in a] == [30.0 * i for i in range(1, 20)]
    assert set(f.kind for f in a) == set(KINDS)
    assert all((3.0 <= f.seconds <= 8.0) == f.kind.startswith(("freeze", "partition")) for f in a)


def test_the_longest_gap_after_each_fault():
    faults = [(10.0, "kill a"), (20.0, "kill b")]
    acks = [9.0, 11.0, 12.0, 18.0, 25.0, 26.0]
    assert gaps(faults, acks, end=30.0) == [("kill a", 6.0), ("kill b", 5.0)]
    assert gaps([(10.0, "x")], [], end=15.0) == [("x", 5.0)]
