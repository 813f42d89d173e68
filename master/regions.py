"""Calling region tasks from the master: one place for timeouts and error mapping.

A region task result is {"ok": true, ...} or {"error": {...}}; a region that
does not answer in time is reported as an error too, so callers deal with one
shape: a result dict, or a `SqlError` they can hand to the client.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterable

from minisql.errors import ER_UNKNOWN, SqlError
from topology import CallTimeout, Topology, TopologyError
from topology.queues import region_queue

log = logging.getLogger(__name__)

DEFAULT_TASK_TIMEOUT = 30.0


class RegionCaller:
    def __init__(self, topology: Topology, *, timeout: float = DEFAULT_TASK_TIMEOUT) -> None:
        self._topology = topology
        self.timeout = timeout

    async def call(self, region: str, payload: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """Run one task on `region`; its result dict, or raise SqlError."""
        limit = timeout or self.timeout
        epoch = self._topology.leader_epoch()
        if epoch is not None:  # regions refuse tasks from a leader older than one they served (region/tasks.py)
            payload = {**payload, "epoch": epoch}
        try:
            result = await self._topology.call(region_queue(region, payload.get("op")), payload, timeout=limit)
        except CallTimeout:
            raise SqlError(
                ER_UNKNOWN, f"region {region} did not answer {payload.get('op')} within {limit:.0f}s"
            ) from None
        except TopologyError as exc:
            raise SqlError(ER_UNKNOWN, f"cannot reach region {region} through ZooKeeper: {exc}") from None
        error = result.get("error")
        if error is not None:
            try:
                raise SqlError.from_dict(error)
            except (KeyError, TypeError, ValueError):
                raise SqlError(ER_UNKNOWN, f"region {region} failed: {error!r}") from None
        return result

    async def call_many(
        self, regions: Iterable[str], payload: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, dict[str, Any] | SqlError]:
        """Run the same task on several regions in parallel: region -> result or SqlError."""
        regions = list(dict.fromkeys(regions))

        async def one(region: str) -> dict[str, Any] | SqlError:
            try:
                return await self.call(region, payload, timeout=timeout)
            except SqlError as exc:
                return exc

        results = await asyncio.gather(*(one(r) for r in regions))
        return dict(zip(regions, results))
