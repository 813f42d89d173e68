"""Given/Then tables for colocation groups: tables linked by FOREIGN KEYs share
their regions (topology.Placement.colocation_groups, master.assignor
plan_colocation / apply_move, and group-aware plan_failover)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from master.assignor import CopyReplica, MoveTable, NotEnoughRegions, Promote, apply_move, move_sources, plan_colocation, plan_failover
from master.ddl import TableRef, analyze_ddl, referenced_tables
from topology import Placement, ReplicaState

from .test_assignor import describe, loads, placement


def linked(p: Placement, child: str, *parents: str) -> Placement:
    db, name = child.split(".")
    t = p.table(db, name)
    assert t is not None
    return p.with_table(replace(t, references=tuple(tuple(x.split(".")) for x in parents)))  # type: ignore[misc]


def test_groups_are_connected_components_of_references():
    p = placement({"d.a": "r1 > r2", "d.b": "r2 > r3", "d.c": "r3 > r1", "d.x": "r1 > r2"})
    p = linked(p, "d.c", "d.a", "d.gone")  # a reference to a table not in the placement is ignored
    p = linked(p, "d.b", "d.c")
    groups = p.colocation_groups()
    assert groups[("d", "a")] == groups[("d", "b")] == groups[("d", "c")] == (("d", "a"), ("d", "b"), ("d", "c"))
    assert groups[("d", "x")] == (("d", "x"),)
    assert p.referencing("d", "gone") == (("d", "c"),)
    assert p.referencing("d", "a") == (("d", "c"),)


def test_references_survive_the_json_round_trip():
    p = linked(placement({"d.a": "r1 > r2", "d.c": "r1 > r2"}), "d.c", "d.a", "e.z")
    back = Placement.from_json(p.to_json(), 3)
    assert back.table("d", "c").references == (("d", "a"), ("e", "z"))
    assert b"references" not in placement({"d.a": "r1 > r2"}).to_json()  # no key for tables without FKs


@pytest.mark.parametrize(
    "why, spec, members, live, expected_target, expected_moves",
    [
        ("one parent: the child goes where it is, nothing moves",
         {"d.p": "r1 > r2"}, ["d.p"], "r1 r2 r3", ("r1", ("r2",)), []),
        ("two parents apart: the one with fewer tables in its group moves",
         {"d.p": "r1 > r2", "d.q": "r3 > r1", "d.pc": "r1 > r2"}, ["d.p", "d.q"], "r1 r2 r3", ("r1", ("r2",)), ["d.q"]),
        ("a tie goes to the copies whose primary is least loaded",
         {"d.p": "r1 > r2", "d.q": "r3 > r1", "d.big": "r1 > r3"}, ["d.p", "d.q"], "r1 r2 r3", ("r3", ("r1",)), ["d.p"]),
        ("copies with a dead region are not a target",
         {"d.p": "r1 > r2", "d.pc": "r1 > r2", "d.q": "r3 > r1"}, ["d.p", "d.q"], "r1 r3", ("r3", ("r1",)), ["d.p", "d.pc"]),
        ("names not in the placement: nothing to colocate with",
         {"d.p": "r1 > r2"}, ["d.nope"], "r1 r2 r3", None, None),
    ],
)
def test_plan_colocation(why, spec, members, live, expected_target, expected_moves):
    p = placement(spec)
    if "d.pc" in spec:
        p = linked(p, "d.pc", "d.p")
    plan = plan_colocation(p, [tuple(m.split(".")) for m in members], live.split(), loads(r1=100, r2=50, r3=0))
    if expected_target is None:
        assert plan is None
        return
    assert (plan.primary, plan.replicas) == expected_target, why
    assert sorted(f"{m.database}.{m.table}" for m in plan.moves) == expected_moves, why
    assert all((m.primary, m.replicas) == expected_target for m in plan.moves)


def test_plan_colocation_with_no_usable_copies_refuses():
    with pytest.raises(NotEnoughRegions):
        plan_colocation(placement({"d.p": "r1 > r2"}), [("d", "p")], ["r3"], {})


def test_a_move_copies_first_then_switches_in_one_step():
    p = placement({"d.q": "r3 > r1"})
    move = MoveTable("d", "q", "r1", ("r2",))
    assert move_sources(p.table("d", "q"), move) == ["r2"]
    assert apply_move(p, move) is None  # r2 has no IN_SYNC copy yet
    p = placement({"d.q": "r3 > r1, r2"})
    assert move_sources(p.table("d", "q"), move) == []
    assert describe(apply_move(p, move)) == {"d.q": "r1 > r2"}
    assert apply_move(placement({"d.q": "r1 > r2"}), move) is None  # already there


def test_failover_keeps_a_group_together():
    # Four regions: without groups, the second table's new copy would go to the
    # other free region (r3 and r4 tie, `planned` breaks the tie apart).
    p = linked(placement({"d.a": "r1 > r2", "d.b": "r1 > r2"}), "d.b", "d.a")
    moves = plan_failover(p, ["r2", "r3", "r4"], loads())
    promotes = [m for m in moves if isinstance(m, Promote)]
    copies = [m for m in moves if isinstance(m, CopyReplica)]
    assert {m.new_primary for m in promotes} == {"r2"}
    assert len(copies) == 2 and len({m.target for m in copies}) == 1
    unlinked = plan_failover(placement({"d.a": "r1 > r2", "d.b": "r1 > r2"}), ["r2", "r3", "r4"], loads())
    assert len({m.target for m in unlinked if isinstance(m, CopyReplica)}) == 2


def test_failover_promotes_one_region_for_a_group():
    p = placement({"d.a": "r1 > r2, r3", "d.b": "r1 > r2, r3"})
    p = linked(p, "d.b", "d.a")
    promotes = [m for m in plan_failover(p, ["r2", "r3"], loads(r2=10, r3=10)) if isinstance(m, Promote)]
    assert len({m.new_primary for m in promotes}) == 1
    assert all(p.table(m.database, m.table).replicas[m.new_primary] == ReplicaState.IN_SYNC for m in promotes)


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("CREATE TABLE c (id INT, pid INT REFERENCES p(id))", [TableRef(None, "p")]),
        ("CREATE TABLE c (a INT, FOREIGN KEY (a) REFERENCES `db`.`p2` (id) ON DELETE CASCADE, "
         "CONSTRAINT f FOREIGN KEY (a) REFERENCES p2 (id))", [TableRef("db", "p2"), TableRef(None, "p2")]),
        ("CREATE TABLE c (`references` INT, s VARCHAR(9) DEFAULT 'references x') -- references y", []),
        ("ALTER TABLE c ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES p (id), ADD FOREIGN KEY (b) REFERENCES p (id)",
         [TableRef(None, "p")]),
    ],
)
def test_referenced_tables(sql, expected):
    assert list(referenced_tables(sql)) == expected


def test_analyze_ddl_carries_references_for_create_and_alter_only():
    assert analyze_ddl("CREATE TABLE c (a INT, FOREIGN KEY (a) REFERENCES p (id))").references == (TableRef(None, "p"),)
    assert analyze_ddl("ALTER TABLE c ADD FOREIGN KEY (a) REFERENCES p (id)").references == (TableRef(None, "p"),)
    assert analyze_ddl("DROP TABLE c").references == ()


# -- RENAME TABLE across regions (master/rename.py) ------------------------------

from master.rename import apply_rename, plan_rename, rename_sql  # noqa: E402
from minisql.errors import SqlError  # noqa: E402


def keys(*pairs: str):
    return [tuple(tuple(x.split(".")) for x in pair.split(">")) for pair in pairs]


def test_a_swap_across_regions_gives_each_region_its_own_chain():
    p = placement({"d.a": "r1 > r2", "d.b": "r2 > r3"})
    plan = plan_rename(p, keys("d.a>d.tmp", "d.b>d.a", "d.tmp>d.b"))
    assert plan.per_region == {
        "r1": tuple(keys("d.a>d.tmp", "d.tmp>d.b")),
        "r2": tuple(keys("d.a>d.tmp", "d.b>d.a", "d.tmp>d.b")),
        "r3": tuple(keys("d.b>d.a")),
    }
    after = apply_rename(p, plan.pairs)
    assert describe(after) == {"d.a": "r2 > r3", "d.b": "r1 > r2"}
    assert rename_sql(plan.per_region["r3"]) == "RENAME TABLE `d`.`b` TO `d`.`a`"
    assert rename_sql(plan.per_region["r1"], undo=True) == "RENAME TABLE `d`.`b` TO `d`.`tmp`, `d`.`tmp` TO `d`.`a`"


@pytest.mark.parametrize(
    "pairs, if_exists, errno",
    [
        (["d.nope>d.x"], False, 1146),
        (["d.a>d.b"], False, 1050),
        (["d.a>d.x", "d.a>d.y"], False, 1146),  # a was renamed by the first pair
        (["d.a>d.x", "d.b>d.a"], False, None),  # the name a is free again
        (["d.nope>d.x", "d.a>d.z"], True, None),
    ],
)
def test_rename_is_checked_pair_by_pair_like_mariadb(pairs, if_exists, errno):
    p = placement({"d.a": "r1 > r2", "d.b": "r2 > r3"})
    if errno is None:
        plan = plan_rename(p, keys(*pairs), if_exists)
        assert apply_rename(p, plan.pairs) is not None
    else:
        with pytest.raises(SqlError) as e:
            plan_rename(p, keys(*pairs), if_exists)
        assert e.value.errno == errno


def test_renaming_a_parent_rewrites_its_childrens_references_across_databases():
    p = linked(placement({"d.p": "r1 > r2", "d.c": "r1 > r2"}, databases=("e",)), "d.c", "d.p")
    after = apply_rename(p, tuple(keys("d.p>e.p2")))
    assert after.table("d", "c").references == (("e", "p2"),)
    assert after.colocation_groups()[("d", "c")] == (("d", "c"), ("e", "p2"))
    assert apply_rename(p, tuple(keys("d.p>nodb.p"))) is None  # no such database


def test_a_views_new_copy_waits_for_the_tables_it_reads():
    p = placement({"d.t": "r1 > r2", "d.v": "r1 > r2"})
    p = p.with_table(replace(p.table("d", "v"), kind="view", references=(("d", "t"),)))
    moves = plan_failover(p, ["r1", "r3"], loads())  # r2 died: both need a copy on r3
    assert [(m.table, m.target) for m in moves if isinstance(m, CopyReplica)] == [("t", "r3")]
    p = placement({"d.t": "r1 > r3", "d.v": "r1 > r2"})
    p = p.with_table(replace(p.table("d", "v"), kind="view", references=(("d", "t"),)))
    moves = plan_failover(p, ["r1", "r3"], loads())
    assert [(m.table, m.target) for m in moves if isinstance(m, CopyReplica)] == [("v", "r3")]


def test_views_move_after_their_tables():
    p = placement({"d.a": "r1 > r2", "d.b": "r1 > r2", "d.c": "r1 > r2", "d.v": "r3 > r1", "d.z": "r3 > r1"})
    p = p.with_table(replace(p.table("d", "v"), kind="view"))
    plan = plan_colocation(p, [("d", k) for k in "abcvz"], ["r1", "r2", "r3"], loads())
    assert [m.table for m in plan.moves] == ["z", "v"]
