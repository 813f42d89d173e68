"""Topology service over the in-process MemoryBackend (no ZooKeeper, no kazoo)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from topology import (
    CallTimeout,
    ConflictError,
    LeaderInfo,
    Placement,
    RegionInfo,
    RegionLoad,
    TablePlacement,
    Topology,
)
from topology.errors import BadVersionError, NodeExistsError, NoNodeError, NotEmptyError, TopologyUnavailable
from topology.memory import MemoryBackend, MemoryServer

ROOT = "/t"


def run(coro: Awaitable[Any], timeout: float = 3.0) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


async def until(queue: asyncio.Queue, pred: Callable[[Any], bool], timeout: float = 1.0) -> Any:
    """Next item pushed by a watch callback that satisfies `pred`."""
    async with asyncio.timeout(timeout):
        while True:
            item = await queue.get()
            if pred(item):
                return item


async def started(server: MemoryServer, **kw: Any) -> Topology:
    topo = Topology(MemoryBackend(server), ROOT, **kw)
    await topo.start()
    return topo


def test_kazoo_is_not_imported() -> None:
    code = "import sys, topology, topology.memory; sys.exit('kazoo' in sys.modules)"
    repo = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=repo).returncode == 0


# -- backend semantics ------------------------------------------------------
def test_memory_backend_semantics() -> None:
    async def main() -> None:
        server = MemoryServer()
        a, b = MemoryBackend(server), MemoryBackend(server)
        await a.start()
        await b.start()
        assert await a.create("/x/y", b"1") == "/x/y"
        assert await a.get("/x/y") == (b"1", 0)
        assert await a.set("/x/y", b"2", 0) == 1
        with pytest.raises(BadVersionError):
            await b.set("/x/y", b"3", 0)
        with pytest.raises(NodeExistsError):
            await b.create("/x/y")
        with pytest.raises(NoNodeError):
            await b.create("/nope/z", makepath=False)
        assert await a.create("/q/r-", sequential=True) == "/q/r-0000000000"
        assert await b.create("/q/r-", sequential=True) == "/q/r-0000000001"
        with pytest.raises(NotEmptyError):
            await a.delete("/q")
        await a.delete("/q", recursive=True)
        with pytest.raises(NoNodeError):
            await a.children("/q")
        await a.create("/e", ephemeral=True)
        await a.close()
        assert await b.children("/") == ["x"]
        with pytest.raises(TopologyUnavailable):
            await a.get("/x/y")

    run(main())


# -- placement ----------------------------------------------------------------
def test_placement_create_update_and_noop() -> None:
    async def main() -> None:
        topo = await started(MemoryServer())
        assert (await topo.get_placement()).version == -1
        p = await topo.update_placement(lambda cur: cur.with_database("shop"))
        assert p.version == 0 and p.has_database("shop")
        table = TablePlacement("shop", "orders", primary="r1")
        p = await topo.update_placement(lambda cur: cur.with_table(table))
        assert p.version == 1 and p.table("shop", "orders").primary == "r1"
        same = await topo.update_placement(lambda cur: None)
        assert same.version == 1 and same.table("shop", "orders") is not None
        assert (await topo.get_placement()) == p

    run(main())


@pytest.mark.parametrize("exists", [False, True], ids=["create-race", "cas-race"])
def test_placement_two_writers_race_and_retry(exists: bool) -> None:
    async def main() -> None:
        server = MemoryServer()
        t1, t2 = await started(server), await started(server)
        if exists:
            await t1.update_placement(lambda cur: cur.with_database("base"))
        calls: list[str] = []

        def adder(name: str) -> Callable[[Placement], Placement]:
            def mutate(cur: Placement) -> Placement:
                calls.append(name)
                return cur.with_database(name)

            return mutate

        r1, r2 = await asyncio.gather(t1.update_placement(adder("a")), t2.update_placement(adder("b")))
        # Both read the same version; exactly one lost and re-applied its edit.
        assert sorted(calls) == ["a", "a", "b"] or sorted(calls) == ["a", "b", "b"]
        final = await t1.get_placement()
        assert final.has_database("a") and final.has_database("b")
        base = 1 if exists else 0
        assert {r1.version, r2.version} == {base, base + 1}
        assert final.version == base + 1

    run(main())


def test_placement_conflict_error_after_attempts() -> None:
    async def main() -> None:
        server = MemoryServer()
        topo = await started(server)
        await topo.update_placement(lambda cur: cur.with_database("x"))
        calls = 0

        def mutate(cur: Placement) -> Placement:
            nonlocal calls
            calls += 1
            server.write(f"{ROOT}/placement", Placement().with_database(f"other{calls}").to_json())
            return cur.with_database("mine")

        with pytest.raises(ConflictError):
            await topo.update_placement(mutate, attempts=3)
        assert calls == 3
        assert not (await topo.get_placement()).has_database("mine")

    run(main())


def test_watch_placement_snapshots() -> None:
    async def main() -> None:
        server = MemoryServer()
        writer, reader = await started(server), await started(server)
        seen: asyncio.Queue = asyncio.Queue()
        cancel = reader.watch_placement(seen.put_nowait)
        first = await until(seen, lambda p: True)
        assert first.version == -1
        await writer.update_placement(lambda cur: cur.with_database("d1"))
        p = await until(seen, lambda p: p.version == 0)
        assert p.has_database("d1")
        cancel()
        await writer.update_placement(lambda cur: cur.with_database("d2"))
        await asyncio.sleep(0.01)  # give a (wrongly) live watch the chance to fire
        assert seen.empty()

    run(main())


# -- regions ------------------------------------------------------------------
def test_register_watch_and_unregister_regions() -> None:
    async def main() -> None:
        server = MemoryServer()
        region, master = await started(server), await started(server)
        seen: asyncio.Queue = asyncio.Queue()
        master.watch_regions(seen.put_nowait)
        assert await until(seen, lambda r: True) == {}
        info = RegionInfo("r1", "10.0.0.1", 3306)
        await region.register_region(info)
        assert (await until(seen, lambda r: "r1" in r))["r1"] == info
        assert await master.list_regions() == {"r1": info}
        await region.publish_load(RegionLoad("r1", tables=3, qps=1.5))
        await region.publish_load(RegionLoad("r1", tables=4))
        assert (await master.get_loads())["r1"].tables == 4
        # Re-registering with a new address is seen through the data watch.
        moved = RegionInfo("r1", "10.0.0.2", 3307)
        await region.register_region(moved)
        assert (await until(seen, lambda r: r.get("r1") == moved))["r1"].host == "10.0.0.2"
        await region.unregister_region("r1")
        assert await until(seen, lambda r: r == {}) == {}
        assert await master.get_loads() == {}
        # A region whose process ends disappears with its session.
        await region.register_region(info)
        await until(seen, lambda r: "r1" in r)
        await region.close()
        assert await until(seen, lambda r: r == {}) == {}

    run(main())


def test_region_reregistered_after_session_expiry() -> None:
    async def main() -> None:
        server = MemoryServer()
        region, master = await started(server), await started(server)
        info = RegionInfo("r1", "h", 3306)
        await region.register_region(info)
        await region.publish_load(RegionLoad("r1", rows=7))
        seen: asyncio.Queue = asyncio.Queue()
        master.watch_regions(seen.put_nowait)
        await until(seen, lambda r: "r1" in r)
        old_session = region.backend.session_id
        region.backend.expire_session()
        await until(seen, lambda r: r == {})  # the ephemeral went with the session
        assert (await until(seen, lambda r: "r1" in r))["r1"] == info  # ... and came back
        assert region.backend.session_id != old_session
        loads: asyncio.Queue = asyncio.Queue()
        cancel = master.backend.watch_children(f"{ROOT}/load", loads.put_nowait)
        await until(loads, lambda kids: kids == ["r1"])
        cancel()
        assert (await master.get_loads())["r1"].rows == 7

    run(main())


# -- leadership ---------------------------------------------------------------
async def _wait(aw: Awaitable[Any], timeout: float = 1.0) -> Any:
    async with asyncio.timeout(timeout):
        return await aw


def test_leadership_only_one_leads_and_failover_on_expiry() -> None:
    async def main() -> None:
        server = MemoryServer()
        ta, tb = await started(server), await started(server)
        a = ta.campaign(LeaderInfo("m1", "host-a", 9001))
        await _wait(a.wait_elected())
        b = tb.campaign(LeaderInfo("m2", "host-b", 9002))
        kids: asyncio.Queue = asyncio.Queue()
        ta.backend.watch_children(f"{ROOT}/election", kids.put_nowait)
        await until(kids, lambda k: len(k) == 2)
        await asyncio.sleep(0.01)  # let b finish its check; it must not lead
        assert a.is_leader and not b.is_leader
        assert await tb.get_leader() == LeaderInfo("m1", "host-a", 9001)

        ta.backend.expire_session()
        await _wait(a.wait_lost())
        assert not a.is_leader
        await _wait(b.wait_elected())
        assert await tb.get_leader() == LeaderInfo("m2", "host-b", 9002)
        # a re-enters the election by itself with a new node, behind b.
        await until(kids, lambda k: len(k) == 2)
        await asyncio.sleep(0.01)
        assert b.is_leader and not a.is_leader
        assert await ta.get_leader() == LeaderInfo("m2", "host-b", 9002)

        await b.resign()
        assert not b.is_leader
        await _wait(a.wait_elected())
        assert await tb.get_leader() == LeaderInfo("m1", "host-a", 9001)

    run(main())


def test_leader_steps_down_while_suspended_and_returns() -> None:
    async def main() -> None:
        topo = await started(MemoryServer())
        lead = topo.campaign(LeaderInfo("m1"))
        await _wait(lead.wait_elected())
        topo.backend.suspend()
        await _wait(lead.wait_lost())
        assert not lead.is_leader
        topo.backend.resume()
        await _wait(lead.wait_elected())  # same session, node still lowest
        assert lead.is_leader

    run(main())


def test_resign_while_disconnected_finishes_after_reconnect() -> None:
    async def main() -> None:
        server = MemoryServer()
        ta, tb = await started(server), await started(server)
        a = ta.campaign(LeaderInfo("m1"))
        await _wait(a.wait_elected())
        b = tb.campaign(LeaderInfo("m2"))
        ta.backend.suspend()
        await a.resign()  # cannot reach the server: must not raise
        assert not a.is_leader and not b.is_leader  # a's node still blocks the election
        ta.backend.resume()
        await _wait(b.wait_elected())  # a's node was deleted once reconnected
        assert await tb.get_leader() == LeaderInfo("m2")
        assert len(await tb.backend.children(f"{ROOT}/election")) == 1

    run(main())


# -- request queues -----------------------------------------------------------
def test_queue_call_serve_round_trip_in_order() -> None:
    async def main() -> None:
        server = MemoryServer()
        master, proxy = await started(server), await started(server)
        order: list[int] = []
        active = 0
        max_active = 0

        async def handler(req: dict[str, Any]) -> dict[str, Any]:
            nonlocal active, max_active
            active += 1
            max_active = max(max_active, active)
            await asyncio.sleep(0)
            order.append(req["n"])
            active -= 1
            if req["n"] == 2:
                raise RuntimeError("table t1 exists")
            return {"ok": req["n"] * 10}

        # Enqueue before anyone serves, so all three wait in the queue.
        calls = [asyncio.create_task(proxy.call("ddl", {"n": n}, timeout=2)) for n in range(3)]
        qkids: asyncio.Queue = asyncio.Queue()
        cancel = proxy.backend.watch_children(f"{ROOT}/queues/ddl", qkids.put_nowait)
        await until(qkids, lambda k: len(k) == 3)
        master.serve("ddl", handler)
        results = await asyncio.gather(*calls)
        assert results[0] == {"ok": 0} and results[1] == {"ok": 10}
        assert results[2] == {"error": {"errno": 1105, "sqlstate": "HY000", "message": "table t1 exists"}}
        assert order == [0, 1, 2] and max_active == 1
        await until(qkids, lambda k: k == [])  # callers deleted their requests
        cancel()

    run(main())


def test_call_timeout_without_server_deletes_request() -> None:
    async def main() -> None:
        topo = await started(MemoryServer())
        with pytest.raises(CallTimeout):
            await topo.call("region.r9", {"op": "copy"}, timeout=0.05)
        assert await topo.backend.children(f"{ROOT}/queues/region.r9") == []

    run(main())


def test_server_skips_answered_and_collects_abandoned_requests() -> None:
    async def main() -> None:
        topo = await started(MemoryServer(), result_ttl=0.05)
        b = topo.backend
        q = f"{ROOT}/queues/jobs"
        done = await b.create(f"{q}/req-", b'{"n": 0}', sequential=True)
        await b.create(f"{done}/result", b'{"old": true}')
        orphan = await b.create(f"{q}/req-", b'{"n": 1}', sequential=True)
        handled: list[int] = []

        async def handler(req: dict[str, Any]) -> dict[str, Any]:
            handled.append(req["n"])
            return {"done": req["n"]}

        kids: asyncio.Queue = asyncio.Queue()
        b.watch_children(q, kids.put_nowait)
        topo.serve("jobs", handler)
        # Nobody collects either result: after result_ttl both are deleted.
        await until(kids, lambda k: k == [])
        assert handled == [1]
        assert orphan.endswith("0000000001")

    run(main())


def test_handler_non_object_payload_becomes_error() -> None:
    async def main() -> None:
        server = MemoryServer()
        a, b = await started(server), await started(server)

        async def handler(req: dict[str, Any]) -> dict[str, Any]:
            return {"echo": req}

        a.serve("q", handler)
        assert await b.call("q", {"x": [1, 2]}, timeout=1) == {"echo": {"x": [1, 2]}}
        path = await b.backend.create(f"{ROOT}/queues/q/req-", b"[1]", sequential=True)
        got: asyncio.Queue = asyncio.Queue()
        b.backend.watch_data(f"{path}/result", lambda d, v: got.put_nowait(d))
        raw = await until(got, lambda d: d is not None)
        assert b'"errno":1105' in raw

    run(main())


def test_placement_writes_of_a_master_are_fenced_by_its_election_node() -> None:
    """A deposed leader's late placement write fails (FencedError) instead of
    landing over the new leader's: the write is a multi-op that checks the
    writer's own election node."""
    from topology import FencedError, TablePlacement

    async def main() -> None:
        server = MemoryServer()
        ta, tb = await started(server), await started(server)
        a = ta.campaign(LeaderInfo("m1"))
        await _wait(a.wait_elected())
        b = tb.campaign(LeaderInfo("m2"))
        first = await ta.update_placement(lambda p: p.with_database("d"))
        assert first.has_database("d") and a.epoch is not None and a.fence is not None
        a_epoch = a.epoch
        with pytest.raises(FencedError):  # b campaigns but does not lead
            await tb.update_placement(lambda p: p.with_database("x"))

        ta.backend.expire_session()  # a's node vanishes: b leads, with a higher epoch
        await _wait(b.wait_elected())
        assert b.epoch > a_epoch and a.epoch is None
        with pytest.raises(FencedError):
            await ta.update_placement(lambda p: p.with_table(TablePlacement("d", "late", "r1", {})))
        written = await tb.update_placement(lambda p: p.with_table(TablePlacement("d", "t", "r2", {})))
        assert written.table("d", "t") is not None and written.table("d", "late") is None

        plain = await started(server)  # a process that does not campaign (a proxy) is not fenced
        await plain.update_placement(lambda p: p.with_database("y"))
        assert (await tb.get_placement()).has_database("y")

    run(main())


def test_the_cluster_id_is_made_once_and_read_by_everyone() -> None:
    async def main() -> None:
        server = MemoryServer()
        a, b = await started(server), await started(server)
        made = await a.cluster_id()
        assert len(made) == 32 and await b.cluster_id() == made == await a.cluster_id()
        other = await started(MemoryServer())  # another ZooKeeper tree: another cluster
        assert await other.cluster_id() != made

    run(main())
