"""A region that comes back drops the copies the cluster no longer gives it.

While a region was away the master failed it over: each of its copies was
replaced by a promotion or a new copy elsewhere, and the placement no longer
lists this region for those tables.  What is still on its disk is stale: it
missed every write since.  Nothing routes to it, but it wastes space, and a
later `CREATE TABLE` of the same name here (or a copy that expects an empty
spot) would meet it.  So before the agent registers -- before the master can
give it any work -- it drops them (the master copies them back in full if
it picks this region for them again).

Conservative on purpose (this deletes data): only a table whose database
*and* table entry are in the placement, and whose entry does not name this
region, is dropped.  Tables the placement does not know at all (made outside
the cluster, or by a DDL still in flight) and system schemas are left alone,
so an empty or unreadable placement drops nothing.

Error handling: each DROP waits at most 2 s (`lock_wait_timeout`, `innodb_lock_wait_timeout`) (a copy
still held by a prepared XA branch keeps its metadata lock until the
resolver settles it); what is left is tried again every 10 s for 5 minutes
(`keep_dropping`), then at the next start.
"""

from __future__ import annotations

import logging
from typing import Any

from topology import Placement

from .mysql import SYSTEM_SCHEMAS, qualified

log = logging.getLogger(__name__)


def stale_tables(placement: Placement, region_id: str, present: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Pure: of the (database, table, type) this MariaDB holds, the copies the
    placement knows and gives to other regions only."""
    out = []
    for database, name, kind in present:
        if database.lower() in SYSTEM_SCHEMAS or not placement.has_database(database):
            continue
        entry = placement.table(database, name)
        if entry is not None and region_id not in entry.all_regions:
            out.append((database, name, kind))
    return out


async def drop_stale_copies(pool: Any, topology: Any, region_id: str) -> int:
    """Drop this region's stale copies (module docstring); how many are left
    (their drop timed out: call again later)."""
    placement = await topology.get_placement()
    if not placement.databases:
        return 0
    async with pool.acquire() as conn:
        async with conn.cursor() as cur:
            await cur.execute("SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES")
            present = [(str(r[0]), str(r[1]), str(r[2])) for r in await cur.fetchall()]
            left = 0
            for database, name, kind in stale_tables(placement, region_id, present):
                what = "VIEW" if kind == "VIEW" else ("SEQUENCE" if kind == "SEQUENCE" else "TABLE")
                try:
                    await cur.execute(f"SET STATEMENT lock_wait_timeout=2, innodb_lock_wait_timeout=2 FOR DROP {what} IF EXISTS {qualified(database, name)}")
                except Exception as exc:  # noqa: BLE001 - see "Error handling"
                    log.warning("region %s: stale copy %s.%s not dropped yet: %s", region_id, database, name, exc)
                    left += 1
                    continue
                log.warning("region %s: dropped stale copy %s.%s (the placement gives it to other regions)",
                            region_id, database, name)
    return left


async def keep_dropping(pool: Any, topology: Any, region_id: str, every: float = 10.0, tries: int = 30) -> None:
    """Try again every `every` s while some stale copy is still locked (a
    prepared XA branch on it waits for the resolver)."""
    import asyncio

    for _ in range(tries):
        await asyncio.sleep(every)
        try:
            if await drop_stale_copies(pool, topology, region_id) == 0:
                return
        except Exception as exc:  # noqa: BLE001 - MariaDB or ZooKeeper away: next time
            log.debug("region %s: dropping stale copies: %s", region_id, exc)
