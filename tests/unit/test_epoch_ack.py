"""Placement epoch acknowledgement (proxy/routing.py): a proxy publishes an
epoch only once no statement planned on an older one still runs; a statement
that only waits (for the master, a failover, a fill) does not hold it up."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import MappingProxyType

from proxy.planner import RoutingSnapshot
from proxy.routing import RoutingTable
from topology import EMPTY_PLACEMENT


def test_an_epoch_is_acknowledged_once_older_statements_finished_or_only_wait():
    async def main() -> None:
        routing = RoutingTable(None)  # type: ignore[arg-type]  (no topology needed here)
        acked: list[int] = []

        async def publish(epoch: int) -> None:
            acked.append(epoch)

        routing.on_drained = publish
        routing.inflight = {6: 2, 7: 1}  # two statements planned on epoch 6 still run
        routing.snapshot = RoutingSnapshot(replace(EMPTY_PLACEMENT, version=7), MappingProxyType({}))
        routing.acknowledge_when_drained()
        await asyncio.sleep(0.05)
        assert acked == []
        assert routing.pause(6)  # one now only waits for the master
        await asyncio.sleep(0.05)
        assert acked == []  # the other still runs
        routing.inflight[6] -= 1
        del routing.inflight[6]
        await asyncio.sleep(0.05)
        assert acked == [7]  # statements on epoch 7 itself never hold it up
        routing.resume(6)  # the waiting one goes on (it re-plans: nothing planned on 6 is sent)
        assert routing.inflight == {6: 1, 7: 1}
        assert not routing.pause(5)  # nothing counted there
        routing.close()

    asyncio.run(main())
