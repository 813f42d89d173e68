"""Masters and region agents against REAL ZooKeeper and REAL MariaDB servers.

Three region agents (one per MariaDB of the `mariadbs` fixture) and two
masters run as `python -m minisql.cli ...` subprocesses under a ZooKeeper root
of their own.  DDL goes in as the proxy sends it (topology.call("master",
...)); the effects are checked directly on the MariaDB servers with PyMySQL.

The tests of this module share one stack and run in file order: each builds
on the state the previous one left (a database, a table).

The stack runs with ZooKeeper credentials (as `minisql up` does): every
process logs in with the cluster identity, and the test's own topology
client does too.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import pytest

from minisql.config import ZooKeeperCredentials, write_backend_credentials
from minisql.localstack import CommandProcess, free_port
from region.load import find_mariadb_pid
from topology.queues import region_queue
from topology import Placement, ReplicaState, Topology, ZooKeeperAuth

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DB = f"mr_{uuid.uuid4().hex[:8]}"
SESSION_TIMEOUT = "3"  # seconds: how long a SIGKILLed process stays "alive" in ZooKeeper


class Stack:
    def __init__(self, zookeeper: Any, mariadbs: list[Any], creds: Any, workdir: Path) -> None:
        self.zk_hosts = zookeeper.hosts
        self.zk_root = f"/test-master-region-{uuid.uuid4().hex[:10]}"
        self.mariadbs = {f"r{i}": m for i, m in enumerate(mariadbs, start=1)}
        self.workdir = workdir
        self.secrets = workdir / "secrets.json"
        self.zk_creds = ZooKeeperCredentials.generate()
        write_backend_credentials(self.secrets, creds, self.zk_creds)
        self.zk_auth = ZooKeeperAuth(
            self.zk_creds.user, self.zk_creds.password, ((self.zk_creds.status_user, self.zk_creds.status_password),)
        )
        self.regions: dict[str, CommandProcess] = {}
        self.masters: dict[str, CommandProcess] = {}
        self.metrics: dict[str, int] = {}

    # -- processes --------------------------------------------------------------
    def _process(self, name: str, argv: list[str]) -> CommandProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        port = free_port()
        self.metrics[name] = port
        common = ["--zk", self.zk_hosts, "--zk-root", self.zk_root, "--log-level", "INFO"]
        proc = CommandProcess(
            name,
            [sys.executable, "-m", "minisql.cli", *argv[:1], *common, *argv[1:], "--metrics-port", str(port),
             "--zk-session-timeout", SESSION_TIMEOUT],
            log_path=self.workdir / f"{name}.log",
            env=env,
            cwd=REPO,
            ready_port=port,
        )
        proc.start(timeout=60)
        return proc

    def start_region(self, region_id: str) -> None:
        self.regions[region_id] = self._process(
            region_id,
            ["region", "--id", region_id, "--mysql-host", "127.0.0.1",
             "--mysql-port", str(self.mariadbs[region_id].port), "--secrets", str(self.secrets),
             "--load-interval", "1"],
        )

    def start_master(self, master_id: str) -> None:
        self.masters[master_id] = self._process(
            master_id, ["master", "--id", master_id, "--failover-grace", "2", "--secrets", str(self.secrets)]
        )

    def stop(self) -> None:
        procs = [*self.masters.values(), *self.regions.values()]
        for p in procs:
            if p.alive:
                p.terminate()
        for p in procs:
            p.stop(timeout=15)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log_tail(25)}" for p in [*self.masters.values(), *self.regions.values()])

    # -- ZooKeeper --------------------------------------------------------------
    def zk(self, action: Callable[[Topology], Awaitable[Any]]) -> Any:
        async def main() -> Any:
            topo = Topology.for_zookeeper(self.zk_hosts, self.zk_root, auth=self.zk_auth)
            await topo.start()
            try:
                return await action(topo)
            finally:
                await topo.close()

        return asyncio.run(main())

    def ddl(self, sql: str, database: str | None = None) -> dict[str, Any]:
        return self.zk(lambda t: t.call("master", {"op": "ddl", "sql": sql, "database": database}, timeout=60))

    def task(self, region_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self.zk(lambda t: t.call(region_queue(region_id, payload["op"]), payload, timeout=60))

    def copy_table(self, region_id: str, table: str, source: Any) -> dict[str, Any]:
        """The copy_table task the master sends to rebuild a copy on `region_id` from `source` (a RegionInfo)."""
        return self.task(region_id, {"op": "copy_table", "database": DB, "table": table,
                                     "source": {"region_id": source.region_id, "host": source.host, "port": source.mysql_port}})

    def placement(self) -> Placement:
        return self.zk(lambda t: t.get_placement())

    def wait_for(self, what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what} (last: {last!r})\n{self.logs()}")

    # -- MariaDB ----------------------------------------------------------------
    def holders(self, database: str, table: str) -> list[str]:
        """Regions whose MariaDB has `database`.`table` (asked directly with PyMySQL)."""
        return sorted(
            rid
            for rid, m in self.mariadbs.items()
            if m.query(
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (database, table),
            )[0][0]
        )

    def metric(self, name: str, process: str) -> float | None:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics[process]}/metrics", timeout=5) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    return float(line.rsplit(" ", 1)[1])
        return None


@pytest.fixture(scope="module")
def stack(zookeeper, mariadbs, backend_credentials, tmp_path_factory) -> Iterator[Stack]:
    s = Stack(zookeeper, mariadbs, backend_credentials, tmp_path_factory.mktemp("master-region"))
    try:
        for rid in s.mariadbs:
            s.start_region(rid)
        s.start_master("m1")
        s.start_master("m2")
        s.wait_for("3 regions and a leader", lambda: len(s.zk(lambda t: t.list_regions())) == 3
                   and s.zk(lambda t: t.get_leader()) is not None)
        yield s
    finally:
        s.stop()
        for m in s.mariadbs.values():
            m.query(f"DROP DATABASE IF EXISTS `{DB}`")


def leader_id(stack: Stack) -> str:
    leader = stack.zk(lambda t: t.get_leader())
    assert leader is not None
    return leader.master_id


def test_regions_register_and_publish_load(stack: Stack) -> None:
    regions = stack.zk(lambda t: t.list_regions())
    assert sorted(regions) == ["r1", "r2", "r3"]
    for rid, info in regions.items():
        assert info.mysql_port == stack.mariadbs[rid].port
        assert info.host == "127.0.0.1"
        assert "MariaDB" in info.mysql_version or info.mysql_version.startswith("10.")
        assert info.metrics_port == stack.metrics[rid]
    loads = stack.wait_for("load reports", lambda: (lambda l: l if len(l) == 3 else None)(stack.zk(lambda t: t.get_loads())))
    assert all(load.reported_at > 0 for load in loads.values())
    assert stack.metric("minisql_region_registered", "r1") == 1.0
    # the CPU sampler finds the real mariadbd from its pid file
    m = stack.mariadbs["r1"]
    assert find_mariadb_pid(str(m.pid_file)) == m.pid


def test_exactly_one_master_leads(stack: Stack) -> None:
    leader = leader_id(stack)
    assert leader in ("m1", "m2")
    follower = "m2" if leader == "m1" else "m1"
    stack.wait_for("leader metric", lambda: stack.metric("minisql_master_is_leader", leader) == 1.0)
    assert stack.metric("minisql_master_is_leader", follower) == 0.0
    assert stack.masters[follower].alive


def test_create_database_and_table_on_exactly_two_regions(stack: Stack) -> None:
    created = stack.ddl(f"CREATE DATABASE {DB}")
    assert created.get("ok"), created
    assert all(m.query("SHOW DATABASES LIKE %s", (DB,)) for m in stack.mariadbs.values())

    result = stack.ddl("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB", DB)
    assert result.get("ok"), result
    placement = stack.placement()
    assert result["placement_version"] == placement.version
    table = placement.table(DB, "t")
    assert table is not None
    assert table.primary != next(iter(table.replicas))
    assert dict(table.replicas) == {next(iter(table.replicas)): ReplicaState.IN_SYNC}
    assert stack.holders(DB, "t") == sorted(table.all_regions)
    assert len(stack.holders(DB, "t")) == 2

    # the next table goes elsewhere first: the third region is the least loaded
    result = stack.ddl(f"CREATE TABLE {DB}.u (id INT PRIMARY KEY)")
    assert result.get("ok"), result
    u = stack.placement().table(DB, "u")
    unused = ({"r1", "r2", "r3"} - set(table.all_regions)).pop()
    assert u.primary == unused
    assert stack.holders(DB, "u") == sorted(u.all_regions)


def test_ddl_errors_carry_mysql_errnos(stack: Stack) -> None:
    def error(sql: str, database: str | None = DB) -> tuple[int, str, str]:
        result = stack.ddl(sql, database)
        assert "error" in result, result
        e = result["error"]
        return e["errno"], e["sqlstate"], e["message"]

    assert error("CREATE TABLE t (id INT)") == (1050, "42S01", "Table 't' already exists")
    assert error("DROP TABLE nope") == (1051, "42S02", f"Unknown table '{DB}.nope'")
    assert error("CREATE TABLE nodb_x.t (id INT)") == (1049, "42000", "Unknown database 'nodb_x'")
    assert error("CREATE TABLE t9 (id INT)", None)[:2] == (1046, "3D000")
    assert error(f"CREATE DATABASE {DB}")[0] == 1007
    assert error("DROP DATABASE nodb_x")[0] == 1008
    assert error("CREATE EVENT e ON SCHEDULE EVERY 1 DAY DO SELECT 1")[0] == 1235
    assert error("CREATE VIEW v AS SELECT * FROM nope")[:2] == (1146, "42S02")  # MariaDB judges the view
    # MariaDB's own error, relayed faithfully from the primary's region
    assert error("ALTER TABLE t ADD COLUMN v INT")[:2] == (1060, "42S21")
    assert error("CREATE TABLE bad (id INT, id INT)")[:2] == (1060, "42S21")
    assert stack.holders(DB, "bad") == []  # nothing left behind by the failed create
    assert stack.ddl("CREATE TABLE IF NOT EXISTS t (id INT)", DB)["ok"]


def test_alter_reaches_both_copies(stack: Stack) -> None:
    result = stack.ddl("ALTER TABLE t ADD COLUMN n INT NOT NULL DEFAULT 7", DB)
    assert result.get("ok"), result
    for rid in stack.placement().table(DB, "t").all_regions:
        cols = [r[0] for r in stack.mariadbs[rid].query(f"SHOW COLUMNS FROM `{DB}`.`t`")]
        assert cols == ["id", "v", "n"], rid
    assert stack.ddl(f"CREATE INDEX iv ON {DB}.t (v)")["ok"]
    assert stack.placement().table(DB, "t").in_sync_replicas  # nothing went stale


def test_copy_table_and_checksum_tasks(stack: Stack) -> None:
    """copy_table / table_checksum, as the master uses them to rebuild a replica."""
    table = stack.placement().table(DB, "t")
    primary = stack.mariadbs[table.primary]
    rows = [(i, None if i % 7 == 0 else f"v{i}'\\%", i * 3) for i in range(1, 2501)]
    conn = primary.root_connection(DB)
    try:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO t (id, v, n) VALUES (%s, %s, %s)", rows)
    finally:
        conn.close()
    target = ({"r1", "r2", "r3"} - set(table.all_regions)).pop()
    source = stack.zk(lambda t: t.list_regions())[table.primary]
    copied = stack.copy_table(target, "t", source)
    assert copied == {"ok": True, "rows": 2500}
    want = stack.task(table.primary, {"op": "table_checksum", "database": DB, "table": "t"})
    got = stack.task(target, {"op": "table_checksum", "database": DB, "table": "t"})
    assert want["rows"] == got["rows"] == 2500 and want["checksum"] == got["checksum"] is not None
    assert stack.mariadbs[target].query(f"SHOW CREATE TABLE `{DB}`.`t`")[0][1] == primary.query(
        f"SHOW CREATE TABLE `{DB}`.`t`")[0][1]
    # idempotent: a second delivery replaces the copy
    assert stack.copy_table(target, "t", source)["rows"] == 2500
    # a region never copies onto itself (it would drop the source first)
    self_copy = stack.copy_table(table.primary, "t", source)
    assert self_copy["error"]["errno"] == 1105
    missing = stack.task(target, {"op": "table_checksum", "database": DB, "table": "nope"})
    assert missing["error"]["errno"] == 1146
    assert stack.task(target, {"op": "drop_table", "database": DB, "table": "t"}) == {"ok": True}
    assert stack.holders(DB, "t") == sorted(table.all_regions)
    # the replica gets the same rows (normally the proxy's write fan-out does this)
    replica = stack.mariadbs[table.in_sync_replicas[0]]
    conn = replica.root_connection(DB)
    try:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO t (id, v, n) VALUES (%s, %s, %s)", rows)
    finally:
        conn.close()


def test_copy_table_keeps_every_type(stack: Stack) -> None:
    """Awkward types, a generated column, zero AUTO_INCREMENT and a table without a primary key."""
    ddl = {
        "types": "CREATE TABLE types (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, d DECIMAL(12,4), "
                 "dt DATETIME(6), ts TIMESTAMP NULL, b BLOB, j JSON, bits BIT(3), e ENUM('a','b'), "
                 "t TIME, u VARCHAR(10) CHARACTER SET utf8mb4, g BIGINT AS (id * 2) VIRTUAL)",
        "nopk": "CREATE TABLE nopk (a INT, b VARCHAR(5))",
    }
    rows = {
        "types": [
            (0, "-12.3456", "2024-02-29 23:59:59.123456", "2038-01-19 03:14:07", b"\x00\xff\x10", '{"k": [1, 2]}',
             b"\x05", "b", "-838:59:59", "h\u00e9\U0001F600"),
            (7, None, None, None, None, None, None, None, None, None),
            (2**63, "99999999.9999", "1000-01-01 00:00:00", "1970-01-01 00:00:01", b"", "[]", b"\x00", "a",
             "00:00:00", ""),
        ],
        "nopk": [(1, "x"), (1, "x"), (None, None)],
    }
    for name, sql in ddl.items():
        assert stack.ddl(sql, DB).get("ok")
        table = stack.placement().table(DB, name)
        primary = stack.mariadbs[table.primary]
        conn = primary.root_connection(DB)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO', time_zone = '+00:00'")
                width = len(rows[name][0])
                cols = "id, d, dt, ts, b, j, bits, e, t, u" if name == "types" else "a, b"
                cur.executemany(f"INSERT INTO {name} ({cols}) VALUES ({', '.join(['%s'] * width)})", rows[name])
        finally:
            conn.close()
        target = ({"r1", "r2", "r3"} - set(table.all_regions)).pop()
        source = stack.zk(lambda t: t.list_regions())[table.primary]
        copied = stack.copy_table(target, name, source)
        assert copied == {"ok": True, "rows": len(rows[name])}, copied
        want = stack.task(table.primary, {"op": "table_checksum", "database": DB, "table": name})
        got = stack.task(target, {"op": "table_checksum", "database": DB, "table": name})
        assert want == got, name
        select = f"SELECT * FROM `{DB}`.`{name}` ORDER BY 1, 2"
        assert stack.mariadbs[target].query(select) == primary.query(select)
        assert stack.task(target, {"op": "drop_table", "database": DB, "table": name}) == {"ok": True}
        assert stack.ddl(f"DROP TABLE {name}", DB).get("ok")
        assert stack.holders(DB, name) == []


def test_online_fill_keeps_every_type_in_small_chunks(stack: Stack) -> None:
    """prepare_fill + fill_table (region/fill.py), as an online copy runs them:
    the text fast path for every type it writes as literals, the rows path for
    a FLOAT column, a composite key; chunks of 2 rows, so every chunk bound is
    used; the copies' checksums and rows equal.  Unfit tables are refused."""
    ddl = {
        "fast": "CREATE TABLE fast (id BIGINT UNSIGNED PRIMARY KEY, d DECIMAL(12,4), dt DATETIME(6), ts TIMESTAMP NULL, "
                "b BLOB, j JSON, bits BIT(3), e ENUM('a','b'), s SET('x','y'), t TIME, y YEAR, "
                "l VARCHAR(10) CHARACTER SET latin1, u VARCHAR(10) CHARACTER SET utf8mb4, bin VARBINARY(300), "
                "g BIGINT AS (id * 2) VIRTUAL, pt POINT NULL)",
        "floaty": "CREATE TABLE floaty (a INT, b VARCHAR(5), f FLOAT, x DOUBLE, PRIMARY KEY (b, a))",
        "rowsy": "CREATE TABLE rowsy (id INT PRIMARY KEY, u UUID, ip INET6)",  # types copied through Python rows
    }
    every_byte = bytes(range(256))
    rows = {
        "fast": [
            (0, "-12.3456", "2024-02-29 23:59:59.123456", "2038-01-19 03:14:07", b"\x00\xff\x10'\\", '{"k": [1, 2]}',
             b"\x05", "b", "x,y", "-838:59:59", 2155, "caf\u00e9", "h\u00e9\U0001F600", every_byte, "POINT(1 2)"),
            (7, None, None, None, None, None, None, None, None, None, None, None, None, None, None),
            (2**63, "99999999.9999", "1000-01-01 00:00:00", "1970-01-01 00:00:01", b"", "[]", b"\x00", "a", "", "00:00:00",
             1901, "", "", b"", None),
            (9, "0", "2000-01-01 00:00:00", None, every_byte, "null", b"\x07", "a", "y", "12:00:00.5", 2000, "\u00ff", "'", b"'", None),
        ],
        "floaty": [(1, "a", 1.2345678, 1 / 3), (2, "a", -0.0, 1e308), (1, "b", None, None), (3, "A", 3.4e38, 5e-324),
                   (0, "\u00e9", 0.1, 0.1)],
        "rowsy": [(1, "123e4567-e89b-12d3-a456-426655440000", "2001:db8::1"), (2, None, "::ffff:10.0.0.1"), (3, None, None),
                  (4, "00000000-0000-0000-0000-000000000000", "::")],
    }
    for name, sql in ddl.items():
        assert stack.ddl(sql, DB).get("ok")
        table = stack.placement().table(DB, name)
        primary = stack.mariadbs[table.primary]
        conn = primary.root_connection(DB)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION time_zone = '+00:00'")
                if name == "fast":
                    cur.executemany("INSERT INTO fast (id, d, dt, ts, b, j, bits, e, s, t, y, l, u, bin, pt) VALUES "
                                    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, ST_GeomFromText(%s))", rows[name])
                elif name == "floaty":
                    cur.executemany("INSERT INTO floaty VALUES (%s, %s, %s, %s)", rows[name])
                else:
                    cur.executemany("INSERT INTO rowsy VALUES (%s, %s, %s)", rows[name])
        finally:
            conn.close()
        target = ({"r1", "r2", "r3"} - set(table.all_regions)).pop()
        info = stack.zk(lambda t: t.list_regions())[table.primary]
        source = {"region_id": info.region_id, "host": info.host, "port": info.mysql_port}
        fit = stack.task(target, {"op": "prepare_fill", "database": DB, "table": name, "source": source})
        assert fit["online"] is True, fit
        assert fit["key"] == (["b", "a"] if name == "floaty" else ["id"])
        filled = stack.task(target, {"op": "fill_table", "database": DB, "table": name, "source": source,
                                     "key": fit["key"], "chunk_rows": 2})
        assert filled.get("rows") == len(rows[name]) and filled["chunks"] >= len(rows[name]) // 2, filled
        want = stack.task(table.primary, {"op": "table_checksum", "database": DB, "table": name})
        got = stack.task(target, {"op": "table_checksum", "database": DB, "table": name})
        assert want == got, name
        select = f"SELECT * FROM `{DB}`.`{name}` ORDER BY 1, 2"
        assert stack.mariadbs[target].query(select) == primary.query(select)
        assert stack.task(target, {"op": "drop_table", "database": DB, "table": name}) == {"ok": True}
        assert stack.ddl(f"DROP TABLE {name}", DB).get("ok")
    for name, sql, reason in [
        ("nokey", "CREATE TABLE nokey (a INT)", "no primary key"),
        ("myisam", "CREATE TABLE myisam (a INT PRIMARY KEY) ENGINE=MyISAM", "engine MyISAM takes no row locks"),
    ]:
        assert stack.ddl(sql, DB).get("ok")
        table = stack.placement().table(DB, name)
        info = stack.zk(lambda t: t.list_regions())[table.primary]
        target = ({"r1", "r2", "r3"} - set(table.all_regions)).pop()
        fit = stack.task(target, {"op": "prepare_fill", "database": DB, "table": name,
                                  "source": {"region_id": info.region_id, "host": info.host, "port": info.mysql_port}})
        assert fit == {"ok": True, "online": False, "reason": reason}
        assert stack.holders(DB, name) == sorted(table.all_regions)  # nothing created on the target
        assert stack.ddl(f"DROP TABLE {name}", DB).get("ok")


def test_copy_table_carries_triggers_in_firing_order(stack: Stack) -> None:
    """A new copy gets the source's triggers, in firing order and with their
    sql_mode, after its rows (which the triggers must not touch)."""
    assert stack.ddl("CREATE TABLE trg (id INT PRIMARY KEY, n INT)", DB).get("ok")
    table = stack.placement().table(DB, "trg")
    primary = stack.mariadbs[table.primary]
    conn = primary.root_connection(DB)
    try:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO trg VALUES (%s, %s)", [(i, i) for i in range(1, 51)])
            cur.execute("CREATE TRIGGER bump BEFORE INSERT ON trg FOR EACH ROW SET NEW.n = NEW.n + 100")
            cur.execute("SET SESSION sql_mode = 'ANSI_QUOTES'")
            cur.execute('CREATE TRIGGER "first" BEFORE INSERT ON trg FOR EACH ROW PRECEDES bump SET NEW.n = NEW.n * 2')
            cur.execute("CREATE TRIGGER gone AFTER DELETE ON trg FOR EACH ROW SET @deleted = OLD.id")
    finally:
        conn.close()
    target = ({"r1", "r2", "r3"} - set(table.all_regions)).pop()
    source = stack.zk(lambda t: t.list_regions())[table.primary]
    copied = stack.copy_table(target, "trg", source)
    assert copied == {"ok": True, "rows": 50}, copied
    assert stack.mariadbs[target].query(f"SELECT SUM(n) FROM `{DB}`.trg")[0][0] == sum(range(1, 51))  # untouched
    listing = ("SELECT TRIGGER_NAME, ACTION_ORDER, SQL_MODE, ACTION_STATEMENT FROM information_schema.TRIGGERS "
               f"WHERE EVENT_OBJECT_SCHEMA = '{DB}' AND EVENT_OBJECT_TABLE = 'trg' ORDER BY 1")
    assert stack.mariadbs[target].query(listing) == primary.query(listing)
    assert [r[:2] for r in primary.query(listing)] == [("bump", 2), ("first", 1), ("gone", 1)]
    assert stack.task(target, {"op": "drop_table", "database": DB, "table": "trg"}) == {"ok": True}
    assert stack.ddl("DROP TABLE trg", DB).get("ok")


def test_killing_the_leader_master_hands_over(stack: Stack) -> None:
    old = leader_id(stack)
    stack.masters[old].kill()  # SIGKILL: no resignation, the session has to expire
    new = stack.wait_for("a new leader", lambda: (lambda l: l if l not in (None, old) else None)(
        (stack.zk(lambda t: t.get_leader()) or type("N", (), {"master_id": None})).master_id), timeout=30)
    assert new != old
    result = stack.ddl("CREATE TABLE after_failover (id INT PRIMARY KEY)", DB)
    assert result.get("ok"), result
    assert len(stack.holders(DB, "after_failover")) == 2
    stack.start_master(old)  # back to two candidates; the new leader keeps leading
    time.sleep(1)
    assert leader_id(stack) == new


def test_drop_table_removes_both_copies(stack: Stack) -> None:
    assert stack.holders(DB, "after_failover")
    result = stack.ddl(f"DROP TABLE after_failover, {DB}.u", DB)
    assert result.get("ok"), result
    assert stack.holders(DB, "after_failover") == [] and stack.holders(DB, "u") == []
    placement = stack.placement()
    assert placement.table(DB, "after_failover") is None and placement.table(DB, "u") is None
    assert result["placement_version"] == placement.version


def test_copy_table_of_a_view_and_of_a_sequence(stack: Stack) -> None:
    """A view is copied as its definition; a sequence as its one row (failover and moves use this)."""
    assert stack.ddl("CREATE TABLE vt (id INT PRIMARY KEY)", DB).get("ok")
    assert stack.ddl("CREATE VIEW vv AS SELECT id * 2 AS twice FROM vt", DB).get("ok")
    assert stack.ddl("CREATE SEQUENCE sq START WITH 7", DB).get("ok")
    placement = stack.placement()
    assert placement.table(DB, "vv").copies == placement.table(DB, "vt").copies
    assert placement.table(DB, "vv").kind == "view" and placement.table(DB, "sq").kind == "sequence"
    for name in ("vt", "vv", "sq"):
        table = placement.table(DB, name)
        for region in table.write_regions:
            conn = stack.mariadbs[region].root_connection(DB)
            try:
                with conn.cursor() as cur:
                    if name == "vt":
                        cur.execute("INSERT INTO vt VALUES (1), (2)")
                    elif name == "sq":
                        cur.execute("SELECT NEXTVAL(sq)")
            finally:
                conn.close()
    view = placement.table(DB, "vv")
    target = ({"r1", "r2", "r3"} - set(view.all_regions)).pop()
    source = stack.zk(lambda t: t.list_regions())[view.primary]
    assert stack.copy_table(target, "vt", source) == {"ok": True, "rows": 2}
    assert stack.copy_table(target, "vv", source) == {"ok": True, "rows": 0, "view": True}
    assert stack.mariadbs[target].query(f"SELECT SUM(twice) FROM `{DB}`.vv")[0][0] == 6
    assert stack.task(target, {"op": "table_checksum", "database": DB, "table": "vv"})["view"] is True
    seq = placement.table(DB, "sq")
    target = ({"r1", "r2", "r3"} - set(seq.all_regions)).pop()
    copied = stack.copy_table(target, "sq", stack.zk(lambda t: t.list_regions())[seq.primary])
    assert copied.get("ok"), copied
    want = stack.task(seq.primary, {"op": "table_checksum", "database": DB, "table": "sq"})
    got = stack.task(target, {"op": "table_checksum", "database": DB, "table": "sq"})
    assert (want["rows"], want["checksum"]) == (got["rows"], got["checksum"])
    # The copy continues after the primary's cached block (a gap of up to CACHE values, as
    # after a MariaDB restart; never a value handed out twice).
    assert stack.mariadbs[target].query(f"SELECT NEXTVAL(`{DB}`.sq)")[0][0] == 7 + 1000
    for name in ("vv", "sq", "vt"):
        assert stack.task(target, {"op": "drop_table", "database": DB, "table": name}) == {"ok": True}
    assert stack.ddl("DROP VIEW vv", DB).get("ok") and stack.ddl("DROP SEQUENCE sq", DB).get("ok")
    assert stack.ddl("DROP TABLE vt", DB).get("ok")


def test_region_failure_promotes_replica_and_rebuilds_a_copy(stack: Stack) -> None:
    before = stack.placement().table(DB, "t")
    dead, survivor = before.primary, before.in_sync_replicas[0]
    third = ({"r1", "r2", "r3"} - {dead, survivor}).pop()
    stack.regions[dead].kill()  # the agent dies; its MariaDB stays up but is no longer in the cluster

    def healed() -> Any:
        t = stack.placement().table(DB, "t")
        return t if t.primary == survivor and t.replicas.get(third) == ReplicaState.IN_SYNC else None

    after = stack.wait_for("promotion and a new in-sync copy", healed, timeout=60)
    assert dead not in after.all_regions
    count = stack.mariadbs[third].query(f"SELECT COUNT(*), SUM(n) FROM `{DB}`.`t`")[0]
    assert count == stack.mariadbs[survivor].query(f"SELECT COUNT(*), SUM(n) FROM `{DB}`.`t`")[0]
    assert count[0] == 2500

    # DDL keeps working on the new layout
    assert stack.ddl("ALTER TABLE t ADD COLUMN w INT", DB)["ok"]
    for rid in after.all_regions:
        assert "w" in [r[0] for r in stack.mariadbs[rid].query(f"SHOW COLUMNS FROM `{DB}`.`t`")]

    stack.start_region(dead)  # comes back empty-handed: its old copy is an orphan
    stack.wait_for("the region back", lambda: dead in stack.zk(lambda t: t.list_regions()))


def test_drop_database_removes_everything(stack: Stack) -> None:
    result = stack.ddl(f"DROP DATABASE {DB}")
    assert result.get("ok"), result
    assert not stack.placement().has_database(DB)
    for rid, m in stack.mariadbs.items():
        assert not m.query("SHOW DATABASES LIKE %s", (DB,)), rid  # orphans included


def test_region_survives_zookeeper_session_loss(stack: Stack) -> None:
    """A region frozen past its session timeout comes back registered and reporting load."""
    region = stack.regions["r3"]
    region.suspend()  # SIGSTOP: no heartbeats, the session expires, the ephemerals go
    try:
        stack.wait_for("r3 to drop out", lambda: "r3" not in stack.zk(lambda t: t.list_regions()), timeout=20)
    finally:
        region.resume()
    resumed = time.time()
    stack.wait_for("r3 registered again", lambda: "r3" in stack.zk(lambda t: t.list_regions()), timeout=20)
    stack.wait_for(
        "a fresh load report from r3",
        lambda: (lambda l: l is not None and l.reported_at > resumed)(stack.zk(lambda t: t.get_loads()).get("r3")),
        timeout=20,
    )
    assert region.alive


# -- plumbing: ZooKeeper ACLs and metrics addresses of the real processes -------
def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket in LISTEN state on `port` (from /proc/net)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                if width == 8:
                    found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
                else:
                    found.add("v6:" + address)
    return found


def test_metrics_listen_on_loopback_only(stack: Stack) -> None:
    """Masters and regions bind their metrics to the advertised host (127.0.0.1
    here), not 0.0.0.0: the endpoint tells table names, rows and load."""
    for name in [*stack.masters, *stack.regions]:
        assert _listening_addresses(stack.metrics[name]) == {"127.0.0.1"}, name


def test_znodes_belong_to_the_cluster_identity(stack: Stack) -> None:
    from kazoo.client import KazooClient
    from kazoo.exceptions import NoAuthError

    # The processes did create and update these (registrations, placement, election).
    assert stack.zk(lambda t: t.list_regions())
    assert stack.zk(lambda t: t.get_leader()) is not None
    anonymous = KazooClient(hosts=stack.zk_hosts, timeout=4.0)
    status = KazooClient(
        hosts=stack.zk_hosts,
        timeout=4.0,
        auth_data=[("digest", f"{stack.zk_creds.status_user}:{stack.zk_creds.status_password}")],
    )
    for client in (anonymous, status):
        client.start(timeout=15)
    try:
        for path in ("placement", "regions", "regions/r1", "election", "queues/master"):
            full = f"{stack.zk_root}/{path}"
            with pytest.raises(NoAuthError):
                anonymous.get(full)
            status.get(full)  # readable by the status identity
            acl, _ = status.get_acls(full)
            assert {a.id.scheme for a in acl} == {"digest"}, (path, acl)
        with pytest.raises(NoAuthError):
            anonymous.set(f"{stack.zk_root}/placement", b"{}")
        with pytest.raises(NoAuthError):
            status.set(f"{stack.zk_root}/placement", b"{}")
        with pytest.raises(NoAuthError):
            status.create(f"{stack.zk_root}/queues/master/req-", b"{}", sequence=True)
    finally:
        for client in (anonymous, status):
            client.stop()
            client.close()


def test_a_master_with_the_wrong_identity_exits_with_a_clear_error(stack: Stack, tmp_path: Path) -> None:
    secrets = tmp_path / "wrong.json"
    secrets.write_text('{"zk_user": "%s", "zk_password": "not-the-password"}' % stack.zk_creds.user)
    secrets.chmod(0o600)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    proc = CommandProcess(
        "m-wrong",
        [sys.executable, "-m", "minisql.cli", "master", "--zk", stack.zk_hosts, "--zk-root", stack.zk_root,
         "--id", "m-wrong", "--metrics-port", "0", "--secrets", str(secrets)],
        log_path=tmp_path / "m-wrong.log", env=env, cwd=REPO,
    )  # fmt: skip
    proc.launch()
    try:
        assert proc.wait(timeout=60) == 2
    finally:
        proc.stop()
    output = (tmp_path / "m-wrong.log").read_text()
    assert "NoAuth" in output and "minisql master: error" in output, output
    assert stack.zk(lambda t: t.get_leader()).master_id in ("m1", "m2")


def test_a_region_remembers_the_leader_epoch_across_an_agent_restart(stack: Stack) -> None:
    """Fencing survives a restart (region/fencing.py): a task from an epoch
    below one the region served is refused by the next incarnation of its
    agent too.  Runs last: it fences this stack's real leader on r2 until the
    stored epoch is removed again."""
    high = 10**9
    probe = {"op": "table_checksum", "database": DB, "table": "no_such_table"}
    first = stack.task("r2", {**probe, "epoch": high})  # runs (1146), after storing the epoch
    assert first["error"]["errno"] in (1049, 1146), first
    stack.regions["r2"].terminate()
    stack.regions["r2"].stop(timeout=15)
    stack.start_region("r2")
    stack.wait_for("r2 registered again", lambda: "r2" in stack.zk(lambda t: t.list_regions()), timeout=30)
    try:
        stale = stack.task("r2", {**probe, "epoch": high - 1})
        assert f"leader epoch {high - 1} is older than {high}" in stale["error"]["message"], stale
        again = stack.task("r2", {**probe, "epoch": high})
        assert again["error"]["errno"] in (1049, 1146), again
        cluster = stack.zk(lambda t: t.cluster_id())
        m = stack.mariadbs["r2"]
        assert m.query("SELECT value FROM mysql.minisql_region_state WHERE name = %s",
                       (f"leader_epoch:{cluster}",)) == [(high,)]
    finally:
        stack.mariadbs["r2"].query("DELETE FROM mysql.minisql_region_state")
        stack.regions["r2"].terminate()
        stack.regions["r2"].stop(timeout=15)
        stack.start_region("r2")
