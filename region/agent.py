"""The region agent: one per MariaDB server, its voice in the cluster.

Lifecycle: wait until the local MariaDB accepts the backend account, sync the
cluster's client accounts into it (region/accounts.py), register the region (ephemeral RegionInfo: where its MariaDB is, never a password),
serve the `region-<id>` task queue and publish a load report every few
seconds, until told to stop.

Error handling
--------------
* ZooKeeper session loss: the topology re-creates our registration and load
  node itself once a new session is up, and the queue server resumes.  We
  only make sure our own loop survives: a failed load report is logged and
  the next one tried a period later.
* MariaDB down: tasks fail with MariaDB's connection error (2003/2013) and
  the master reacts to that.  A region whose MariaDB stays unreachable for
  UNHEALTHY_AFTER consecutive load samples unregisters itself, so the master
  treats it as dead (promotes its replicas, re-copies its tables) instead of
  routing to a region that cannot answer; it registers again as soon as
  MariaDB answers.  Tables it held are then orphans the master no longer
  places; later copies or creates replace them.
* Stopping: the registration is deleted first (best effort, then the session
  close removes it anyway), then the queue server and the pool are closed.
  An in-flight task is cancelled and will be re-run by the next incarnation
  (delivery is at-least-once; handlers are idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

from minisql.config import BackendCredentials
from minisql.runtime import retry_until_stopped
from minisql.heartbeat import CREATE_HEARTBEAT, HEARTBEAT
from minisql.xa import CREATE_DECISIONS
from topology import RegionInfo, Topology, TopologyError
from topology.queues import region_queues

from . import metrics
from .accounts import AccountSync
from .fencing import epoch_keeper, load_leader_epoch
from .load import LoadSampler
from .mysql import sql_error_of, wait_for_pool
from .stale import drop_stale_copies, keep_dropping
from .tasks import RegionTasks

log = logging.getLogger(__name__)

UNHEALTHY_AFTER = 3  # consecutive failed load samples before unregistering
T = TypeVar("T")


@dataclass(frozen=True)
class RegionConfig:
    region_id: str
    mysql_host: str = "127.0.0.1"
    mysql_port: int = 3306
    advertise_host: str | None = None
    metrics_port: int = 0
    load_interval: float = 3.0

    @property
    def public_host(self) -> str:
        return self.advertise_host or self.mysql_host


class RegionAgent:
    def __init__(self, config: RegionConfig, topology: Topology, creds: BackendCredentials) -> None:
        self.config = config
        self._topology = topology
        self._creds = creds
        self._registered = False
        self._info: RegionInfo | None = None

    async def run(self, stop: asyncio.Event) -> int:
        """Serve until `stop` is set; returns the process exit code."""
        cfg = self.config
        log.info("region %s: waiting for MariaDB at %s:%d", cfg.region_id, cfg.mysql_host, cfg.mysql_port)
        ready = await wait_for_pool(cfg.mysql_host, cfg.mysql_port, self._creds, stop)
        if ready is None:
            return 0
        pool, version = ready
        cancels: list[Callable[[], None]] = []
        publisher: asyncio.Task[None] | None = None
        cleaner: asyncio.Task[None] | None = None
        accounts: AccountSync | None = None
        topology_started = False
        try:
            if not await self._until_ok(self._topology.start, stop, "connect to ZooKeeper"):
                return 0
            topology_started = True
            self._info = RegionInfo(
                region_id=cfg.region_id,
                host=cfg.public_host,
                mysql_port=cfg.mysql_port,
                metrics_port=cfg.metrics_port,
                mysql_version=version,
                started_at=time.time(),
            )
            # The decision table of the two-phase commit (proxy/commit.py): a proxy may
            # decide a transaction here as soon as we register.
            if not await self._until_ok(lambda: ensure_decision_table(pool), stop, "create the XA decision table"):
                return 0
            # The heartbeat table (minisql/heartbeat.py), emptied: beats from before this
            # start do not show that writes reach us now.  Proxies write to it once we register.
            if not await self._until_ok(lambda: reset_heartbeat_table(pool), stop, "reset the heartbeat table"):
                return 0
            # Client accounts first: a proxy may route a client here as soon as we register.
            accounts = AccountSync(pool, self._topology, self._creds.password)
            if not await self._until_ok(accounts.sync, stop, "sync client accounts"):
                return 0
            accounts.start()
            # Copies failed over while we were away are stale: gone before anyone routes here.
            stale_left: list[int] = []

            async def drop_stale() -> None:
                stale_left.append(await drop_stale_copies(pool, self._topology, cfg.region_id))

            if not await self._until_ok(drop_stale, stop, "drop stale copies"):
                return 0
            if stale_left and stale_left[-1]:
                cleaner = asyncio.create_task(keep_dropping(pool, self._topology, cfg.region_id), name="stale copies")
            if not await self._until_ok(self._register, stop, "register the region"):
                return 0
            # Fencing survives a restart: the highest leader epoch served before (region/fencing.py).
            known: list[tuple[str, int]] = []

            async def load_epoch() -> None:
                cluster = await self._topology.cluster_id()
                known.append((cluster, await load_leader_epoch(pool, cluster)))

            if not await self._until_ok(load_epoch, stop, "read the leader epoch"):
                return 0
            cluster, epoch = known[-1]
            tasks = RegionTasks(cfg.region_id, pool, self._creds, cfg.mysql_host, cfg.mysql_port,
                                leader_epoch=epoch, remember_epoch=epoch_keeper(pool, cluster))
            cancels = [self._topology.serve(queue, tasks.handle) for queue in region_queues(cfg.region_id)]
            publisher = asyncio.create_task(self._publish_loop(LoadSampler(cfg.region_id, pool, cfg.mysql_host)))
            log.info(
                "region %s ready: MariaDB %s at %s:%d, serving queues %s",
                cfg.region_id,
                version,
                cfg.public_host,
                cfg.mysql_port,
                ", ".join(region_queues(cfg.region_id)),
            )
            await stop.wait()
            return 0
        finally:
            log.info("region %s stopping", cfg.region_id)
            for task in (publisher, cleaner):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            for cancel in cancels:
                cancel()
            if accounts is not None:
                await accounts.close()
            if topology_started:
                await self._unregister()
                await self._topology.close()
            pool.close()
            await pool.wait_closed()

    # -- internals ---------------------------------------------------------------
    async def _until_ok(self, action: Callable[[], Awaitable[T]], stop: asyncio.Event, what: str) -> bool:
        """Retry `action` with backoff until it succeeds (True) or `stop` is set (False)."""
        return await retry_until_stopped(action, stop, what)

    async def _register(self) -> None:
        assert self._info is not None
        await self._topology.register_region(self._info)
        self._registered = True
        metrics.REGISTERED.set(1)

    async def _unregister(self) -> None:
        if not self._registered:
            return
        self._registered = False
        metrics.REGISTERED.set(0)
        try:
            await asyncio.wait_for(self._topology.unregister_region(self.config.region_id), 3.0)
        except (TopologyError, asyncio.TimeoutError) as exc:
            log.warning("could not unregister region %s (its session will expire): %s", self.config.region_id, exc)

    async def _publish_loop(self, sampler: LoadSampler) -> None:
        failures = 0
        while True:
            try:
                load = await sampler.sample()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - log and try again next period
                failures += 1
                metrics.LOAD_PUBLISH.labels(outcome="error").inc()
                log.warning("load sample failed (%d in a row): %s", failures, sql_error_of(exc))
                if failures >= UNHEALTHY_AFTER and self._registered:
                    log.error("MariaDB unreachable for %d samples: unregistering region %s", failures, self.config.region_id)
                    await self._unregister()
                await asyncio.sleep(self.config.load_interval)
                continue
            try:
                if not self._registered:
                    log.info("MariaDB reachable again: registering region %s", self.config.region_id)
                    await self._register()
                await self._topology.publish_load(load)
                metrics.LOAD_PUBLISH.labels(outcome="ok").inc()
                metrics.TABLES.set(load.tables)
                metrics.ROWS.set(load.rows)
                metrics.DATA_BYTES.set(load.data_bytes)
                metrics.QPS.set(load.qps)
                metrics.CPU.set(load.cpu_percent)
                metrics.HEARTBEAT_DELAY.set(float("nan") if load.delay is None else load.delay)
            except Exception as exc:  # noqa: BLE001 - ZooKeeper may be away; keep going
                metrics.LOAD_PUBLISH.labels(outcome="error").inc()
                log.warning("could not publish load: %s", exc)
            await asyncio.sleep(self.config.load_interval)


async def ensure_decision_table(pool: Any) -> None:
    """CREATE TABLE IF NOT EXISTS for minisql/xa.py's decision table."""
    async with pool.acquire() as conn:
        async with conn.cursor() as cur:
            await cur.execute(CREATE_DECISIONS)


async def reset_heartbeat_table(pool: Any) -> None:
    """minisql/heartbeat.py's heartbeat table, created if missing, without rows."""
    async with pool.acquire() as conn:
        async with conn.cursor() as cur:
            await cur.execute(CREATE_HEARTBEAT)
            await cur.execute(f"DELETE FROM {HEARTBEAT}")
