"""Making one new copy of a table: the step failover and table moves share.

Online, when the table is fit for it (region/fill.py `prepare_fill`: InnoDB,
a primary key, no triggers or foreign keys): the target creates the table
empty; the copy is marked FILLING with the proxies' fill guard (every write
reaches it from then on: proxy/fillguard.py); once every live proxy has
acknowledged that placement epoch (topology.proxies.wait_for_epoch), the
target copies the rows in key chunks, each verified (`fill_table`); then one
compare-and-set makes it IN_SYNC.  Writes never pause.

Otherwise, the offline fallback: `copy_replica` marks the target COPYING in the placement (the proxy sends a
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

from topology.proxies import wait_for_epoch

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
    source_address = {"region_id": source.region_id, "host": source.host, "port": source.mysql_port}
    fit = await regions.call(move.target, {"op": "prepare_fill", "database": move.database, "table": move.table,
                                           "source": source_address}, timeout=timeout)
    if fit.get("online"):
        return await _fill_online(topo, regions, move, source_address, fit, lock=lock, timeout=timeout)
    log.info("%s gets an offline copy on %s: %s", name, move.target, fit.get("reason"))
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


ACK_TIMEOUT = 30.0  # seconds every live proxy has to acknowledge the FILLING epoch


async def _fill_online(topo: Topology, regions: RegionCaller, move: CopyReplica, source: dict[str, object],
                       fit: dict[str, object], *, lock: AsyncContextManager[object], timeout: float) -> CopyOutcome:
    name = f"`{move.database}`.`{move.table}`"
    guard = tuple(str(c) for c in fit.get("guard", ()))  # type: ignore[attr-defined]
    async with lock:
        written = await topo.update_placement(
            lambda p: begin_copy(p, move, ReplicaState.FILLING, guard, bool(fit.get("unique"))))
    if not copy_still_wanted(written, move, ReplicaState.FILLING):
        return CopyOutcome.SKIPPED
    if not await wait_for_epoch(topo, written.version, ACK_TIMEOUT):
        raise SqlError(ER_UNKNOWN, f"not every proxy acknowledged placement epoch {written.version}; {name} is copied later")
    log.info("filling %s on %s from %s (epoch %d acknowledged)", name, move.target, move.source, written.version)
    filled = await regions.call(move.target, {"op": "fill_table", "database": move.database, "table": move.table,
                                              "source": source, "key": fit.get("key")}, timeout=timeout)
    async with lock:
        written = await topo.update_placement(lambda p: finish_copy(p, move, ReplicaState.FILLING))
    table = written.table(move.database, move.table)
    if table is not None and table.primary == move.source and table.replicas.get(move.target) == ReplicaState.IN_SYNC:
        log.warning("%s: new copy on %s is IN_SYNC (%s rows filled online in %s s)", name, move.target,
                    filled.get("rows"), filled.get("seconds"))
        return CopyOutcome.IN_SYNC
    log.warning("%s changed during the fill of %s; not publishing that copy", name, move.target)
    if table is None or move.target not in table.all_regions:
        await discard(regions, move.target, move.database, move.table)
    return CopyOutcome.SKIPPED


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
