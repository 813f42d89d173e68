"""Schemas as applications create them, through a real 3-region cluster
(issue 7): tables linked by FOREIGN KEYs share their regions (colocation
groups), and DDL runs under the client session's own settings."""

from __future__ import annotations

import pymysql
import pytest

from .cluster import fresh_database, running_cluster


@pytest.fixture(scope="module")
def cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory):
    yield from running_cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory, "colo", users={"root": ""})


def copies(cluster, db: str, table: str) -> tuple[str, frozenset[str]]:
    t = cluster.state()["placement"].table(db, table)
    assert t is not None, f"{db}.{table} is not placed"
    return t.copies


def create_apart(cluster, cur, db: str, name: str, ddl: str, other: str) -> None:
    """CREATE TABLE `name` on other regions than `other` (the least-loaded
    pair depends on what earlier tests made: filler tables shift it)."""
    cur.execute(ddl)
    for i in range(6):
        if copies(cluster, db, name) != copies(cluster, db, other):
            return
        cur.execute(f"CREATE TABLE filler_{name}_{i} (x INT)")
        cur.execute(f"DROP TABLE {name}")
        cur.execute(ddl)
    raise AssertionError(f"{name} keeps landing with {other}")


def test_a_child_of_two_parents_on_other_regions_brings_them_together(cluster):
    db = fresh_database(cluster, "fk")
    # PyMySQL's defaults: autocommit off, no database at connect.
    conn = pymysql.connect(host="127.0.0.1", port=cluster.proxy_ports[0], user="root", password="")
    cur = conn.cursor()
    cur.execute(f"USE {db}")
    for name in ("p", "q", "r"):
        cur.execute(f"CREATE TABLE {name} (id INT PRIMARY KEY, label VARCHAR(10))")
    assert len({copies(cluster, db, n) for n in ("p", "q", "r")}) == 3  # three region pairs
    cur.execute("INSERT INTO p VALUES (1, 'p1'), (2, 'p2')")
    cur.execute("INSERT INTO q VALUES (1, 'q1'), (2, 'q2'), (3, 'q3')")
    conn.commit()

    cur.execute(
        "CREATE TABLE c (id INT PRIMARY KEY, pid INT NOT NULL, qid INT NOT NULL, "
        "FOREIGN KEY (pid) REFERENCES p (id) ON DELETE CASCADE, FOREIGN KEY (qid) REFERENCES q (id))"
    )
    assert copies(cluster, db, "c") == copies(cluster, db, "p") == copies(cluster, db, "q")
    cur.execute("INSERT INTO c VALUES (1, 1, 3), (2, 2, 1)")
    with pytest.raises(pymysql.err.IntegrityError) as e:
        cur.execute("INSERT INTO c VALUES (3, 9, 1)")
    assert e.value.args[0] == 1452
    conn.commit()
    cur.execute("SELECT c.id, p.label, q.label FROM c JOIN p ON p.id = c.pid JOIN q ON q.id = c.qid ORDER BY c.id")
    assert cur.fetchall() == ((1, "p1", "q3"), (2, "p2", "q1"))
    cur.execute("DELETE FROM p WHERE id = 1")  # cascades to c on every copy
    conn.commit()
    cur.execute("SELECT id FROM c")
    assert cur.fetchall() == ((2,),)

    # ALTER TABLE ... ADD FOREIGN KEY moves r (and its rows) into the group.
    cur.execute("INSERT INTO r VALUES (2, 'r2')")
    conn.commit()
    cur.execute("ALTER TABLE r ADD CONSTRAINT r_c FOREIGN KEY (id) REFERENCES c (id)")
    assert copies(cluster, db, "r") == copies(cluster, db, "c")
    placement = cluster.state()["placement"]
    group = placement.colocation_groups()[(db, "r")]
    assert group == tuple((db, n) for n in ("c", "p", "q", "r"))
    for name in ("p", "q", "c", "r"):
        rows = cluster.rows_on_regions(db, name)
        assert len(rows) == 2 and len({tuple(v) for v in rows.values()}) == 1, (name, rows)  # two equal copies, no orphan
    conn.close()


def test_ddl_runs_with_the_sessions_own_settings(cluster):
    db = fresh_database(cluster, "ss")
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    # foreign_key_checks = 0: a child before its parent, as MTR and dump files do.
    cur.execute("SET foreign_key_checks = 0")
    cur.execute("CREATE TABLE kid (id INT, mom INT, FOREIGN KEY (mom) REFERENCES mom (id))")
    cur.execute("CREATE TABLE mom (id INT PRIMARY KEY)")
    assert copies(cluster, db, "kid") == copies(cluster, db, "mom")
    cur.execute("DROP TABLE mom")  # a referenced parent: allowed with the checks off
    cur.execute("SET foreign_key_checks = 1")
    # sql_mode: the same DDL fails or works as the session's mode says.
    cur.execute("SET sql_mode = 'TRADITIONAL'")
    with pytest.raises(pymysql.err.MySQLError) as e:
        cur.execute("CREATE TABLE zd (d DATE DEFAULT '0000-00-00')")
    assert e.value.args[0] == 1067
    cur.execute("SET sql_mode = ''")
    cur.execute("CREATE TABLE zd (d DATE DEFAULT '0000-00-00')")
    # check_constraint_checks = 0: ALTER adds a constraint existing rows break.
    cur.execute("CREATE TABLE cc (a INT)")
    cur.execute("INSERT INTO cc VALUES (-1)")
    with pytest.raises(pymysql.err.MySQLError) as e:
        cur.execute("ALTER TABLE cc ADD CONSTRAINT pos CHECK (a > 0)")
    assert e.value.args[0] == 4025
    cur.execute("SET check_constraint_checks = 0")
    cur.execute("ALTER TABLE cc ADD CONSTRAINT pos CHECK (a > 0)")
    conn.close()


def test_rename_table_swaps_across_regions_and_follows_foreign_keys(cluster):
    db = fresh_database(cluster, "rn")
    other = fresh_database(cluster, "rn2")
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    cur.execute("CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(5))")
    create_apart(cluster, cur, db, "b", "CREATE TABLE b (id INT PRIMARY KEY, v VARCHAR(5))", "a")
    cur.execute("INSERT INTO a VALUES (1, 'was a')")
    cur.execute("INSERT INTO b VALUES (1, 'was b')")
    was_a, was_b = copies(cluster, db, "a"), copies(cluster, db, "b")
    cur.execute("RENAME TABLE a TO tmp, b TO a, tmp TO b")  # a swap: no region holds both
    assert (copies(cluster, db, "a"), copies(cluster, db, "b")) == (was_b, was_a)
    cur.execute("SELECT v FROM a")
    assert cur.fetchall() == (("was b",),)
    with pytest.raises(pymysql.err.MySQLError) as e:
        cur.execute("RENAME TABLE a TO b")
    assert e.value.args[0] == 1050
    with pytest.raises(pymysql.err.MySQLError) as e:
        cur.execute("RENAME TABLE nope TO z, a TO zz")  # all or nothing
    assert e.value.args[0] == 1146
    cur.execute("SHOW TABLES")
    assert sorted(r[0] for r in cur.fetchall() if not r[0].startswith("filler")) == ["a", "b"]
    # ALTER TABLE ... RENAME across databases with another change in the same statement.
    cur.execute(f"ALTER TABLE b RENAME TO {other}.b2, ADD COLUMN w INT DEFAULT 7")
    cur.execute(f"SELECT * FROM {other}.b2")
    assert cur.fetchall() == ((1, "was a", 7),)
    # A renamed parent: the child's FOREIGN KEY follows it, and so does the group.
    cur.execute("CREATE TABLE kid (id INT, aid INT, FOREIGN KEY (aid) REFERENCES a (id))")
    cur.execute(f"RENAME TABLE a TO {other}.parent")
    placement = cluster.state()["placement"]
    assert placement.table(db, "kid").references == ((other, "parent"),)
    assert set(placement.colocation_groups()[(db, "kid")]) == {(db, "kid"), (other, "parent")}
    for name, database in (("kid", db), ("parent", other), ("b2", other)):
        rows = cluster.rows_on_regions(database, name)
        assert len(rows) == 2 and len({tuple(v) for v in rows.values()}) == 1, (name, rows)
    conn.close()


def test_views_live_with_the_tables_they_read(cluster):
    db = fresh_database(cluster, "vw")
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    cur.execute("CREATE TABLE a (id INT PRIMARY KEY, v INT)")
    create_apart(cluster, cur, db, "b", "CREATE TABLE b (id INT PRIMARY KEY, w INT)", "a")
    cur.execute("INSERT INTO a VALUES (1, 10), (2, 20)")
    cur.execute("INSERT INTO b VALUES (1, 100)")
    cur.execute("CREATE VIEW ab AS SELECT a.id, a.v, b.w FROM a LEFT JOIN b ON b.id = a.id")
    assert copies(cluster, db, "ab") == copies(cluster, db, "a") == copies(cluster, db, "b")
    cur.execute("SELECT * FROM ab ORDER BY id")
    assert cur.fetchall() == ((1, 10, 100), (2, 20, None))
    # An updatable view with CHECK OPTION: writes reach every copy of its table.
    cur.execute("CREATE VIEW av AS SELECT id, v FROM a WHERE v > 5 WITH CHECK OPTION")
    cur.execute("INSERT INTO av VALUES (3, 30)")
    with pytest.raises(pymysql.err.MySQLError) as e:
        cur.execute("INSERT INTO av VALUES (4, 1)")
    assert e.value.args[0] == 1369
    rows = cluster.rows_on_regions(db, "a")
    assert len(rows) == 2 and all(r == [(1, 10), (2, 20), (3, 30)] for r in rows.values())
    cur.execute("SHOW FULL TABLES LIKE '%%'")
    assert [r for r in sorted(cur.fetchall()) if not r[0].startswith("filler")] == [
        ("a", "BASE TABLE"), ("ab", "VIEW"), ("av", "VIEW"), ("b", "BASE TABLE")]
    cur.execute("SHOW CREATE VIEW av")
    assert "WITH CASCADED CHECK OPTION" in cur.fetchone()[1]
    cur.execute(f"SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = '{db}' ORDER BY 1")
    assert cur.fetchall() == (("ab",), ("av",))
    # MariaDB's errors for the wrong kind of object.
    for sql, errno in (("CREATE VIEW ab AS SELECT 1", 1050), ("CREATE OR REPLACE VIEW a AS SELECT 1", 1347),
                       ("DROP TABLE ab", 1965), ("DROP VIEW a", 4092), ("ALTER TABLE ab ADD c INT", 1347)):
        with pytest.raises(pymysql.err.MySQLError) as e:
            cur.execute(sql)
        assert e.value.args[0] == errno, sql
    cur.execute("ALTER VIEW ab AS SELECT id, w FROM b")
    cur.execute("CREATE VIEW vv AS SELECT * FROM ab")  # a view of a view
    cur.execute("SELECT * FROM vv")
    assert cur.fetchall() == ((1, 100),)
    cur.execute("DROP VIEW IF EXISTS vv, nope")
    cur.execute("SHOW WARNINGS")
    assert [r[1] for r in cur.fetchall()] == [4092]
    cur.execute("DROP VIEW ab, av")
    cur.execute("SHOW FULL TABLES WHERE Table_type = 'VIEW'")
    assert cur.fetchall() == ()
    conn.close()


def test_sequences_advance_alike_on_every_copy(cluster):
    db = fresh_database(cluster, "sq")
    conn = pymysql.connect(host="127.0.0.1", port=cluster.proxy_ports[0], user="root", password="", database=db)
    cur = conn.cursor()  # PyMySQL's default: autocommit off
    cur.execute("CREATE SEQUENCE s START WITH 10 INCREMENT BY 5")
    assert cluster.state()["placement"].table(db, "s").kind == "sequence"
    cur.execute("SELECT NEXTVAL(s), NEXT VALUE FOR s")
    assert cur.fetchone() == (10, 15)
    cur.execute("SELECT LASTVAL(s), PREVIOUS VALUE FOR s")
    assert cur.fetchone() == (15, 15)
    # A table placed apart from the sequence: each NEXTVAL in VALUES is taken on s's copies first.
    create_apart(cluster, cur, db, "t", "CREATE TABLE t (id INT PRIMARY KEY, v CHAR(1))", "s")
    cur.execute("INSERT INTO t VALUES (NEXTVAL(s), 'a'), (NEXT VALUE FOR s, 'b')")
    conn.commit()
    cur.execute("SELECT * FROM t ORDER BY id")
    assert cur.fetchall() == ((20, "a"), (25, "b"))
    # A column default on the sequence: the table is placed with it.
    cur.execute("CREATE TABLE u (id INT DEFAULT NEXTVAL(s) PRIMARY KEY, v CHAR(1))")
    assert copies(cluster, db, "u") == copies(cluster, db, "s")
    cur.execute("INSERT INTO u (v) VALUES ('x')")
    conn.commit()
    cur.execute("SELECT * FROM u")
    assert cur.fetchall() == ((30, "x"),)
    for name in ("s", "t", "u"):
        rows = cluster.rows_on_regions(db, name)
        assert len(rows) == 2 and len({tuple(v) for v in rows.values()}) == 1, (name, rows)
    cur.execute("ALTER SEQUENCE s RESTART WITH 100")
    cur.execute("SELECT NEXTVAL(s)")
    assert cur.fetchone() == (100,)
    with pytest.raises(pymysql.err.MySQLError) as e:
        cur.execute("DROP SEQUENCE t")
    assert e.value.args[0] == 4091
    cur.execute("DROP TABLE u")
    cur.execute("DROP SEQUENCE s")
    assert cluster.state()["placement"].table(db, "s") is None
    conn.close()


DJANGO_TABLES = {  # the shape Django's MySQL backend gives a small project: FKs added after every CREATE
    "django_content_type": "id INT AUTO_INCREMENT PRIMARY KEY, app_label VARCHAR(100), model VARCHAR(100)",
    "auth_permission": "id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(255), content_type_id INT NOT NULL, codename VARCHAR(100)",
    "auth_group": "id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(150) UNIQUE",
    "auth_group_permissions": "id BIGINT AUTO_INCREMENT PRIMARY KEY, group_id INT NOT NULL, permission_id INT NOT NULL",
    "auth_user": "id INT AUTO_INCREMENT PRIMARY KEY, username VARCHAR(150) UNIQUE, email VARCHAR(254)",
    "auth_user_groups": "id BIGINT AUTO_INCREMENT PRIMARY KEY, user_id INT NOT NULL, group_id INT NOT NULL",
    "blog_author": "id BIGINT AUTO_INCREMENT PRIMARY KEY, user_id INT NOT NULL UNIQUE, bio LONGTEXT",
    "blog_category": "id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(50), parent_id BIGINT NULL",
    "blog_post": "id BIGINT AUTO_INCREMENT PRIMARY KEY, title VARCHAR(200), slug VARCHAR(200), author_id BIGINT NOT NULL, "
                 "category_id BIGINT NULL",
    "blog_tag": "id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(50) UNIQUE",
    "blog_post_tags": "id BIGINT AUTO_INCREMENT PRIMARY KEY, post_id BIGINT NOT NULL, tag_id BIGINT NOT NULL",
    "blog_comment": "id BIGINT AUTO_INCREMENT PRIMARY KEY, post_id BIGINT NOT NULL, user_id INT NOT NULL, body LONGTEXT",
}
DJANGO_FKS = [  # (table, column, parent)
    ("auth_permission", "content_type_id", "django_content_type"), ("auth_group_permissions", "group_id", "auth_group"),
    ("auth_group_permissions", "permission_id", "auth_permission"), ("auth_user_groups", "user_id", "auth_user"),
    ("auth_user_groups", "group_id", "auth_group"), ("blog_author", "user_id", "auth_user"),
    ("blog_category", "parent_id", "blog_category"), ("blog_post", "author_id", "blog_author"),
    ("blog_post", "category_id", "blog_category"), ("blog_post_tags", "post_id", "blog_post"),
    ("blog_post_tags", "tag_id", "blog_tag"), ("blog_comment", "post_id", "blog_post"), ("blog_comment", "user_id", "auth_user"),
]


def test_a_django_style_schema_is_created_migrated_reflected_and_queried(cluster):
    db = fresh_database(cluster, "dj")
    conn = pymysql.connect(host="127.0.0.1", port=cluster.proxy_ports[0], user="root", password="")
    cur = conn.cursor()
    cur.execute(f"USE {db}")
    for name, columns in DJANGO_TABLES.items():
        cur.execute(f"CREATE TABLE `{name}` ({columns}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
    assert len({copies(cluster, db, n) for n in DJANGO_TABLES}) > 1  # spread before the FKs link them
    for i, (table, column, parent) in enumerate(DJANGO_FKS):  # Django's deferred SQL
        cur.execute(f"ALTER TABLE `{table}` ADD CONSTRAINT `{table}_{column}_fk_{i}` FOREIGN KEY (`{column}`) "
                    f"REFERENCES `{parent}` (`id`)")
    cur.execute("CREATE VIEW blog_post_summary AS SELECT p.id, p.title, p.slug, u.username, "
                "(SELECT COUNT(*) FROM blog_comment c WHERE c.post_id = p.id) AS comments "
                "FROM blog_post p JOIN blog_author a ON a.id = p.author_id JOIN auth_user u ON u.id = a.user_id")
    cur.execute("CREATE TRIGGER blog_post_slug BEFORE INSERT ON blog_post FOR EACH ROW SET NEW.slug = LOWER(REPLACE(NEW.title, ' ', '-'))")
    # A migration: a new column, an index, a renamed model table.
    cur.execute("ALTER TABLE blog_post ADD COLUMN published_at DATETIME(6) NULL")
    cur.execute("CREATE INDEX blog_post_published_at_idx ON blog_post (published_at)")
    cur.execute("RENAME TABLE blog_tag TO blog_label")
    conn.commit()

    placement = cluster.state()["placement"]
    names = [n if n != "blog_tag" else "blog_label" for n in DJANGO_TABLES] + ["blog_post_summary"]
    assert len({placement.table(db, n).copies for n in names}) == 1  # one group, one pair of regions
    # Reflection, as an ORM's inspector does it.
    cur.execute("SELECT TABLE_NAME, COLUMN_NAME, REFERENCED_TABLE_NAME FROM information_schema.KEY_COLUMN_USAGE "
                "WHERE TABLE_SCHEMA = %s AND REFERENCED_TABLE_NAME IS NOT NULL ORDER BY 1, 2", (db,))
    expected = sorted((t, c, "blog_label" if p == "blog_tag" else p) for t, c, p in DJANGO_FKS)
    assert list(cur.fetchall()) == expected
    cur.execute("SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s ORDER BY 1", (db,))
    assert dict(cur.fetchall()) == {**{n: "BASE TABLE" for n in names[:-1]}, "blog_post_summary": "VIEW"}

    cur.execute("INSERT INTO auth_user (username, email) VALUES ('ann', 'ann@example.org'), ('bob', 'bob@example.org')")
    cur.execute("INSERT INTO blog_author (user_id, bio) VALUES (1, 'writes')")
    cur.execute("INSERT INTO blog_category (name, parent_id) VALUES ('news', NULL), ('local', 1)")
    cur.execute("INSERT INTO blog_post (title, author_id, category_id, published_at) VALUES ('Hello World', 1, 2, NOW(6))")
    cur.execute("INSERT INTO blog_label (name) VALUES ('intro'), ('misc')")
    cur.execute("INSERT INTO blog_post_tags (post_id, tag_id) SELECT 1, id FROM blog_label")
    cur.execute("INSERT INTO blog_comment (post_id, user_id, body) VALUES (1, 2, 'nice')")
    with pytest.raises(pymysql.err.IntegrityError):
        cur.execute("INSERT INTO blog_comment (post_id, user_id, body) VALUES (7, 2, 'no such post')")
    conn.commit()
    cur.execute("SELECT title, slug, username, comments FROM blog_post_summary")
    assert cur.fetchall() == (("Hello World", "hello-world", "ann", 1),)
    cur.execute("SELECT GROUP_CONCAT(l.name ORDER BY l.name) FROM blog_post p JOIN blog_post_tags pt ON pt.post_id = p.id "
                "JOIN blog_label l ON l.id = pt.tag_id")
    assert cur.fetchone() == ("intro,misc",)
    conn.close()
    for name in names[:-1]:  # every table's two copies are identical
        sums = {}
        for region in sorted(placement.table(db, name).write_regions):
            rc = cluster.connect_region(region)
            with rc.cursor() as rcur:
                rcur.execute(f"CHECKSUM TABLE `{db}`.`{name}`")
                sums[region] = rcur.fetchone()[1]
            rc.close()
        assert len(sums) == 2 and len(set(sums.values())) == 1, (name, sums)


def test_a_trigger_that_writes_another_table_brings_it_along(cluster):
    db = fresh_database(cluster, "tg")
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    cur.execute("CREATE TABLE orders (id INT PRIMARY KEY, total INT)")
    create_apart(cluster, cur, db, "audit", "CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, order_id INT, "
                 "total INT)", "orders")
    cur.execute("INSERT INTO audit (order_id, total) VALUES (0, 0)")
    cur.execute("CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW "
                "INSERT INTO audit (order_id, total) VALUES (NEW.id, NEW.total)")
    placement = cluster.state()["placement"]
    assert placement.table(db, "audit").copies == placement.table(db, "orders").copies
    assert (db, "audit") in placement.table(db, "orders").links  # kept together from now on
    cur.execute("INSERT INTO orders VALUES (1, 10), (2, 20)")
    cur.execute("SELECT order_id, total FROM audit ORDER BY id")
    assert cur.fetchall() == ((0, 0), (1, 10), (2, 20))
    for name in ("orders", "audit"):
        rows = cluster.rows_on_regions(db, name)
        assert len(rows) == 2 and len({tuple(v) for v in rows.values()}) == 1, (name, rows)
    conn.close()


def test_mysqldump_round_trip_through_the_gateway(cluster):
    """The most common tool there is: a dump made through the gateway (views,
    triggers, routines, FOREIGN KEYs; LOCK TABLES + ALTER ... DISABLE KEYS and
    /*!40101 ... */ executable comments on restore) loads back through it."""
    import shutil
    import subprocess

    db = fresh_database(cluster, "dump")
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    cur.execute("CREATE TABLE parent (id INT PRIMARY KEY, name VARCHAR(20))")
    cur.execute("CREATE TABLE child (id INT PRIMARY KEY, pid INT, FOREIGN KEY (pid) REFERENCES parent (id))")
    cur.execute("INSERT INTO parent VALUES (1, 'één'), (2, 'two')")
    cur.execute("INSERT INTO child VALUES (10, 1), (20, 2)")
    cur.execute("CREATE VIEW names AS SELECT c.id, p.name FROM child c JOIN parent p ON p.id = c.pid")
    cur.execute("CREATE TRIGGER upper_name BEFORE INSERT ON parent FOR EACH ROW SET NEW.name = UPPER(NEW.name)")
    cur.execute("CREATE PROCEDURE count_children() SELECT COUNT(*) FROM child")
    conn.close()
    dump_tool = shutil.which("mariadb-dump") or shutil.which("mysqldump")
    client = shutil.which("mariadb") or shutil.which("mysql")
    assert dump_tool and client, "the MariaDB client tools are part of the project's dependencies (make deps)"
    common = ["-h127.0.0.1", f"-P{cluster.proxy_port}", "-uroot"]
    dumped = subprocess.run([dump_tool, *common, "--routines", "--triggers", "--databases", db],
                            capture_output=True, text=True, timeout=120)
    assert dumped.returncode == 0, dumped.stderr
    assert "LOCK TABLES" in dumped.stdout and "/*!40000 ALTER TABLE" in dumped.stdout
    conn = cluster.connect()
    conn.cursor().execute(f"DROP DATABASE {db}")
    conn.close()
    loaded = subprocess.run([client, *common], input=dumped.stdout, capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    conn = cluster.connect(database=db)
    cur = conn.cursor()
    cur.execute("SELECT * FROM names ORDER BY id")
    assert cur.fetchall() == ((10, "één"), (20, "two"))
    cur.execute("INSERT INTO parent VALUES (3, 'three')")  # the trigger came back
    cur.execute("CALL count_children()")
    assert cur.fetchall() == ((2,),)
    conn.close()
    placement = cluster.state()["placement"]
    assert placement.table(db, "child").copies == placement.table(db, "parent").copies == placement.table(db, "names").copies
    for name in ("parent", "child"):
        rows = cluster.rows_on_regions(db, name)
        assert len(rows) == 2 and len({tuple(v) for v in rows.values()}) == 1, (name, rows)
    assert next(iter(cluster.rows_on_regions(db, "parent").values()))[-1] == (3, "THREE")


def test_ddl_runs_in_the_clients_character_set(cluster):
    """A view records the client's character_set_client, and a string literal
    in CREATE TABLE ... SELECT takes it: as on one MariaDB, not the master's
    utf8mb4."""
    db = fresh_database(cluster, "cs")
    conn = pymysql.connect(host="127.0.0.1", port=cluster.proxy_port, user="root", password="", database=db,
                           charset="latin1")
    try:
        cur = conn.cursor()
        cur.execute("CREATE TABLE t (a INT PRIMARY KEY)")
        cur.execute("CREATE VIEW v AS SELECT a, 'caf\u00e9' AS word FROM t")
        cur.execute("SHOW CREATE VIEW v")
        assert cur.fetchone()[2:] == ("latin1", "latin1_swedish_ci")
        cur.execute("CREATE TABLE c AS SELECT 'caf\u00e9' AS word")
        cur.execute("SELECT word FROM v UNION ALL SELECT word FROM c")
        assert cur.fetchall() == (("caf\u00e9",),)
        cur.execute("SELECT CHARACTER_SET_NAME FROM information_schema.COLUMNS "
                    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'c' AND COLUMN_NAME = 'word'")
        assert cur.fetchone() == ("latin1",)
    finally:
        conn.close()
