"""Given/Then tables for the master's pure placement decisions (master/assignor.py).

Placements are written compactly: {"db.t": "r1 > r2, r3:stale"} means primary
r1, IN_SYNC replica r2 and STALE replica r3.
"""

from __future__ import annotations

import pytest

from master.assignor import (
    CopyReplica,
    DropReplica,
    NotEnoughRegions,
    Promote,
    Unavailable,
    abort_copy,
    apply_membership,
    begin_copy,
    copy_still_wanted,
    finish_copy,
    mark_replicas,
    place_new_table,
    plan_failover,
    rank_regions,
)
from topology import EMPTY_PLACEMENT, Placement, RegionLoad, ReplicaState, TablePlacement

S = {"in_sync": ReplicaState.IN_SYNC, "copying": ReplicaState.COPYING, "stale": ReplicaState.STALE}


def placement(spec: dict[str, str], databases: tuple[str, ...] = ()) -> Placement:
    p = EMPTY_PLACEMENT
    for db in databases:
        p = p.with_database(db)
    for qualified, layout in spec.items():
        db, name = qualified.split(".")
        primary, _, rest = layout.partition(">")
        replicas = {}
        for item in filter(None, (x.strip() for x in rest.split(","))):
            region, _, state = item.partition(":")
            replicas[region] = S[state or "in_sync"]
        p = p.with_database(db).with_table(TablePlacement(db, name, primary.strip(), replicas))
    return p


def describe(p: Placement) -> dict[str, str]:
    out = {}
    for t in p.all_tables():
        reps = ", ".join(
            r if s == ReplicaState.IN_SYNC else f"{r}:{s.value}" for r, s in sorted(t.replicas.items())
        )
        out[f"{t.database}.{t.name}"] = f"{t.primary} > {reps}" if reps else t.primary
    return out


def loads(**rows: int) -> dict[str, RegionLoad]:
    return {r: RegionLoad(region_id=r, rows=n) for r, n in rows.items()}


# -- place_new_table -------------------------------------------------------------

PLACE_CASES = [
    # (why, live regions, rows per region, existing placement, expected (primary, replica))
    ("empty cluster: ties broken by region id", ["r2", "r1", "r3"], {}, {}, ("r1", "r2")),
    ("fewest table copies wins before rows", ["r1", "r2", "r3"], {"r3": 10**6},
     {"a.x": "r1 > r2"}, ("r3", "r1")),
    ("equal copies: fewer rows wins", ["r1", "r2", "r3"], {"r1": 500, "r2": 100, "r3": 300}, {}, ("r2", "r3")),
    ("replicas count as copies too", ["r1", "r2", "r3"], {}, {"a.x": "r2 > r3", "a.y": "r3 > r2"}, ("r1", "r2")),
    ("dead region in placement is never chosen", ["r2", "r3"], {}, {"a.x": "r1 > r2"}, ("r3", "r2")),
    ("no load report counts as 0 rows", ["r1", "r2"], {"r1": 5}, {}, ("r2", "r1")),
    ("stale/copying copies count", ["r1", "r2", "r3"], {}, {"a.x": "r1 > r2:copying", "a.y": "r3 > r2:stale"},
     ("r1", "r3")),
]


@pytest.mark.parametrize("why, live, rows, spec, expected", PLACE_CASES, ids=[c[0] for c in PLACE_CASES])
def test_place_new_table(why, live, rows, spec, expected):
    assert place_new_table(live, loads(**rows), placement(spec)) == expected


@pytest.mark.parametrize("live", [[], ["r1"]])
def test_place_new_table_needs_two_regions(live):
    with pytest.raises(NotEnoughRegions, match="needs 2 live regions"):
        place_new_table(live, {}, EMPTY_PLACEMENT)


def test_rank_regions_counts_planned_extra():
    assert rank_regions(["r1", "r2"], {}, EMPTY_PLACEMENT, {"r1": 1}) == ["r2", "r1"]


def test_consecutive_creates_spread_over_regions():
    p = placement({}, databases=("d",))
    seen = []
    for i in range(3):
        primary, replica = place_new_table(["r1", "r2", "r3"], {}, p)
        seen.append((primary, replica))
        p = p.with_table(TablePlacement("d", f"t{i}", primary, {replica: ReplicaState.IN_SYNC}))
    assert seen == [("r1", "r2"), ("r3", "r1"), ("r2", "r3")]


# -- plan_failover --------------------------------------------------------------

FAILOVER_CASES = [
    # (why, placement, live, suspect, copying, rows, expected moves)
    ("all alive: nothing to do", {"d.t": "r1 > r2"}, ["r1", "r2", "r3"], [], [], {}, []),
    ("primary dead: promote in-sync replica, copy to a free region",
     {"d.t": "r1 > r2"}, ["r2", "r3"], [], [], {},
     [Promote("d", "t", "r1", "r2"), CopyReplica("d", "t", "r3", "r2")]),
    ("replica dead: drop it and copy from primary",
     {"d.t": "r1 > r2"}, ["r1", "r3"], [], [], {},
     [DropReplica("d", "t", "r2"), CopyReplica("d", "t", "r3", "r1")]),
    ("region missing within grace: wait",
     {"d.t": "r1 > r2"}, ["r2", "r3"], ["r1"], [], {}, []),
    ("replica suspect: primary alive, still wait (the copy is not dead yet)",
     {"d.t": "r1 > r2"}, ["r1", "r3"], ["r2"], [], {}, []),
    ("primary dead, only a stale replica: unavailable, never promote stale",
     {"d.t": "r1 > r2:stale"}, ["r2", "r3"], [], [], {}, [Unavailable("d", "t", "r1")]),
    ("primary dead, only a copying replica: unavailable",
     {"d.t": "r1 > r2:copying"}, ["r2", "r3"], [], [], {}, [Unavailable("d", "t", "r1")]),
    ("two survivors only: promote, nowhere to copy",
     {"d.t": "r1 > r2"}, ["r2"], [], [], {}, [Promote("d", "t", "r1", "r2")]),
    ("stale replica on a live region is copied again in place",
     {"d.t": "r1 > r2:stale"}, ["r1", "r2", "r3"], [], [], {}, [CopyReplica("d", "t", "r2", "r1")]),
    ("abandoned copying replica is copied again",
     {"d.t": "r1 > r2:copying"}, ["r1", "r2"], [], [], {}, [CopyReplica("d", "t", "r2", "r1")]),
    ("copying replica in flight is left alone",
     {"d.t": "r1 > r2:copying"}, ["r1", "r2"], [], [("d", "t", "r2")], {}, []),
    ("new copies are spread: least-loaded first, planned copies count",
     {"d.a": "r1 > r2", "d.b": "r1 > r3"}, ["r2", "r3", "r4", "r5"], [], [], {"r4": 10, "r5": 20},
     [Promote("d", "a", "r1", "r2"), CopyReplica("d", "a", "r4", "r2"),
      Promote("d", "b", "r1", "r3"), CopyReplica("d", "b", "r5", "r3")]),
    ("promotion picks the least-loaded of several in-sync replicas",
     {"d.t": "r1 > r2, r3"}, ["r2", "r3"], [], [], {"r2": 100, "r3": 1},
     [Promote("d", "t", "r1", "r3")]),
    ("both copies dead: unavailable, dead replica kept for when it returns",
     {"d.t": "r1 > r2"}, ["r3"], [], [], {}, [Unavailable("d", "t", "r1")]),
]


@pytest.mark.parametrize(
    "why, spec, live, suspect, copying, rows, expected", FAILOVER_CASES, ids=[c[0] for c in FAILOVER_CASES]
)
def test_plan_failover(why, spec, live, suspect, copying, rows, expected):
    assert plan_failover(placement(spec), live, loads(**rows), suspect=suspect, copying=copying) == expected


LAGGING_CASES = [
    # (why, placement, live, lagging regions, expected moves)
    ("the only in-sync replica lags: unavailable, named, not promoted",
     {"d.t": "r1 > r2"}, ["r2", "r3"], ["r2"], [Unavailable("d", "t", "r1", ("r2",))]),
    ("a lagging replica is passed over for one that keeps up",
     {"d.t": "r1 > r2, r3"}, ["r2", "r3"], ["r2"], [Promote("d", "t", "r1", "r3")]),
    ("lag does not stop copies from a live primary (nothing is promoted)",
     {"d.t": "r1 > r2:stale"}, ["r1", "r2"], ["r1"], [CopyReplica("d", "t", "r2", "r1")]),
    ("every table of the dead region passes over the lagging region",
     {"d.a": "r1 > r2, r3", "d.b": "r1 > r2, r3"}, ["r2", "r3"], ["r3"],
     [Promote("d", "a", "r1", "r2"), Promote("d", "b", "r1", "r2")]),
]


@pytest.mark.parametrize("why, spec, live, lagging, expected", LAGGING_CASES, ids=[c[0] for c in LAGGING_CASES])
def test_plan_failover_never_promotes_a_lagging_copy(why, spec, live, lagging, expected):
    assert plan_failover(placement(spec), live, {}, lagging=lagging) == expected


# -- applying moves ---------------------------------------------------------------

APPLY_CASES = [
    # (why, placement, moves, expected placement or None for "no change")
    ("promote drops the dead primary", {"d.t": "r1 > r2"}, [Promote("d", "t", "r1", "r2")], {"d.t": "r2"}),
    ("promote keeps other replicas", {"d.t": "r1 > r2, r3:stale"}, [Promote("d", "t", "r1", "r2")],
     {"d.t": "r2 > r3:stale"}),
    ("promote is skipped once the primary already changed", {"d.t": "r3 > r2"},
     [Promote("d", "t", "r1", "r2")], None),
    ("promote of a replica that went stale meanwhile is skipped", {"d.t": "r1 > r2:stale"},
     [Promote("d", "t", "r1", "r2")], None),
    ("drop replica", {"d.t": "r1 > r2"}, [DropReplica("d", "t", "r2")], {"d.t": "r1"}),
    ("moves on a dropped table are skipped", {"d.u": "r1 > r2"},
     [DropReplica("d", "t", "r2"), Promote("d", "t", "r1", "r2")], None),
    ("copy moves are ignored here", {"d.t": "r1 > r2"}, [CopyReplica("d", "t", "r3", "r1")], None),
]


@pytest.mark.parametrize("why, spec, moves, expected", APPLY_CASES, ids=[c[0] for c in APPLY_CASES])
def test_apply_membership(why, spec, moves, expected):
    result = apply_membership(placement(spec), moves)
    assert (None if result is None else describe(result)) == expected


def test_apply_membership_bumps_table_epoch():
    before = placement({"d.t": "r1 > r2"})
    after = apply_membership(before, [Promote("d", "t", "r1", "r2")])
    assert after.table("d", "t").epoch == before.table("d", "t").epoch + 1


COPY_STEP_CASES = [
    # (why, step, placement, move, expected placement or None)
    ("begin adds a COPYING replica", begin_copy, {"d.t": "r2"}, CopyReplica("d", "t", "r3", "r2"),
     {"d.t": "r2 > r3:copying"}),
    ("begin turns STALE into COPYING", begin_copy, {"d.t": "r1 > r2:stale"}, CopyReplica("d", "t", "r2", "r1"),
     {"d.t": "r1 > r2:copying"}),
    ("begin refuses when the primary moved", begin_copy, {"d.t": "r3"}, CopyReplica("d", "t", "r4", "r2"), None),
    ("begin refuses an IN_SYNC target", begin_copy, {"d.t": "r1 > r2"}, CopyReplica("d", "t", "r2", "r1"), None),
    ("begin refuses a dropped table", begin_copy, {}, CopyReplica("d", "t", "r2", "r1"), None),
    ("finish marks IN_SYNC", finish_copy, {"d.t": "r1 > r2:copying"}, CopyReplica("d", "t", "r2", "r1"),
     {"d.t": "r1 > r2"}),
    ("finish refuses when an ALTER marked it STALE meanwhile", finish_copy, {"d.t": "r1 > r2:stale"},
     CopyReplica("d", "t", "r2", "r1"), None),
    ("finish refuses when the primary changed meanwhile", finish_copy, {"d.t": "r3 > r2:copying"},
     CopyReplica("d", "t", "r2", "r1"), None),
    ("abort marks STALE", abort_copy, {"d.t": "r1 > r2:copying"}, CopyReplica("d", "t", "r2", "r1"),
     {"d.t": "r1 > r2:stale"}),
    ("abort of a replica no longer copying changes nothing", abort_copy, {"d.t": "r1 > r2"},
     CopyReplica("d", "t", "r2", "r1"), None),
]


@pytest.mark.parametrize("why, step, spec, move, expected", COPY_STEP_CASES, ids=[c[0] for c in COPY_STEP_CASES])
def test_copy_steps(why, step, spec, move, expected):
    result = step(placement(spec), move)
    assert (None if result is None else describe(result)) == expected


def test_copy_still_wanted():
    move = CopyReplica("d", "t", "r2", "r1")
    assert copy_still_wanted(placement({"d.t": "r1 > r2:copying"}), move)
    assert not copy_still_wanted(placement({"d.t": "r1 > r2:stale"}), move)
    assert not copy_still_wanted(placement({}), move)


MARK_CASES = [
    ("mark a failed replica stale", {"d.t": "r1 > r2, r3"}, ["r3"], ReplicaState.STALE, {"d.t": "r1 > r2, r3:stale"}),
    ("already stale: no change", {"d.t": "r1 > r2:stale"}, ["r2"], ReplicaState.STALE, None),
    ("the primary is never marked", {"d.t": "r1 > r2"}, ["r1"], ReplicaState.STALE, None),
    ("unknown table: no change", {}, ["r2"], ReplicaState.STALE, None),
]


@pytest.mark.parametrize("why, spec, regions, state, expected", MARK_CASES, ids=[c[0] for c in MARK_CASES])
def test_mark_replicas(why, spec, regions, state, expected):
    result = mark_replicas(placement(spec), "d", "t", regions, state)
    assert (None if result is None else describe(result)) == expected
