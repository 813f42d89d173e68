"""Statements and commands a driver or tool sends besides plain DML, through a
real 3-region cluster: table maintenance, HELP, SET STATEMENT ... FOR,
SQL-level PREPARE/EXECUTE, ROW_COUNT(), SYSDATE() in replicated writes,
COM_STATISTICS, COM_RESET_CONNECTION."""

from __future__ import annotations

import shutil
import subprocess

import pymysql
import pytest

from .cluster import fresh_database, running_cluster
from .rawclient import RawClient


@pytest.fixture(scope="module")
def cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory):
    yield from running_cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory, "stmts", users={"root": ""})


@pytest.fixture()
def db(cluster):
    name = fresh_database(cluster, "s")
    conn = cluster.connect()
    conn.cursor().execute(f"CREATE TABLE {name}.t (id INT PRIMARY KEY, v INT, at DATETIME(6))")
    conn.close()
    return name


def test_table_maintenance_help_and_set_statement(cluster, db):
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    cur.execute("INSERT INTO t VALUES (1, 1, NULL), (2, 2, NULL)")
    for verb in ("ANALYZE", "OPTIMIZE", "CHECK", "REPAIR"):
        cur.execute(f"{verb} TABLE t")
        rows = cur.fetchall()
        assert rows and rows[-1][0] == f"{db}.t" and rows[-1][2] in ("status", "note"), (verb, rows)
    cur.execute("CHECKSUM TABLE t")
    checksum = cur.fetchall()[0][1]
    assert checksum  # the same on both copies:
    sums = set()
    for region in cluster.rows_on_regions(db, "t"):
        direct = cluster.connect_region(region)
        with direct.cursor() as dcur:
            dcur.execute(f"CHECKSUM TABLE {db}.t")
            sums.add(dcur.fetchall()[0][1])
        direct.close()
    assert sums == {checksum}
    cur.execute("ANALYZE SELECT * FROM t WHERE id = 1")
    assert cur.fetchall()

    cur.execute("HELP 'contents'")
    cur.fetchall()  # answered by a region (help tables may be empty, the statement works)

    # SET STATEMENT on a write reaches both copies together with the pinning.
    cur.execute("SET STATEMENT sql_mode='' FOR INSERT INTO t (id, v) VALUES (3, 'x')")  # '' -> 0 only without strict mode
    assert all((3, 0, None) in rows for rows in cluster.rows_on_regions(db, "t", "id").values())
    # Its warning (the '' that became 0) is what SHOW WARNINGS tells, though the proxy committed since.
    cur.execute("SHOW WARNINGS")
    assert [row[1] for row in cur.fetchall()] == [1366]
    cur.execute("SET STATEMENT max_statement_time=10 FOR SELECT COUNT(*) FROM t")
    assert cur.fetchone()[0] == 3
    conn.close()


def test_sysdate_row_count_and_sql_prepared_statements(cluster, db):
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    cur.execute("INSERT INTO t VALUES (1, 1, SYSDATE(6)), (2, 2, SYSDATE(6))")
    copies = cluster.rows_on_regions(db, "t", "id")
    assert len(copies) == 2 and len({tuple(rows) for rows in copies.values()}) == 1  # identical on both copies
    assert all(row[2] is not None for row in next(iter(copies.values())))

    cur.execute("UPDATE t SET v = v + 1")
    cur.execute("SELECT ROW_COUNT()")
    assert cur.fetchone()[0] == 2  # the update's count, though the SELECT may run elsewhere
    cur.execute("SELECT * FROM t")
    cur.fetchall()
    cur.execute("SELECT ROW_COUNT()")
    assert cur.fetchone()[0] == -1  # after a SELECT

    cur.execute("PREPARE ins FROM 'INSERT INTO t (id, v) VALUES (?, ?)'")
    cur.execute("SET @i = 10, @v = 100")
    cur.execute("EXECUTE ins USING @i, @v")
    cur.execute("PREPARE sel FROM 'SELECT v FROM t WHERE id = ?'")
    cur.execute("EXECUTE sel USING @i")
    assert cur.fetchone()[0] == 100
    cur.execute("DEALLOCATE PREPARE ins")
    with pytest.raises(pymysql.err.OperationalError) as info:
        cur.execute("EXECUTE ins USING @i, @v")
    assert info.value.args[0] == 1243
    assert all((10, 100, None) in rows for rows in cluster.rows_on_regions(db, "t", "id").values())
    conn.close()


def test_statistics_and_reset_connection(cluster, db):
    admin = shutil.which("mariadb-admin") or shutil.which("mysqladmin")
    assert admin, "mariadb-admin must be installed (mariadb-client)"
    done = subprocess.run([admin, "-h", "127.0.0.1", "-P", str(cluster.proxy_port), "-u", "root", "status"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "Uptime:" in done.stdout, done.stdout + done.stderr

    raw = RawClient(cluster.proxy_port)
    raw.login("root", "", database=db)
    assert raw.query("SET @x = 5")[0] == 0
    assert raw.command(b"\x1f")[0] == 0  # COM_RESET_CONNECTION: OK
    raw.send(b"\x03SELECT @x IS NULL", 0)
    packets = [raw.read_packet()[1] for _ in range(4)]  # column count, column, row, end (DEPRECATE_EOF)
    assert packets[2] == b"\x011"  # the user variable is gone
    raw.send(b"\x03SELECT DATABASE()", 0)
    packets = [raw.read_packet()[1] for _ in range(4)]
    assert packets[2] == bytes((len(db),)) + db.encode()  # the default database stays, as in MariaDB
    raw.close()


def test_temporary_tables_live_on_one_region_for_one_session(cluster, db):
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    cur.execute("INSERT INTO t VALUES (1, 10, NULL), (2, 20, NULL)")
    # ... SELECT from a normal table: created where t has a copy, usable with it.
    cur.execute("CREATE TEMPORARY TABLE picked AS SELECT id, v FROM t WHERE v > 15")
    cur.execute("INSERT INTO picked VALUES (3, 30)")
    cur.execute("CREATE INDEX picked_v ON picked (v)")  # on its region, not through the master
    cur.execute("SHOW INDEX FROM picked")
    assert "picked_v" in [row[2] for row in cur.fetchall()]
    cur.execute("SELECT t.id, picked.v FROM t JOIN picked ON picked.id = t.id ORDER BY t.id")
    assert cur.fetchall() == ((2, 20),)
    cur.execute("CREATE TEMPORARY TABLE shadow LIKE t")
    cur.execute("SELECT COUNT(*) FROM shadow")
    assert cur.fetchone()[0] == 0
    # A temporary table hides a normal table of the same name for this session only.
    cur.execute("CREATE TEMPORARY TABLE t (x INT)")
    cur.execute("SELECT COUNT(*) FROM t")
    assert cur.fetchone()[0] == 0
    other = cluster.connect(database=db)
    with other.cursor() as ocur:
        ocur.execute("SELECT COUNT(*) FROM t")
        assert ocur.fetchone()[0] == 2
        with pytest.raises(pymysql.err.ProgrammingError) as info:
            ocur.execute("SELECT * FROM picked")
        assert info.value.args[0] == 1146
    other.close()
    cur.execute("DROP TEMPORARY TABLE t")
    cur.execute("SELECT COUNT(*) FROM t")
    assert cur.fetchone()[0] == 2  # the normal table again
    cur.execute("DROP TABLE picked")  # a plain DROP of a temporary table stays on its region
    with pytest.raises(pymysql.err.ProgrammingError):
        cur.execute("SELECT * FROM picked")
    # Nothing of it reached the placement or the other regions.
    assert cluster.rows_on_regions(db, "picked") == {}
    conn.close()


def test_lock_tables_hold_on_every_copy(cluster, db):
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    cur.execute("LOCK TABLES t READ")
    with pytest.raises(pymysql.err.OperationalError) as info:
        cur.execute("INSERT INTO t VALUES (1, 1, NULL)")
    assert info.value.args[0] == 1099  # locked with a READ lock: MariaDB's own error
    other = cluster.connect(database=db)
    with other.cursor() as ocur:
        ocur.execute("SET SESSION lock_wait_timeout = 1")
        with pytest.raises(pymysql.err.OperationalError) as info:
            ocur.execute("INSERT INTO t VALUES (2, 2, NULL)")  # blocked by the READ lock on the primary
        assert info.value.args[0] == 1205
    cur.execute("UNLOCK TABLES")
    cur.execute("LOCK TABLES t WRITE")
    cur.execute("INSERT INTO t VALUES (3, 3, NULL)")  # the lock is held on both copies, the write reaches both
    cur.execute("UNLOCK TABLES")
    with other.cursor() as ocur:
        ocur.execute("INSERT INTO t VALUES (4, 4, NULL)")
    other.close()
    copies = cluster.rows_on_regions(db, "t", "id")
    assert len(copies) == 2 and all([r[0] for r in rows] == [3, 4] for rows in copies.values())
    conn.close()


def test_the_clients_own_wait_timeout_ends_its_idle_session(cluster):
    conn = cluster.connect()
    cur = conn.cursor()
    cur.execute("SET wait_timeout = 1")
    import time
    time.sleep(2.5)
    with pytest.raises(pymysql.err.OperationalError) as info:
        cur.execute("SELECT 1")
    assert info.value.args[0] in (2006, 2013)  # closed without a word, as MariaDB does


def test_the_compressed_protocol(cluster, db):
    """Connector/Python with compress=True: statements and results travel in
    zlib frames both ways (big ones compressed, small ones as is)."""
    import mysql.connector

    conn = mysql.connector.connect(host="127.0.0.1", port=cluster.proxy_port, user="root", password="", database=db,
                                   compress=True, use_pure=True, autocommit=True)
    cur = conn.cursor()
    big = "x" * 300_000  # several compressed frames' worth once zlib is done with it
    cur.execute("CREATE TABLE zipped (id INT PRIMARY KEY, body LONGTEXT)")
    cur.execute("INSERT INTO zipped VALUES (1, %s), (2, 'small')", (big,))
    cur.execute("SELECT body FROM zipped ORDER BY id")
    assert [r[0] for r in cur.fetchall()] == [big, "small"]
    cur.execute("SELECT 1")
    assert cur.fetchall() == [(1,)]
    cur.execute("SHOW STATUS LIKE 'Compression'")
    assert cur.fetchall() == [("Compression", "ON")]  # the client's connection, not the region's
    prepared = conn.cursor(prepared=True)
    prepared.execute("SELECT LENGTH(body) FROM zipped WHERE id = ?", (1,))
    assert prepared.fetchall() == [(300_000,)]
    assert all(len(rows) == 2 for rows in cluster.rows_on_regions(db, "zipped", "id").values())
    conn.close()


def test_a_bad_compressed_frame_ends_the_connection_with_an_error(cluster):
    raw = RawClient(cluster.proxy_port)
    raw.read_handshake()
    raw.send(raw.login_packet("root", "", extra_caps=0x20), 1)  # CLIENT_COMPRESS
    assert raw.read_packet()[1][:1] == b"\x00"  # the login's OK is not compressed
    junk = b"not zlib at all, but long enough to claim compression"
    raw.sock.sendall(len(junk).to_bytes(3, "little") + b"\x00" + (1000).to_bytes(3, "little") + junk)
    assert raw.is_closed()


def test_set_names_binary_and_koi8r_carry_the_clients_bytes(cluster, db):
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    cur.execute("CREATE TABLE names_t (id INT PRIMARY KEY, raw VARBINARY(16), txt VARCHAR(16) CHARACTER SET utf8mb4)")
    cur.execute("SET NAMES 'binary' COLLATE 'binary'")  # Connector/Python's set_charset_collation("binary")
    cur.execute(b"INSERT INTO names_t (id, raw) VALUES (1, '\xeb\xeb\xff')")
    cur.execute("SET NAMES koi8r")
    cur.execute("INSERT INTO names_t (id, txt) VALUES (2, '".encode() + "привет".encode("koi8_r") + b"')")
    cur.execute("SET NAMES utf8mb4")
    cur.execute("SELECT raw FROM names_t WHERE id = 1")
    assert cur.fetchone()[0] == b"\xeb\xeb\xff"
    cur.execute("SELECT txt FROM names_t WHERE id = 2")
    assert cur.fetchone()[0] == "привет"
    assert all(len(rows) == 2 for rows in cluster.rows_on_regions(db, "names_t", "id").values())
    conn.close()


def test_a_ddl_note_is_what_show_warnings_tells_next(cluster, db):
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    assert cur.execute("DROP TABLE IF EXISTS no_such_table") == 0
    cur.execute("SHOW WARNINGS")
    assert [(r[0], r[1]) for r in cur.fetchall()] == [("Note", 1051)]
    cur.execute("SELECT 1")
    cur.execute("SHOW WARNINGS")
    assert cur.fetchall() == ()
    conn.close()


def test_uuid_in_insert_values_is_the_same_on_every_copy(cluster, db):
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    cur.execute("CREATE TABLE tokens (id INT PRIMARY KEY, token CHAR(36))")
    cur.execute("INSERT INTO tokens VALUES (1, UUID()), (2, UUID())")
    copies = list(cluster.rows_on_regions(db, "tokens", "id").values())
    assert len(copies) == 2 and copies[0] == copies[1]
    assert copies[0][0][1] != copies[0][1][1] and len(copies[0][0][1]) == 36
    with pytest.raises(pymysql.err.MySQLError) as info:  # per row: still refused on a replicated table
        cur.execute("UPDATE tokens SET token = UUID()")
    assert info.value.args[0] == 1235
    conn.close()


def test_statements_the_proxy_cannot_plan_get_mariadbs_own_error(cluster, db):
    """proxy/verdict.py: where the proxy would refuse, MariaDB's PREPARE of the
    text on a region tells the error one MariaDB gives; a valid statement the
    gateway does not route keeps the gateway's 1235."""
    conn = cluster.connect(database=db)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE t1 (a INT PRIMARY KEY, b INT)")
            for sql, errno in (
                ("select * from (select * left join t on f1=f2) tt", 1064),  # the proxy alone said 1146
                ("insert into (select * from t1) values (5)", 1064),  # the proxy alone said 1235
                ("select * from no_such_table", 1146),
                ("HANDLER t1 OPEN", 1235),  # valid MariaDB, not routed: ours stands
            ):
                with pytest.raises(pymysql.err.MySQLError) as e:
                    cur.execute(sql)
                assert e.value.args[0] == errno, (sql, e.value.args)
            cur.execute("SELECT COUNT(*) FROM t1")  # the session is fine afterwards
            assert cur.fetchone() == (0,)
    finally:
        conn.close()
