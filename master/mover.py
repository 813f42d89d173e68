"""Moving a table to other regions: how colocation groups come together.

A table that gets a FOREIGN KEY to a table on other regions (or whose group
merges with another) is moved onto its group's regions before the DDL runs
there (assignor.plan_colocation decides; this module executes one
`MoveTable`):

1. a new copy on each target region that lacks an IN_SYNC one
   (copier.copy_replica: COPYING, copy_table, checksums equal, IN_SYNC);
2. one compare-and-set (assignor.apply_move) that makes the target primary
   the primary and keeps only the target copies -- all of them IN_SYNC and
   receiving every write already, so switching the primary loses nothing;
3. the copies no longer named are dropped on their regions (as the agent).

Error handling
--------------
* A copy that fails (or never matches its primary because writes kept
  landing) is marked STALE and the move raises SqlError: the DDL that needed
  it fails with that error and nothing else changed -- the table still has
  its old copies, and the failover loop re-copies or drops the STALE one.
* Between steps 2 and 3 the dropped copies are orphans on their regions, only
  harmful to nobody (no route names them); a region that is down keeps its
  orphan, which a later CREATE of the same name clears (ddl_service.py).
* Moves run under the leader's placement lock (the DDL holds it), so the
  failover loop never plans against a half-made move; a copy the failover
  loop already runs to the same target may race this one (documented,
  rare: it needs a region failure during the DDL).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Mapping

from minisql.errors import ER_UNKNOWN, SqlError
from topology import RegionInfo, Topology

from .assignor import CopyReplica, MoveTable, abort_copy, apply_move, move_sources
from .copier import CopyOutcome, copy_replica, discard
from .regions import RegionCaller

log = logging.getLogger(__name__)


async def move_table(
    topo: Topology,
    regions: RegionCaller,
    move: MoveTable,
    live: Mapping[str, RegionInfo],
    *,
    timeout: float,
    attempts: int = 3,
) -> None:
    """Execute `move` (the caller holds the placement lock)."""
    name = f"`{move.database}`.`{move.table}`"
    placement = await topo.get_placement()
    table = placement.table(move.database, move.table)
    if table is None:
        return
    source = live.get(table.primary)
    if source is None:
        raise SqlError(ER_UNKNOWN, f"cannot move {name}: its primary region {table.primary} is down")
    for target in move_sources(table, move):
        if target not in live:
            raise SqlError(ER_UNKNOWN, f"cannot move {name} to region {target}: it is down")
        copy = CopyReplica(move.database, move.table, target, table.primary)
        try:
            outcome = await copy_replica(
                topo, regions, copy, source, lock=contextlib.nullcontext(), timeout=timeout, attempts=attempts
            )
        except SqlError:
            await topo.update_placement(lambda p: abort_copy(p, copy))
            raise
        if outcome is CopyOutcome.SKIPPED:
            raise SqlError(ER_UNKNOWN, f"{name} changed while it was being moved; try again")
    before = (await topo.get_placement()).table(move.database, move.table)
    written = await topo.update_placement(lambda p: apply_move(p, move))
    after = written.table(move.database, move.table)
    if after is None or after.primary != move.primary or set(after.replicas) != set(move.replicas):
        raise SqlError(ER_UNKNOWN, f"{name} changed while it was being moved; try again")
    dropped = sorted(set(before.all_regions if before else ()) - set(after.all_regions))
    for region in dropped:
        if region in live:
            await discard(regions, region, move.database, move.table)
    log.warning(
        "moved %s to primary %s, replicas %s (placement v%d; dropped copies on %s)",
        name, move.primary, ",".join(move.replicas), written.version, ",".join(dropped) or "none",
    )
