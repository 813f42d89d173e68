"""Topology service and ZooKeeperBackend against a real ZooKeeper server.

Uses the session-scoped `zookeeper` fixture from tests/conftest.py when there
is one; otherwise starts a private ZooKeeper for this module.  A server that
cannot be started FAILS the tests, it never skips them.

Session expiry is forced with the classic trick: a second client attaches to
the same session id and password and closes it (only this test may use
kazoo directly).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from typing import Any, Awaitable, Callable, Iterator

import pytest

from topology import CallTimeout, ConflictError, LeaderInfo, Placement, RegionInfo, RegionLoad, Topology
from topology.errors import BadVersionError, NodeExistsError, NoNodeError, NotEmptyError, TopologyUnavailable
from topology.zk import ZooKeeperBackend

pytestmark = pytest.mark.integration

SESSION_TIMEOUT = 4.0
ZK_CLASSPATH = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"


# -- a private ZooKeeper (only when tests/conftest.py offers none) ------------
class _PrivateZooKeeper:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="zk-topology-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.hosts = f"127.0.0.1:{self.port}"
        data = os.path.join(self.dir, "data")
        os.makedirs(data)
        with open(os.path.join(self.dir, "zoo.cfg"), "w") as f:
            f.write(
                "tickTime=1000\nminSessionTimeout=2000\nmaxSessionTimeout=20000\n"
                f"dataDir={data}\nclientPort={self.port}\nclientPortAddress=127.0.0.1\n"
                "admin.enableServer=false\n4lw.commands.whitelist=ruok\n"
            )
        self.log = open(os.path.join(self.dir, "zk.log"), "wb")
        self.proc = subprocess.Popen(
            [
                "java",
                "-cp",
                f"{self.dir}:{ZK_CLASSPATH}",
                "org.apache.zookeeper.server.ZooKeeperServerMain",
                os.path.join(self.dir, "zoo.cfg"),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"ruok")
                    if s.recv(16) == b"imok":
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        with open(os.path.join(self.dir, "zk.log"), "rb") as f:
            tail = f.read()[-2000:].decode(errors="replace")
        pytest.fail(f"ZooKeeper did not start on {self.hosts}:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def zk_hosts(request: pytest.FixtureRequest) -> Iterator[str]:
    try:
        shared = request.getfixturevalue("zookeeper")
    except pytest.FixtureLookupError:
        shared = None
    if shared is not None:
        yield shared.hosts
        return
    zk = _PrivateZooKeeper()
    try:
        zk.wait_ready()
        yield zk.hosts
    finally:
        zk.stop()
        shutil.rmtree(zk.dir, ignore_errors=True)


# -- helpers ------------------------------------------------------------------
def run(coro: Awaitable[Any], timeout: float = 30.0) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


async def until(queue: asyncio.Queue, pred: Callable[[Any], bool], timeout: float = 10.0) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            item = await queue.get()
            if pred(item):
                return item


async def wait(aw: Awaitable[Any], timeout: float = 10.0) -> Any:
    async with asyncio.timeout(timeout):
        return await aw


def new_root() -> str:
    return f"/it-{uuid.uuid4().hex[:12]}"


async def topo_for(hosts: str, root: str, **kw: Any) -> Topology:
    topo = Topology(ZooKeeperBackend(hosts, session_timeout=SESSION_TIMEOUT), root, **kw)
    await topo.start()
    return topo


def _expire_blocking(hosts: str, client_id: tuple[int, bytes]) -> None:
    from kazoo.client import KazooClient

    other = KazooClient(hosts=hosts, client_id=client_id)
    other.start(timeout=10)
    other.stop()
    other.close()


async def expire(hosts: str, backend: Any) -> None:
    """Force the server to expire `backend`'s session (classic same-session trick)."""
    assert backend.client_id is not None
    await asyncio.to_thread(_expire_blocking, hosts, backend.client_id)


# -- backend ------------------------------------------------------------------
def test_backend_operations_and_error_translation(zk_hosts: str) -> None:
    async def main() -> None:
        root = new_root()
        b = ZooKeeperBackend(zk_hosts, session_timeout=SESSION_TIMEOUT)
        await b.start()
        try:
            assert b.connected
            assert await b.create(f"{root}/x/y", b"1") == f"{root}/x/y"
            assert await b.get(f"{root}/x/y") == (b"1", 0)
            assert await b.set(f"{root}/x/y", b"2", 0) == 1
            with pytest.raises(BadVersionError):
                await b.set(f"{root}/x/y", b"3", 0)
            with pytest.raises(NodeExistsError):
                await b.create(f"{root}/x/y")
            with pytest.raises(NoNodeError):
                await b.get(f"{root}/missing")
            with pytest.raises(NoNodeError):
                await b.create(f"{root}/nope/z", makepath=False)
            first = await b.create(f"{root}/q/r-", sequential=True)
            second = await b.create(f"{root}/q/r-", sequential=True)
            assert first.endswith("0000000000") and second.endswith("0000000001")
            await b.create(f"{second}/deep/er", b"")
            with pytest.raises(NotEmptyError):
                await b.delete(f"{root}/q")
            await b.delete(f"{root}/q", recursive=True)
            with pytest.raises(NoNodeError):
                await b.children(f"{root}/q")
            assert await b.children(root) == ["x"]
        finally:
            await b.close()
        assert not b.connected
        with pytest.raises(TopologyUnavailable):
            await b.get(f"{root}/x/y")

    run(main())


def test_backend_start_fails_as_unavailable_when_nothing_listens() -> None:
    async def main() -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = f"127.0.0.1:{s.getsockname()[1]}"
        b = ZooKeeperBackend(dead, session_timeout=SESSION_TIMEOUT, connect_timeout=0.5)
        with pytest.raises(TopologyUnavailable):
            await b.start()
        assert not b.connected

    run(main())


def test_backend_watches_run_on_loop_and_cancel(zk_hosts: str) -> None:
    async def main() -> None:
        root = new_root()
        a = ZooKeeperBackend(zk_hosts, session_timeout=SESSION_TIMEOUT)
        b = ZooKeeperBackend(zk_hosts, session_timeout=SESSION_TIMEOUT)
        await a.start()
        await b.start()
        try:
            loop_thread = asyncio.get_running_loop()
            data: asyncio.Queue = asyncio.Queue()
            kids: asyncio.Queue = asyncio.Queue()

            def on_data(d: bytes | None, v: int) -> None:
                assert asyncio.get_running_loop() is loop_thread  # hopped to the loop
                data.put_nowait((d, v))

            cancel_data = a.watch_data(f"{root}/n", on_data)
            a.watch_children(f"{root}/dir", kids.put_nowait)
            assert await until(data, lambda x: True) == (None, -1)
            assert await until(kids, lambda x: True) == []  # missing node: [] and watched
            await b.create(f"{root}/n", b"v0")
            assert await until(data, lambda x: x[0] is not None) == (b"v0", 0)
            await b.set(f"{root}/n", b"v1", -1)
            assert await until(data, lambda x: x[1] == 1) == (b"v1", 1)
            await b.create(f"{root}/dir/c1", ephemeral=True)
            assert await until(kids, lambda k: k == ["c1"]) == ["c1"]
            cancel_data()
            await b.set(f"{root}/n", b"v2", -1)
            await b.close()  # the ephemeral child goes with b's session
            assert await until(kids, lambda k: k == []) == []
            assert data.empty()  # the cancelled data watch stayed silent
        finally:
            await a.close()
            await b.close()

    run(main())


def test_backend_session_expiry_sequence_and_watch_rearm(zk_hosts: str) -> None:
    async def main() -> None:
        root = new_root()
        a = ZooKeeperBackend(zk_hosts, session_timeout=SESSION_TIMEOUT)
        other = ZooKeeperBackend(zk_hosts, session_timeout=SESSION_TIMEOUT)
        await a.start()
        await other.start()
        try:
            states: asyncio.Queue = asyncio.Queue()
            a.add_session_listener(states.put_nowait)
            kids: asyncio.Queue = asyncio.Queue()
            a.watch_children(f"{root}/dir", kids.put_nowait)
            await a.create(f"{root}/dir/mine", ephemeral=True)
            await until(kids, lambda k: k == ["mine"])
            old = a.client_id
            await expire(zk_hosts, a)
            seen = []
            while "connected" not in seen:
                seen.append(await wait(states.get()))
            assert seen[-2:] == ["lost", "connected"]
            assert a.connected and a.client_id != old
            assert await a.children(f"{root}/dir") == []  # ephemeral died with the session
            # Watches keep firing on the new session.
            await other.create(f"{root}/dir/after", b"")
            assert await until(kids, lambda k: k == ["after"]) == ["after"]
        finally:
            await a.close()
            await other.close()

    run(main())


# -- placement ----------------------------------------------------------------
def test_placement_race_conflict_and_watch(zk_hosts: str) -> None:
    async def main() -> None:
        root = new_root()
        t1, t2 = await topo_for(zk_hosts, root), await topo_for(zk_hosts, root)
        try:
            seen: asyncio.Queue = asyncio.Queue()
            t2.watch_placement(seen.put_nowait)
            assert (await until(seen, lambda p: True)).version == -1
            calls: list[str] = []

            def adder(name: str) -> Callable[[Placement], Placement]:
                def mutate(cur: Placement) -> Placement:
                    calls.append(name)
                    return cur.with_database(name)

                return mutate

            await asyncio.gather(*(t.update_placement(adder(n)) for t, n in [(t1, "a"), (t2, "b"), (t1, "c")]))
            final = await t2.get_placement()
            assert all(final.has_database(n) for n in "abc")
            assert final.version == 2  # created at 0, then two successful sets
            assert len(calls) >= 3
            assert (await until(seen, lambda p: p.version == 2)).has_database("c")

            # A writer that always loses gives up with ConflictError.
            other = await asyncio.to_thread(_sync_client, zk_hosts)
            calls.clear()

            def mutate(cur: Placement) -> Placement:
                calls.append("x")
                # "Someone else" writes between our read and our set (a ~1 ms
                # blocking call: acceptable in a test, never in production).
                other.set(f"{root}/placement", Placement().with_database("z").to_json())
                return cur.with_database("never")

            try:
                with pytest.raises(ConflictError):
                    await t1.update_placement(mutate, attempts=2)
            finally:
                await asyncio.to_thread(_stop_sync_client, other)
            assert calls == ["x", "x"]
            assert not (await t1.get_placement()).has_database("never")
        finally:
            await t1.close()
            await t2.close()

    run(main())


def _sync_client(hosts: str) -> Any:
    from kazoo.client import KazooClient

    kc = KazooClient(hosts=hosts)
    kc.start(timeout=10)
    return kc


def _stop_sync_client(kc: Any) -> None:
    kc.stop()
    kc.close()


# -- regions ------------------------------------------------------------------
def test_region_reregistered_after_session_expiry(zk_hosts: str) -> None:
    async def main() -> None:
        root = new_root()
        region, master = await topo_for(zk_hosts, root), await topo_for(zk_hosts, root)
        try:
            seen: asyncio.Queue = asyncio.Queue()
            master.watch_regions(seen.put_nowait)
            assert await until(seen, lambda r: True) == {}
            info = RegionInfo("r1", "10.0.0.1", 3306, metrics_port=9100)
            await region.register_region(info)
            await region.publish_load(RegionLoad("r1", tables=2))
            assert (await until(seen, lambda r: "r1" in r))["r1"] == info
            await expire(zk_hosts, region.backend)
            await until(seen, lambda r: r == {})
            assert (await until(seen, lambda r: "r1" in r))["r1"] == info
            loads: asyncio.Queue = asyncio.Queue()
            master.backend.watch_children(f"{root}/load", loads.put_nowait)
            await until(loads, lambda k: k == ["r1"])
            assert (await master.get_loads())["r1"].tables == 2
            await region.unregister_region("r1")
            assert await until(seen, lambda r: r == {}) == {}
        finally:
            await region.close()
            await master.close()

    run(main())


# -- leadership ---------------------------------------------------------------
def test_leadership_failover_on_session_expiry(zk_hosts: str) -> None:
    async def main() -> None:
        root = new_root()
        ta, tb = await topo_for(zk_hosts, root), await topo_for(zk_hosts, root)
        try:
            a = ta.campaign(LeaderInfo("m1", "host-a"))
            await wait(a.wait_elected())
            b = tb.campaign(LeaderInfo("m2", "host-b"))
            kids: asyncio.Queue = asyncio.Queue()
            tb.backend.watch_children(f"{root}/election", kids.put_nowait)
            await until(kids, lambda k: len(k) == 2)
            assert a.is_leader and not b.is_leader
            assert await tb.get_leader() == LeaderInfo("m1", "host-a")

            await expire(zk_hosts, ta.backend)
            await wait(a.wait_lost())
            await wait(b.wait_elected())
            assert await tb.get_leader() == LeaderInfo("m2", "host-b")
            await until(kids, lambda k: len(k) == 2)  # a re-entered behind b
            assert b.is_leader and not a.is_leader

            await b.resign()
            await wait(a.wait_elected())
            assert await ta.get_leader() == LeaderInfo("m1", "host-a")
        finally:
            await ta.close()
            await tb.close()

    run(main())


def test_fenced_writes_are_one_zookeeper_multi_op(zk_hosts: str) -> None:
    """set_fenced checks the fence node and writes in one multi-op: with the
    fence gone nothing is written; a deposed leader's placement write fails."""
    from topology import FencedError

    async def main() -> None:
        root = new_root()
        ta, tb = await topo_for(zk_hosts, root), await topo_for(zk_hosts, root)
        try:
            be = ta.backend
            await be.create(f"{root}/fence", b"")
            assert await be.set_fenced(f"{root}/doc", b"v0", -1, f"{root}/fence") == 0  # -1: create
            assert await be.set_fenced(f"{root}/doc", b"v1", 0, f"{root}/fence") == 1
            with pytest.raises(BadVersionError):
                await be.set_fenced(f"{root}/doc", b"v2", 0, f"{root}/fence")
            await be.delete(f"{root}/fence")
            with pytest.raises(FencedError):
                await be.set_fenced(f"{root}/doc", b"v3", 1, f"{root}/fence")
            assert (await be.get(f"{root}/doc")) == (b"v1", 1)

            a = ta.campaign(LeaderInfo("m1"))
            await wait(a.wait_elected())
            await ta.update_placement(lambda p: p.with_database("d"))
            fence = a.fence
            await tb.backend.delete(fence)  # a is deposed (its node gone) -- whether it noticed yet or not
            with pytest.raises(FencedError):
                await ta.update_placement(lambda p: p.with_database("late"))
            assert not (await tb.get_placement()).has_database("late")
        finally:
            await ta.close()
            await tb.close()

    run(main())


# -- request queues -----------------------------------------------------------
def test_queue_round_trip_error_and_timeout(zk_hosts: str) -> None:
    async def main() -> None:
        root = new_root()
        master, proxy = await topo_for(zk_hosts, root), await topo_for(zk_hosts, root)
        try:
            order: list[int] = []

            async def handler(req: dict[str, Any]) -> dict[str, Any]:
                order.append(req["n"])
                if req["n"] < 0:
                    raise ValueError("negative")
                return {"double": req["n"] * 2}

            master.serve("ddl", handler)
            results = await asyncio.gather(*(proxy.call("ddl", {"n": n}, timeout=10) for n in (1, 2, -1)))
            assert results[:2] == [{"double": 2}, {"double": 4}]
            assert results[2] == {"error": {"errno": 1105, "sqlstate": "HY000", "message": "negative"}}
            assert sorted(order) == [-1, 1, 2]
            assert await proxy.backend.children(f"{root}/queues/ddl") == []

            with pytest.raises(CallTimeout):
                await proxy.call("nobody", {"n": 0}, timeout=0.3)
            assert await proxy.backend.children(f"{root}/queues/nobody") == []
        finally:
            await master.close()
            await proxy.close()

    run(main())
