"""The proxy's half of the heartbeat: one beat a second to every live region.

Why the proxy writes it, and how a region turns it into a delay, is in
minisql/heartbeat.py.  This module only sends: every `BEAT_INTERVAL` one
upsert of ``(proxy<n>, seq, now)`` per live region, all regions at once, over
the pool's internal connections (the ones that carry the commit decisions).

Error handling
--------------
* A region that does not answer within one interval gets no new beat until
  the one in flight ends: a frozen region costs one connection, not one per
  second, and its delay grows -- which is the point.
* No beats while the proxy does not hold its write lease (ZooKeeper session
  suspended): such a proxy writes nothing for clients either, and a region
  only it could reach must show as lagging.
* Errors are counted (minisql_proxy_heartbeats_total{outcome="error"}) and
  logged once per region until that region answers again; the loop never
  stops before the proxy does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from minisql.heartbeat import BEAT_INTERVAL, beat_sql

from . import metrics

log = logging.getLogger(__name__)


class HeartbeatWriter:
    def __init__(self, pool: Any, routing: Any, writer: Callable[[], str], interval: float = BEAT_INTERVAL) -> None:
        self._pool = pool
        self._routing = routing
        self._writer = writer
        self.interval = interval
        self._seq = 0
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._failing: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="heartbeat")

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._in_flight.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            self.beat_once()
            next_at = max(next_at + self.interval, loop.time())
            await asyncio.sleep(next_at - loop.time())

    def beat_once(self) -> None:
        """Start one beat to every live region that has none in flight."""
        if not self._routing.holds_lease:
            return
        self._seq += 1
        sql = beat_sql(self._writer(), self._seq, time.time())
        for region, info in self._routing.snapshot.regions.items():
            if region in self._in_flight:
                metrics.HEARTBEAT_SKIPPED.inc()
                continue
            task = asyncio.get_running_loop().create_task(self._beat(region, info, sql), name=f"heartbeat {region}")
            self._in_flight[region] = task
            task.add_done_callback(lambda _t, r=region: self._in_flight.pop(r, None))

    async def _beat(self, region: str, info: Any, sql: str) -> None:
        try:
            conn = await self._pool.acquire_internal(region, info.host, info.mysql_port)
            try:
                await conn.run(sql)
            finally:
                self._pool.release_internal(conn)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - counted, logged once, retried next beat
            metrics.HEARTBEAT_ERROR.inc()
            if region not in self._failing:
                self._failing.add(region)
                log.warning("heartbeat to region %s failed: %s", region, exc)
            return
        metrics.HEARTBEAT_OK.inc()
        if region in self._failing:
            self._failing.discard(region)
            log.info("heartbeat to region %s works again", region)
