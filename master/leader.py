"""A master process: campaign, and act only while elected.

Several masters run at once; ZooKeeper elects one (topology.campaign).  The
leader serves the `master` queue (DDL, see ddl_service.py) and runs the
failover loop (failover.py) and the XA resolver (resolver.py).  The others only wait their turn.

Error handling
--------------
* Leadership is lost the moment the ZooKeeper session is suspended (the
  topology steps down on SUSPENDED).  `LeaderDuties.stop` then cancels the
  queue server (an in-flight DDL is cancelled mid-way and will be re-run by
  the next leader: requests are at-least-once) and the failover loop with its
  copies -- immediately, so two masters never act at once for longer than
  one in-flight ZooKeeper call.  Placement writes are compare-and-set, so
  even that call cannot overwrite the new leader's changes blindly.
* A master that cannot reach ZooKeeper at start keeps retrying until stopped.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from typing import Awaitable

from minisql.heartbeat import MAX_PROMOTE_DELAY
from minisql.runtime import retry_until_stopped
from topology import LeaderInfo, Topology, TopologyError

from . import metrics
from .ddl_service import DdlService
from .failover import FailoverLoop
from .regions import DEFAULT_TASK_TIMEOUT, RegionCaller
from .resolver import XaResolver

log = logging.getLogger(__name__)

MASTER_QUEUE = "master"


@dataclass(frozen=True)
class MasterConfig:
    master_id: str
    host: str = ""
    metrics_port: int = 0
    failover_grace: float = 2.0
    max_promote_delay: float = MAX_PROMOTE_DELAY
    task_timeout: float = DEFAULT_TASK_TIMEOUT
    copy_timeout: float = 600.0

    @property
    def public_host(self) -> str:
        return self.host or socket.gethostname()


class LeaderDuties:
    """Everything the leader does; started on election, stopped on loss."""

    def __init__(self, topology: Topology, config: MasterConfig) -> None:
        lock = asyncio.Lock()  # one placement change at a time (DDL vs failover)
        regions = RegionCaller(topology, timeout=config.task_timeout)
        self.ddl = DdlService(topology, regions, lock, copy_timeout=config.copy_timeout)
        self.failover = FailoverLoop(
            topology, regions, lock, grace=config.failover_grace, copy_timeout=config.copy_timeout,
            max_promote_delay=config.max_promote_delay,
        )
        self.resolver = XaResolver(topology, regions)
        self.failover.on_membership = self.resolver.poke
        self._topology = topology
        self._cancel_serve = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._cancel_serve = self._topology.serve(MASTER_QUEUE, self.ddl.handle)
        self._tasks = [asyncio.create_task(self.failover.run(), name="failover"),
                       asyncio.create_task(self.resolver.run(), name="xa-resolver")]

    async def stop(self) -> None:
        if self._cancel_serve is not None:
            self._cancel_serve()
            self._cancel_serve = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []


async def _first(aw: Awaitable[None], stop: asyncio.Event) -> bool:
    """Wait for `aw` or `stop`; True if `aw` finished first."""
    task = asyncio.ensure_future(aw)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        return task in done
    finally:
        for t in (task, stopper):
            if not t.done():
                t.cancel()
        await asyncio.gather(task, stopper, return_exceptions=True)


class Master:
    def __init__(self, config: MasterConfig, topology: Topology) -> None:
        self.config = config
        self._topology = topology

    async def run(self, stop: asyncio.Event) -> int:
        cfg = self.config
        if not await self._start_topology(stop):
            return 0
        leadership = self._topology.campaign(LeaderInfo(cfg.master_id, cfg.public_host, cfg.metrics_port))
        log.info("master %s campaigning", cfg.master_id)
        try:
            while not stop.is_set():
                if not await _first(leadership.wait_elected(), stop):
                    break
                log.warning("master %s is now the leader", cfg.master_id)
                metrics.ELECTIONS.inc()
                metrics.IS_LEADER.set(1)
                duties = LeaderDuties(self._topology, cfg)
                duties.start()
                try:
                    await _first(leadership.wait_lost(), stop)
                finally:
                    await duties.stop()
                    metrics.IS_LEADER.set(0)
                    log.warning("master %s stopped leading", cfg.master_id)
        finally:
            try:
                await asyncio.wait_for(leadership.resign(), 3.0)
            except (TopologyError, asyncio.TimeoutError) as exc:
                log.warning("could not resign cleanly (the session close ends the candidacy): %s", exc)
            await self._topology.close()
        return 0

    async def _start_topology(self, stop: asyncio.Event) -> bool:
        return await retry_until_stopped(self._topology.start, stop, "connect to ZooKeeper")
