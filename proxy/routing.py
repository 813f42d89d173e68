"""The proxy's view of the cluster: one immutable RoutingSnapshot, swapped whole.

Placement and live regions are watched through the topology service.  Each
callback builds a new snapshot and replaces the reference in one assignment,
so a statement planned against a snapshot sees one consistent epoch even if a
newer one arrives mid-statement.  A placement older than the one in use is
ignored (watches can deliver late).

Epoch acknowledgement: each statement is counted (`inflight`) under the epoch
it was planned on; when none planned on an older epoch runs any more, the
proxy publishes the current one in its `proxies/<n>` znode.  The master waits
for every live proxy's acknowledgement before an online copy starts copying
rows: from then on no write can bypass the new copy.  Error handling: a
failed publication is logged and retried with the next placement; a proxy
that cannot publish only delays (the master's wait times out and the copy is
retried later), it never makes a copy miss a write.
"""

from __future__ import annotations

import asyncio
import logging
from types import MappingProxyType
from typing import Awaitable, Callable

from topology import EMPTY_PLACEMENT, Placement, RegionInfo, Topology

from . import metrics
from .planner import RoutingSnapshot

log = logging.getLogger(__name__)

DRAIN_POLL = 0.005  # how often an epoch acknowledgement re-checks the statements still running


class RoutingTable:
    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.snapshot = RoutingSnapshot(EMPTY_PLACEMENT, MappingProxyType({}))
        self._changed = asyncio.Event()
        self._cancels: list = []
        self._have_placement = asyncio.Event()
        self.listeners: list[Callable[[RoutingSnapshot], None]] = []  # told of every new snapshot (on the loop)
        # The write lease: while the ZooKeeper session is suspended this proxy may miss a
        # failover, so writes wait for it to come back (wait_for_lease) instead of going
        # to a primary the master may already have replaced.
        self.holds_lease = True
        self._lease_back = asyncio.Event()
        self._lease_back.set()
        # Statements running, by the placement epoch they were planned on
        # (session.execute).  Once none older than the current epoch runs, the
        # epoch is acknowledged (`on_drained`, the proxy's registration): a new
        # FILLING copy is in every write from then on (master/copier.py).
        self.inflight: dict[int, int] = {}
        self.on_drained: Callable[[int], Awaitable[None]] | None = None
        self._acking: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 30.0) -> None:
        self._cancels.append(self.topology.watch_placement(self._on_placement))
        self._cancels.append(self.topology.watch_regions(self._on_regions))
        self._cancels.append(self.topology.backend.add_session_listener(self._on_session))
        await asyncio.wait_for(self._have_placement.wait(), timeout)

    def _on_session(self, state: str) -> None:
        if state == "connected":
            self.holds_lease = True
            self._lease_back.set()
        else:  # suspended / lost
            if self.holds_lease:
                log.warning("ZooKeeper session %s: writes wait until it is back", state)
            self.holds_lease = False
            self._lease_back.clear()

    async def wait_for_lease(self, timeout: float) -> bool:
        """Until the ZooKeeper session is back (True) or `timeout` passes (False)."""
        if self.holds_lease:
            return True
        try:
            await asyncio.wait_for(self._lease_back.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return self.holds_lease

    def pause(self, epoch: int | None) -> bool:
        """A statement counted under `epoch` that now only waits -- for the
        master, a failover or a fill -- and will be planned again or sends
        nothing planned on `epoch` meanwhile: not counted while it waits
        (else a DDL whose table move waits for this very acknowledgement
        would wait for itself).  True if it was counted; `resume` then."""
        if epoch is None or not self.inflight.get(epoch):
            return False
        left = self.inflight[epoch] - 1
        if left:
            self.inflight[epoch] = left
        else:
            del self.inflight[epoch]
        self.acknowledge_when_drained()
        return True

    def resume(self, epoch: int) -> None:
        self.inflight[epoch] = self.inflight.get(epoch, 0) + 1

    def acknowledge_when_drained(self) -> None:
        """(Re)start the task that acknowledges the current epoch once drained."""
        if self.on_drained is not None and (self._acking is None or self._acking.done()):
            self._acking = asyncio.get_running_loop().create_task(self._acknowledge(), name="acknowledge-epoch")

    async def _acknowledge(self) -> None:
        acked = -2
        while self.on_drained is not None and acked < self.snapshot.epoch:
            epoch = self.snapshot.epoch
            while any(e < epoch for e in self.inflight):
                await asyncio.sleep(DRAIN_POLL)
            try:
                await self.on_drained(epoch)
            except Exception as e:  # noqa: BLE001 - retried on the next snapshot
                log.warning("acknowledging placement epoch %d failed: %s", epoch, e)
                return
            acked = epoch

    def close(self) -> None:
        if self._acking is not None:
            self._acking.cancel()
        for cancel in self._cancels:
            cancel()
        self._cancels.clear()

    def _swap(self, snapshot: RoutingSnapshot) -> None:
        self.snapshot = snapshot
        metrics.PLACEMENT_EPOCH.set(snapshot.epoch)
        metrics.LIVE_REGIONS.set(len(snapshot.regions))
        self._changed.set()
        self._changed = asyncio.Event()
        for listener in self.listeners:
            listener(snapshot)

    def _on_placement(self, placement: Placement) -> None:
        current = self.snapshot
        self._have_placement.set()
        if placement.version < current.placement.version:
            log.debug("ignoring late placement version %d < %d", placement.version, current.placement.version)
            return
        self._swap(RoutingSnapshot(placement, current.regions))
        self.acknowledge_when_drained()

    def _on_regions(self, regions: dict[str, RegionInfo]) -> None:
        self._swap(RoutingSnapshot(self.snapshot.placement, MappingProxyType(dict(regions))))

    async def wait_changed(self, timeout: float) -> None:
        """Until the next snapshot (placement or live regions) or `timeout`."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    async def wait_for_epoch(self, version: int, timeout: float = 10.0) -> None:
        """Wait until the snapshot in use is at least `version` (after our own DDL)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.snapshot.epoch < version:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise asyncio.TimeoutError
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except asyncio.TimeoutError:
                break
        if self.snapshot.epoch < version:
            # The watch may lag; read it directly once.
            self._on_placement(await self.topology.get_placement())
            if self.snapshot.epoch < version:
                raise asyncio.TimeoutError
