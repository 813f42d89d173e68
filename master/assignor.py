"""Where tables go: pure placement decisions, no I/O.

Everything here takes values (a `Placement` snapshot, the live region ids, the
regions' `RegionLoad` reports) and returns values, so every rule is pinned by
Given/Then tables in tests/unit/test_assignor.py and the leader loop only
executes what these functions decide.

Load model (seed 000: "new tables go to the least-loaded region").  A region's
load is ranked by, in order:

1. the number of table copies the placement puts on it (authoritative and
   current -- a table created a second ago already counts, whereas the load
   report lags by up to one publishing period),
2. the row count from its latest `RegionLoad` (0 without a report),
3. the region id, so equal regions are always chosen in the same order.

Failover (seed 000: "when a region dies the slave is promoted and a new copy
is made") is planned by `plan_failover` as a list of moves; the leader applies
the membership moves (`Promote`, `DropReplica`) in one compare-and-set with
`apply_membership`, then runs each `CopyReplica` as copy_table on the target
region, bracketed by `begin_copy` / `finish_copy` / `abort_copy`.  Each of
these re-checks its preconditions against the placement it is given, because
`update_placement` may re-run it on a newer snapshot than the one planned on.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Iterable, Mapping, Union

from topology import Placement, RegionLoad, ReplicaState, TablePlacement

COPIES_PER_TABLE = 2  # one primary + one replica


class NotEnoughRegions(Exception):
    """Fewer live regions than copies a table needs."""


def region_copies(placement: Placement) -> Counter[str]:
    """How many table copies (primary or replica, any state) each region holds."""
    counts: Counter[str] = Counter()
    for table in placement.all_tables():
        for region in table.all_regions:
            counts[region] += 1
    return counts


def rank_regions(
    regions: Iterable[str],
    loads: Mapping[str, RegionLoad],
    placement: Placement,
    extra: Mapping[str, int] | None = None,
) -> list[str]:
    """Regions from least to most loaded (see the module docstring for the order).

    `extra` adds copies already planned but not yet in the placement, so one
    plan does not pile every new copy on the same region.
    """
    copies = region_copies(placement)
    extra = extra or {}

    def key(region: str) -> tuple[int, int, str]:
        load = loads.get(region)
        return (copies[region] + extra.get(region, 0), load.rows if load else 0, region)

    return sorted(set(regions), key=key)


def place_new_table(
    regions: Iterable[str], loads: Mapping[str, RegionLoad], placement: Placement
) -> tuple[str, str]:
    """(primary, replica): the least-loaded live region and the next least-loaded other one.

    Raises NotEnoughRegions with fewer than two live regions: a table is never
    created with a single copy.
    """
    ranked = rank_regions(regions, loads, placement)
    if len(ranked) < COPIES_PER_TABLE:
        raise NotEnoughRegions(
            f"a table needs {COPIES_PER_TABLE} live regions (primary and replica), "
            f"{len(ranked)} live ({', '.join(ranked) or 'none'})"
        )
    return ranked[0], ranked[1]


# -- colocation (tables linked by FOREIGN KEYs share their regions) ---------------


@dataclass(frozen=True)
class MoveTable:
    """Give a table exactly these copies: `primary` and IN_SYNC `replicas`.

    Done in three steps (master/mover.py): a copy on each target region that
    lacks an IN_SYNC one, then one compare-and-set that makes `primary` the
    primary and drops every other copy from the placement, then the dropped
    copies' tables are dropped on their regions.
    """

    database: str
    table: str
    primary: str
    replicas: tuple[str, ...]


@dataclass(frozen=True)
class Colocation:
    """Where a table joining a colocation group goes, and what moves first."""

    primary: str
    replicas: tuple[str, ...]
    moves: tuple[MoveTable, ...] = ()


def plan_colocation(
    placement: Placement, members: Iterable[tuple[str, str]], live: Iterable[str], loads: Mapping[str, RegionLoad]
) -> Colocation | None:
    """Bring `members` and every table colocated with them onto one set of regions.

    The target is the copies shared by the most tables of the merged group
    whose regions are all live (ties: the set whose primary ranks least
    loaded, then by region ids): the fewest tables move.  Every other table
    of the group gets a MoveTable to it.  None when no member is in the
    placement (nothing to colocate with).  Raises NotEnoughRegions when no
    table of the group has its copies all live (a move then would copy from a
    dead region: retry after failover).
    """
    groups = placement.colocation_groups()
    keys = sorted({k for m in members if m in groups for k in groups[m]})
    if not keys:
        return None
    live_set = set(live)
    tables = [t for k in keys if (t := placement.table(*k)) is not None]
    votes: Counter[tuple[str, frozenset[str]]] = Counter(
        t.copies for t in tables if t.primary in live_set and t.copies[1] <= live_set and t.copies[1]
    )
    if not votes:
        raise NotEnoughRegions(
            "no table linked to it has all its copies on live regions; retry once failover has run"
        )
    rank = {r: i for i, r in enumerate(rank_regions(live_set, loads, placement))}
    (primary, replicas), _ = min(
        votes.items(), key=lambda kv: (-kv[1], rank.get(kv[0][0], 0), kv[0][0], sorted(kv[0][1]))
    )
    target = tuple(sorted(replicas))
    moves = tuple(  # views last: each is re-created from its definition where its tables already are
        MoveTable(t.database, t.name, primary, target)
        for t in sorted(tables, key=lambda t: (t.is_view, t.database, t.name))
        if t.copies != (primary, replicas)
    )
    return Colocation(primary, target, moves)


def move_sources(table: TablePlacement, move: MoveTable) -> list[str]:
    """Target regions of `move` that still need a copy of `table`."""
    have = set(table.write_regions)
    return [r for r in (move.primary, *move.replicas) if r not in have]


def apply_move(placement: Placement, move: MoveTable) -> Placement | None:
    """The last placement step of a move: `move.primary` primary, exactly
    `move.replicas` IN_SYNC, every other copy gone.  None unless every target
    region holds an IN_SYNC copy (or the primary) now, or nothing changes."""
    t = placement.table(move.database, move.table)
    if t is None or move_sources(t, move):
        return None
    replicas = {r: ReplicaState.IN_SYNC for r in move.replicas}
    if t.primary == move.primary and dict(t.replicas) == replicas:
        return None
    return placement.with_table(_with_replicas(t, move.primary, replicas))


# -- failover planning -----------------------------------------------------------


@dataclass(frozen=True)
class Promote:
    """The primary's region is dead: its in-sync replica becomes the primary."""

    database: str
    table: str
    old_primary: str
    new_primary: str


@dataclass(frozen=True)
class DropReplica:
    """A replica's region is dead: forget that copy."""

    database: str
    table: str
    region: str


@dataclass(frozen=True)
class CopyReplica:
    """Fill `target` with a fresh copy from the primary `source` (new, stale or abandoned copy)."""

    database: str
    table: str
    target: str
    source: str


@dataclass(frozen=True)
class Unavailable:
    """The primary is dead and no in-sync replica is alive: nothing safe to do.

    Promoting a STALE or COPYING copy would silently lose writes, so the table
    stays unavailable until its primary's region comes back.  Likewise an
    in-sync copy on a *lagging* region (its heartbeat delay too high, see
    minisql/heartbeat.py) is not promoted while it lags: `lagging` names them.
    """

    database: str
    table: str
    primary: str
    lagging: tuple[str, ...] = ()


Move = Union[Promote, DropReplica, CopyReplica, Unavailable]


def plan_failover(
    placement: Placement,
    live_regions: Iterable[str],
    loads: Mapping[str, RegionLoad],
    *,
    suspect: Iterable[str] = (),
    copying: Iterable[tuple[str, str, str]] = (),
    lagging: Iterable[str] = (),
    copies: int = COPIES_PER_TABLE,
) -> list[Move]:
    """Moves that bring every table back to `copies` healthy copies.

    * `live_regions`: regions registered right now (the only copy targets).
    * `suspect`: regions missing for less than the grace period: neither dead
      nor usable -- their tables are left alone until they return or die.
    * Every other region named in the placement is dead.
    * `copying`: (database, table, region) copies the caller is running right
      now; a COPYING replica not in it was abandoned (e.g. by a previous
      leader) and is copied again.
    * `lagging`: live regions whose heartbeat delay is past the promotion
      threshold (seed 004): their copies are not promoted while they lag.

    Per table, in (database, table) order: promote the least-loaded live
    IN_SYNC replica if the primary is dead (else `Unavailable`), drop dead
    replicas, re-copy STALE/abandoned replicas, then add copies on the
    least-loaded live regions that hold none of this table.  Tables of one
    colocation group (FOREIGN KEY links) make the same choices: the region
    promoted for the first is promoted for the others where it can be, and
    new copies go to the same regions, so the group stays together.
    """
    live = set(live_regions)
    suspect_set = set(suspect) - live
    in_flight = set(copying)
    referenced = set(region_copies(placement))
    dead = referenced - live - suspect_set
    behind = set(lagging)
    moves: list[Move] = []
    planned: Counter[str] = Counter()
    groups = placement.colocation_groups()
    promoted: dict[tuple[tuple[str, str], ...], str] = {}  # a group's new primary
    targets: dict[tuple[tuple[str, str], ...], list[str]] = {}  # a group's new copy regions

    for t in sorted(placement.all_tables(), key=lambda t: (t.database, t.name)):
        group = groups.get(t.key, (t.key,))
        primary = t.primary
        replicas = dict(t.replicas)
        if primary in dead:
            in_sync = [r for r, s in replicas.items() if s == ReplicaState.IN_SYNC and r in live]
            candidates = [r for r in in_sync if r not in behind]
            if not candidates:
                moves.append(Unavailable(t.database, t.name, primary, tuple(sorted(in_sync))))
                continue
            chosen = promoted.get(group)
            new_primary = chosen if chosen in candidates else rank_regions(candidates, loads, placement)[0]
            promoted.setdefault(group, new_primary)
            moves.append(Promote(t.database, t.name, primary, new_primary))
            del replicas[new_primary]
            primary = new_primary
        for region in sorted(replicas):
            if region in dead:
                moves.append(DropReplica(t.database, t.name, region))
                del replicas[region]
        if primary in suspect_set:
            continue  # cannot copy from it now; decide once it is back or dead
        for region, state in sorted(replicas.items()):
            abandoned = state in (ReplicaState.COPYING, ReplicaState.FILLING) and (t.database, t.name, region) not in in_flight
            if region in live and (state == ReplicaState.STALE or abandoned):
                if not t.is_view or _reads_are_on(placement, t, region):
                    moves.append(CopyReplica(t.database, t.name, region, primary))
        missing = copies - (1 + len(replicas))
        if missing > 0:
            holders = {primary, *replicas}
            chosen_targets = targets.setdefault(group, [])  # tables of one group go to the same regions
            picked = [r for r in chosen_targets if r in live and r not in holders][:missing]
            if len(picked) < missing:
                ranked = rank_regions((r for r in live if r not in holders and r not in picked), loads, placement, planned)
                fresh = ranked[:missing - len(picked)]
                chosen_targets.extend(fresh)
                picked += fresh
            for target in picked:
                if t.is_view and not _reads_are_on(placement, t, target):
                    continue  # a view is re-created once the tables it reads are copied there
                moves.append(CopyReplica(t.database, t.name, target, primary))
                planned[target] += 1
    return moves


def _reads_are_on(placement: Placement, view: TablePlacement, region: str) -> bool:
    return all(
        region in read.write_regions for key in view.references if (read := placement.table(*key)) is not None
    )


# -- applying moves to a placement (pure; re-checked on every CAS attempt) ------


def _with_replicas(table: TablePlacement, primary: str, replicas: Mapping[str, ReplicaState]) -> TablePlacement:
    if ReplicaState.FILLING not in replicas.values():  # the fill guard lives only as long as a fill
        table = replace(table, fill_guard=(), fill_unique=False)
    return replace(table, primary=primary, replicas=MappingProxyType(dict(replicas)))


def apply_membership(placement: Placement, moves: Iterable[Move]) -> Placement | None:
    """Apply the Promote and DropReplica moves still valid on `placement`; None if none is.

    A promotion is valid only while the table's primary is still the dead
    region and the chosen replica is still IN_SYNC; the old primary is dropped
    from the table (its copy is rebuilt elsewhere by a CopyReplica).
    """
    result = placement
    for move in moves:
        if isinstance(move, Promote):
            t = result.table(move.database, move.table)
            if t is None or t.primary != move.old_primary:
                continue
            if t.replicas.get(move.new_primary) != ReplicaState.IN_SYNC:
                continue
            replicas = {r: s for r, s in t.replicas.items() if r != move.new_primary}
            result = result.with_table(_with_replicas(t, move.new_primary, replicas))
        elif isinstance(move, DropReplica):
            t = result.table(move.database, move.table)
            if t is None or move.region not in t.replicas:
                continue
            replicas = {r: s for r, s in t.replicas.items() if r != move.region}
            result = result.with_table(_with_replicas(t, t.primary, replicas))
    return None if result is placement else result


def begin_copy(placement: Placement, move: CopyReplica, state: ReplicaState = ReplicaState.COPYING,
               guard: tuple[str, ...] = (), unique: bool = False) -> Placement | None:
    """Mark the target COPYING, or FILLING with its fill guard (new or STALE
    replica); None if the move no longer applies."""
    t = placement.table(move.database, move.table)
    if t is None or t.primary != move.source or move.target == t.primary:
        return None
    if t.replicas.get(move.target) == state:
        return None  # already marked (a retry of this same step)
    if t.replicas.get(move.target) == ReplicaState.IN_SYNC:
        return None  # healthy already: nothing to copy
    replicas = dict(t.replicas)
    replicas[move.target] = state
    if state == ReplicaState.FILLING:
        t = replace(t, fill_guard=tuple(guard), fill_unique=unique)
    return placement.with_table(_with_replicas(t, t.primary, replicas))


def copy_still_wanted(placement: Placement, move: CopyReplica, state: ReplicaState = ReplicaState.COPYING) -> bool:
    """True while the placement still has the target as a `state` replica of `source`."""
    t = placement.table(move.database, move.table)
    return t is not None and t.primary == move.source and t.replicas.get(move.target) == state


def finish_copy(placement: Placement, move: CopyReplica, state: ReplicaState = ReplicaState.COPYING) -> Placement | None:
    """COPYING (or FILLING) -> IN_SYNC, only if nothing changed the table meanwhile."""
    if not copy_still_wanted(placement, move, state):
        return None
    t = placement.table(move.database, move.table)
    assert t is not None
    replicas = dict(t.replicas)
    replicas[move.target] = ReplicaState.IN_SYNC
    return placement.with_table(_with_replicas(t, t.primary, replicas))


def abort_copy(placement: Placement, move: CopyReplica) -> Placement | None:
    """COPYING/FILLING -> STALE (retried by a later plan); None if it is neither."""
    t = placement.table(move.database, move.table)
    if t is None or t.replicas.get(move.target) not in (ReplicaState.COPYING, ReplicaState.FILLING):
        return None
    return mark_replicas(placement, move.database, move.table, [move.target], ReplicaState.STALE)


def mark_replicas(
    placement: Placement, database: str, table: str, regions: Iterable[str], state: ReplicaState
) -> Placement | None:
    """Set the state of some replicas of one table; None if nothing changes."""
    t = placement.table(database, table)
    if t is None:
        return None
    replicas = dict(t.replicas)
    changed = False
    for region in regions:
        if region in replicas and replicas[region] != state:
            replicas[region] = state
            changed = True
    if not changed:
        return None
    return placement.with_table(_with_replicas(t, t.primary, replicas))
