"""LOAD DATA LOCAL INFILE, stored procedures and functions, reads of information_schema
and the `mysql` schema, through a real 3-region cluster, with PyMySQL in its default
mode (autocommit off) where it matters."""

from __future__ import annotations


import subprocess
from decimal import Decimal

import pymysql
import pytest

from .cluster import fresh_database, running_cluster


@pytest.fixture(scope="module")
def cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory):
    yield from running_cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory, "routines", users={"root": ""})


@pytest.fixture()
def db(cluster):
    return fresh_database(cluster, "r")


def default_client(cluster, db, **kwargs):
    """PyMySQL as an application opens it: autocommit off."""
    return pymysql.connect(host="127.0.0.1", port=cluster.proxy_port, user="root", password="", database=db, **kwargs)


def test_load_data_local_reaches_every_copy_identically(cluster, db, tmp_path):
    admin = cluster.connect(database=db)
    admin.cursor().execute("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, a INT, b VARCHAR(20), "
                           "at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))")
    data = tmp_path / "rows.csv"
    data.write_text("".join(f"{i},row-{i}\n" for i in range(30000)))  # ~0.4 MB: several packets each way

    conn = default_client(cluster, db, local_infile=True)
    cur = conn.cursor()
    cur.execute(f"LOAD DATA LOCAL INFILE '{data}' INTO TABLE t FIELDS TERMINATED BY ',' (a, b)")
    assert cur.rowcount == 30000
    conn.rollback()  # autocommit off: the load was part of a transaction
    cur.execute("SELECT COUNT(*) FROM t")
    assert cur.fetchone()[0] == 0
    cur.execute(f"LOAD DATA LOCAL INFILE '{data}' INTO TABLE t FIELDS TERMINATED BY ',' (a, b)")
    conn.commit()
    copies = cluster.rows_on_regions(db, "t", "id")
    assert len(copies) == 2
    first, second = copies.values()
    assert len(first) == 30000 and first == second  # same ids, same timestamps
    assert first[-1][1:3] == (29999, "row-29999")

    # A file the client cannot open: the client's error, nothing loaded, the connection goes on.
    with pytest.raises(pymysql.err.OperationalError):
        cur.execute(f"LOAD DATA LOCAL INFILE '{tmp_path / 'missing.csv'}' INTO TABLE t FIELDS TERMINATED BY ','")
    conn.commit()
    cur.execute("SELECT COUNT(*) FROM t")
    assert cur.fetchone()[0] == 30000

    # A key clash in the middle of the file: as MariaDB does with LOCAL (it cannot stop
    # the client's transfer), the row is skipped with a warning -- on every copy alike.
    clash = tmp_path / "clash.csv"
    taken = first[0][0]  # (the rolled-back load used up ids: InnoDB does not give them back)
    clash.write_text("".join(f"{i},{i},x\n" for i in (90000, 90001, taken, 90002)))
    cur.execute(f"LOAD DATA LOCAL INFILE '{clash}' INTO TABLE t FIELDS TERMINATED BY ',' (id, a, b)")
    assert cur.rowcount == 3
    cur.execute("SHOW WARNINGS")
    assert [w[1] for w in cur.fetchall()] == [1062]
    conn.commit()
    copies = list(cluster.rows_on_regions(db, "t", "id").values())
    assert len(copies[0]) == 30003 and copies[0] == copies[1]
    cur.execute("SELECT 1")
    assert cur.fetchone() == (1,)
    conn.close()

    # A client that did not offer local files gets MariaDB's refusal, before any file is asked for.
    plain = default_client(cluster, db)
    with pytest.raises(pymysql.err.MySQLError) as info:
        plain.cursor().execute(f"LOAD DATA LOCAL INFILE '{data}' INTO TABLE t")
    assert info.value.args[0] == 4166
    plain.close()
    admin.close()


def test_stored_procedures_and_functions(cluster, db):
    conn = default_client(cluster, db)
    cur = conn.cursor()
    cur.execute("CREATE TABLE trees (pos INT, tree CHAR(20))")
    cur.executemany("INSERT INTO trees VALUES (%s, %s)", list(enumerate("ash birch cedar larch pine".split())))
    conn.commit()
    cur.execute("CREATE PROCEDURE find_tree(IN t VARCHAR(255)) BEGIN SELECT pos FROM trees WHERE tree = t; END")
    cur.execute("CREATE PROCEDURE two_results() BEGIN SELECT COUNT(*) FROM trees; SELECT tree FROM trees ORDER BY pos; END")
    cur.execute("CREATE PROCEDURE plant(IN p INT, IN t CHAR(20)) BEGIN INSERT INTO trees VALUES (p, t); "
                "UPDATE trees SET tree = UPPER(tree) WHERE pos = p; END")
    cur.execute("CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2")
    # Every region holds every routine (a CALL can run where its tables are).
    for region in ("r1", "r2", "r3"):
        direct = cluster.connect_region(region)
        with direct.cursor() as dcur:
            dcur.execute("SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA=%s ORDER BY 1", (db,))
            assert [r[0] for r in dcur.fetchall()] == ["find_tree", "plant", "twice", "two_results"], region
        direct.close()

    cur.callproc("find_tree", ("larch",))  # SET @_find_tree_0 = ..., then CALL find_tree(@_find_tree_0)
    assert cur.fetchall() == ((3,),)
    cur.nextset()
    cur.execute("CALL two_results()")
    assert cur.fetchall() == ((5,),)
    assert cur.nextset()
    assert [r[0] for r in cur.fetchall()] == ["ash", "birch", "cedar", "larch", "pine"]
    cur.execute("SELECT twice(pos) FROM trees WHERE tree = 'pine'")
    assert cur.fetchone() == (8,)

    cur.execute("CALL plant(9, 'oak')")  # a write: the primary, then the replica
    conn.commit()
    copies = cluster.rows_on_regions(db, "trees", "pos")
    assert len(copies) == 2 and all(rows[-1] == (9, "OAK") for rows in copies.values())
    cur.execute("CALL plant(10, 'elm')")
    conn.rollback()
    assert all(len(rows) == 6 for rows in cluster.rows_on_regions(db, "trees", "pos").values())

    with pytest.raises(pymysql.err.MySQLError) as info:
        cur.execute("CALL no_such_procedure()")
    assert info.value.args[0] == 1305

    cur.execute("DROP PROCEDURE plant")
    cur.execute("DROP FUNCTION twice")
    with pytest.raises(pymysql.err.MySQLError) as info:
        cur.execute("CALL plant(11, 'fir')")
    assert info.value.args[0] == 1305
    conn.close()


def test_triggers_fire_identically_on_every_copy(cluster, db):
    """Connector/Python's WL3253 shape (two triggers, one PRECEDES the other),
    in PyMySQL's default mode, then what each copy holds."""
    conn = default_client(cluster, db)
    cur = conn.cursor()
    cur.execute("CREATE TABLE account (ac_no INT PRIMARY KEY, amount INT, doubled INT)")
    cur.execute("CREATE TRIGGER ac_sum BEFORE INSERT ON account FOR EACH ROW SET @sum = @sum + NEW.amount")
    cur.execute("CREATE TRIGGER ac_trans BEFORE INSERT ON account FOR EACH ROW PRECEDES ac_sum "
                "SET @dep = @dep + IF(NEW.amount > 0, NEW.amount, 0), NEW.doubled = NEW.amount * 2")
    cur.execute("SET @sum = 0, @dep = 0")
    cur.executemany("INSERT INTO account (ac_no, amount) VALUES (%s, %s)", [(1, 100), (2, 100), (3, -100)])
    conn.commit()
    cur.execute("SELECT @sum, @dep")
    assert cur.fetchone() == (100, 200)
    copies = cluster.rows_on_regions(db, "account", "ac_no")
    assert len(copies) == 2 and all(rows == [(1, 100, 200), (2, 100, 200), (3, -100, -200)] for rows in copies.values())
    cur.execute("SELECT trigger_name, action_order FROM information_schema.triggers WHERE trigger_schema = %s "
                "ORDER BY 1", (db,))
    assert cur.fetchall() == (("ac_sum", 2), ("ac_trans", 1))  # listed once, from the primary
    cur.execute("SHOW TRIGGERS LIKE 'acc%'")
    assert sorted(r[0] for r in cur.fetchall()) == ["ac_sum", "ac_trans"]
    cur.execute("SHOW CREATE TRIGGER ac_sum")
    assert "SET @sum = @sum + NEW.amount" in cur.fetchone()[2]

    cur.execute("CREATE TABLE ledger (id INT)")  # a body reaching another table: it is colocated first
    cur.execute("CREATE TRIGGER audit AFTER INSERT ON account FOR EACH ROW INSERT INTO ledger VALUES (NEW.ac_no)")
    with pytest.raises(pymysql.err.MySQLError) as info:  # a CALL: the tables it reaches cannot be named
        cur.execute("CREATE TRIGGER via_call AFTER INSERT ON account FOR EACH ROW CALL nothing(NEW.ac_no)")
    assert info.value.args[0] == 1235

    cur.execute("DROP TRIGGER ac_trans")
    cur.execute("DROP TRIGGER IF EXISTS ac_trans")
    cur.execute("SHOW WARNINGS")
    assert [r[1] for r in cur.fetchall()] == [1360]
    with pytest.raises(pymysql.err.MySQLError) as info:
        cur.execute("DROP TRIGGER ac_trans")
    assert info.value.args[0] == 1360
    cur.execute("INSERT INTO account (ac_no, amount) VALUES (4, 5)")
    conn.commit()
    assert all(rows[-1] == (4, 5, None) for rows in cluster.rows_on_regions(db, "account", "ac_no").values())
    ledgers = cluster.rows_on_regions(db, "ledger")
    assert len(ledgers) == 2 and all(rows == [(4,)] for rows in ledgers.values())  # the audit trigger, on both copies
    conn.close()


def test_a_procedure_writing_tables_on_different_regions_is_refused(cluster, db):
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    placements = {}
    for i in range(6):
        cur.execute(f"CREATE TABLE t{i} (a INT)")
        placements[f"t{i}"] = frozenset(cluster.state()["placement"].table(db, f"t{i}").write_regions)
    first = "t0"
    other = next(name for name, regions in placements.items() if regions != placements[first])
    cur.execute(f"CREATE PROCEDURE spread() BEGIN INSERT INTO {first} VALUES (1); INSERT INTO {other} VALUES (1); END")
    with pytest.raises(pymysql.err.MySQLError) as info:
        cur.execute("CALL spread()")
    assert info.value.args[0] == 1235
    assert all(rows == [] for t in (first, other) for rows in cluster.rows_on_regions(db, t).values())
    conn.close()


def test_the_mysql_schema_is_readable(cluster):
    conn = default_client(cluster, "mysql")
    cur = conn.cursor()
    cur.execute("SELECT user FROM user WHERE user = 'root'")
    assert cur.fetchall()
    cur.execute("SELECT plugin FROM mysql.user WHERE CONCAT(user, '@', host) = CURRENT_USER()")
    assert cur.fetchone() is not None
    conn.close()


def test_information_schema_lists_each_table_once(cluster, db):
    conn = default_client(cluster, db)
    cur = conn.cursor()
    for i in range(5):
        cur.execute(f"CREATE TABLE t{i} (id INT PRIMARY KEY, v VARCHAR(10))")
    cur.execute("INSERT INTO t3 VALUES (1, 'a'), (2, 'b')")
    conn.commit()
    cur.execute("SELECT * FROM information_schema.TABLES")  # PyMySQL's own suite does this
    rows = cur.fetchall()
    mine = sorted(r[2] for r in rows if r[1] == db)
    assert mine == ["t0", "t1", "t2", "t3", "t4"]
    assert len([r for r in rows if (r[1], r[2]) == ("information_schema", "TABLES")]) == 1
    cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME DESC LIMIT 2", (db,))
    assert cur.fetchall() == (("t4",), ("t3",))
    # One named table (how ORMs reflect): its primary answers.
    cur.execute("SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 't3' "
                "ORDER BY ORDINAL_POSITION", (db,))
    assert cur.fetchall() == (("id", "int"), ("v", "varchar"))
    cur.execute("SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1, 2")
    assert len(cur.fetchall()) == 10
    # The same everywhere: any region answers.
    cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (db,))
    assert cur.fetchall() == ((db,),)
    # Any shape (aggregates, joins, subqueries): the views merged, then one region runs it.
    cur.execute("SELECT COUNT(*), SUM(TABLE_ROWS >= 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (db,))
    assert cur.fetchone() == (5, 5)
    cur.execute("SELECT t.TABLE_NAME, COUNT(*) FROM information_schema.TABLES t JOIN information_schema.COLUMNS c "
                "ON c.TABLE_SCHEMA = t.TABLE_SCHEMA AND c.TABLE_NAME = t.TABLE_NAME WHERE t.TABLE_SCHEMA = %s "
                "GROUP BY t.TABLE_NAME ORDER BY 1", (db,))
    assert cur.fetchall() == tuple((f"t{i}", 2) for i in range(5))
    cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME IN "
                "(SELECT TABLE_NAME FROM information_schema.STATISTICS WHERE INDEX_NAME = 'PRIMARY') ORDER BY 1 LIMIT 2",
                (db,))
    assert cur.fetchall() == (("t0",), ("t1",))
    cur.execute("SELECT COUNT(DISTINCT TABLE_SCHEMA) > 3 FROM information_schema.COLUMNS")  # system schemas once
    assert cur.fetchone() == (1,)
    conn.close()


def test_insert_select_across_regions_writes_the_same_rows_everywhere(cluster, db):
    """The SELECT's table has no copy on one of the target's regions: the proxy
    reads it once and writes the rows to every copy (Connector/Python's
    BugOra17826833 shape, in PyMySQL's default mode)."""
    admin = cluster.connect(database=db)
    cur = admin.cursor()
    placements = {}
    for i in range(6):
        cur.execute(f"CREATE TABLE src{i} (id INT PRIMARY KEY, name VARCHAR(20) CHARACTER SET latin1, "
                    "at DATETIME(3), amount DECIMAL(10,2), raw VARBINARY(8))")
        placements[f"src{i}"] = frozenset(cluster.state()["placement"].table(db, f"src{i}").write_regions)
    target = "src0"
    source = next(name for name, regions in placements.items() if regions != placements[target])
    cur.executemany(f"INSERT INTO {source} VALUES (%s, %s, %s, %s, %s)",
                    [(1, "Zürich", "2024-02-29 23:59:59.125", "12.50", b"\x00'\\"), (2, None, None, "-0.01", None),
                     (3, "o'hare", "1999-12-31 00:00:00", "0.00", b"")])
    admin.close()

    conn = default_client(cluster, db)
    c = conn.cursor()
    c.execute(f"INSERT INTO {target} SELECT * FROM {source} WHERE id < 3")
    assert c.rowcount == 2
    conn.rollback()  # the transaction PyMySQL's default mode opened: nothing stays, anywhere
    assert all(rows == [] for rows in cluster.rows_on_regions(db, target, "id").values())
    c.execute(f"INSERT INTO {target} (id, name, at, amount, raw) SELECT id, name, at, amount, raw FROM {source}")
    c.execute(f"INSERT INTO {target} (id, name) SELECT id, 'dup' FROM {source} WHERE id = 3 "
              "ON DUPLICATE KEY UPDATE name = VALUES(name)")
    assert c.rowcount == 2  # one row updated
    c.execute(f"INSERT INTO {target} SELECT * FROM {source} WHERE id > 100")
    assert c.rowcount == 0
    conn.commit()
    copies = cluster.rows_on_regions(db, target, "id")
    want = cluster.rows_on_regions(db, source, "id")
    expected = [r if r[0] != 3 else (3, "dup") + r[2:] for r in next(iter(want.values()))]
    assert len(copies) == 2 and all(rows == expected for rows in copies.values()), copies
    with pytest.raises(pymysql.err.MySQLError) as info:
        c.execute(f"INSERT INTO {target} SELECT * FROM {source}")
    assert info.value.args[0] == 1062  # MariaDB's own answer, from the primary; nothing written elsewhere
    conn.rollback()
    assert cluster.rows_on_regions(db, target, "id") == copies
    c.execute(f"INSERT INTO {target} (id, name) SELECT id + 10, LEFT(UUID(), 8) FROM {target}")  # evaluated once
    conn.commit()
    first, second = cluster.rows_on_regions(db, target, "id").values()
    assert first == second and len({r[1] for r in first if r[0] > 10}) == 3
    # MariaDB judges the client's own text over both tables, as on one server:
    with pytest.raises(pymysql.err.MySQLError) as info:  # `name` is in both tables
        c.execute(f"INSERT INTO {target} SELECT * FROM {source} ON DUPLICATE KEY UPDATE name = name")
    assert info.value.args[0] == 1052
    conn.rollback()
    c.execute(f"INSERT INTO {target} SELECT * FROM {source} s ON DUPLICATE KEY UPDATE name = s.amount")
    c.execute(f"UPDATE {target} t JOIN {source} s ON s.id = t.id SET t.amount = s.amount * 2 WHERE s.id = 1")
    assert c.rowcount == 1
    c.execute(f"DELETE t FROM {target} t JOIN {source} s ON s.id + 10 = t.id WHERE s.id = 2")
    assert c.rowcount == 1
    conn.commit()
    first, second = cluster.rows_on_regions(db, target, "id").values()
    assert first == second
    assert [r[:2] for r in first if r[0] < 10] == [(1, "12.50"), (2, "-0.01"), (3, "0.00")]
    assert next(r for r in first if r[0] == 1)[3] == Decimal("25.00") and 12 not in [r[0] for r in first]
    conn.close()


def test_a_join_of_tables_sharing_no_region_is_answered(cluster, db):
    """Three tables placed on the three region pairs (Connector/Python's
    BugOra35278365 shape): the proxy copies the missing one for the statement."""
    admin = cluster.connect(database=db)
    cur = admin.cursor()
    placements = {}
    for i in range(6):
        cur.execute(f"CREATE TABLE j{i} (id INT PRIMARY KEY, v VARCHAR(10), g INT AS (id * 10) VIRTUAL)")
        cur.execute(f"INSERT INTO j{i} (id, v) VALUES (1, 'a{i}'), (2, 'b{i}')")
        placements[f"j{i}"] = frozenset(cluster.state()["placement"].table(db, f"j{i}").write_regions)
    trio = next((a, b, c) for a in placements for b in placements for c in placements
                if not placements[a] & placements[b] & placements[c])
    admin.close()
    a, b, c = trio
    join = (f"SELECT {a}.v, {b}.v, {c}.v, {c}.g FROM {a} JOIN {b} ON {b}.id = {a}.id "
            f"JOIN {c} ON {c}.id = {a}.id ORDER BY {a}.id")
    conn = default_client(cluster, db)
    c_ = conn.cursor()
    c_.execute(join)
    assert c_.fetchall() == ((f"a{a[1]}", f"a{b[1]}", f"a{c[1]}", 10), (f"b{a[1]}", f"b{b[1]}", f"b{c[1]}", 20))
    for table in trio:  # the transaction's own uncommitted rows are part of what is copied
        c_.execute(f"INSERT INTO {table} (id, v) VALUES (3, 'new')")
    c_.execute(join)  # again: the first statement's copies are gone
    assert c_.fetchall()[-1] == ("new", "new", "new", 30)
    conn.rollback()
    c_.execute(join)
    assert len(c_.fetchall()) == 2
    conn.close()


def test_create_table_select_makes_a_placed_table_with_mariadbs_shape(cluster, db):
    admin = cluster.connect(database=db)
    cur = admin.cursor()
    for i in range(3):
        cur.execute(f"CREATE TABLE s{i} (id INT PRIMARY KEY, v VARCHAR(10), d DECIMAL(6,2))")
        cur.execute(f"INSERT INTO s{i} VALUES (1, 'x{i}', 1.50), (2, 'y{i}', NULL)")
    admin.close()
    conn = default_client(cluster, db)  # autocommit off: CREATE ... SELECT commits, as DDL does
    c = conn.cursor()
    c.execute("CREATE TABLE c1 (PRIMARY KEY (id)) SELECT s0.id, s0.v, s1.d FROM s0 JOIN s1 ON s1.id = s0.id "
              "JOIN s2 ON s2.id = s0.id")
    assert c.rowcount == 2
    conn.rollback()  # nothing to undo: the statement committed
    placed = cluster.state()["placement"].table(db, "c1")
    assert placed is not None and len(placed.write_regions) == 2
    copies = cluster.rows_on_regions(db, "c1", "id")
    assert sorted(copies) == sorted(placed.write_regions)
    assert all(rows == [(1, "x0", Decimal("1.50")), (2, "y0", None)] for rows in copies.values())
    c.execute("SHOW CREATE TABLE c1")
    definition = c.fetchone()[1]
    assert "`d` decimal(6,2) DEFAULT NULL" in definition and "PRIMARY KEY (`id`)" in definition

    with pytest.raises(pymysql.err.MySQLError) as info:  # strict mode: MariaDB refuses the rows, no table is made
        c.execute("CREATE TABLE c2 (v VARCHAR(1)) SELECT v FROM s0")
    assert info.value.args[0] == 1406
    assert cluster.state()["placement"].table(db, "c2") is None
    c.execute("SET STATEMENT sql_mode='' FOR CREATE TABLE c2 (v VARCHAR(1)) SELECT v FROM s0")  # truncated, not refused
    assert {tuple(rows) for rows in cluster.rows_on_regions(db, "c2", "v").values()} == {(("x",), ("y",))}
    c.execute("SHOW WARNINGS")  # MariaDB's own 1265s, from the CREATE ... SELECT that shaped the table
    assert {r[1] for r in c.fetchall()} == {1265}
    conn.close()
    # the OK packet as libmariadb parses it (its info string length-prefixed, as MariaDB sends it)
    cli = subprocess.run(["mariadb", "-h127.0.0.1", f"-P{cluster.proxy_port}", "-uroot", db, "-vv", "-e",
                          "CREATE TABLE c3 SELECT id FROM s1"], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0 and "Records: 2  Duplicates: 0  Warnings: 0" in cli.stdout, cli.stderr
    conn = default_client(cluster, db)
    c = conn.cursor()
    c.execute("CREATE TABLE IF NOT EXISTS c1 SELECT 1 AS id")
    c.execute("SHOW WARNINGS")
    assert [r[1] for r in c.fetchall()] == [1050]
    conn.close()


def test_set_statement_for_ddl_reaches_every_region(cluster, db):
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    with pytest.raises(pymysql.err.MySQLError) as info:  # the settings reach the regions that run the DDL
        cur.execute("SET STATEMENT sql_mode='STRICT_ALL_TABLES,NO_ZERO_DATE' FOR "
                    "CREATE TABLE dates (d DATE DEFAULT '0000-00-00')")
    assert info.value.args[0] == 1067
    assert cluster.state()["placement"].table(db, "dates") is None
    cur.execute("SET STATEMENT sql_mode='' FOR CREATE TABLE dates (d DATE DEFAULT '0000-00-00')")
    assert len(cluster.rows_on_regions(db, "dates")) == 2
    cur.execute("SELECT @@sql_mode")  # for that statement only
    assert "STRICT_TRANS_TABLES" in cur.fetchone()[0]
    conn.close()


def test_create_table_like_and_create_or_replace(cluster, db):
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    cur.execute("CREATE TABLE base (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(5) NOT NULL DEFAULT 'z')")
    cur.execute("INSERT INTO base (v) VALUES ('a'), ('b')")
    cur.execute("CREATE TABLE twin LIKE base")
    cur.execute("SHOW CREATE TABLE twin")
    definition = cur.fetchone()[1]
    assert "`v` varchar(5) NOT NULL DEFAULT 'z'" in definition and "AUTO_INCREMENT=" not in definition
    assert len(cluster.rows_on_regions(db, "twin")) == 2
    cur.execute("CREATE OR REPLACE TABLE twin SELECT 5 AS x")
    assert {tuple(rows) for rows in cluster.rows_on_regions(db, "twin").values()} == {((5,),)}
    with pytest.raises(pymysql.err.MySQLError) as info:  # refused before anything is dropped
        cur.execute("CREATE OR REPLACE TABLE twin SELECT * FROM twin")
    assert info.value.args[0] == 1093
    cur.execute("SELECT x FROM twin")
    assert cur.fetchall() == ((5,),)
    conn.close()


def test_compound_statements_sequence_tables_and_update_ignore(cluster, db):
    """MTR's shapes: FOR ... END FOR outside a routine, the SEQUENCE engine's
    seq_1_to_N tables, UPDATE IGNORE; each copy ends the same."""
    conn = cluster.connect(database=db, client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
    cur = conn.cursor()
    cur.execute("CREATE TABLE nums (n INT PRIMARY KEY, t TINYINT)")
    cur.execute("FOR i IN 1..5 DO INSERT INTO nums VALUES (i, i * 10); END FOR;")
    cur.execute("INSERT INTO nums SELECT seq, 0 FROM seq_6_to_8")
    cur.execute("UPDATE IGNORE nums SET t = 1000 WHERE n = 1")  # out of range: clipped to 127, a warning
    cur.execute("BEGIN NOT ATOMIC DECLARE c INT; SELECT COUNT(*) INTO c FROM nums; SELECT c; END")
    assert cur.fetchall() == ((8,),)
    first, second = cluster.rows_on_regions(db, "nums", "n").values()
    assert first == second == [(1, 127), (2, 20), (3, 30), (4, 40), (5, 50), (6, 0), (7, 0), (8, 0)]
    cur.execute("SET @x := (SELECT t FROM nums WHERE n = 2)")  # read where nums is, set on every connection
    cur.execute("SELECT @x + 1, @x IS NULL")
    assert cur.fetchall() == ((21, 0),)
    cur.execute("SELECT t, n INTO @t, @n FROM nums WHERE n = 3")
    cur.execute("SELECT @t * 2, @n FROM seq_1_to_1")  # any region's connection: set on every one
    assert cur.fetchall() == ((60, 3),)
    with pytest.raises(pymysql.err.MySQLError) as info:
        cur.execute("SELECT t INTO @t FROM nums")
    assert info.value.args[0] == 1172
    conn.close()
