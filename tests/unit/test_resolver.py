"""The master's XA resolver (master/resolver.py): Given prepared branches,
Then what it decides, where, and what it leaves alone."""

from __future__ import annotations

import asyncio

from minisql.errors import SqlError
from minisql.xa import Xid, decider_of
from master.resolver import Branch, XaResolver, plan_resolution

G = "ms1:r1:abc.5:1"
H = "ms1:r3:abc.6:2"


def b(gtrid: str, region: str) -> Branch:
    return Branch(Xid(gtrid, region), region)


def test_branches_are_in_doubt_only_after_the_grace_period():
    seen = {b(G, "r2"): 0.0, b(G, "r1"): 4.0}
    plan = plan_resolution([b(G, "r2"), b(G, "r1")], seen, now=5.0, live={"r1", "r2"}, grace=5.0, holding={"r1", "r2"})
    assert plan.decide == {G: (b(G, "r2"),)} and plan.waiting == ()


def test_a_transaction_whose_decider_is_away_but_still_holds_copies_waits():
    seen = {b(H, "r2"): 0.0, b(G, "r2"): 0.0}
    plan = plan_resolution(seen, seen, now=10.0, live={"r1", "r2"}, grace=5.0, holding={"r1", "r2", "r3"})
    assert plan.decide == {G: (b(G, "r2"),)}
    assert plan.waiting == (b(H, "r2"),) and plan.orphans == {}


def test_the_branches_of_a_failed_over_decider_are_orphans_rolled_back():
    seen = {b(H, "r2"): 0.0}
    plan = plan_resolution(seen, seen, now=10.0, live={"r1", "r2"}, grace=5.0, holding={"r1", "r2"})
    assert plan.orphans == {H: (b(H, "r2"),)} and plan.waiting == () and plan.decide == {}
    # a decider that was failed over and came back (live, but holding nothing) is no authority either
    plan = plan_resolution(seen, seen, now=10.0, live={"r1", "r2", "r3"}, grace=5.0, holding={"r1", "r2"})
    assert plan.orphans == {H: (b(H, "r2"),)} and plan.decide == {}


def test_orphans_wait_while_a_region_that_may_hold_the_backup_decision_is_away():
    seen = {b(H, "r2"): 0.0}
    plan = plan_resolution(seen, seen, now=10.0, live={"r1", "r2"}, grace=5.0, holding={"r1", "r2", "r4"})
    assert plan.orphans == {} and plan.waiting == (b(H, "r2"),)


def alive(*tokens: str):
    async def owners() -> set[str]:
        return set(tokens)

    return owners


def test_the_branches_of_a_dead_proxy_are_in_doubt_at_once():
    seen = {b(G, "r2"): 10.0}
    held = {"r1", "r2"}
    assert plan_resolution(seen, seen, now=10.0, live=held, grace=5.0, holding=held, owners={"abc"}).decide == {}
    plan = plan_resolution(seen, seen, now=10.0, live=held, grace=5.0, holding=held, owners={"other"})
    assert plan.decide == {G: (b(G, "r2"),)}


class FakeTopology:
    def __init__(self, live, holding=("r1", "r2", "r3")):
        self.live = live
        self.holding = holding

    async def list_regions(self):
        return {r: None for r in self.live}

    async def get_placement(self):
        from topology import EMPTY_PLACEMENT, TablePlacement

        p = EMPTY_PLACEMENT.with_database("d")
        for i, region in enumerate(self.holding):
            p = p.with_table(TablePlacement("d", f"t{i}", region, {}))
        return p


class FakeRegions:
    """Region tasks over a dict of prepared branches and each region's decision
    rows (`decisions`: gtrid -> outcome on its decider; `rows`: (region, gtrid) -> outcome)."""

    def __init__(self, prepared: dict[str, list[tuple[str, str]]], decisions: dict[str, str],
                 rows: dict[tuple[str, str], str] | None = None):
        self.prepared = prepared
        self.rows = {(decider_of(g), g): o for g, o in decisions.items()} | dict(rows or {})
        self.calls: list[tuple[str, str]] = []

    @property
    def decisions(self) -> dict[str, str]:
        return {g: o for (r, g), o in self.rows.items() if r == decider_of(g)}

    async def call(self, region, payload, timeout=None):
        op = payload["op"]
        self.calls.append((region, op))
        if op == "xa_recover":
            return {"branches": [list(x) for x in self.prepared.get(region, [])]}
        if op == "xa_decide":
            return {"outcome": self.rows.setdefault((region, payload["gtrid"]), "abort")}
        if op == "xa_record":
            key = (region, payload["gtrid"])
            if payload.get("lookup"):
                return {"outcome": self.rows.get(key)}
            return {"outcome": self.rows.setdefault(key, payload["outcome"])}
        if op == "xa_settle":
            self.prepared[region].remove((payload["gtrid"], payload["bqual"]))
            self.calls.append((region, "commit" if payload["commit"] else "rollback"))
            return {"ok": True}
        if op == "xa_forget":
            return {"ok": True, "deleted": 0}
        raise SqlError(1105, op)

    async def call_many(self, regions, payload, timeout=None):
        return {r: await self.call(r, payload) for r in regions}


def test_a_decided_commit_is_finished_and_an_undecided_transaction_is_aborted():
    clock = [0.0]
    regions = FakeRegions({"r1": [(G, "r1")], "r2": [(G, "r2"), ("ms1:r2:abc.7:1", "r2")]},
                          {G: "commit"})
    resolver = XaResolver(FakeTopology(["r1", "r2"]), regions, grace=5.0, clock=lambda: clock[0], owners=alive("abc"))
    assert asyncio.run(resolver.pass_once()) == 0  # first seen now: a live proxy may still finish them
    clock[0] = 6.0
    assert asyncio.run(resolver.pass_once()) == 3
    assert ("r1", "commit") in regions.calls and ("r2", "commit") in regions.calls
    assert ("r2", "rollback") in regions.calls  # ms1:r2:abc.7:1 had no decision: abort won
    assert regions.decisions["ms1:r2:abc.7:1"] == "abort"
    assert regions.prepared == {"r1": [], "r2": []}


def test_orphans_of_a_failed_over_decider_are_rolled_back_without_asking_it():
    clock = [0.0]
    regions = FakeRegions({"r2": [(H, "r2")]}, {})
    resolver = XaResolver(FakeTopology(["r1", "r2"], holding=("r1", "r2")), regions, grace=1.0, clock=lambda: clock[0],
                          owners=alive("abc"))
    asyncio.run(resolver.pass_once())
    clock[0] = 2.0
    assert asyncio.run(resolver.pass_once()) == 1
    assert ("r2", "rollback") in regions.calls and not any(op == "xa_decide" for _, op in regions.calls)


def test_nothing_is_settled_while_the_decider_is_away():
    clock = [0.0]
    regions = FakeRegions({"r2": [(H, "r2")]}, {})
    resolver = XaResolver(FakeTopology(["r1", "r2"]), regions, grace=1.0, clock=lambda: clock[0], owners=alive("abc"))
    asyncio.run(resolver.pass_once())
    clock[0] = 100.0
    assert asyncio.run(resolver.pass_once()) == 0
    assert not any(op in ("xa_decide", "xa_settle") for _, op in regions.calls)


def test_a_commit_is_recorded_on_every_branch_region_before_any_branch_commits():
    clock = [10.0]
    regions = FakeRegions({"r1": [(G, "r1")], "r2": [(G, "r2")]}, {G: "commit"})
    resolver = XaResolver(FakeTopology(["r1", "r2"]), regions, grace=0.0, clock=lambda: clock[0], owners=alive("other"))
    assert asyncio.run(resolver.pass_once()) == 2
    assert regions.rows[("r2", G)] == "commit"  # the decider's row, copied: it outlives a failover of r1
    first_commit = min(i for i, c in enumerate(regions.calls) if c[1] == "commit")
    assert [c for c in regions.calls[:first_commit] if c[1] == "xa_record"] == [("r1", "xa_record"), ("r2", "xa_record")]


def test_an_orphan_commits_when_the_backup_recorded_commit():
    """The decider r3 was failed over after the proxy recorded `commit` on it and
    on the backup r1, and committed r1's branch: the rest commits too."""
    clock = [10.0]
    regions = FakeRegions({"r2": [(H, "r2")]}, {}, rows={("r1", H): "commit"})
    resolver = XaResolver(FakeTopology(["r1", "r2"], holding=("r1", "r2")), regions, grace=0.0, clock=lambda: clock[0],
                          owners=alive("other"))
    assert asyncio.run(resolver.pass_once()) == 1
    assert ("r2", "commit") in regions.calls and regions.rows[("r2", H)] == "commit"


def test_an_orphan_without_a_commit_anywhere_is_aborted_where_its_branches_are():
    clock = [10.0]
    regions = FakeRegions({"r1": [(H, "r1")], "r2": [(H, "r2")]}, {})
    resolver = XaResolver(FakeTopology(["r1", "r2"], holding=("r1", "r2")), regions, grace=0.0, clock=lambda: clock[0],
                          owners=alive("other"))
    assert asyncio.run(resolver.pass_once()) == 2
    assert regions.rows[("r1", H)] == regions.rows[("r2", H)] == "abort"  # a late backup `commit` now loses
    assert ("r1", "rollback") in regions.calls and ("r2", "rollback") in regions.calls
