"""End to end through the proxy: real ZooKeeper, three real MariaDB regions,
region agents, two masters and the proxy, driven by the stock `mariadb` CLI,
PyMySQL and mysql-connector-python."""

from __future__ import annotations

import shutil
import subprocess
import time

import mysql.connector
import pymysql
import pytest

from .cluster import fresh_database, running_cluster


@pytest.fixture(scope="module")
def cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory):
    yield from running_cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory, "e2e", users={"root": "", "app": "s3cret"})


@pytest.fixture()
def db(cluster):
    """A fresh database for one test (the MariaDB servers are shared by the session)."""
    return fresh_database(cluster, "t")


def cli(cluster, sql: str, database: str | None = None, user: str = "root") -> subprocess.CompletedProcess:
    mariadb = shutil.which("mariadb") or shutil.which("mysql")
    assert mariadb, "the mariadb client must be installed (make deps)"
    argv = [mariadb, "-h", "127.0.0.1", "-P", str(cluster.proxy_port), "-u", user, "--batch", "--skip-column-names"]
    if database:
        argv.append(database)
    return subprocess.run(argv + ["-e", sql], capture_output=True, text=True, timeout=60)


def test_seed_scenario_with_the_stock_cli(cluster, db):
    out = cli(cluster, "create table student(id int, name char(20))", db)
    assert out.returncode == 0, out.stderr
    out = cli(cluster, "insert into student values (1, 'alice'); insert into student values (2, 'bob'), (3, 'carol');", db)
    assert out.returncode == 0, out.stderr
    out = cli(cluster, "select id, name from student order by id", db)
    assert out.stdout.splitlines() == ["1\talice", "2\tbob", "3\tcarol"]
    assert cli(cluster, "update student set name = 'bobby' where id = 2", db).returncode == 0
    assert cli(cluster, "delete from student where id = 1", db).returncode == 0
    out = cli(cluster, "select id, name from student order by id", db)
    assert out.stdout.splitlines() == ["2\tbobby", "3\tcarol"]

    copies = cluster.rows_on_regions(db, "student")
    assert len(copies) == 2, copies  # exactly two regions hold the table
    first, second = copies.values()
    assert first == second == [(2, "bobby"), (3, "carol")]
    placement = cluster.state()["placement"].table(db, "student")
    assert set(copies) == {placement.primary, *placement.replicas}

    assert cli(cluster, "drop table student", db).returncode == 0
    assert cluster.rows_on_regions(db, "student") == {}
    out = cli(cluster, "select * from student", db)
    assert out.returncode != 0 and "1146" in out.stderr


def test_pymysql_autocommit_transactions_and_errors(cluster, db):
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    cur.execute("CREATE TABLE acct (id INT AUTO_INCREMENT PRIMARY KEY, owner VARCHAR(20) UNIQUE, balance INT)")
    assert cur.execute("INSERT INTO acct (owner, balance) VALUES (%s, %s)", ("ann", 100)) == 1
    assert cur.lastrowid == 1
    assert cur.execute("INSERT INTO acct (owner, balance) VALUES ('ben', 5), ('cy', 7)") == 2
    assert cur.lastrowid == 2  # the first id of a multi-row insert, as MySQL reports it
    cur.execute("SELECT LAST_INSERT_ID()")
    assert cur.fetchone()[0] == 2

    with pytest.raises(pymysql.err.IntegrityError) as info:
        cur.execute("INSERT INTO acct (owner, balance) VALUES ('ann', 1)")
    assert info.value.args[0] == 1062

    # An explicit transaction that is rolled back leaves both copies untouched.
    conn.begin()
    assert cur.execute("UPDATE acct SET balance = balance - 50 WHERE owner = 'ann'") == 1
    cur.execute("INSERT INTO acct (owner, balance) VALUES ('dan', 1)")
    cur.execute("SELECT balance FROM acct WHERE owner = 'ann'")
    assert cur.fetchone()[0] == 50  # the transaction sees its own write
    conn.rollback()
    cur.execute("SELECT owner, balance FROM acct ORDER BY id")
    assert cur.fetchall() == (("ann", 100), ("ben", 5), ("cy", 7))

    # ...and a committed one reaches both.
    conn.begin()
    cur.execute("UPDATE acct SET balance = balance + 1")
    assert cur.rowcount == 3
    conn.commit()
    copies = cluster.rows_on_regions(db, "acct", "id")
    assert len(copies) == 2
    assert all(rows == [(1, "ann", 101), (2, "ben", 6), (3, "cy", 8)] for rows in copies.values()), copies

    # autocommit=0: implicit transactions, undone by ROLLBACK.
    conn.autocommit(False)
    cur.execute("DELETE FROM acct WHERE owner = 'cy'")
    conn.rollback()
    conn.autocommit(True)
    cur.execute("SELECT COUNT(*) FROM acct")
    assert cur.fetchone()[0] == 3
    assert all(len(rows) == 3 for rows in cluster.rows_on_regions(db, "acct", "id").values())
    conn.close()


def test_mysql_connector(cluster, db):
    conn = mysql.connector.connect(host="127.0.0.1", port=cluster.proxy_port, user="root", database=db)
    cur = conn.cursor()
    cur.execute("CREATE TABLE item (id INT AUTO_INCREMENT PRIMARY KEY, sku VARCHAR(10) UNIQUE, price DECIMAL(8,2))")
    cur.execute("INSERT INTO item (sku, price) VALUES (%s, %s)", ("a1", "9.50"))
    assert (cur.rowcount, cur.lastrowid) == (1, 1)
    conn.commit()
    conn.start_transaction()
    cur.execute("INSERT INTO item (sku, price) VALUES ('b2', 1.25)")
    conn.rollback()
    cur.execute("SELECT sku, price FROM item")
    rows = cur.fetchall()
    assert [(r[0], str(r[1])) for r in rows] == [("a1", "9.50")]  # DECIMAL scale survives the relay
    with pytest.raises(mysql.connector.errors.IntegrityError) as info:
        cur.execute("INSERT INTO item (sku, price) VALUES ('a1', 2)")
    assert (info.value.errno, info.value.sqlstate) == (1062, "23000")
    with pytest.raises(mysql.connector.errors.ProgrammingError) as info:
        cur.execute("SELECT * FROM missing_table")
    assert (info.value.errno, info.value.sqlstate) == (1146, "42S02")
    with pytest.raises(mysql.connector.errors.ProgrammingError) as info:
        cur.execute("SELEKT 1")
    assert (info.value.errno, info.value.sqlstate) == (1064, "42000")
    conn.close()


def test_session_variables_reach_every_backend_connection(cluster, db):
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    for name in ("a", "b", "c", "d"):
        cur.execute(f"CREATE TABLE {name} (id INT PRIMARY KEY)")
    cur.execute("SET SESSION sql_mode = 'ANSI_QUOTES,STRICT_ALL_TABLES'")
    cur.execute("SELECT @@sql_mode")
    assert cur.fetchone()[0] == "ANSI_QUOTES,STRICT_ALL_TABLES"
    # Touch every table: at least one lives on a region this session had not
    # connected to yet, and the SET must have been replayed there.
    for name in ("a", "b", "c", "d"):
        cur.execute(f'SELECT @@sql_mode FROM "{name}" UNION ALL SELECT @@sql_mode')
        assert {r[0] for r in cur.fetchall()} == {"ANSI_QUOTES,STRICT_ALL_TABLES"}
    cur.execute("SHOW VARIABLES LIKE 'sql_mode'")
    assert cur.fetchone()[1] == "ANSI_QUOTES,STRICT_ALL_TABLES"
    # root may change a global: it reaches every region, not just one.
    cur.execute("SET GLOBAL max_connections = 321")
    for i in range(1, len(cluster.mariadbs) + 1):
        region = cluster.connect_region(f"r{i}")
        with region.cursor() as rcur:
            rcur.execute("SELECT @@global.max_connections")
            assert rcur.fetchone()[0] == 321
        region.close()
    cur.execute("SET GLOBAL max_connections = DEFAULT")
    with pytest.raises(pymysql.err.MySQLError) as info:
        cur.execute("SET @a = 1, @@global.max_connections = 10")
    assert info.value.args[0] == 1235
    with pytest.raises(pymysql.err.MySQLError) as info:
        cur.execute("SET sql_mode = 'NO_SUCH_MODE'")
    assert info.value.args[0] == 1231  # MariaDB's own error, not a fake OK
    conn.close()


def test_functions_answer_correctly(cluster, db):
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    cur.execute("SELECT DATABASE(), @@version, NOW() > '2020-01-01', 1 + 1")
    database, version, now_ok, two = cur.fetchone()
    assert (database, now_ok, two) == (db, 1, 2)
    assert "MariaDB" in version
    cur.execute("CREATE TABLE seq (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
    cur.execute("CREATE TABLE child (id INT AUTO_INCREMENT PRIMARY KEY, parent INT)")
    cur.execute("INSERT INTO seq (v) VALUES (1), (2), (3)")
    cur.execute("INSERT INTO seq (v) VALUES (4)")
    cur.execute("INSERT INTO child (parent) VALUES (LAST_INSERT_ID())")  # may run on another region
    cur.execute("SELECT parent FROM child")
    assert cur.fetchone()[0] == 4
    assert all(rows == [(1, 4)] for rows in cluster.rows_on_regions(db, "child", "id").values())
    conn.close()


def test_show_and_describe(cluster, db):
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    cur.execute("CREATE TABLE shown (id INT UNSIGNED NOT NULL PRIMARY KEY, name VARCHAR(30), KEY k_name (name))")
    cur.execute("SHOW DATABASES")
    assert (db,) in cur.fetchall()
    cur.execute("SHOW TABLES")
    assert cur.fetchall() == (("shown",),)
    cur.execute("SHOW CREATE TABLE shown")
    assert "`k_name`" in cur.fetchone()[1]
    cur.execute("DESCRIBE shown")
    assert [r[0] for r in cur.fetchall()] == ["id", "name"]
    cur.execute("SHOW COLUMNS FROM shown")
    assert cur.fetchall()[0][1] == "int(10) unsigned"
    cur.execute("SHOW INDEX FROM shown")
    assert {r[2] for r in cur.fetchall()} == {"PRIMARY", "k_name"}
    conn.select_db(db)  # COM_INIT_DB
    with pytest.raises(pymysql.err.MySQLError) as info:
        conn.select_db("no_such_db")
    assert info.value.args[0] == 1049
    with pytest.raises(pymysql.err.MySQLError) as info:
        cur.execute("USE no_such_db")
    assert info.value.args[0] == 1049
    conn.close()


def test_cross_region_join_is_refused_or_routed_never_wrong(cluster, db):
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    names = [f"j{i}" for i in range(4)]
    for name in names:
        cur.execute(f"CREATE TABLE {name} (id INT PRIMARY KEY, v INT)")
        cur.execute(f"INSERT INTO {name} VALUES (1, {len(name)}), (2, 20)")
    placement = cluster.state()["placement"]
    for a in names:
        for b in names:
            copies_a = set(placement.table(db, a).write_regions)
            copies_b = set(placement.table(db, b).write_regions)
            sql = f"SELECT x.id, y.v FROM {a} x JOIN {b} y ON x.id = y.id ORDER BY x.id"
            if copies_a & copies_b:
                cur.execute(sql)
                assert cur.fetchall() == ((1, 2), (2, 20))
            else:
                with pytest.raises(pymysql.err.MySQLError) as info:
                    cur.execute(sql)
                assert info.value.args[0] == 1235
    conn.close()


def test_bad_input_gets_errors_and_the_proxy_keeps_serving(cluster, db):
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    for sql, errno in [
        ("SELECT * FROM", 1064),
        ("FROBNICATE everything", 1064),
        ("SELECT * FROM nowhere", 1146),
        ("LOCK TABLES x WRITE", 1146),
        ("SELECT * FROM information_schema.INNODB_TRX JOIN information_schema.TABLES", 1235),  # per-server view
        ("CREATE TABLE broken (id INT,, x)", 1064),  # the region rejects it: nothing is published
        ("", 1065),
    ]:
        with pytest.raises(pymysql.err.MySQLError) as info:
            cur.execute(sql)
        assert info.value.args[0] == errno, (sql, info.value.args)
    cur.execute("SHOW TABLES")
    assert cur.fetchall() == ()
    assert cluster.rows_on_regions(db, "broken") == {}
    with pytest.raises(pymysql.err.MySQLError) as info:
        cluster.connect(user="root", password="wrong")
    assert info.value.args[0] == 1045
    with pytest.raises(pymysql.err.MySQLError) as info:
        cluster.connect(user="nobody")
    assert info.value.args[0] == 1045
    app = cluster.connect(user="app", password="s3cret")
    app.cursor().execute("SELECT 1")
    app.close()
    cur.execute("SELECT 1")
    assert cur.fetchone() == (1,)
    conn.close()


def test_nondeterministic_writes_are_pinned_or_refused_on_replicated_tables(cluster, db):
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    cur.execute("CREATE TABLE ev (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6) DEFAULT NOW(6), r DOUBLE)")
    cur.execute("INSERT INTO ev (r) VALUES (RAND())")
    cur.execute("INSERT INTO ev (r) VALUES (RAND()), (RAND())")
    copies = cluster.rows_on_regions(db, "ev", "id")
    first, second = copies.values()
    assert first == second  # NOW(6) defaults and RAND() are pinned to the primary's
    with pytest.raises(pymysql.err.MySQLError) as info:
        cur.execute("UPDATE ev SET r = UUID()")
    assert info.value.args[0] == 1235
    # LIMIT without ORDER BY: ordered by the primary key, so both copies lose the same rows.
    cur.execute("UPDATE ev SET r = -1 LIMIT 2")
    assert cur.rowcount == 2
    cur.execute("DELETE FROM ev LIMIT 1")
    assert cur.rowcount == 1
    first, second = cluster.rows_on_regions(db, "ev", "id").values()
    assert first == second and [r[2] for r in first] == [-1.0, first[1][2]]
    cur.execute("DELETE FROM ev ORDER BY id LIMIT 1")
    assert cur.rowcount == 1
    # A table with no key: ordered by every column (rows equal in all are interchangeable).
    cur.execute("CREATE TABLE heap (v INT, w VARCHAR(5))")
    cur.execute("INSERT INTO heap VALUES (2, 'b'), (1, 'z'), (1, 'a'), (1, 'a')")
    cur.execute("DELETE FROM heap LIMIT 2")
    cur.execute("UPDATE heap SET w = 'x' WHERE v < 3 LIMIT 1")
    assert cur.rowcount == 1
    first, second = cluster.rows_on_regions(db, "heap", "v, w").values()
    assert first == second == [(1, "x"), (2, "b")]
    conn.close()


def test_a_region_that_refuses_connections_gets_an_error_not_a_hang(cluster, db):
    """Place a table on a registered region whose MariaDB port is closed."""
    import asyncio
    import time

    from minisql.localstack import free_port
    from topology import RegionInfo, TablePlacement, Topology

    async def place(add: bool) -> None:
        topo = Topology.for_zookeeper(cluster.zk_hosts, cluster.zk_root)
        await topo.start()
        try:
            if add:
                await topo.register_region(RegionInfo("rdead", "127.0.0.1", free_port(), 0, "", time.time()))
                await topo.update_placement(lambda p: p.with_table(TablePlacement(db, "ghost", "rdead", {})))
            else:
                await topo.update_placement(lambda p: p.without_table(db, "ghost"))
                await topo.unregister_region("rdead")
        finally:
            await topo.close()

    asyncio.run(place(True))
    try:
        conn = cluster.connect(database=db)
        cur = conn.cursor()
        deadline = time.monotonic() + 10
        while True:  # the proxy's placement watch may take a moment
            try:
                cur.execute("SELECT * FROM ghost")
            except pymysql.err.MySQLError as e:
                if e.args[0] == 1146 and time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                assert e.args[0] == 2003, e.args
                assert "rdead" in e.args[1]
                break
            raise AssertionError("a query on an unreachable region returned rows")
        cur.execute("SELECT 1")  # the session and the proxy keep serving
        assert cur.fetchone() == (1,)
        conn.close()
    finally:
        asyncio.run(place(False))


def _replica_of(cluster, db, table):
    return next(iter(cluster.state()["placement"].table(db, table).replicas))


def test_a_write_that_fails_on_the_replica_is_undone_on_the_primary(cluster, db):
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    cur.execute("CREATE TABLE u (id INT PRIMARY KEY, v INT)")
    cur.execute("INSERT INTO u VALUES (1, 1)")
    # Damage the replica behind the proxy's back: it now holds a row the primary lacks.
    direct = cluster.connect_region(_replica_of(cluster, db, "u"))
    direct.cursor().execute(f"INSERT INTO `{db}`.u VALUES (2, 99)")
    direct.close()

    with pytest.raises(pymysql.err.MySQLError) as info:  # primary accepts id 2, the replica cannot
        cur.execute("INSERT INTO u VALUES (2, 2)")
    assert "replica" in info.value.args[1]
    cur.execute("SELECT id FROM u ORDER BY id")
    assert cur.fetchall() == ((1,),)  # the primary was rolled back

    with pytest.raises(pymysql.err.MySQLError) as info:  # affected rows differ: 1 on primary, 2 on replica
        cur.execute("UPDATE u SET v = v + 1")
    assert "disagree" in info.value.args[1]
    cur.execute("SELECT v FROM u")
    assert cur.fetchall() == ((1,),)

    # Inside a transaction the whole transaction goes.
    conn.begin()
    cur.execute("INSERT INTO u VALUES (3, 3)")
    with pytest.raises(pymysql.err.MySQLError) as info:
        cur.execute("INSERT INTO u VALUES (2, 2)")
    assert "transaction was rolled back" in info.value.args[1]
    cur.execute("SELECT id FROM u ORDER BY id")
    assert cur.fetchall() == ((1,),)  # id 3 went with the transaction
    conn.close()


def test_client_character_sets_round_trip(cluster, db):
    text = "café ñ"
    conn = cluster.connect(database=db, charset="latin1")  # handshake charset latin1
    cur = conn.cursor()
    cur.execute("CREATE TABLE words (id INT PRIMARY KEY, w VARCHAR(20)) DEFAULT CHARSET=utf8mb4")
    cur.execute("INSERT INTO words VALUES (1, %s)", (text,))
    cur.execute("SELECT w FROM words WHERE id = 1")
    assert cur.fetchone()[0] == text
    conn.close()

    conn = cluster.connect(database=db, charset="utf8mb4")
    cur = conn.cursor()
    cur.execute("SELECT w FROM words")
    assert cur.fetchone()[0] == text
    cur.execute("INSERT INTO words VALUES (2, '日本')")
    conn.close()
    # Stored as the right characters on both copies, not as mojibake.
    for rows in cluster.rows_on_regions(db, "words", "id").values():
        assert rows == [(1, text), (2, "日本")]

    conn = cluster.connect(database=db)
    cur = conn.cursor()
    with pytest.raises(pymysql.err.MySQLError) as info:
        cur.execute("SET NAMES no_such_charset")
    assert info.value.args[0] == 1235
    cur.execute("SELECT COUNT(*) FROM words")
    assert cur.fetchone()[0] == 2
    conn.close()


def test_client_found_rows_is_honoured(cluster, db):
    from pymysql.constants import CLIENT

    plain = cluster.connect(database=db)
    plain.cursor().execute("CREATE TABLE fr (id INT PRIMARY KEY, v INT)")
    plain.cursor().execute("INSERT INTO fr VALUES (1, 1), (2, 2)")
    cur = plain.cursor()
    assert cur.execute("UPDATE fr SET v = 1") == 1  # only row 2 changes
    plain.close()
    orm = cluster.connect(database=db, client_flag=CLIENT.FOUND_ROWS)  # what SQLAlchemy asks for
    assert orm.cursor().execute("UPDATE fr SET v = 1") == 2  # rows matched, not changed
    orm.close()


def test_multi_statements_return_every_result_in_order(cluster, db):
    from pymysql.constants import CLIENT

    conn = cluster.connect(database=db, client_flag=CLIENT.MULTI_STATEMENTS)
    cur = conn.cursor()
    cur.execute("CREATE TABLE ms (id INT PRIMARY KEY, v VARCHAR(10))")
    cur.execute("INSERT INTO ms VALUES (1, 'a;b'); SELECT v FROM ms WHERE id = 1; /* c;omment */ SELECT 2; UPDATE ms SET v = 'x' WHERE id = 1")
    assert cur.rowcount == 1  # the INSERT
    assert cur.nextset() and cur.fetchall() == (("a;b",),)
    assert cur.nextset() and cur.fetchall() == ((2,),)
    assert cur.nextset() and cur.rowcount == 1  # the UPDATE
    assert not cur.nextset()
    # An error ends the query: what follows it does not run.
    with pytest.raises(pymysql.err.MySQLError) as info:
        cur.execute("SELECT 1; SELECT * FROM no_such_table; INSERT INTO ms VALUES (9, 'never')")
        while cur.nextset():
            pass
    assert info.value.args[0] == 1146
    conn.close()
    check = cluster.connect(database=db)
    with check.cursor() as c2:
        c2.execute("SELECT id, v FROM ms ORDER BY id")
        assert c2.fetchall() == ((1, "x"),)
    check.close()
    for rows in cluster.rows_on_regions(db, "ms").values():
        assert rows == [(1, "x")]


def test_flush_reaches_every_region_and_locking_forms_are_refused(cluster, db):
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    cur.execute("CREATE TABLE fl (id INT PRIMARY KEY)")
    for sql in ("FLUSH TABLES", "FLUSH TABLES fl", "FLUSH PRIVILEGES", "FLUSH STATUS"):
        cur.execute(sql)
    with pytest.raises(pymysql.err.MySQLError) as info:
        cur.execute("FLUSH TABLES WITH READ LOCK")
    assert info.value.args[0] == 1235
    cur.execute("SELECT COUNT(*) FROM fl")  # the session still works
    assert cur.fetchone() == (0,)
    conn.close()


def test_a_deadlocked_transaction_is_gone_from_every_copy(cluster, db):
    """MariaDB rolls the deadlock victim's whole transaction back on the primary;
    its earlier statements must not survive on the replica (sysbench's next
    BEGIN commits implicitly what is still open)."""
    import threading

    admin = cluster.connect(database=db)
    admin.cursor().execute("CREATE TABLE dl (id INT PRIMARY KEY, v INT)")
    admin.cursor().execute("INSERT INTO dl VALUES (1, 0), (2, 0)")
    a = cluster.connect(database=db)
    b = cluster.connect(database=db)
    ca, cb = a.cursor(), b.cursor()
    ca.execute("BEGIN")
    cb.execute("BEGIN")
    ca.execute("UPDATE dl SET v = 10 WHERE id = 1")
    cb.execute("UPDATE dl SET v = 20 WHERE id = 2")
    errors: dict[str, int] = {}

    def cross(name, cur, row):
        try:
            cur.execute(f"UPDATE dl SET v = v + 1 WHERE id = {row}")
        except pymysql.err.MySQLError as e:
            errors[name] = e.args[0]

    t = threading.Thread(target=cross, args=("a", ca, 2))
    t.start()
    time.sleep(0.5)  # a waits for b's row lock on the primary
    cross("b", cb, 1)  # b waits for a's: a cycle, MariaDB picks a victim
    t.join(timeout=60)
    assert list(errors.values()) == [1213], errors
    victim, survivor = (ca, cb) if "a" in errors else (cb, ca)
    victim.execute("BEGIN")  # implicitly commits whatever is still open of the victim's transaction
    victim.execute("COMMIT")
    survivor.execute("COMMIT")
    copies = list(cluster.rows_on_regions(db, "dl", "id").values())
    assert len(copies) == 2 and copies[0] == copies[1], copies
    assert copies[0] == ([(1, 1), (2, 20)] if "a" in errors else [(1, 10), (2, 1)])
    for conn in (a, b, admin):
        conn.close()
