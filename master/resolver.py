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
   needlessly -- racing would still be safe) is *in doubt*;
3. for each in-doubt transaction, ask its decider region for the outcome
   (`xa_decide`): it inserts ``'abort'`` unless ``'commit'`` is already
   there -- the primary key lets exactly one exist -- and returns the one
   that stands;
4. `xa_settle` each branch with that outcome.

Decisions older than `keep` seconds are deleted (`xa_forget`) on every
region: by then no branch of theirs is still prepared on a serving region.

Error handling -- where state can be lost: a decider region that is not
live cannot be asked; its transactions' branches stay prepared (their rows
stay locked) until it returns, since its decision row may say ``commit``
to a client already told so.  They are counted
(`minisql_master_xa_in_doubt`) and logged; `minisql status` does not yet
show them, and there is no manual override (documented in
docs/architecture.md).  Each pass is idempotent, so a new leader simply
starts over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from minisql.errors import SqlError
from minisql.xa import COMMIT, Xid

from . import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Branch:
    """A prepared branch: its xid and the region holding it."""

    xid: Xid
    region: str


@dataclass(frozen=True, slots=True)
class Resolution:
    """What one pass must do: transactions to decide (gtrid -> its branches),
    and the branches waiting for a decider that is not live."""

    decide: Mapping[str, tuple[Branch, ...]]
    waiting: tuple[Branch, ...]


def plan_resolution(prepared: Iterable[Branch], first_seen: Mapping[Branch, float], now: float, live: Iterable[str],
                    grace: float) -> Resolution:
    """Pure: which prepared branches are in doubt (seen for `grace` seconds)
    and can be decided now (their decider is live)."""
    live = set(live)
    decide: dict[str, list[Branch]] = {}
    waiting: list[Branch] = []
    for branch in prepared:
        if now - first_seen.get(branch, now) < grace:
            continue
        if branch.xid.decider in live:
            decide.setdefault(branch.xid.gtrid, []).append(branch)
        else:
            waiting.append(branch)
    return Resolution({g: tuple(sorted(b, key=lambda x: x.region)) for g, b in decide.items()},
                      tuple(sorted(waiting, key=lambda b: (b.xid.gtrid, b.region))))


class XaResolver:
    """The leader's resolver loop (module docstring)."""

    def __init__(self, topology: Any, regions: Any, *, interval: float = 2.0, grace: float = 5.0, keep: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._topology = topology
        self._regions = regions
        self.interval = interval
        self.grace = grace
        self.keep = keep
        self._clock = clock
        self._first_seen: dict[Branch, float] = {}
        self._last_forget = clock()

    async def run(self) -> None:
        while True:
            try:
                await self.pass_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the next pass tries again
                log.warning("XA resolver pass failed: %s", exc)
            await asyncio.sleep(self.interval)

    async def pass_once(self) -> int:
        """One pass; returns how many branches it settled."""
        live = await self._topology.list_regions()
        answers = await self._regions.call_many(live, {"op": "xa_recover"})
        prepared: list[Branch] = []
        for region, answer in answers.items():
            if isinstance(answer, SqlError):
                continue
            for gtrid, bqual in answer.get("branches") or ():
                prepared.append(Branch(Xid(str(gtrid), str(bqual)), region))
        now = self._clock()
        self._first_seen = {b: self._first_seen.get(b, now) for b in prepared}
        plan = plan_resolution(prepared, self._first_seen, now, live, self.grace)
        metrics.XA_IN_DOUBT.set(sum(len(b) for b in plan.decide.values()) + len(plan.waiting))
        for branch in plan.waiting:
            log.warning("XA branch %s on %s waits for its decider %s, which is not live", branch.xid.gtrid, branch.region,
                        branch.xid.decider)
        settled = 0
        for gtrid, branches in plan.decide.items():
            settled += await self._settle(gtrid, branches)
        if now - self._last_forget >= self.keep / 10:
            self._last_forget = now
            await self._regions.call_many(live, {"op": "xa_forget", "older_than": self.keep})
        return settled

    async def _settle(self, gtrid: str, branches: tuple[Branch, ...]) -> int:
        decider = branches[0].xid.decider
        assert decider is not None
        try:
            outcome = (await self._regions.call(decider, {"op": "xa_decide", "gtrid": gtrid}))["outcome"]
        except (SqlError, KeyError) as exc:
            log.warning("XA resolver: no outcome for %s from %s: %s", gtrid, decider, exc)
            return 0
        done = 0
        for branch in branches:
            try:
                await self._regions.call(branch.region, {"op": "xa_settle", "gtrid": gtrid, "bqual": branch.xid.bqual,
                                                         "commit": outcome == COMMIT})
            except SqlError as exc:
                log.warning("XA resolver: settling %s on %s failed: %s", gtrid, branch.region, exc)
                continue
            self._first_seen.pop(branch, None)
            metrics.XA_RESOLVED.labels(outcome=outcome).inc()
            log.info("XA resolver: %s branch %s of %s on %s", "committed" if outcome == COMMIT else "rolled back",
                     branch.xid.bqual, gtrid, branch.region)
            done += 1
        return done
