"""The resolver: settles two-phase commits a proxy did not finish.

A proxy commits a transaction over several regions in two phases
(proxy/commit.py): every branch `XA PREPARE`d, then the decision row
``(gtrid, 'commit')`` inserted on the decider region, then `XA COMMIT`
everywhere.  A proxy killed, or a region lost, between those steps leaves
*prepared* branches: they survive the proxy and a MariaDB restart, and they
hold their row locks until someone ends them.  The leading master does:

1. every `interval` seconds, ask each live region for our prepared branches
   (`xa_recover`);
2. a branch seen prepared for at least `grace` seconds (a live proxy
   finishes in milliseconds; the grace keeps the resolver from racing it
   needlessly -- racing would still be safe) is *in doubt*; so is, at once,
   a branch made by a proxy that is gone (its gtrid carries the proxy's
   instance token, `proxies/<n>` lists the live ones; a proxy leaving
   wakes the resolver), since its row locks stop every transaction on
   those rows;
3. for each in-doubt transaction, ask its decider region for the outcome
   (`xa_decide`): it inserts ``'abort'`` unless ``'commit'`` is already
   there -- the primary key lets exactly one exist -- and returns the one
   that stands;
4. a ``'commit'`` is first recorded on every region holding one of its
   prepared branches (`xa_record`; the proxy's backup decision region is
   one of them unless its branch is committed, and then it has the row);
5. `xa_settle` each branch with that outcome.

Decisions older than `keep` seconds are deleted (`xa_forget`) on every
region: by then no branch of theirs is still prepared on a serving region.

Error handling -- where state can be lost: a decider region that is not
live cannot be asked.  While it still holds copies in the placement its
transactions' branches stay prepared (their rows locked): it may have
decided ``commit``.  Once the failover removed it from the placement, its
copies and its decision table are discarded, and its transactions are
*orphans*: the outcome is looked up on every live region (a ``'commit'``
there is the backup's copy, proxy/commit.py) and, if none has one,
``'abort'`` is recorded on every region of a prepared branch (a proxy
still copying its ``'commit'`` to the backup loses that race or wins it:
one row per region).  While some region is away but still holds copies
(it may be the backup), orphans wait too.  Lost for good only if the
decider and the backup are both failed over after some branch committed:
two regions lost at once.  Waiting
branches are counted (`minisql_master_xa_in_doubt`) and logged; `minisql
status` does not show them yet, and there is no manual override.  Each pass
is idempotent, so a new leader simply starts over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Mapping

from minisql.errors import SqlError
from minisql.xa import ABORT, COMMIT, Xid, owner_of
from topology.proxies import list_proxies, watch_proxies

from . import metrics

log = logging.getLogger(__name__)

TASK_TIMEOUT = 5.0  # a region that does not answer (its agent just died) must not stall the pass


@dataclass(frozen=True, slots=True)
class Branch:
    """A prepared branch: its xid and the region holding it."""

    xid: Xid
    region: str


@dataclass(frozen=True, slots=True)
class Resolution:
    """What one pass must do: transactions to decide (gtrid -> its branches),
    branches to roll back because their decider was failed over (orphans),
    and the branches waiting for a decider that is away."""

    decide: Mapping[str, tuple[Branch, ...]]
    orphans: Mapping[str, tuple[Branch, ...]]
    waiting: tuple[Branch, ...]


def plan_resolution(prepared: Iterable[Branch], first_seen: Mapping[Branch, float], now: float, live: Iterable[str],
                    grace: float, holding: Iterable[str] = (), owners: Iterable[str] | None = None) -> Resolution:
    """Pure: which prepared branches are in doubt (seen for `grace` seconds,
    or at once when the proxy that made them is not among the live `owners`);
    of those, which can be decided now (their decider is live), which are
    orphans (their decider holds no copy in the placement any more: it was
    failed over, with its decision table; the backup's decision counts --
    module docstring), and which must wait (a decider away but still holding
    copies may have committed: rolling back here would split it; an orphan
    while any region is away but holding copies: that one may be the backup)."""
    live, holding = set(live), set(holding)
    alive = set(owners) if owners is not None else None
    decide: dict[str, list[Branch]] = {}
    orphans: dict[str, list[Branch]] = {}
    waiting: list[Branch] = []
    someone_away = bool(holding - live)
    for branch in prepared:
        owner_gone = alive is not None and owner_of(branch.xid.gtrid) not in alive
        if now - first_seen.get(branch, now) < grace and not owner_gone:
            continue
        decider = branch.xid.decider
        if decider in live and decider in holding:
            decide.setdefault(branch.xid.gtrid, []).append(branch)
        elif decider not in holding and not someone_away:
            orphans.setdefault(branch.xid.gtrid, []).append(branch)
        else:
            waiting.append(branch)
    order = lambda b: (b.xid.gtrid, b.region)  # noqa: E731
    return Resolution({g: tuple(sorted(b, key=order)) for g, b in decide.items()},
                      {g: tuple(sorted(b, key=order)) for g, b in orphans.items()}, tuple(sorted(waiting, key=order)))


class XaResolver:
    """The leader's resolver loop (module docstring)."""

    def __init__(self, topology: Any, regions: Any, *, interval: float = 2.0, grace: float = 3.0, keep: float = 600.0,
                 clock: Callable[[], float] = time.monotonic,
                 owners: Callable[[], Awaitable[set[str]]] | None = None) -> None:
        self._topology = topology
        self._regions = regions
        self.interval = interval
        self.grace = grace
        self.keep = keep
        self._clock = clock
        self._first_seen: dict[Branch, float] = {}
        self._last_forget = clock()
        self._wake = asyncio.Event()
        self._proxies: set[str] = set()
        self._owners = owners or self._live_proxies

    def poke(self) -> None:
        """Run the next pass now (the failover loop after a promotion: the
        branches it orphaned hold row locks the new primaries need)."""
        self._wake.set()

    async def _live_proxies(self) -> set[str]:
        return {p.instance for p in (await list_proxies(self._topology)).values()}

    def _on_proxies(self, proxies: Mapping[int, Any]) -> None:
        instances = {p.instance for p in proxies.values()}
        if self._proxies - instances:  # a proxy went away: its prepared transactions are in doubt now
            self.poke()
        self._proxies = instances

    async def run(self) -> None:
        cancel = watch_proxies(self._topology, self._on_proxies)
        try:
            await self._loop()
        finally:
            cancel()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.pass_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the next pass tries again
                log.warning("XA resolver pass failed: %s", exc)
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except asyncio.TimeoutError:
                pass

    async def pass_once(self) -> int:
        """One pass; returns how many branches it settled."""
        live = await self._topology.list_regions()
        answers = await self._regions.call_many(live, {"op": "xa_recover"}, timeout=TASK_TIMEOUT)
        prepared: list[Branch] = []
        for region, answer in answers.items():
            if isinstance(answer, SqlError):
                continue
            for gtrid, bqual in answer.get("branches") or ():
                prepared.append(Branch(Xid(str(gtrid), str(bqual)), region))
        now = self._clock()
        self._first_seen = {b: self._first_seen.get(b, now) for b in prepared}
        placement = await self._topology.get_placement()
        holding = {r for t in placement.all_tables() for r in t.all_regions}
        owners = await self._owners() if prepared else set()
        plan = plan_resolution(prepared, self._first_seen, now, live, self.grace, holding, owners)
        metrics.XA_IN_DOUBT.set(sum(len(b) for b in plan.decide.values()) + len(plan.waiting)
                                + sum(len(b) for b in plan.orphans.values()))
        for branch in plan.waiting:
            log.warning("XA branch %s on %s waits for its decider %s (or a region that may hold its backup decision), "
                        "which is not live", branch.xid.gtrid, branch.region, branch.xid.decider)
        settled = 0
        for gtrid, branches in plan.decide.items():
            settled += await self._settle(gtrid, branches)
        for gtrid, branches in plan.orphans.items():
            settled += await self._settle_orphan(gtrid, branches, live)
        if now - self._last_forget >= self.keep / 10:
            self._last_forget = now
            await self._regions.call_many(live, {"op": "xa_forget", "older_than": self.keep}, timeout=TASK_TIMEOUT)
        return settled

    async def _settle(self, gtrid: str, branches: tuple[Branch, ...]) -> int:
        decider = branches[0].xid.decider
        assert decider is not None
        try:
            outcome = (await self._regions.call(decider, {"op": "xa_decide", "gtrid": gtrid}, timeout=TASK_TIMEOUT))["outcome"]
        except (SqlError, KeyError) as exc:
            log.warning("XA resolver: no outcome for %s from %s: %s", gtrid, decider, exc)
            return 0
        if outcome == COMMIT and not await self._record_commit(gtrid, branches):
            return 0
        done = 0
        for branch in branches:
            done += await self._finish(branch, outcome)
        return done

    async def _record_commit(self, gtrid: str, branches: tuple[Branch, ...]) -> bool:
        """`commit` recorded on every region of a branch before any branch
        commits (so no failover of the decider can lose it); False (nothing
        settled) if a region cannot record it or holds `abort`."""
        for region in sorted({b.region for b in branches}):
            try:
                answer = await self._regions.call(region, {"op": "xa_record", "gtrid": gtrid, "outcome": COMMIT},
                                                  timeout=TASK_TIMEOUT)
            except SqlError as exc:
                log.warning("XA resolver: cannot record the commit of %s on %s yet: %s", gtrid, region, exc)
                return False
            if answer.get("outcome") != COMMIT:
                log.error("XA resolver: %s recorded abort for %s, whose decider recorded commit; left prepared",
                          region, gtrid)
                return False
        return True

    async def _settle_orphan(self, gtrid: str, branches: tuple[Branch, ...], live: Iterable[str]) -> int:
        """A transaction whose decider was failed over (module docstring)."""
        outcome = ABORT
        try:
            found = await self._regions.call_many(list(live), {"op": "xa_record", "gtrid": gtrid, "lookup": True},
                                                  timeout=TASK_TIMEOUT)
            if any(isinstance(a, SqlError) for a in found.values()):
                return 0  # a region that may hold the backup's decision did not answer: next pass
            if any(a.get("outcome") == COMMIT for a in found.values()):
                outcome = COMMIT
            else:
                for region in sorted({b.region for b in branches}):
                    answer = await self._regions.call(region, {"op": "xa_record", "gtrid": gtrid, "outcome": ABORT},
                                                      timeout=TASK_TIMEOUT)
                    if answer.get("outcome") == COMMIT:  # the proxy's backup decision landed first
                        outcome = COMMIT
                        break
        except SqlError as exc:
            log.warning("XA resolver: no outcome yet for %s, whose decider was failed over: %s", gtrid, exc)
            return 0
        if outcome == COMMIT and not await self._record_commit(gtrid, branches):
            return 0
        log.warning("XA resolver: %s, whose decider %s was failed over, %s", gtrid, branches[0].xid.decider,
                    "commits (the backup decision says so)" if outcome == COMMIT else "is rolled back")
        done = 0
        for branch in branches:
            done += await self._finish(branch, outcome)
        return done

    async def _finish(self, branch: Branch, outcome: str) -> int:
        gtrid = branch.xid.gtrid
        try:
            await self._regions.call(branch.region, {"op": "xa_settle", "gtrid": gtrid, "bqual": branch.xid.bqual,
                                                     "commit": outcome == COMMIT}, timeout=TASK_TIMEOUT)
        except SqlError as exc:
            log.warning("XA resolver: settling %s on %s failed: %s", gtrid, branch.region, exc)
            return 0
        self._first_seen.pop(branch, None)
        metrics.XA_RESOLVED.labels(outcome=outcome).inc()
        log.info("XA resolver: %s branch %s of %s on %s", "committed" if outcome == COMMIT else "rolled back",
                 branch.xid.bqual, gtrid, branch.region)
        return 1
