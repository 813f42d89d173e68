"""The leader's failover loop: keep every table at two healthy copies.

Seed 000's design, made safe: when a region has been gone for longer than a
short grace period, every table whose primary was there gets an IN_SYNC
replica promoted, every table that lost a copy gets a new one copied from its
primary, and STALE copies (a DDL failed on them) are re-copied.  The decision
is `assignor.plan_failover` (pure, unit-tested); this module only watches,
waits and executes.

Each round (on every region change, and at least every `interval` seconds):
read the placement and loads, work out which regions are dead (missing for
>= `grace`), which are only suspect and which lag (their heartbeat delay,
minisql/heartbeat.py: their copies are not promoted), plan, then

1. apply every Promote / DropReplica in one compare-and-set;
2. start each CopyReplica in the background (a copy may take minutes; the
   loop keeps promoting meanwhile): mark the target COPYING, ask it to
   copy_table from the primary, compare table_checksum of both copies, and
   only if they match mark it IN_SYNC; otherwise mark it STALE and retry
   after a back-off.

Error handling
--------------
* A round that fails (ZooKeeper away, a region error) is logged and the next
  round starts from a fresh read: nothing is kept between rounds except the
  "missing since" clock and the copies in flight.
* Nothing runs until the first region listing has arrived: an empty listing
  is not evidence that every region died.
* Every placement write re-checks its preconditions on the snapshot it
  writes (assignor.apply_membership / begin_copy / finish_copy), so a DDL or
  another leader's move in between is never overwritten.
* Copy consistency: copy_table snapshots the primary; writes the primary
  commits during the copy are missing from it (the proxy does not write to
  COPYING copies).  The checksum comparison catches that before the copy is
  published IN_SYNC, but a write landing between the checksum and the
  placement write can still be missed -- a window of milliseconds that only
  an online catch-up (future work) closes.  Under constant writes a copy
  never converges and is retried with back-off: the table keeps running on
  one copy meanwhile (logged, and counted in
  minisql_master_failover_moves_total{move="copy_replica",outcome="error"}).
* On losing leadership the loop and every copy in flight are cancelled; a
  COPYING mark left behind is re-copied by the next leader ("abandoned").
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from minisql.errors import SqlError
from minisql.heartbeat import MAX_PROMOTE_DELAY, lagging_regions
from topology import Placement, RegionInfo, Topology, TopologyError

from . import metrics
from .assignor import (
    CopyReplica,
    DropReplica,
    Promote,
    Unavailable,
    abort_copy,
    apply_membership,
    plan_failover,
    region_copies,
)
from .copier import copy_replica
from .regions import RegionCaller

log = logging.getLogger(__name__)

CopyKey = tuple[str, str, str]  # (database, table, target region)


class FailoverLoop:
    def __init__(
        self,
        topology: Topology,
        regions: RegionCaller,
        lock: asyncio.Lock,
        *,
        grace: float = 2.0,
        interval: float = 1.0,
        copy_timeout: float = 600.0,
        copy_attempts: int = 3,
        retry_after: float = 30.0,
        max_parallel_copies: int = 2,
        max_promote_delay: float = MAX_PROMOTE_DELAY,
    ) -> None:
        self._topo = topology
        self._regions = regions
        self._lock = lock
        self.grace = grace
        self.interval = interval
        self.copy_timeout = copy_timeout
        self.copy_attempts = copy_attempts
        self.retry_after = retry_after
        self.max_parallel_copies = max_parallel_copies
        self.max_promote_delay = max_promote_delay
        self._lagging: frozenset[str] = frozenset()
        self._live: dict[str, RegionInfo] | None = None
        self._changed = asyncio.Event()
        self._missing_since: dict[str, float] = {}
        self._copies: dict[CopyKey, asyncio.Task[None]] = {}
        self._not_before: dict[CopyKey, float] = {}
        self._unavailable: frozenset[tuple[str, str]] = frozenset()
        self._weak: frozenset[tuple[str, str]] = frozenset()
        self.on_membership: Callable[[], None] | None = None  # called after a promotion / replica drop is written

    def _on_regions(self, regions: dict[str, RegionInfo]) -> None:
        self._live = regions
        metrics.LIVE_REGIONS.set(len(regions))
        self._changed.set()

    async def run(self) -> None:
        """Run rounds until cancelled (by the leader stepping down)."""
        cancel_watch = self._topo.watch_regions(self._on_regions)
        try:
            while True:
                try:
                    await asyncio.wait_for(self._changed.wait(), self._next_wait())
                except asyncio.TimeoutError:
                    pass
                self._changed.clear()
                if self._live is None:
                    continue
                try:
                    await self.round()
                except (TopologyError, SqlError) as exc:
                    log.warning("failover round failed: %s", exc)
                except Exception:  # noqa: BLE001 - never let the loop die
                    log.exception("failover round failed")
        finally:
            cancel_watch()
            for task in self._copies.values():
                task.cancel()
            await asyncio.gather(*self._copies.values(), return_exceptions=True)
            self._copies.clear()
            metrics.COPIES_IN_FLIGHT.set(0)

    def _next_wait(self) -> float:
        """Until the next round: `interval`, or sooner when a missing region's
        grace ends (a failover then starts at the grace's end, not up to one
        interval later)."""
        now = time.monotonic()
        upcoming = [since + self.grace - now for since in self._missing_since.values() if since + self.grace > now]
        return min([self.interval, *(left + 0.01 for left in upcoming)])

    async def round(self) -> None:
        live = dict(self._live or {})
        placement = await self._topo.get_placement()
        now = time.monotonic()
        referenced = set(region_copies(placement))
        for region in referenced - set(live):
            if region not in self._missing_since:
                log.warning("region %s is gone; waiting %.1fs before failing it over", region, self.grace)
                self._missing_since[region] = now
        for region in list(self._missing_since):
            if region in live or region not in referenced:
                del self._missing_since[region]
        suspect = {r for r, since in self._missing_since.items() if now - since < self.grace}
        loads = await self._topo.get_loads()
        lagging = self._report_lagging(lagging_regions(loads, live, time.time(), self.max_promote_delay), live)
        moves = plan_failover(placement, live, loads, suspect=suspect, copying=self._copies.keys(), lagging=lagging)

        unavailable = frozenset((m.database, m.table) for m in moves if isinstance(m, Unavailable))
        if unavailable != self._unavailable:
            why = {(m.database, m.table): m.lagging for m in moves if isinstance(m, Unavailable)}
            for db, table in sorted(unavailable - self._unavailable):
                if why[(db, table)]:
                    log.error("`%s`.`%s` is unavailable: its primary is dead and its in-sync replica on %s lags "
                              "(heartbeat delay over %.1fs); promoted once it catches up",
                              db, table, ", ".join(why[(db, table)]), self.max_promote_delay)
                else:
                    log.error("`%s`.`%s` is unavailable: its primary is dead and no in-sync replica is alive", db, table)
            self._unavailable = unavailable
            metrics.UNAVAILABLE_TABLES.set(len(unavailable))

        self._report_health(placement, set(live))

        membership = [m for m in moves if isinstance(m, (Promote, DropReplica))]
        if membership:
            async with self._lock:
                written = await self._topo.update_placement(lambda p: apply_membership(p, membership))
            self._report_membership(membership, written)
            if self.on_membership is not None:
                self.on_membership()  # the resolver: the dead region's in-doubt transactions are orphans now

        for move in moves:
            if isinstance(move, CopyReplica):
                self._maybe_start_copy(move, live)

    def _report_lagging(self, lagging: frozenset[str], live: dict[str, RegionInfo]) -> frozenset[str]:
        """Log (on change) and export the regions whose copies are not promoted now."""
        for region in sorted(lagging - self._lagging):
            log.warning("region %s lags: heartbeat delay more than %.1fs behind the other regions; "
                        "its copies are not promoted", region, self.max_promote_delay)
        for region in sorted(self._lagging - lagging):
            if region in live:  # (not a region that left)
                log.info("region %s caught up: its copies may be promoted again", region)
        self._lagging = lagging
        metrics.LAGGING_REGIONS.set(len(lagging))
        return lagging

    def _report_health(self, placement: Placement, live: set[str]) -> None:
        """Log (on change) and count tables running on fewer than two live copies.

        After a promotion with no free region to copy to, a table serves from
        one copy: allowed (better than refusing service) but never silent.
        """
        weak = frozenset(
            (t.database, t.name)
            for t in placement.all_tables()
            if (t.primary in live) + sum(1 for r in t.in_sync_replicas if r in live) < 2
        )
        for db, table in sorted(weak - self._weak):
            log.warning("`%s`.`%s` has fewer than two live in-sync copies", db, table)
        for db, table in sorted(self._weak - weak):
            log.info("`%s`.`%s` has two live in-sync copies again", db, table)
        self._weak = weak
        metrics.UNDER_REPLICATED_TABLES.set(len(weak))

    def _report_membership(self, moves: list[Any], written: Placement) -> None:
        for move in moves:
            table = written.table(move.database, move.table)
            if isinstance(move, Promote):
                done = table is not None and table.primary == move.new_primary
                log.warning(
                    "%s `%s`.`%s`: primary %s -> %s (placement v%d)",
                    "promoted" if done else "skipped promotion of",
                    move.database, move.table, move.old_primary, move.new_primary, written.version,
                )
                metrics.FAILOVER_MOVES.labels(move="promote", outcome="ok" if done else "skipped").inc()
            else:
                done = table is not None and move.region not in table.replicas
                log.warning("dropped dead replica %s of `%s`.`%s`", move.region, move.database, move.table)
                metrics.FAILOVER_MOVES.labels(move="drop_replica", outcome="ok" if done else "skipped").inc()

    def _maybe_start_copy(self, move: CopyReplica, live: dict[str, RegionInfo]) -> None:
        key = (move.database, move.table, move.target)
        if key in self._copies or time.monotonic() < self._not_before.get(key, 0.0):
            return
        if len(self._copies) >= self.max_parallel_copies:
            return  # next round
        source = live.get(move.source)
        if source is None or move.target not in live:
            return
        task = asyncio.create_task(self._copy(move, source), name=f"copy:{move.database}.{move.table}->{move.target}")
        self._copies[key] = task
        metrics.COPIES_IN_FLIGHT.set(len(self._copies))

        def done(_t: asyncio.Task[None], k: CopyKey = key) -> None:
            if self._copies.get(k) is _t:
                del self._copies[k]
            metrics.COPIES_IN_FLIGHT.set(len(self._copies))
            self._changed.set()  # re-plan: the next copy may start

        task.add_done_callback(done)

    async def _copy(self, move: CopyReplica, source: RegionInfo) -> None:
        key = (move.database, move.table, move.target)
        name = f"`{move.database}`.`{move.table}`"
        try:
            outcome = await copy_replica(
                self._topo, self._regions, move, source,
                lock=self._lock, timeout=self.copy_timeout, attempts=self.copy_attempts,
            )
            metrics.FAILOVER_MOVES.labels(move="copy_replica", outcome=outcome.value).inc()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - mark STALE and retry later
            log.error("copy of %s to %s failed: %s", name, move.target, exc)
            metrics.FAILOVER_MOVES.labels(move="copy_replica", outcome="error").inc()
            self._not_before[key] = time.monotonic() + self.retry_after
            try:
                async with self._lock:
                    await self._topo.update_placement(lambda p: abort_copy(p, move))
            except TopologyError as exc2:
                log.warning("could not mark %s on %s STALE: %s", name, move.target, exc2)
