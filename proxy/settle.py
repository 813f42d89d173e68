"""A proxy finishing its own two-phase commits whose outcome it lost.

When the decision's reply or an `XA COMMIT` after the decision is lost
(commit.py), the client gets 2013 and the branches stay prepared, holding
their row locks.  The master's resolver would settle them after its grace
period (seconds: every transaction on those rows waits that long).  The
proxy knows at once which branches are left, so it settles them itself in
a background task, retrying every `RETRY` s for up to `PATIENCE` s: the
outcome is the decider's row (`'abort'` inserted unless `'commit'` is
there, exactly as the resolver does); a `'commit'` is first recorded on
every region of a branch left (the backup among them: minisql/xa.py), then
`XA COMMIT` / `XA ROLLBACK` of each branch on the proxy's internal
connections.  A region that already holds `'abort'` (the resolver judged
the decider failed over) stops this: the resolver settles it.  Both may run at once:
every step is idempotent (a second INSERT finds the row; a branch already
settled answers XAER_NOTA).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from minisql.xa import ABORT, COMMIT, DECISIONS, Xid, decider_of

from . import metrics
from .backend import BackendError

log = logging.getLogger(__name__)

RETRY = 0.5
PATIENCE = 60.0
ER_DUP_ENTRY = 1062
ER_XAER_NOTA = 1397

_TASKS: set[asyncio.Task[None]] = set()


def settle_later(pool: Any, regions: Callable[[], Any], gtrid: str, branches: tuple[str, ...], outcome: str | None) -> None:
    """Start settling `branches` of `gtrid` (outcome None: ask the decider).
    `regions()` returns the live regions (RegionInfo by id) when called."""
    task = asyncio.get_running_loop().create_task(_settle(pool, regions, gtrid, branches, outcome),
                                                  name=f"settle {gtrid}")
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


async def _run(pool: Any, regions: Callable[[], Any], region: str, sql: str) -> Any:
    info = regions().get(region)
    if info is None:
        raise ConnectionError(f"region {region} is not live")
    conn = await pool.acquire_internal(region, info.host, info.mysql_port)
    try:
        return await conn.run(sql)
    finally:
        pool.release_internal(conn)


async def _record_commit(pool: Any, regions: Callable[[], Any], gtrid: str, region: str) -> None:
    """`'commit'` in `region`'s decision table (kept if there); ValueError if it says `'abort'`."""
    try:
        await _run(pool, regions, region, f"INSERT INTO {DECISIONS} (gtrid, outcome) VALUES ('{gtrid}', '{COMMIT}')")
        return
    except BackendError as e:
        if e.errno != ER_DUP_ENTRY:
            raise
    result = await _run(pool, regions, region, f"SELECT outcome FROM {DECISIONS} WHERE gtrid = '{gtrid}'")
    if not (result.rows and b"commit" in result.rows[0]):
        raise ValueError(f"{region} recorded abort for {gtrid}, whose decider recorded commit")


async def _outcome(pool: Any, regions: Callable[[], Any], gtrid: str) -> str:
    decider = decider_of(gtrid)
    assert decider is not None
    try:
        await _run(pool, regions, decider, f"INSERT INTO {DECISIONS} (gtrid, outcome) VALUES ('{gtrid}', '{ABORT}')")
        return ABORT
    except BackendError as e:
        if e.errno != ER_DUP_ENTRY:
            raise
    result = await _run(pool, regions, decider, f"SELECT outcome FROM {DECISIONS} WHERE gtrid = '{gtrid}'")
    return COMMIT if result.rows and b"commit" in result.rows[0] else ABORT


async def _settle(pool: Any, regions: Callable[[], Any], gtrid: str, branches: tuple[str, ...], outcome: str | None) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    left = list(branches)
    recorded = False
    while left and loop.time() < deadline:
        try:
            if outcome is None:
                outcome = await _outcome(pool, regions, gtrid)
            if outcome == COMMIT and not recorded:
                for region in left:
                    await _record_commit(pool, regions, gtrid, region)
                recorded = True
            for region in list(left):
                verb = "COMMIT" if outcome == COMMIT else "ROLLBACK"
                try:
                    await _run(pool, regions, region, f"XA {verb} {Xid(gtrid, region).sql()}")
                except BackendError as e:
                    if e.errno != ER_XAER_NOTA:
                        raise
                left.remove(region)
                metrics.XA_SETTLED_BY_PROXY.inc()
        except asyncio.CancelledError:
            raise
        except ValueError as exc:
            log.error("settling %s: %s; left to the master's resolver", gtrid, exc)
            return
        except Exception as exc:  # noqa: BLE001 - a region still away: try again
            log.debug("settling %s: %s", gtrid, exc)
            await asyncio.sleep(RETRY)
    if left:
        log.warning("could not settle %s on %s within %.0f s: left to the master's resolver", gtrid, left, PATIENCE)
    else:
        log.info("settled %s (%s) on %s", gtrid, outcome, ", ".join(branches))
