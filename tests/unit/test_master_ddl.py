"""The master's DDL handling, leadership and failover over the in-memory topology.

Regions are fakes serving the real `region-<id>` queues: an in-memory
"MariaDB" of databases and tables that can be told to fail.  What is checked
is the master's side of the protocol: which tasks go where, in what order,
what is published, and which error reaches the client.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable

from master.ddl import DdlKind, analyze_ddl
from master.failover import FailoverLoop
from master.leader import Master, MasterConfig
from master.ddl_service import DdlService
from master.regions import RegionCaller
from minisql.errors import SqlError
from topology import RegionInfo, ReplicaState, Topology
from topology.memory import MemoryBackend, MemoryServer
from topology.queues import region_queues

ROOT = "/t"


def run(coro: Awaitable[Any], timeout: float = 10.0) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


class FakeRegion:
    """A region agent over a dict 'MariaDB': {db: {table: rows}}."""

    registry: dict[str, "FakeRegion"]

    def __init__(self, region_id: str, registry: dict[str, "FakeRegion"]) -> None:
        self.region_id = region_id
        self.dbs: dict[str, dict[str, list[int]]] = {}
        self.fail: dict[str, SqlError] = {}  # op -> error to return (once)
        self.log: list[tuple[str, ...]] = []
        self.payloads: list[dict[str, Any]] = []
        self.references: dict[tuple[str, str], set[tuple[str, str]]] = {}  # what MariaDB would report
        self.registry = registry
        registry[region_id] = self
        self.topo: Topology | None = None
        self.online_fill = False  # prepare_fill: whether tables are fit for an online copy

    async def start(self, server: MemoryServer) -> None:
        self.topo = Topology(MemoryBackend(server), ROOT)
        await self.topo.start()
        await self.topo.register_region(RegionInfo(self.region_id, "fake", 1))
        for queue in region_queues(self.region_id):
            self.topo.serve(queue, self.handle)

    async def die(self) -> None:
        assert self.topo is not None
        await self.topo.close()

    async def handle(self, p: dict[str, Any]) -> dict[str, Any]:
        op = p["op"]
        self.log.append((op, p.get("database", ""), p.get("table", "") or p.get("sql", "")))
        self.payloads.append(p)
        if op in self.fail:
            return {"error": self.fail.pop(op).to_dict()}
        db = p.get("database")
        if op == "create_database":
            self.dbs.setdefault(db, {})
            return {"ok": True}
        if op == "drop_database":
            self.dbs.pop(db, None)
            return {"ok": True}
        if op == "drop_table":
            self.dbs.get(db, {}).pop(p["table"], None)
            return {"ok": True}
        if op == "execute_ddl":
            stmt = analyze_ddl(p["sql"])
            ref_db, name = stmt.tables[0].resolve(db)
            tables = self.dbs.setdefault(ref_db, {})
            if stmt.kind == DdlKind.CREATE_TABLE:
                if name in tables:
                    if stmt.if_not_exists:
                        return {"ok": True, "warnings": [{"level": "Note", "code": 1050, "message": "exists"}]}
                    return {"error": SqlError(1050, f"Table '{name}' already exists").to_dict()}
                for ref in stmt.references:  # InnoDB: the parent must be here (errno 150 otherwise)
                    parent = ref.resolve(ref_db)
                    if parent[1] not in self.dbs.get(parent[0], {}) and parent != (ref_db, name):
                        return {"error": SqlError(1005, "Can't create table (errno: 150)").to_dict()}
                tables[name] = []
                self.references[(ref_db, name)] = {ref.resolve(ref_db) for ref in stmt.references}
                return self._reported(p, ref_db, name, {"ok": True, "affected_rows": 0})
            if name not in tables:
                return {"error": SqlError(1146, f"Table '{ref_db}.{name}' doesn't exist").to_dict()}
            if stmt.kind == DdlKind.TRUNCATE_TABLE:
                tables[name] = []
            for ref in stmt.references:
                parent = ref.resolve(ref_db)
                if parent[1] not in self.dbs.get(parent[0], {}):
                    return {"error": SqlError(1005, "Can't create table (errno: 150)").to_dict()}
                self.references.setdefault((ref_db, name), set()).add(parent)
            return self._reported(p, ref_db, name, {"ok": True, "affected_rows": 7})
        if op == "copy_table":
            source = self.registry[p["source"]["region_id"]]
            rows = list(source.dbs[db][p["table"]])
            self.dbs.setdefault(db, {})[p["table"]] = rows
            return {"ok": True, "rows": len(rows)}
        if op == "prepare_fill":
            if not self.online_fill:
                return {"ok": True, "online": False, "reason": "fake: offline"}
            self.dbs.setdefault(db, {})[p["table"]] = []
            return {"ok": True, "online": True, "key": ["a"], "guard": ["a"], "unique": False}
        if op == "fill_table":
            source = self.registry[p["source"]["region_id"]]
            rows = self.dbs.setdefault(db, {})[p["table"]]
            rows.extend(r for r in source.dbs[db][p["table"]] if r not in rows)
            return {"ok": True, "rows": len(rows), "seconds": 0.0}
        if op == "table_checksum":
            rows = self.dbs.get(db, {}).get(p["table"])
            if rows is None:
                return {"error": SqlError(1146, "missing").to_dict()}
            return {"ok": True, "rows": len(rows), "checksum": sum(rows)}
        return {"error": SqlError(1235, f"op {op}").to_dict()}


    def _reported(self, p: dict[str, Any], db: str, name: str, result: dict[str, Any]) -> dict[str, Any]:
        if p.get("report_references"):
            result["references"] = sorted(list(r) for r in self.references.get((db, name), ()))
        return result


class Env:
    def __init__(self, n_regions: int = 3) -> None:
        self.server = MemoryServer()
        self.registry: dict[str, FakeRegion] = {}
        self.regions = [FakeRegion(f"r{i}", self.registry) for i in range(1, n_regions + 1)]
        self.topo: Topology | None = None
        self.ddl: DdlService | None = None

    async def __aenter__(self) -> "Env":
        for r in self.regions:
            await r.start(self.server)
        self.topo = Topology(MemoryBackend(self.server), ROOT)
        await self.topo.start()
        self.lock = asyncio.Lock()
        self.caller = RegionCaller(self.topo, timeout=2.0)
        self.ddl = DdlService(self.topo, self.caller, self.lock)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.topo is not None
        await self.topo.close()
        for r in self.regions:
            if r.topo is not None and r.topo.connected:
                await r.topo.close()

    async def sql(self, sql: str, database: str | None = None) -> dict[str, Any]:
        assert self.ddl is not None
        return await self.ddl.handle({"op": "ddl", "sql": sql, "database": database})

    def holders(self, db: str, table: str) -> list[str]:
        return sorted(r.region_id for r in self.regions if table in r.dbs.get(db, {}))


def errno(result: dict[str, Any]) -> int | None:
    return result.get("error", {}).get("errno")


def test_databases_and_tables_lifecycle() -> None:
    async def main() -> None:
        async with Env() as env:
            assert errno(await env.sql("CREATE TABLE t (a int)")) == 1046
            assert errno(await env.sql("CREATE TABLE d.t (a int)")) == 1049
            ok = await env.sql("CREATE DATABASE d")
            assert ok["ok"] and ok["affected_rows"] == 1
            assert all("d" in r.dbs for r in env.regions)
            assert errno(await env.sql("CREATE DATABASE d")) == 1007
            note = await env.sql("CREATE DATABASE IF NOT EXISTS d")
            assert note["ok"] and note["warnings"][0]["code"] == 1007

            created = await env.sql("CREATE TABLE t (a int)", "d")
            assert created["ok"], created
            placement = await env.topo.get_placement()
            assert created["placement_version"] == placement.version
            t = placement.table("d", "t")
            assert (t.primary, dict(t.replicas)) == ("r1", {"r2": ReplicaState.IN_SYNC})
            assert env.holders("d", "t") == ["r1", "r2"]

            exists = await env.sql("CREATE TABLE d.t (a int)")
            assert (errno(exists), exists["error"]["sqlstate"], exists["error"]["message"]) == (
                1050, "42S01", "Table 't' already exists")
            assert (await env.sql("CREATE TABLE IF NOT EXISTS d.t (a int)"))["warnings"][0]["code"] == 1050

            # the next table goes to the least-loaded regions
            await env.sql("CREATE TABLE u (a int)", "d")
            u = (await env.topo.get_placement()).table("d", "u")
            assert (u.primary, tuple(u.replicas)) == ("r3", ("r1",))

            dropped = await env.sql("DROP TABLE nope", "d")
            assert (errno(dropped), dropped["error"]["message"]) == (1051, "Unknown table 'd.nope'")
            assert errno(await env.sql("DROP TABLE t, nope", "d")) == 1051
            assert env.holders("d", "t") == ["r1", "r2"]  # all-or-nothing
            ok = await env.sql("DROP TABLE IF EXISTS t, nope", "d")
            assert ok["ok"] and ok["warnings"][0]["code"] == 1051
            assert env.holders("d", "t") == []
            assert (await env.topo.get_placement()).table("d", "t") is None

            assert errno(await env.sql("DROP DATABASE nope")) == 1008
            ok = await env.sql("DROP DATABASE d")
            assert ok["ok"] and ok["affected_rows"] == 1
            assert not (await env.topo.get_placement()).has_database("d")
            assert all("d" not in r.dbs for r in env.regions)

            assert errno(await env.sql("CREATE EVENT e ON SCHEDULE EVERY 1 DAY DO SELECT 1", "d")) == 1235
            assert errno(await env.sql("CREATE TABLE (")) == 1064
            assert errno(await env.ddl.handle({"op": "nope"})) == 1235

    run(main())


def test_create_table_rolls_back_when_a_copy_fails() -> None:
    async def main() -> None:
        async with Env() as env:
            await env.sql("CREATE DATABASE d")
            before = await env.topo.get_placement()
            env.registry["r2"].fail["execute_ddl"] = SqlError(1005, "Can't create table `d`.`t` (errno: 150)")
            result = await env.sql("CREATE TABLE t (a int)", "d")
            assert errno(result) == 1005
            assert env.holders("d", "t") == []  # r1's copy was dropped again
            after = await env.topo.get_placement()
            assert after.version == before.version and after.table("d", "t") is None

    run(main())


def test_create_table_replaces_orphans_and_needs_two_regions() -> None:
    async def main() -> None:
        async with Env(n_regions=3) as env:
            await env.sql("CREATE DATABASE d")
            env.registry["r1"].dbs["d"]["t"] = [1, 2, 3]  # leftover from an earlier life
            result = await env.sql("CREATE TABLE t (a int)", "d")
            assert result["ok"], result
            assert env.registry["r1"].dbs["d"]["t"] == []
            await env.regions[1].die()
            await env.regions[2].die()
            await asyncio.sleep(0.05)
            lonely = await env.sql("CREATE TABLE u (a int)", "d")
            assert errno(lonely) == 1005 and "needs 2 live regions" in lonely["error"]["message"]

    run(main())


def test_alter_primary_first_and_stale_replicas() -> None:
    async def main() -> None:
        async with Env() as env:
            await env.sql("CREATE DATABASE d")
            await env.sql("CREATE TABLE t (a int)", "d")
            assert errno(await env.sql("ALTER TABLE nope ADD b int", "d")) == 1146
            assert (await env.sql("ALTER TABLE IF EXISTS nope ADD b int", "d"))["ok"]

            env.registry["r1"].fail["execute_ddl"] = SqlError(1060, "Duplicate column name 'b'")
            failed = await env.sql("ALTER TABLE t ADD b int", "d")
            assert errno(failed) == 1060
            assert not any(op[0] == "execute_ddl" and "ALTER" in op[2] for op in env.registry["r2"].log)

            ok = await env.sql("ALTER TABLE t ADD b int", "d")
            assert ok["ok"] and ok["affected_rows"] == 7

            env.registry["r2"].fail["execute_ddl"] = SqlError(1105, "disk full")
            ok = await env.sql("CREATE INDEX i ON d.t (a)")
            assert ok["ok"]  # the primary has it: the client's statement succeeded
            t = (await env.topo.get_placement()).table("d", "t")
            assert t.replicas["r2"] == ReplicaState.STALE
            assert ok["placement_version"] == (await env.topo.get_placement()).version

    run(main())


def test_failover_promotes_and_copies() -> None:
    async def main() -> None:
        async with Env() as env:
            await env.sql("CREATE DATABASE d")
            await env.sql("CREATE TABLE t (a int)", "d")
            for r in ("r1", "r2"):
                env.registry[r].dbs["d"]["t"] = [1, 2, 3]
            loop = FailoverLoop(env.topo, env.caller, env.lock, grace=0.2, interval=0.05)
            task = asyncio.create_task(loop.run())
            try:
                await asyncio.sleep(0.2)
                assert (await env.topo.get_placement()).table("d", "t").primary == "r1"
                await env.registry["r1"].die()
                await asyncio.sleep(0.1)  # within grace: nothing yet
                assert (await env.topo.get_placement()).table("d", "t").primary == "r1"
                for _ in range(100):
                    t = (await env.topo.get_placement()).table("d", "t")
                    if t.primary == "r2" and t.replicas.get("r3") == ReplicaState.IN_SYNC:
                        break
                    await asyncio.sleep(0.05)
                assert (t.primary, dict(t.replicas)) == ("r2", {"r3": ReplicaState.IN_SYNC})
                assert env.registry["r3"].dbs["d"]["t"] == [1, 2, 3]
                # a replica marked STALE by a DDL is copied again
                env.registry["r3"].dbs["d"]["t"] = [9]
                await env.topo.update_placement(
                    lambda p: p.with_table(
                        type(t)("d", "t", "r2", {"r3": ReplicaState.STALE}, t.epoch)
                    )
                )
                for _ in range(100):
                    t = (await env.topo.get_placement()).table("d", "t")
                    if t.replicas.get("r3") == ReplicaState.IN_SYNC:
                        break
                    await asyncio.sleep(0.05)
                assert t.replicas["r3"] == ReplicaState.IN_SYNC
                assert env.registry["r3"].dbs["d"]["t"] == [1, 2, 3]
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    run(main())


def test_copy_mismatch_marks_stale() -> None:
    async def main() -> None:
        async with Env() as env:
            await env.sql("CREATE DATABASE d")
            await env.sql("CREATE TABLE t (a int)", "d")
            env.registry["r1"].dbs["d"]["t"] = [1]
            env.registry["r2"].dbs["d"]["t"] = [1]
            original = env.registry["r3"].handle

            async def lossy(p: dict[str, Any]) -> dict[str, Any]:
                result = await original(p)
                if p["op"] == "copy_table":
                    env.registry["r3"].dbs["d"]["t"] = []  # as if a write was missed
                return result

            env.registry["r3"].handle = lossy  # type: ignore[method-assign]
            await env.registry["r3"].topo.close()
            await env.registry["r3"].start(env.server)
            loop = FailoverLoop(env.topo, env.caller, env.lock, grace=0.1, interval=0.05, copy_attempts=2)
            task = asyncio.create_task(loop.run())
            try:
                await env.registry["r2"].die()
                for _ in range(100):
                    t = (await env.topo.get_placement()).table("d", "t")
                    if t.replicas.get("r3") == ReplicaState.STALE:
                        break
                    await asyncio.sleep(0.05)
                assert dict(t.replicas) == {"r3": ReplicaState.STALE}
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    run(main())


def test_only_one_master_leads_and_the_other_takes_over() -> None:
    async def main() -> None:
        server = MemoryServer()
        region = FakeRegion("r1", {})
        await region.start(server)
        stops = {m: asyncio.Event() for m in ("m1", "m2")}
        topos = {m: Topology(MemoryBackend(server), ROOT) for m in stops}
        masters = {m: Master(MasterConfig(m, "h"), topos[m]) for m in stops}
        tasks = {m: asyncio.create_task(masters[m].run(stops[m])) for m in stops}
        client = Topology(MemoryBackend(server), ROOT)
        await client.start()
        try:
            for _ in range(50):
                leader = await client.get_leader()
                if leader:
                    break
                await asyncio.sleep(0.02)
            assert leader is not None
            result = await client.call("master", {"op": "ddl", "sql": "CREATE DATABASE d", "database": None}, timeout=3)
            assert result["ok"], result
            stops[leader.master_id].set()
            await tasks[leader.master_id]
            other = "m2" if leader.master_id == "m1" else "m1"
            result = await client.call("master", {"op": "ddl", "sql": "DROP DATABASE d", "database": None}, timeout=3)
            assert result["ok"], result
            assert (await client.get_leader()).master_id == other
        finally:
            for m in stops:
                stops[m].set()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            await client.close()
            await region.die()

    run(main())


def test_foreign_keys_keep_tables_together() -> None:
    """A child is created where its parent is; a child of two parents that live
    apart first brings the smaller group over (copied, switched, old copies
    dropped); ALTER TABLE ... ADD FOREIGN KEY does the same."""

    async def main() -> None:
        async with Env() as env:
            await env.sql("CREATE DATABASE d")
            for name in ("p", "q", "r"):
                assert "error" not in await env.sql(f"CREATE TABLE {name} (id INT PRIMARY KEY)", "d")
            p = await env.topo.get_placement()
            assert len({p.table("d", n).copies for n in ("p", "q", "r")}) == 3  # three different pairs
            env.registry[p.table("d", "q").primary].dbs["d"]["q"].extend([1, 2, 3])
            env.registry[next(iter(p.table("d", "q").replicas))].dbs["d"]["q"].extend([1, 2, 3])

            result = await env.sql(
                "CREATE TABLE c (id INT, pid INT, qid INT, FOREIGN KEY (pid) REFERENCES p (id), "
                "FOREIGN KEY (qid) REFERENCES d.q (id))", "d"
            )
            assert "error" not in result, result
            p = await env.topo.get_placement()
            assert p.table("d", "c").copies == p.table("d", "p").copies == p.table("d", "q").copies
            assert p.table("d", "c").references == (("d", "p"), ("d", "q"))
            assert env.holders("d", "q") == env.holders("d", "p") == env.holders("d", "c")  # old copies dropped
            for region in env.holders("d", "q"):
                assert env.registry[region].dbs["d"]["q"] == [1, 2, 3]  # the rows came along
            groups = p.colocation_groups()
            assert groups[("d", "c")] == (("d", "c"), ("d", "p"), ("d", "q"))

            result = await env.sql("ALTER TABLE r ADD FOREIGN KEY (id) REFERENCES c (id)", "d")
            assert "error" not in result, result
            p = await env.topo.get_placement()
            assert p.table("d", "r").copies == p.table("d", "c").copies
            assert p.table("d", "r").references == (("d", "c"),)
            assert env.holders("d", "r") == env.holders("d", "c")

    run(main())


def test_ddl_runs_with_the_client_session_settings() -> None:
    async def main() -> None:
        async with Env() as env:
            sets = ["SET foreign_key_checks = 0", "SET sql_mode = ''"]
            await env.ddl.handle({"op": "ddl", "sql": "CREATE DATABASE d", "database": None})
            await env.ddl.handle({"op": "ddl", "sql": "CREATE TABLE t (a INT)", "database": "d", "session_sets": sets})
            await env.ddl.handle({"op": "ddl", "sql": "DROP TABLE t", "database": "d", "session_sets": sets})
            seen = [p for r in env.regions for p in r.payloads if p["op"] in ("execute_ddl", "drop_table")]
            assert len(seen) == 4 and all(p["session_sets"] == sets for p in seen)

    run(main())


def test_create_or_replace_database_drops_the_old_one_with_its_tables() -> None:
    async def main() -> None:
        async with Env() as env:
            await env.sql("CREATE DATABASE d")
            await env.sql("CREATE TABLE t (a INT)", "d")
            assert (await env.sql("CREATE OR REPLACE DATABASE d"))["ok"]
            placement = await env.topo.get_placement()
            assert placement.has_database("d") and placement.tables("d") == ()
            assert env.holders("d", "t") == []
            assert errno(await env.sql("CREATE OR REPLACE DATABASE IF NOT EXISTS d")) == 1221

    run(main())


def test_online_copy_is_filling_until_every_proxy_acknowledged() -> None:
    """A table fit for an online copy: FILLING (with its guard) as soon as the
    copy starts, rows filled only after the live proxy acknowledged that
    placement epoch, then IN_SYNC with the guard gone."""
    from topology.proxies import ProxyInfo, ProxyRegistration

    async def main() -> None:
        async with Env() as env:
            await env.sql("CREATE DATABASE d")
            await env.sql("CREATE TABLE t (a int primary key)", "d")
            for r in ("r1", "r2"):
                env.registry[r].dbs["d"]["t"] = [1, 2, 3]
            env.registry["r3"].online_fill = True
            proxy = ProxyRegistration(env.topo, ProxyInfo(0, "proxy", 1))
            await proxy.claim()
            loop = FailoverLoop(env.topo, env.caller, env.lock, grace=0.1, interval=0.05)
            task = asyncio.create_task(loop.run())
            try:
                await env.registry["r2"].die()
                for _ in range(100):
                    placement = await env.topo.get_placement()
                    t = placement.table("d", "t")
                    if t.replicas.get("r3") == ReplicaState.FILLING:
                        break
                    await asyncio.sleep(0.05)
                assert dict(t.replicas) == {"r3": ReplicaState.FILLING} and t.fill_guard == ("a",)
                await asyncio.sleep(0.3)
                ops = [entry[0] for entry in env.registry["r3"].log]
                assert "prepare_fill" in ops and "fill_table" not in ops  # waits for the proxy
                await proxy.acknowledge(placement.version)
                for _ in range(100):
                    t = (await env.topo.get_placement()).table("d", "t")
                    if t.replicas.get("r3") == ReplicaState.IN_SYNC:
                        break
                    await asyncio.sleep(0.05)
                assert dict(t.replicas) == {"r3": ReplicaState.IN_SYNC} and t.fill_guard == ()
                assert env.registry["r3"].dbs["d"]["t"] == [1, 2, 3]
                assert "copy_table" not in [entry[0] for entry in env.registry["r3"].log]
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await proxy.release()

    run(main())
