"""Cluster-wide sessions, the pure parts (issue 6): connection ids, KILL
parsing, CONNECTION_ID() substitution, privileges, the process-list result,
lock-region planning; and the proxy-number claim and proxy queues over the
in-memory topology backend."""

from __future__ import annotations

import asyncio
from types import MappingProxyType
from typing import Any, Awaitable

import pytest

from minisql.errors import SqlError
from proxy.clusterplan import (
    LOCAL_BITS,
    ConnectionIds,
    global_privileges,
    lock_region,
    match_processlist,
    may_kill_any,
    may_see_all,
    owner_of,
    parse_kill,
    processlist_result,
    set_session_functions,
    substitute_connection_id,
)
from proxy.engine import Route
from proxy.planbuilder import plan_statement
from proxy.planner import RoutingSnapshot
from proxy.prepared import column_type
from proxy.sessionstate import SessionState
from proxy.statements import AnalysisCache, classify
from topology import Topology
from topology.memory import MemoryBackend, MemoryServer
from topology.proxies import ProxyInfo, ProxyRegistration, call_proxy, list_proxies, proxy_queue, smallest_free

from .fakecursor import SNAP, LoggingCursor


def run(coro: Awaitable[Any], timeout: float = 5.0) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


def plan(sql: str, state: SessionState | None = None, snap: RoutingSnapshot = SNAP) -> Any:
    return plan_statement(sql, classify(sql), snap, state or SessionState(database="shop"), AnalysisCache())


# -- connection ids ---------------------------------------------------------------------------
def test_ids_carry_the_proxy_number_and_are_never_zero():
    ids = ConnectionIds(0)
    first = ids.next(set())
    assert first == 1
    assert owner_of(first) == 0
    three = ConnectionIds(3)
    cid = three.next(set())
    assert cid == (3 << 22) | 1 and owner_of(cid) == 3
    assert ConnectionIds(1023).next(set()) < 2**32


def test_ids_skip_ids_in_use_and_wrap_without_zero():
    ids = ConnectionIds(0)
    in_use = {1, 2, 3}
    assert ids.next(in_use) == 4
    ids._counter = (1 << LOCAL_BITS) - 2
    assert ids.next(set()) == (1 << LOCAL_BITS) - 1
    assert ids.next(set()) == 1  # wrapped, 0 skipped
    ids2 = ConnectionIds(2)
    ids2._counter = (1 << LOCAL_BITS) - 1
    assert ids2.next(set()) == (2 << 22) | 0  # only the whole id must not be 0


def test_ids_refuse_numbers_that_do_not_fit_and_a_full_proxy():
    with pytest.raises(ValueError):
        ConnectionIds(1024)
    ids = ConnectionIds(0)
    with pytest.raises(SqlError) as e:
        ids.next(range(1 << LOCAL_BITS))
    assert e.value.errno == 1040


def test_renumber_changes_the_prefix_of_new_ids():
    ids = ConnectionIds(0)
    ids.next(set())
    ids.renumber(5)
    assert owner_of(ids.next(set())) == 5


# -- KILL ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("sql,target,query", [
    ("KILL 5", 5, False),
    ("kill query 7;", 7, True),
    ("KILL CONNECTION 9", 9, False),
    ("KILL HARD QUERY 3", 3, True),
    ("/* c */ KILL SOFT 12 ", 12, False),
    ("KILL CONNECTION_ID()", 42, False),
    ("KILL QUERY connection_id( )", 42, True),
])
def test_parse_kill(sql, target, query):
    request = parse_kill(sql, 42)
    assert (request.target, request.query) == (target, query)


@pytest.mark.parametrize("sql,errno", [("KILL", 1064), ("KILL CONNECTION", 1064), ("KILL QUERY", 1064), ("KILL QUERY ID 5", 1235), ("KILL USER bob", 1235), ("KILL @x", 1235)])
def test_parse_kill_errors(sql, errno):
    with pytest.raises(SqlError) as e:
        parse_kill(sql, 1)
    assert e.value.errno == errno


def test_kill_plans_to_the_cluster_primitive():
    state = SessionState(database="shop", connection_id=77)
    cursor = LoggingCursor(state)
    run(plan("KILL CONNECTION_ID()", state).execute(cursor))
    run(plan("KILL QUERY 4194305", state).execute(cursor))
    run(plan("SHOW FULL PROCESSLIST", state).execute(cursor))
    assert cursor.log == [("cluster", "KILL CONNECTION 77"), ("cluster", "KILL QUERY 4194305"), ("cluster", "PROCESSLIST FULL")]


def test_match_processlist():
    assert match_processlist("SHOW PROCESSLIST") is False
    assert match_processlist(" show  full processlist ;") is True
    assert match_processlist("SHOW STATUS") is None


# -- CONNECTION_ID() ---------------------------------------------------------------------------
@pytest.mark.parametrize("sql,expected", [
    ("SELECT CONNECTION_ID()", "SELECT 9 AS `CONNECTION_ID()`"),
    ("SELECT DISTINCT connection_id();", "SELECT DISTINCT 9 AS `connection_id()`;"),
    ("SELECT a, CONNECTION_ID() FROM t WHERE x IN (1, CONNECTION_ID())", "SELECT a, 9 AS `CONNECTION_ID()` FROM t WHERE x IN (1, 9)"),
    ("SELECT CONNECTION_ID() AS c, CONNECTION_ID()+1", "SELECT 9 AS c, 9+1"),
    ("SELECT 'CONNECTION_ID()', `connection_id()`, /* CONNECTION_ID() */ 1", "SELECT 'CONNECTION_ID()', `connection_id()`, /* CONNECTION_ID() */ 1"),
    ("INSERT INTO t VALUES (CONNECTION_ID())", "INSERT INTO t VALUES (9)"),
    ("DO CONNECTION_ID()", "DO 9"),
    ("SELECT * FROM t GROUP BY a, CONNECTION_ID()", "SELECT * FROM t GROUP BY a, 9"),
])
def test_substitute_connection_id(sql, expected):
    assert substitute_connection_id(sql, 9) == expected


def test_connection_id_reaches_the_region_as_the_session_id():
    state = SessionState(database="shop", connection_id=4194309)
    cursor = LoggingCursor(state)
    run(plan("SELECT CONNECTION_ID()", state).execute(cursor))
    run(plan("INSERT INTO solo (id) VALUES (CONNECTION_ID())", state).execute(cursor))
    run(plan("SET @me = CONNECTION_ID()", state).execute(cursor))
    sent = [sql for _, sql in cursor.log]
    assert sent[0] == "SELECT 4194309 AS `CONNECTION_ID()`"
    assert sent[1] == "INSERT INTO solo (id) VALUES (4194309)"
    assert sent[2] == "SET @me = 4194309"
    assert state.replay["@me"] == "SET @me = 4194309"  # replayed as the value, not the function


def test_set_session_functions():
    assert set_session_functions("SET @a = GET_LOCK('x', 1)") == (True, False)
    assert set_session_functions("SET @a = connection_id()") == (False, True)
    assert set_session_functions("SET @a = 1") == (False, False)


# -- lock region --------------------------------------------------------------------------------
def test_lock_region_is_the_smallest_live_region_and_sessions_record_it():
    assert lock_region(SNAP) == "r1"
    without_r1 = RoutingSnapshot(SNAP.placement, MappingProxyType({k: v for k, v in SNAP.regions.items() if k != "r1"}))
    assert lock_region(without_r1) == "r2"
    assert lock_region(RoutingSnapshot(SNAP.placement)) is None
    p = plan("SELECT GET_LOCK('a', 0)", snap=without_r1)
    assert isinstance(p, Route) and p.region == "r2" and p.lock
    state = SessionState(database="shop")
    cursor = LoggingCursor(state)
    run(plan("DO GET_LOCK('job', 10)", state).execute(cursor))
    assert cursor.log == [("r1", "DO GET_LOCK('job', 10)")]
    assert state.lock_region == "r1"


def test_lock_functions_without_a_live_region_fail_retriably():
    with pytest.raises(SqlError) as e:
        plan("SELECT GET_LOCK('a', 0)", snap=RoutingSnapshot(SNAP.placement))
    assert e.value.errno == 2003


def test_lock_functions_with_tables_the_lock_region_lacks_get_1235():
    with pytest.raises(SqlError) as e:
        plan("SELECT GET_LOCK('a', 0) FROM items")
    assert e.value.errno == 1235 and "lock region 'r1'" in e.value.message


def test_reset_keeps_the_connection_id():
    state = SessionState(connection_id=12, lock_region="r1")
    state.reset()
    assert state.connection_id == 12 and state.lock_region is None


# -- privileges and the result -------------------------------------------------------------------
def test_global_privileges():
    privs = global_privileges(["GRANT SELECT, PROCESS ON *.* TO `u`@`%`", "GRANT ALL PRIVILEGES ON `db`.* TO `u`@`%`"])
    assert privs == {"SELECT", "PROCESS"}
    assert may_see_all(privs) and not may_kill_any(privs)
    assert may_kill_any(global_privileges(["GRANT CONNECTION ADMIN ON *.* TO `u`@`%`"]))
    assert may_kill_any(global_privileges(["GRANT SUPER ON *.* TO `u`@`%`"]))
    everything = global_privileges(["GRANT ALL PRIVILEGES ON *.* TO `root`@`%` WITH GRANT OPTION"])
    assert may_see_all(everything) and may_kill_any(everything)
    assert not may_see_all(global_privileges(["GRANT USAGE ON *.* TO `u`@`%`"]))


def test_processlist_result_has_mariadbs_columns_and_sorted_rows():
    result = processlist_result([
        [4194305, "bob", "127.0.0.1:5", None, "Sleep", 3, None, None, 0.0],
        [7, "root", "127.0.0.1:6", "shop", "Query", 0, "Executing", "SHOW PROCESSLIST", 0],
    ])
    assert result.fields is not None and len(result.fields) == 9
    assert [column_type(f) for f in result.fields] == [
        (0x08, True), (0xFD, False), (0xFD, False), (0xFD, False), (0xFD, False), (0x03, False), (0xFD, False),
        (0xFD, False), (0xF6, False)]  # Id BIGINT UNSIGNED, Time INT, Progress DECIMAL, the rest strings
    assert b"Progress" in result.fields[8]
    assert result.rows[0].startswith(b"\x017")  # id 7 first
    assert result.rows[1].startswith(b"\x074194305")
    assert b"\xfb" in result.rows[1]  # NULL db
    assert result.rows[0].endswith(b"\x050.000")


# -- proxy numbers and queues (topology/proxies.py) -----------------------------------------------
async def _topology(server: MemoryServer) -> Topology:
    topo = Topology(MemoryBackend(server), "/t")
    await topo.start()
    return topo


def test_smallest_free():
    assert smallest_free(set()) == 0
    assert smallest_free({0, 1, 3}) == 2


def test_proxies_claim_the_smallest_free_numbers():
    async def main() -> None:
        server = MemoryServer()
        a, b, c = await _topology(server), await _topology(server), await _topology(server)
        ra = ProxyRegistration(a, ProxyInfo(0, "h", 1))
        rb = ProxyRegistration(b, ProxyInfo(0, "h", 2))
        assert await ra.claim() == 0
        assert await rb.claim() == 1
        listed = await list_proxies(c)
        assert {n: p.port for n, p in listed.items()} == {0: 1, 1: 2}
        await ra.release()
        rc = ProxyRegistration(c, ProxyInfo(0, "h", 3))
        assert await rc.claim() == 0  # freed
        for t in (a, b, c):
            await t.close()

    run(main())


def test_a_lost_number_is_reclaimed_or_replaced():
    async def main() -> None:
        server = MemoryServer()
        a, b = await _topology(server), await _topology(server)
        changes: list[int] = []
        ra = ProxyRegistration(a, ProxyInfo(0, "h", 1), on_number=changes.append)
        assert await ra.claim() == 0
        a.backend.expire_session()  # type: ignore[attr-defined]
        for _ in range(100):
            await asyncio.sleep(0.01)
            if 0 in await list_proxies(b):
                break
        assert (await list_proxies(b))[0].instance == ra.info.instance and changes == []  # same number again
        # Someone else takes number 0 while a's session is gone: a moves to 1.
        a.backend.expire_session(reconnect=False)  # type: ignore[attr-defined]
        for _ in range(100):
            await asyncio.sleep(0.01)
            if 0 not in await list_proxies(b):
                break
        rb = ProxyRegistration(b, ProxyInfo(0, "h", 2))
        assert await rb.claim() == 0
        a.backend.resume()  # type: ignore[attr-defined]
        for _ in range(200):
            await asyncio.sleep(0.01)
            if changes:
                break
        assert changes == [1] and ra.number == 1
        assert {n: p.port for n, p in (await list_proxies(b)).items()} == {0: 2, 1: 1}
        await a.close()
        await b.close()

    run(main())


def test_proxy_queue_answers_only_its_own_instance():
    async def main() -> None:
        server = MemoryServer()
        a, b = await _topology(server), await _topology(server)
        ra = ProxyRegistration(a, ProxyInfo(0, "h", 1))
        await ra.claim()
        seen: list[dict] = []

        async def handler(payload: dict) -> dict:
            seen.append(payload)
            return {"rows": [[1, "u"]]}

        ra.serve(handler)
        assert proxy_queue(0) == "proxy-0"
        answer = await call_proxy(b, ra.info, {"op": "processlist"}, timeout=2)
        assert answer == {"rows": [[1, "u"]]} and seen[0]["op"] == "processlist"
        stale = ProxyInfo(0, "h", 1, instance="someone-before")
        answer = await call_proxy(b, stale, {"op": "kill", "id": 1}, timeout=2)
        assert answer["error"]["errno"] == 1094 and len(seen) == 1
        await ra.release()
        await a.close()
        await b.close()

    run(main())


# -- ClusterSessions' local side (cluster.py) with fake connections -------------------------------
class _Account:
    def __init__(self, user: str, grants: tuple[str, ...] = ()) -> None:
        self.user, self.host, self.grants = user, "%", grants


class _Backend:
    def __init__(self, in_flight: bool) -> None:
        self.in_flight = in_flight


class _Session:
    def __init__(self, account: _Account, in_flight: bool = False) -> None:
        self.account = account
        self.state = SessionState(database="shop")
        self.backends = type("B", (), {"conns": {"r1": _Backend(in_flight)}})()
        self.statements: dict = {}
        self.killed: list = []
        self.dropped: list[str] = []
        accounts = type("A", (), {"snapshot": type("S", (), {"get": staticmethod(lambda u, h: account)})()})()
        self.admin = type("Admin", (), {"accounts": accounts})()

    def running_statements(self):
        return [("r1", None, 99)]

    async def kill_statements(self, targets):
        self.killed.extend(targets)

    def drop_region(self, region: str) -> None:
        self.dropped.append(region)


class _Conn:
    def __init__(self, session: _Session, command: bytes | None = None) -> None:
        self.session, self.account, self.command, self.command_since = session, session.account, command, 0.0
        self.kills: list = []
        self.connection_id = 0
        self.client_host = "10.0.0.1"
        self.client_charset = type("C", (), {"codec": "utf8"})()
        self.stream = type("St", (), {"writer": type("W", (), {"get_extra_info": staticmethod(lambda k: ("10.0.0.1", 5000))})()})()

    def kill(self, kind) -> None:
        self.kills.append(kind)


def _sessions():
    from proxy.cluster import ClusterSessions

    routing = type("R", (), {"snapshot": SNAP, "listeners": []})()
    return ClusterSessions(None, routing, "127.0.0.1", 1)  # type: ignore[arg-type]


def test_cluster_kill_rights_and_kinds():
    from mysql_mimic.constants import KillKind
    from mysql_mimic.types import Commands

    async def main() -> None:
        cluster = _sessions()
        alice = _Conn(_Session(_Account("alice"), in_flight=True), bytes([Commands.COM_QUERY]) + b"SELECT SLEEP(9)")
        bob = _Conn(_Session(_Account("bob")))
        alice_id, bob_id = await cluster.add(alice), await cluster.add(bob)
        with pytest.raises(SqlError) as e:
            cluster._kill_here(alice_id, True, "bob", admin=False)
        assert e.value.errno == 1095
        with pytest.raises(SqlError) as e:
            cluster._kill_here(12345, False, "bob", admin=True)
        assert e.value.errno == 1094
        cluster._kill_here(alice_id, True, "bob", admin=True)  # in flight: KILL QUERY on the region
        await asyncio.sleep(0)
        assert alice.session.killed == [("r1", None, 99)] and alice.kills == []
        cluster._kill_here(bob_id, True, "bob", admin=False)  # idle: nothing to interrupt
        assert bob.kills == []
        cluster._kill_here(bob_id, False, "bob", admin=False)
        assert bob.kills == [KillKind.CONNECTION]
        answer = await cluster._handle({"op": "kill", "id": alice_id, "query": False, "user": "bob", "admin": False})
        assert answer["error"]["errno"] == 1095
        rows = (await cluster._handle({"op": "processlist", "user": None, "full": True}))["rows"]
        by_id = {r[0]: r for r in rows}
        assert by_id[alice_id][1:5] == ["alice", "10.0.0.1:5000", "shop", "Query"]
        assert by_id[alice_id][7] == "SELECT SLEEP(9)" and by_id[bob_id][4] == "Sleep" and by_id[bob_id][7] is None
        only_bob = (await cluster._handle({"op": "processlist", "user": "bob", "full": False}))["rows"]
        assert [r[0] for r in only_bob] == [bob_id]
        await cluster.remove(bob_id)
        assert bob_id not in cluster.connections

    run(main())


def test_cluster_drops_lock_connections_when_the_lock_region_changes():
    async def main() -> None:
        cluster = _sessions()
        cluster._lock_region = "r1"
        holder, other = _Conn(_Session(_Account("a"))), _Conn(_Session(_Account("b")))
        holder.session.state.lock_region = "r1"
        await cluster.add(holder)
        await cluster.add(other)
        cluster._on_routing(SNAP)  # unchanged: nothing dropped
        assert holder.session.dropped == []
        without_r1 = RoutingSnapshot(SNAP.placement, MappingProxyType({k: v for k, v in SNAP.regions.items() if k != "r1"}))
        cluster._on_routing(without_r1)
        assert holder.session.dropped == ["r1"] and holder.session.state.lock_region is None
        assert other.session.dropped == []

    run(main())
