"""The client edge under hostile input, against a real cluster.

Each test sends what an attacker (or a broken client) would, with the raw
client of `rawclient.py`, and checks the three promises of the edge: a failed
login ends the connection with nothing run, no packet stalls other clients,
and every read is bounded in size and time.
"""

from __future__ import annotations

import socket
import statistics
import struct
import time
import urllib.request
import uuid

import pymysql
import pytest

from .cluster import Cluster
from .rawclient import BASIC_CAPS, Closed, RawClient, error_code, frame

CONNECT_TIMEOUT = 5
BLOCK_AFTER = 8
MAX_CONNECTIONS = 2100
MAX_USER_CONNECTIONS = 20


@pytest.fixture(scope="module")
def cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory):
    c = Cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory.mktemp("edge"), f"/edge-{uuid.uuid4().hex[:8]}")
    try:
        c.start(
            users={"root": "", "app": "s3cret", "guessme": "right-one", "limited": "pw"},
            proxy_args=[
                "--connect-timeout", str(CONNECT_TIMEOUT), "--login-block-after", str(BLOCK_AFTER),
                "--max-connections", str(MAX_CONNECTIONS), "--max-user-connections", str(MAX_USER_CONNECTIONS),
            ],
        )
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def canary(cluster):
    """A table whose contents must never change through any attack below."""
    db = f"canary_{uuid.uuid4().hex[:8]}"
    conn = cluster.connect()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.execute(f"INSERT INTO {db}.t VALUES (1, 'one')")
    conn.close()
    return db


def canary_rows(cluster, db) -> list[tuple]:
    conn = cluster.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT id, v FROM {db}.t ORDER BY id")
            return list(cur.fetchall())
    finally:
        conn.close()


def steady_latencies(cluster, n: int = 20) -> list[float]:
    """Seconds per `SELECT 1` of a well-behaved client, each on a fresh login."""
    out = []
    conn = cluster.connect()
    try:
        for _ in range(n):
            started = time.perf_counter()
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                assert cur.fetchone() == (1,)
            out.append(time.perf_counter() - started)
    finally:
        conn.close()
    return out


def assert_still_serving(cluster) -> None:
    latencies = steady_latencies(cluster)
    assert statistics.median(latencies) < 0.1, latencies
    assert max(latencies) < 1.0, latencies


def metric(cluster, name: str, labels: str = "") -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{cluster.proxy_metrics_port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name) and (not labels or labels in line) and not line.startswith("#"):
            head, value = line.rsplit(" ", 1)
            if head.split("{")[0] == name:
                total += float(value)
    return total


def proxy_rss_kib(cluster) -> int:
    with open(f"/proc/{cluster.proxy.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# -- a failed login ends the connection ---------------------------------------------
def test_wrong_password_then_query_closes_the_connection(cluster, canary):
    c = RawClient(cluster.proxy_port)
    answer = c.login("app", "wrong")
    assert error_code(answer) == 1045
    assert b"28000" in answer[:10]
    try:
        c.send(b"\x03" + f"INSERT INTO {canary}.t VALUES (2, 'pwned')".encode(), 0)
        reply = c.read_packet()[1]
    except (Closed, ConnectionError):
        reply = None
    assert reply is None, f"the proxy answered a command after a failed login: {reply!r}"
    assert c.is_closed()
    assert canary_rows(cluster, canary) == [(1, "one")]


def test_unknown_user_gets_the_same_1045_and_a_close(cluster):
    c = RawClient(cluster.proxy_port)
    answer = c.login("nobody", "x")
    assert error_code(answer) == 1045
    assert c.is_closed()


def test_right_password_works_and_handshake_announces_autocommit(cluster):
    c = RawClient(cluster.proxy_port)
    assert c.login("app", "s3cret")[:1] == b"\x00"
    assert c.status_flags() & 2, "SERVER_STATUS_AUTOCOMMIT must be set in the handshake (PyMySQL reads it)"
    assert c.query("SELECT 1")[:1] != b"\xff"
    c.close()


def test_pymysql_default_autocommit_off_then_rollback_leaves_nothing(cluster, canary):
    conn = pymysql.connect(host="127.0.0.1", port=cluster.proxy_port, user="root", password="")  # autocommit=False
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {canary}.t VALUES (50, 'rolled back')")
    conn.rollback()
    conn.close()
    assert canary_rows(cluster, canary) == [(1, "one")]
    for rows in cluster.rows_on_regions(canary, "t").values():
        assert rows == [(1, "one")]


def test_pymysql_default_savepoint_then_release(cluster, canary):
    conn = pymysql.connect(host="127.0.0.1", port=cluster.proxy_port, user="root", password="")  # autocommit=False
    with conn.cursor() as cur:
        cur.execute("SAVEPOINT a")  # opens the transaction, as on one MariaDB
        cur.execute(f"INSERT INTO {canary}.t VALUES (60, 'after savepoint')")
        cur.execute("ROLLBACK TO SAVEPOINT a")
        cur.execute("RELEASE SAVEPOINT a")
    conn.commit()
    conn.close()
    assert canary_rows(cluster, canary) == [(1, "one")]


def test_no_backslash_escapes_reaches_the_driver(cluster):
    conn = cluster.connect()
    assert conn.escape("foo'bar") == "'foo\\'bar'"
    conn.cursor().execute("SET sql_mode = 'NO_BACKSLASH_ESCAPES'")
    assert conn.escape("foo'bar") == "'foo''bar'"  # PyMySQL read the status flag
    conn.cursor().execute("SET sql_mode = DEFAULT")
    assert conn.escape("foo'bar") == "'foo\\'bar'"
    conn.close()


# -- no packet stalls the gateway ---------------------------------------------------
KILLER_HANDSHAKE = struct.pack("<IIB", 0x200 | 0x8000, 0, 33) + bytes(23) + b"x"


def test_handshake_without_nul_gets_1043_and_others_keep_being_served(cluster):
    assert len(KILLER_HANDSHAKE) == 33
    c = RawClient(cluster.proxy_port)
    c.read_handshake()
    c.send(KILLER_HANDSHAKE, 1)
    assert error_code(c.read_packet()[1]) == 1043
    assert c.is_closed()
    assert_still_serving(cluster)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\x04t", id="COM_FIELD_LIST-no-NUL"),
        pytest.param(b"\x11root", id="COM_CHANGE_USER-no-NUL"),
        pytest.param(b"\x11", id="COM_CHANGE_USER-empty"),
        pytest.param(b"\x16", id="COM_STMT_PREPARE-empty"),
        pytest.param(b"\x17\x01", id="COM_STMT_EXECUTE-truncated"),
        pytest.param(b"\x99garbage", id="unknown-command"),
    ],
)
def test_malformed_commands_after_login_are_answered(cluster, payload):
    c = RawClient(cluster.proxy_port)
    assert c.login("root", "")[:1] == b"\x00"
    started = time.perf_counter()
    try:
        answer = c.command(payload)
    except Closed:
        answer = b""
    assert time.perf_counter() - started < 2.0
    # An answer (an error, or a result for a lenient COM_FIELD_LIST) or a clean close: never a hang.
    assert answer == b"" or answer[:1] in (b"\xff", b"\x00", b"\xfe") or len(answer) > 0
    assert_still_serving(cluster)


def test_header_split_across_segments_is_read(cluster):
    c = RawClient(cluster.proxy_port)
    c.read_handshake()
    packet = frame(c.login_packet("app", "s3cret"), 1)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.sock.sendall(packet[:2])
    time.sleep(0.2)
    c.sock.sendall(packet[2:])
    assert c.read_packet()[1][:1] == b"\x00"
    c.close()


def test_bad_sequence_id_is_refused(cluster):
    c = RawClient(cluster.proxy_port)
    c.read_handshake()
    c.send(c.login_packet("root", ""), 7)
    assert error_code(c.read_packet()[1]) == 1835
    assert c.is_closed()


# -- bounded memory and time ----------------------------------------------------------
def test_64mb_query_gets_1153_and_memory_stays_bounded(cluster):
    before = proxy_rss_kib(cluster)
    c = RawClient(cluster.proxy_port, timeout=30)
    assert c.login("root", "")[:1] == b"\x00"
    chunk = 0xFFFFFF
    body = b"\x03SELECT '" + b"a" * (64 * 1024 * 1024) + b"'"
    seq = 0
    answer = b""
    try:
        for i in range(0, len(body) + 1, chunk):
            c.send(body[i:i + chunk], seq)
            seq = (seq + 1) & 0xFF
    except ConnectionError:
        pass  # the proxy may close before we finish sending
    try:
        answer = c.read_packet()[1]
    except (Closed, ConnectionError):
        pass
    assert error_code(answer) == 1153, answer[:60]
    assert c.is_closed()
    growth_mib = (proxy_rss_kib(cluster) - before) / 1024
    assert growth_mib < 64, f"proxy RSS grew by {growth_mib:.0f} MiB for a refused 64 MB packet"
    assert_still_serving(cluster)


def test_oversized_preauth_packet_is_refused(cluster):
    c = RawClient(cluster.proxy_port)
    c.read_handshake()
    body = struct.pack("<IIB", BASIC_CAPS, 0, 45) + bytes(23) + b"u" * 500_000 + b"\0"
    try:
        c.send(body, 1)
        answer = c.read_packet()[1]
    except (Closed, ConnectionError):
        answer = b""
    assert error_code(answer) in (1153, None)
    assert c.is_closed()
    assert_still_serving(cluster)


def test_idle_preauth_connections_are_freed_and_limited(cluster):
    socks = []
    try:
        for _ in range(MAX_CONNECTIONS + 50):
            socks.append(socket.create_connection(("127.0.0.1", cluster.proxy_port), timeout=10))
        # Each socket got either the handshake or, past the limit, 1040 and a close.
        greeted = refused = 0
        for s in socks:
            s.settimeout(CONNECT_TIMEOUT)
            data = s.recv(1024)
            if data[4:5] == b"\x0a":
                greeted += 1
            elif data[4:5] == b"\xff" and struct.unpack("<H", data[5:7])[0] == 1040:
                refused += 1
        assert greeted <= MAX_CONNECTIONS
        assert refused >= 50
        assert greeted + refused == len(socks)
        # The connect timeout frees the idle ones.
        deadline = time.monotonic() + CONNECT_TIMEOUT + 10
        while metric(cluster, "minisql_proxy_client_connections") > 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert metric(cluster, "minisql_proxy_client_connections") <= 1
        assert metric(cluster, "minisql_proxy_connections_rejected_total", 'reason="handshake_timeout"') >= greeted
    finally:
        for s in socks:
            s.close()
    assert_still_serving(cluster)


def test_max_user_connections(cluster):
    conns = [pymysql.connect(host="127.0.0.1", port=cluster.proxy_port, user="limited", password="pw") for _ in range(MAX_USER_CONNECTIONS)]
    try:
        with pytest.raises(pymysql.err.OperationalError) as e:
            pymysql.connect(host="127.0.0.1", port=cluster.proxy_port, user="limited", password="pw")
        assert e.value.args[0] == 1226
        cluster.connect().close()  # other users are not affected
    finally:
        for conn in conns:
            conn.close()
    time.sleep(0.3)
    pymysql.connect(host="127.0.0.1", port=cluster.proxy_port, user="limited", password="pw").close()


# -- guessing is throttled, blocked and counted ----------------------------------------
def test_wrong_passwords_are_throttled_blocked_and_counted(cluster):
    denied_before = metric(cluster, "minisql_proxy_logins_total", 'outcome="denied"')
    timings = []
    for i in range(BLOCK_AFTER):
        c = RawClient(cluster.proxy_port)
        started = time.perf_counter()
        answer = c.login("guessme", f"guess-{i}")
        timings.append(time.perf_counter() - started)
        assert error_code(answer) == 1045
        assert c.is_closed()
    assert timings[-1] > timings[0] + 0.2, timings  # progressive delay after a few failures
    assert metric(cluster, "minisql_proxy_logins_total", 'outcome="denied"') - denied_before == BLOCK_AFTER
    assert metric(cluster, "minisql_proxy_login_throttled_total") >= 1
    # Blocked now, even with the right password ...
    c = RawClient(cluster.proxy_port)
    assert error_code(c.login("guessme", "right-one")) == 4151
    assert c.is_closed()
    assert metric(cluster, "minisql_proxy_logins_total", 'outcome="blocked"') >= 1
    # ... while other accounts from the same host still log in.
    c = RawClient(cluster.proxy_port)
    assert c.login("app", "s3cret")[:1] == b"\x00"
    c.close()


def test_failed_change_user_closes_the_connection(cluster):
    c = RawClient(cluster.proxy_port)
    assert c.login("root", "")[:1] == b"\x00"
    payload = b"\x11" + b"app\0" + bytes((20,)) + b"x" * 20 + b"\0"
    answer = c.command(payload)
    assert error_code(answer) == 1045
    assert c.is_closed()


def test_a_big_statement_does_not_freeze_other_clients(cluster, canary):
    """A 6 MB INSERT is analysed off the event loop: others keep being served."""
    import threading

    conn = cluster.connect()
    run_sql = lambda sql: conn.cursor().execute(sql)  # noqa: E731
    run_sql(f"CREATE TABLE {canary}.bulk (id INT PRIMARY KEY, v VARCHAR(40))")
    rows = 150_000
    big = f"INSERT INTO {canary}.bulk VALUES " + ",".join(f"({i}, 'row number {i}')" for i in range(rows))
    assert len(big) > 3_000_000
    done = threading.Event()
    outcome: list[object] = []

    def bulk() -> None:
        try:
            c = cluster.connect()
            c.cursor().execute(big)
            c.close()
            outcome.append("ok")
        except Exception as e:  # noqa: BLE001
            outcome.append(e)
        finally:
            done.set()

    worker = threading.Thread(target=bulk)
    worker.start()
    latencies = []
    while not done.is_set():
        latencies.extend(steady_latencies(cluster, 5))
    worker.join()
    assert outcome == ["ok"], outcome
    assert latencies and max(latencies) < 1.0, max(latencies)
    with conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {canary}.bulk")
        assert cur.fetchone() == (rows,)
    for copy in cluster.rows_on_regions(canary, "bulk", order_by="id").values():
        assert len(copy) == rows
    conn.close()


def test_a_client_that_disconnects_mid_statement_has_its_statement_killed(cluster, canary):
    marker = f"SLEEP(31.{uuid.uuid4().int % 1000:03d})"
    c = RawClient(cluster.proxy_port)
    assert c.login("root", "")[:1] == b"\x00"
    c.send(f"SELECT {marker} FROM {canary}.t".encode().join((b"\x03", b"")), 0)

    def running() -> int:
        total = 0
        for i in range(1, 4):
            region = cluster.connect_region(f"r{i}")
            with region.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE %s", (f"SELECT {marker}%",))
                total += cur.fetchone()[0]
            region.close()
        return total

    deadline = time.monotonic() + 5
    while running() == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running() == 1, "the statement should be running on the table's primary"
    c.close()
    deadline = time.monotonic() + 5
    while running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running() == 0, "the dropped client's statement is still running on the region"
    assert metric(cluster, "minisql_proxy_client_gone_mid_statement_total") >= 1
    assert_still_serving(cluster)
