"""Ending a transaction on its regions: atomically, with XA two-phase commit.

A write to a replicated table changes every copy, and a transaction may
touch tables whose primaries are on different regions; each region is a
separate MariaDB transaction (a *branch*).  Committing them one after the
other leaves some committed and some not when a region, the proxy or the
network fails in between.  So every branch of a transaction that may write
is an XA branch (`XA START <xid>`, minisql/xa.py), and a transaction with
two or more of them commits in two phases (after Vitess's 2PC and
Percolator's primary record):

1. **prepare**: `XA END` + `XA PREPARE` on every branch (pipelined, all
   regions at once).  A prepared branch survives its connection, the proxy
   and a restart of its MariaDB (MDEV-742; the regions run without binary
   log, so MDEV-21469/MDEV-33921 do not apply).  If any prepare fails,
   every branch is rolled back and the client gets the error: nothing
   committed anywhere.
2. **decide**: one row ``(gtrid, 'commit')`` inserted into the decider
   region's decision table (minisql/xa.py), in its own transaction, on the
   proxy's internal connection.  This insert is *the* commit point.  Then
   the same row on a second participant region, the *backup* (`backup_of`):
   if the decider region is lost and failed over, its copies -- decision
   table included -- are gone, and the backup's row is what the resolver
   finds.  No branch is committed, by anyone, before both rows are there.
3. **commit**: `XA COMMIT` on every branch, all at once.  The client gets
   its OK after they all answered (else 2013: see below).

A transaction with one XA branch ends with `XA END` + `XA COMMIT ... ONE
PHASE` (or `XA ROLLBACK`) in one round trip: as cheap as COMMIT.

Error handling -- where state can be lost, and who settles it (the proxy
itself, in the background, as soon as the regions answer again:
settle.py; the master's resolver for whatever a dead proxy left):
* a proxy that dies before the decision leaves prepared branches and no
  decision row: the master's resolver (master/resolver.py) inserts
  ``'abort'`` for that gtrid (the primary key lets only one outcome exist)
  and rolls the branches back;
* a proxy that dies after the decision, or a region lost during phase 3:
  the decided branches stay prepared and the resolver commits them (or,
  if the decider itself was lost and failed over, rolls them back: its
  copies are discarded with its decision).  So the client gets its OK only
  when every XA COMMIT answered, else 2013 (outcome unknown);
* the decision's reply lost (decider unreachable mid-insert): the outcome
  is the decision row's, unknown here; the prepared branches are left to
  the resolver and the client gets 2013, as for any COMMIT whose reply is
  lost -- never a guess;
* a participant that could not start as XA (LOCK TABLES, READ ONLY,
  CONSISTENT SNAPSHOT, XA START refused) commits with plain COMMIT after
  the decision, as before XA: `minisql_proxy_xa_fallback_total` counts
  them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from minisql.errors import CR_SERVER_LOST, ER_XA_RBROLLBACK, SqlError
from minisql.xa import COMMIT, Xid, backup_of, decider_of, new_token

from . import faults, metrics
from .sessionstate import EndTransaction

log = logging.getLogger(__name__)

#: this proxy process's part of every gtrid it makes
PROXY_TOKEN = new_token()

ER_DUP_ENTRY = 1062


async def end_transaction(vc: Any, effects: tuple[EndTransaction, ...]) -> int:
    """COMMIT / ROLLBACK each participant in the effect's order; after a failed
    COMMIT the rest are rolled back; the first error is the client's.  Returns
    the warnings the regions gave (1196: a MyISAM change ROLLBACK cannot undo)."""
    warnings = 0
    for effect in effects:
        if effect.app is not None:  # the client's own XA transaction, aborted by the proxy: every branch rolled back
            for region in effect.order:
                if region in effect.xa:
                    warnings += await rollback_branch(vc, region, effect.app.branch(region))
            continue
        if effect.commit and effect.gtrid is not None and len(effect.xa) >= 2:
            warnings += await two_phase_commit(vc, effect)
            continue
        first_error: SqlError | None = None
        for region in effect.order:
            commit = effect.commit and first_error is None
            try:
                if region in effect.xa:
                    assert effect.gtrid is not None
                    warnings += await one_phase(vc, region, Xid(effect.gtrid, region), commit)
                else:
                    warnings += (await vc.run(region, "COMMIT" if commit else "ROLLBACK", join=False)).warnings
            except SqlError as e:
                if e.errno == CR_SERVER_LOST:
                    vc.drop(region)
                first_error = first_error or e
        if first_error is not None:
            raise first_error
        if effect.lost:
            raise SqlError(CR_SERVER_LOST, "Lost connection to a region during the transaction; the transaction was rolled back")
    return warnings


async def one_phase(vc: Any, region: str, xid: Xid, commit: bool) -> int:
    """End one XA branch alone: `XA END` + `XA COMMIT ... ONE PHASE` (or `XA
    ROLLBACK`), one round trip; the warnings of the second."""
    end, last = await vc.pipeline(region, (f"XA END {xid.sql()}", f"XA COMMIT {xid.sql()} ONE PHASE" if commit
                                           else f"XA ROLLBACK {xid.sql()}"))
    if isinstance(last, SqlError):
        # After a deadlock the branch is ROLLBACK ONLY: XA END refuses (1399), XA ROLLBACK works.
        raise last
    return last.warnings


async def rollback_branch(vc: Any, region: str, xid: Xid) -> int:
    """Roll one branch back, active or prepared; the warnings (1196) or 0.
    Failures are logged: a branch left prepared is the resolver's."""
    try:
        results = await vc.pipeline(region, (f"XA END {xid.sql()}", f"XA ROLLBACK {xid.sql()}"))
    except SqlError as e:
        log.warning("XA ROLLBACK of %s on %s failed: %s", xid.gtrid, region, e)
        return 0
    last = results[-1]
    if isinstance(last, SqlError):
        log.warning("XA ROLLBACK of %s on %s failed: %s", xid.gtrid, region, last)
        return 0
    return last.warnings


async def _prepare(vc: Any, region: str, xid: Xid) -> None:
    end, prepared = await vc.pipeline(region, (f"XA END {xid.sql()}", f"XA PREPARE {xid.sql()}"))
    if isinstance(prepared, SqlError):
        raise prepared


async def _commit_prepared(vc: Any, region: str, xid: Xid) -> bool:
    """XA COMMIT of a decided branch; False if it failed (left to the resolver)."""
    try:
        (done,) = await vc.pipeline(region, (f"XA COMMIT {xid.sql()}",))
    except SqlError as e:
        done = e
    if isinstance(done, SqlError):
        metrics.XA_DEFERRED.labels(region).inc()
        log.warning("XA COMMIT of decided %s on %s failed (%s): left prepared for the resolver", xid.gtrid, region, done)
        vc.drop(region)
        return False
    faults.reached("commit:partly_committed")
    return True


async def two_phase_commit(vc: Any, effect: EndTransaction) -> int:
    """Commit a transaction with two or more XA branches (module docstring)."""
    gtrid = effect.gtrid
    assert gtrid is not None
    decider = decider_of(gtrid)
    branches = [r for r in effect.order if r in effect.xa]
    plain = [r for r in effect.order if r not in effect.xa]
    xids = {r: Xid(gtrid, r) for r in branches}
    outcomes = await asyncio.gather(*(_prepare(vc, r, xids[r]) for r in branches), return_exceptions=True)
    failed = next((o for o in outcomes if isinstance(o, BaseException)), None)
    if failed is not None:
        await _abort(vc, branches, plain, xids)
        metrics.TWO_PHASE_ABORTED.inc()
        if isinstance(failed, SqlError):
            raise failed
        raise failed
    faults.reached("commit:prepared")
    backup = backup_of(branches, decider)
    try:
        await vc.decide(decider, gtrid)
        if backup is not None:
            faults.reached("commit:decided_once")
            await vc.decide(backup, gtrid)
    except SqlError as e:
        if e.errno == ER_DUP_ENTRY:  # the resolver decided first: abort
            await _abort(vc, branches, plain, xids)
            metrics.TWO_PHASE_ABORTED.inc()
            raise SqlError(ER_XA_RBROLLBACK, "XA_RBROLLBACK: Transaction branch was rolled back: the cluster's resolver "
                                             "aborted it before it could commit (a participant was unreachable)", "XA100")
        # The row may or may not be there: it decides; this proxy settles the branches
        # as soon as the decider answers again (the master's resolver would, later).
        metrics.TWO_PHASE_UNKNOWN.inc()
        log.error("commit decision for %s on %s failed (%s): settling it in the background", gtrid, decider, e)
        for r in branches + plain:
            vc.drop(r)
        vc.settle_later(gtrid, tuple(branches), None)
        raise SqlError(CR_SERVER_LOST, f"Lost connection to region '{decider}' while committing; the transaction "
                                       "commits or rolls back as a whole (the cluster's resolver settles it)")
    faults.reached("commit:decided")
    committed = await asyncio.gather(*(_commit_prepared(vc, r, xids[r]) for r in branches))
    for r in plain:
        try:
            await vc.run(r, "COMMIT", join=False)
        except SqlError as e:
            log.error("plain COMMIT on %s after the XA decision of %s failed: %s", r, gtrid, e)
    if not all(committed):
        # Decided, but a region did not confirm: it is finished in the background (and by
        # the resolver) -- unless the decider is lost too and failed over, when the rest
        # is rolled back.  So no OK.
        metrics.TWO_PHASE_UNKNOWN.inc()
        lost = ", ".join(r for r, ok in zip(branches, committed) if not ok)
        vc.settle_later(gtrid, tuple(r for r, ok in zip(branches, committed) if not ok), COMMIT)
        raise SqlError(CR_SERVER_LOST, f"Lost connection to region(s) {lost} while committing; the transaction commits "
                                       "or rolls back as a whole (the cluster's resolver settles it)")
    metrics.TWO_PHASE_COMMITTED.inc()
    return 0


async def _abort(vc: Any, branches: list[str], plain: list[str], xids: dict[str, Xid]) -> None:
    await asyncio.gather(*(rollback_branch(vc, r, xids[r]) for r in branches))
    for r in plain:
        try:
            await vc.run(r, "ROLLBACK", join=False)
        except SqlError as e:
            log.warning("ROLLBACK on %s failed: %s", r, e)
