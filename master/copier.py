"""Making one new copy of a table: the step failover and table moves share.

`copy_replica` marks the target COPYING in the placement (the proxy sends a
COPYING copy no writes and no reads), asks the target region to copy_table
from the primary, compares `table_checksum` of both copies, and only when they
match marks the target IN_SYNC -- each placement write a compare-and-set that
re-checks the move still applies (assignor.begin_copy / finish_copy).

Error handling
--------------
* A copy that never matches its primary after `attempts` tries (writes kept
  landing during the copy: see region/tasks.py copy_table) raises SqlError;
  the caller marks the copy STALE (`abort_copy`) so a later round retries it.
* A table changed meanwhile (dropped, primary moved) is reported SKIPPED;
  a copy left on a region the placement no longer names is dropped there.
* The placement writes take `lock` (the leader's one-change-at-a-time lock);
  a caller that already holds it passes `contextlib.nullcontext()`.
"""

from __future__ import annotations

import asyncio
import logging
from enum import Enum
from typing import AsyncContextManager

from minisql.errors import ER_UNKNOWN, SqlError
from topology import RegionInfo, ReplicaState, Topology

from .assignor import CopyReplica, begin_copy, copy_still_wanted, finish_copy
from .regions import RegionCaller

log = logging.getLogger(__name__)


class CopyOutcome(str, Enum):
    IN_SYNC = "ok"  # the new copy is published IN_SYNC
    SKIPPED = "skipped"  # the move no longer applied; nothing published


async def copy_replica(
    topo: Topology,
    regions: RegionCaller,
    move: CopyReplica,
    source: RegionInfo,
    *,
    lock: AsyncContextManager[object],
    timeout: float,
    attempts: int,
) -> CopyOutcome:
    name = f"`{move.database}`.`{move.table}`"
    async with lock:
        written = await topo.update_placement(lambda p: begin_copy(p, move))
    if not copy_still_wanted(written, move):
        return CopyOutcome.SKIPPED
    log.info("copying %s from %s to %s", name, move.source, move.target)
    for attempt in range(1, attempts + 1):
        copied = await regions.call(
            move.target,
            {
                "op": "copy_table",
                "database": move.database,
                "table": move.table,
                "source": {"region_id": source.region_id, "host": source.host, "port": source.mysql_port},
            },
            timeout=timeout,
        )
        if await same_content(regions, move, timeout):
            async with lock:
                written = await topo.update_placement(lambda p: finish_copy(p, move))
            table = written.table(move.database, move.table)
            if table is not None and table.primary == move.source and table.replicas.get(move.target) == ReplicaState.IN_SYNC:
                log.warning("%s: new copy on %s is IN_SYNC (%s rows)", name, move.target, copied.get("rows"))
                return CopyOutcome.IN_SYNC
            log.warning("%s changed during the copy to %s; not publishing that copy", name, move.target)
            if table is None or move.target not in table.all_regions:
                await discard(regions, move.target, move.database, move.table)
            return CopyOutcome.SKIPPED
        log.warning(
            "%s: copy on %s differs from primary %s (writes during the copy?); attempt %d/%d",
            name, move.target, move.source, attempt, attempts,
        )
    raise SqlError(ER_UNKNOWN, f"copy of {name} to {move.target} never matched its primary")


async def same_content(regions: RegionCaller, move: CopyReplica, timeout: float) -> bool:
    payload = {"op": "table_checksum", "database": move.database, "table": move.table}
    src, dst = await asyncio.gather(
        regions.call(move.source, payload, timeout=timeout),
        regions.call(move.target, payload, timeout=timeout),
    )
    return (src.get("rows"), src.get("checksum")) == (dst.get("rows"), dst.get("checksum"))


async def discard(regions: RegionCaller, region: str, database: str, table: str) -> None:
    """Drop a copy the placement does not name (as the agent); a failure is only logged."""
    try:
        await regions.call(region, {"op": "drop_table", "database": database, "table": table})
    except SqlError as exc:
        log.warning("could not drop the unused copy of `%s`.`%s` on %s: %s", database, table, region, exc)
