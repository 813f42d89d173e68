"""Sessions that are one cluster across two proxies (issue 6), on real processes:
connection ids, SHOW PROCESSLIST, KILL and GET_LOCK behave as on one MariaDB."""

from __future__ import annotations

import socket
import threading
import time
import uuid

import pymysql
import pytest

from .cluster import running_cluster

LOCAL_BITS = 22


@pytest.fixture(scope="module")
def cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory):
    yield from running_cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory, "sessions", users={"root": ""}, proxies=2)


@pytest.fixture(scope="module")
def plain_user(cluster):
    """An account without PROCESS, CONNECTION ADMIN or SUPER."""
    name = f"plain_{uuid.uuid4().hex[:6]}"
    root = cluster.connect()
    run(root, f"CREATE USER '{name}'@'%' IDENTIFIED BY 'pw'")
    run(root, f"GRANT SELECT ON *.* TO '{name}'@'%'")
    root.close()
    return name


def run(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def one(conn, sql, args=None):
    return run(conn, sql, args)[0][0]


def errno_of(conn, sql) -> int:
    with pytest.raises(pymysql.err.MySQLError) as e:
        run(conn, sql)
    return e.value.args[0]


def login(cluster, user, proxy):
    return cluster.connect(proxy=proxy, user=user, password="pw")


def processlist(conn, full=False) -> dict[int, dict]:
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute("SHOW FULL PROCESSLIST" if full else "SHOW PROCESSLIST")
        return {row["Id"]: row for row in cur.fetchall()}


def wait_until(predicate, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_connection_ids_are_unique_across_proxies_and_carry_the_proxy_number(cluster):
    a, b = cluster.connect(proxy=0), cluster.connect(proxy=1)
    try:
        ids = {a.thread_id(), b.thread_id()}
        assert len(ids) == 2 and 0 not in ids
        assert {i >> LOCAL_BITS for i in ids} == {0, 1}  # the two proxies claimed numbers 0 and 1
        with a.cursor() as cur:
            cur.execute("SELECT CONNECTION_ID()")
            assert cur.fetchone()[0] == a.thread_id()
            assert cur.description[0][0] == "CONNECTION_ID()"
        assert one(b, "SELECT CONNECTION_ID() + 0") == b.thread_id()
        run(b, "SET @me = CONNECTION_ID()")
        assert one(b, "SELECT @me") == b.thread_id()
        assert one(a, "SELECT %s = CONNECTION_ID()", (a.thread_id(),)) == 1
    finally:
        a.close()
        b.close()


def test_processlist_through_either_proxy_lists_both_sessions(cluster):
    a, b = cluster.connect(proxy=0), cluster.connect(proxy=1)
    try:
        run(b, "SELECT 1")
        for viewer, other in ((a, b), (b, a)):
            rows = processlist(viewer)
            assert viewer.thread_id() in rows and other.thread_id() in rows
            mine, theirs = rows[viewer.thread_id()], rows[other.thread_id()]
            assert mine["Command"] == "Query" and mine["Info"] == "SHOW PROCESSLIST" and mine["User"] == "root"
            assert theirs["Command"] == "Sleep" and theirs["Info"] is None and theirs["User"] == "root"
            assert isinstance(theirs["Time"], int) and theirs["Host"].startswith("127.0.0.1:")
            assert set(mine) == {"Id", "User", "Host", "db", "Command", "Time", "State", "Info", "Progress"}
        long_sql = "SELECT '" + "x" * 150 + "'"
        done = threading.Event()

        def busy() -> None:
            conn = cluster.connect(proxy=1)
            try:
                run(conn, f"SELECT SLEEP(2), {long_sql[7:]}")
            finally:
                conn.close()
                done.set()

        worker = threading.Thread(target=busy)
        worker.start()
        try:
            def sleeping(full: bool):
                return [r for r in processlist(a, full).values() if r["Info"] and r["Info"].startswith("SELECT SLEEP(2)")]

            wait_until(lambda: sleeping(True), "the sleeping statement in SHOW FULL PROCESSLIST")
            assert len(sleeping(True)[0]["Info"]) > 150
            short = sleeping(False)
            assert short and len(short[0]["Info"]) == 100 and short[0]["Command"] == "Query"
        finally:
            worker.join(10)
        assert done.is_set()
    finally:
        a.close()
        b.close()


def test_a_user_without_process_sees_only_its_own_sessions(cluster, plain_user):
    root = cluster.connect(proxy=0)
    p0, p1 = login(cluster, plain_user, 0), login(cluster, plain_user, 1)
    try:
        for viewer in (p0, p1):
            rows = processlist(viewer)
            assert set(rows) == {p0.thread_id(), p1.thread_id()}
            assert {r["User"] for r in rows.values()} == {plain_user}
        assert root.thread_id() in processlist(root) and p1.thread_id() in processlist(root)
    finally:
        for c in (root, p0, p1):
            c.close()


def test_kill_from_one_proxy_ends_a_session_on_the_other(cluster):
    killer, victim = cluster.connect(proxy=0), cluster.connect(proxy=1)
    victim_id = victim.thread_id()
    try:
        run(victim, "SELECT 1")
        run(killer, f"KILL {victim_id}")
        with pytest.raises(pymysql.err.OperationalError) as e:
            run(victim, "SELECT 1")
        assert e.value.args[0] == 2013  # MariaDB closes a connection killed by another without a word
        wait_until(lambda: victim_id not in processlist(killer), "the killed session to leave the process list")
    finally:
        killer.close()


def test_com_process_kill_reaches_the_other_proxy(cluster):
    killer, victim = cluster.connect(proxy=1), cluster.connect(proxy=0)
    victim_id = victim.thread_id()
    killer.kill(victim_id)  # COM_PROCESS_KILL
    with pytest.raises(pymysql.err.OperationalError):
        run(victim, "SELECT 1")
    wait_until(lambda: victim_id not in processlist(killer), "the killed session to leave the process list")
    killer.close()


def test_kill_mid_result_drops_the_connection_as_mariadb_does(cluster):
    """A read killed while its rows stream ends as a lost connection (2013), not an
    ERR packet in the middle of the rows (Connector/Python's Bug809033)."""
    root = cluster.connect()
    database = f"kill_{uuid.uuid4().hex[:6]}"
    run(root, f"CREATE DATABASE {database}")
    run(root, f"CREATE TABLE {database}.t (id INT PRIMARY KEY AUTO_INCREMENT, c VARCHAR(255) DEFAULT '{'a' * 255}')")
    run(root, f"INSERT INTO {database}.t (id) VALUES " + ",".join(["(NULL)"] * 1024))
    victim = cluster.connect(proxy=1, cursorclass=pymysql.cursors.SSCursor)
    try:
        cur = victim.cursor()  # not closed: PyMySQL's unbuffered cursor cannot close on a lost connection
        cur.execute(f"SELECT x1.*, x2.* FROM {database}.t x1, {database}.t x2")
        assert cur.fetchone() is not None  # the result streams; most of it is still to come
        run(root, f"KILL {victim.thread_id()}")
        with pytest.raises(pymysql.err.OperationalError) as e:
            while cur.fetchone() is not None:
                pass
        assert e.value.args[0] == 2013
        assert not victim.open
        cur._result = victim._result = None  # PyMySQL would try to drain the lost result when collected
    finally:
        run(root, f"DROP DATABASE {database}")
        root.close()


def test_aborted_clients_counts_a_client_gone_without_quit(cluster):
    """SHOW GLOBAL STATUS answers the client connection counters from the proxy
    (the regions only see its pooled connections): a clean close leaves
    Aborted_clients alone, a dropped socket adds one (Connector/Python's test_shutdown)."""
    observer = cluster.connect()

    def status(name):
        return int(run(observer, f"SHOW GLOBAL STATUS WHERE variable_name LIKE '{name}'")[0][1])

    try:
        aborted, connections = status("Aborted_clients"), status("Connections")
        clean, dropped = cluster.connect(), cluster.connect()
        assert status("Connections") == connections + 2
        clean.close()  # COM_QUIT
        assert status("Aborted_clients") == aborted
        dropped._sock.shutdown(socket.SHUT_RDWR)  # gone without a word (as Connector's shutdown())
        wait_until(lambda: status("Aborted_clients") == aborted + 1, "the dropped client to be counted")
        assert int(run(observer, "SHOW SESSION STATUS LIKE 'Aborted_clients'")[0][1]) == aborted + 1
    finally:
        observer.close()


def test_performance_schema_is_answered_by_a_region(cluster):
    root = cluster.connect()
    try:
        rows = run(root, "SELECT variable_value FROM performance_schema.global_status WHERE variable_name = 'Uptime'")
        assert len(rows) <= 1  # empty when performance_schema is off (MariaDB's default), as on one MariaDB
        assert len(run(root, "SELECT COUNT(*) FROM performance_schema.setup_consumers")) == 1
        assert run(root, "SELECT sys_version FROM sys.version")[0][0]
    finally:
        root.close()


def test_kill_query_interrupts_a_sleep_on_the_other_proxy(cluster):
    killer, victim = cluster.connect(proxy=0), cluster.connect(proxy=1)
    victim_id = victim.thread_id()
    outcome: dict = {}

    def sleep() -> None:
        started = time.monotonic()
        try:
            outcome["rows"] = run(victim, "SELECT SLEEP(30)")
        except pymysql.err.MySQLError as e:
            outcome["errno"] = e.args[0]
        outcome["elapsed"] = time.monotonic() - started

    worker = threading.Thread(target=sleep)
    worker.start()
    try:
        wait_until(lambda: (processlist(killer, True).get(victim_id) or {}).get("Info") == "SELECT SLEEP(30)",
                   "the victim's SELECT SLEEP(30) in the process list")
        killed_at = time.monotonic()
        run(killer, f"KILL QUERY {victim_id}")
        worker.join(10)
        assert not worker.is_alive()
        assert time.monotonic() - killed_at < 3.0 and outcome["elapsed"] < 10
        # MariaDB's answer to an interrupted SLEEP: 1317, or the row SLEEP() returns when interrupted (1).
        assert outcome.get("errno") == 1317 or outcome.get("rows") == ((1,),)
        assert one(victim, "SELECT CONNECTION_ID()") == victim_id  # the connection lives on
        assert processlist(killer)[victim_id]["Command"] == "Sleep"
    finally:
        worker.join(10)
        killer.close()
        victim.close()


def test_kill_rights_unknown_ids_and_the_own_connection(cluster, plain_user):
    root = cluster.connect(proxy=0)
    plain_a, plain_b = login(cluster, plain_user, 1), login(cluster, plain_user, 0)
    try:
        assert errno_of(plain_a, f"KILL {root.thread_id()}") == 1095  # another user's session
        assert errno_of(plain_a, f"KILL QUERY {root.thread_id()}") == 1095
        assert errno_of(root, f"KILL {(999 << LOCAL_BITS) | 1}") == 1094  # no such proxy
        unused = max(processlist(root)) + 1000
        assert errno_of(root, f"KILL {unused}") == 1094
        assert errno_of(root, f"KILL {(1 << LOCAL_BITS) | 4000000}") == 1094  # no such session on the other proxy
        run(plain_a, f"KILL QUERY {plain_b.thread_id()}")  # own user's idle session: a no-op
        assert one(plain_b, "SELECT 2") == 2
        run(plain_a, f"KILL {plain_b.thread_id()}")  # own user's session, on the other proxy
        with pytest.raises(pymysql.err.OperationalError):
            run(plain_b, "SELECT 1")
        assert errno_of(root, "KILL QUERY CONNECTION_ID()") == 1317
        assert one(root, "SELECT 3") == 3
        with pytest.raises(pymysql.err.OperationalError) as e:
            run(root, "KILL CONNECTION_ID()")
        assert e.value.args[0] == 1927  # its own KILL is answered, then the connection closes
        assert errno_of(root, "SELECT 1") in (2006, 2013)  # and the connection is gone
    finally:
        for c in (root, plain_a, plain_b):
            try:
                c.close()
            except pymysql.err.Error:
                pass


def test_get_lock_contends_across_proxies(cluster):
    name = f"lock-{uuid.uuid4().hex[:8]}"
    a, b = cluster.connect(proxy=0), cluster.connect(proxy=1)
    try:
        assert one(a, "SELECT GET_LOCK(%s, 0)", (name,)) == 1
        assert one(b, "SELECT GET_LOCK(%s, 0)", (name,)) == 0
        assert one(b, "SELECT IS_FREE_LOCK(%s)", (name,)) == 0
        assert one(b, "SELECT IS_USED_LOCK(%s)", (name,)) is not None
        started = time.monotonic()
        assert one(b, "SELECT GET_LOCK(%s, 1)", (name,)) == 0  # waits out its timeout
        assert time.monotonic() - started >= 0.9
        assert one(a, "SELECT RELEASE_LOCK(%s)", (name,)) == 1
        assert one(b, "SELECT GET_LOCK(%s, 0)", (name,)) == 1
        assert one(a, "SELECT GET_LOCK(%s, 0)", (name,)) == 0
        run(b, "DO RELEASE_LOCK(%s)", (name,))
        run(a, "DO GET_LOCK(%s, 0)", (name,))
        assert one(b, "SELECT IS_FREE_LOCK(%s)", (name,)) == 0
        assert one(a, "SELECT RELEASE_ALL_LOCKS()") == 1
        assert one(b, "SELECT IS_FREE_LOCK(%s)", (name,)) == 1
    finally:
        a.close()
        b.close()


def test_a_lock_is_released_when_its_holder_disconnects(cluster):
    name = f"lock-{uuid.uuid4().hex[:8]}"
    holder, waiter = cluster.connect(proxy=1), cluster.connect(proxy=0)
    try:
        assert one(holder, "SELECT GET_LOCK(%s, 0)", (name,)) == 1
        assert one(waiter, "SELECT GET_LOCK(%s, 0)", (name,)) == 0
        holder.close()
        started = time.monotonic()
        assert one(waiter, "SELECT GET_LOCK(%s, 10)", (name,)) == 1  # granted once the holder's connection is gone
        assert time.monotonic() - started < 10
    finally:
        waiter.close()


def test_lock_functions_with_tables_off_the_lock_region_get_1235(cluster):
    db = f"locks_{uuid.uuid4().hex[:6]}"
    root = cluster.connect(proxy=0)
    try:
        run(root, f"CREATE DATABASE {db}")
        lock_region = min(cluster.state()["regions"])
        on, off = None, None
        for i in range(6):  # new tables go to the least-loaded regions: some land on the lock region, some not
            run(root, f"CREATE TABLE {db}.t{i} (id INT PRIMARY KEY)")
            run(root, f"INSERT INTO {db}.t{i} VALUES (1)")
            copies = cluster.state()["placement"].table(db, f"t{i}").write_regions
            if lock_region in copies:
                on = on or f"t{i}"
            else:
                off = off or f"t{i}"
            if on and off:
                break
        assert on and off
        assert one(root, f"SELECT GET_LOCK('x-{db}', 0) FROM {db}.{on}") == 1
        assert one(root, f"SELECT RELEASE_LOCK('x-{db}') FROM {db}.{on}") == 1
        assert errno_of(root, f"SELECT GET_LOCK('x-{db}', 0) FROM {db}.{off}") == 1235
        assert errno_of(root, f"INSERT INTO {db}.{on} VALUES (GET_LOCK('x', 0))") == 1235
        assert errno_of(root, "SET @x = GET_LOCK('x', 0)") == 1235
    finally:
        root.close()
