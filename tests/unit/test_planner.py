"""Golden, table-driven tests of the pure planner: no sockets, no ZooKeeper."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import pytest

from minisql.errors import SqlError
from proxy.planner import Op, RoutingSnapshot, plan
from proxy.statements import AnalysisCache, Kind, classify

from .fakecursor import REGIONS, SNAP  # the placement every planner and engine test plans against


@dataclass
class Session:
    database: str | None = "shop"
    last_insert_region: str | None = None
    last_insert_id: int = 0


def run(sql: str, session: Session | None = None, snap: RoutingSnapshot = SNAP):
    return plan(sql, classify(sql), snap, session or Session(), AnalysisCache())


GOLDEN = [
    # sql, op, regions
    ("SELECT * FROM users WHERE id = 1", Op.READ, ("r1",)),
    ("select * from shop.orders", Op.READ, ("r2",)),
    ("SELECT * FROM users u JOIN orders o ON o.uid = u.id", Op.READ, ("r1",)),  # both have a copy on r1
    ("SELECT * FROM items i JOIN orders o ON 1", Op.READ, ("r2",)),  # common region is r2
    ("SELECT * FROM users FOR UPDATE", Op.READ, ("r1",)),
    ("INSERT INTO users (name) VALUES ('a')", Op.WRITE, ("r1", "r2")),
    ("REPLACE INTO users VALUES (1, 'a')", Op.WRITE, ("r1", "r2")),
    ("UPDATE orders SET total = total + 1 WHERE id = 3", Op.WRITE, ("r2", "r1")),
    ("DELETE FROM users WHERE id = 3", Op.WRITE, ("r1", "r2")),
    ("INSERT INTO logs VALUES (1)", Op.WRITE, ("r3",)),  # a COPYING replica gets no writes
    ("INSERT INTO orders SELECT * FROM users", Op.WRITE, ("r2", "r1")),  # users has copies on r1 and r2
    ("DELETE FROM solo LIMIT 1", Op.WRITE, ("r1",)),  # one copy: LIMIT is safe
    ("SELECT 1", Op.ANY, ()),
    ("SELECT @@version", Op.ANY, ()),
    ("SHOW VARIABLES LIKE 'sql_mode'", Op.ANY, ()),
    ("SHOW WARNINGS", Op.STICKY, ()),
    ("SHOW CREATE TABLE users", Op.READ, ("r1",)),
    ("DESCRIBE orders", Op.READ, ("r2",)),
    ("SHOW COLUMNS FROM items", Op.READ, ("r3",)),
    ("SHOW INDEX FROM shop.users", Op.READ, ("r1",)),
    ("EXPLAIN SELECT * FROM orders", Op.READ, ("r2",)),
    ("CREATE TABLE t (id int)", Op.DDL, ()),
    ("DROP TABLE users", Op.DDL, ()),
    ("SHOW TABLES", Op.LOCAL, ()),
    ("SELECT DATABASE()", Op.LOCAL, ()),
    ("SHOW TABLE STATUS LIKE 'orders'", Op.READ, ("r2",)),
    ("SHOW DATABASES", Op.LOCAL, ()),
]


@pytest.mark.parametrize("sql,op,regions", GOLDEN)
def test_golden_routes(sql, op, regions):
    p = run(sql)
    assert p.op is op
    assert p.regions == regions
    if op in (Op.READ, Op.WRITE, Op.ANY):
        assert p.sql == sql  # the client's own text is forwarded
    assert p.epoch == SNAP.epoch


ERRORS = [
    ("SELECT * FROM nosuch", None, 1146, "42S02"),
    ("SELECT * FROM users", Session(database=None), 1046, "3D000"),
    ("SELECT * FROM items JOIN logs", None, 1235, "42000"),  # items r3/r2, logs only r3 in sync -> r3 ok? see below
    ("UPDATE users, items SET users.name = 'x', items.title = 'y' WHERE users.id = items.id", None, 1235, "42000"),  # two tables written, placed apart
    ("UPDATE users SET token = UUID()", None, 1235, "42000"),
    ("SELECT * FROM information_schema.INNODB_TRX JOIN information_schema.TABLES", None, 1235, "42000"),  # per server
    ("SHOW TABLES FROM nope", None, 1049, "42000"),
    ("USE nope", None, 1049, "42000"),
    ("SHOW PROCESSLIST", None, 1235, "42000"),
    ("SHOW TABLE STATUS FROM nope", None, 1049, "42000"),
    ("LOCK TABLES users WRITE", None, 1235, "42000"),
    ("SELECT 1; SELECT 2", None, 1235, "42000"),
    ("SELEC 1", None, 1064, "42000"),
    ("UPDATE users SET WHERE", None, 1064, "42000"),  # a write the parser cannot read is never guessed
]


@pytest.mark.parametrize("sql,session,errno,sqlstate", ERRORS)
def test_golden_errors(sql, session, errno, sqlstate):
    if sql == "SELECT * FROM items JOIN logs":
        # items (r3, r2) and logs (r3 only in sync): they share r3, so this one routes.
        assert run(sql).regions == ("r3",)
        return
    with pytest.raises(SqlError) as info:
        run(sql, session)
    assert (info.value.errno, info.value.sqlstate) == (errno, sqlstate)


def test_show_tables_comes_from_placement():
    p = run("SHOW TABLES")
    assert p.local.columns == ("Tables_in_shop",)
    assert [r[0] for r in p.local.rows] == ["items", "logs", "orders", "solo", "users"]
    p = run("SHOW FULL TABLES LIKE 'u%'")
    assert p.local.rows == (("users", "BASE TABLE"),)
    assert [r[0] for r in run("SHOW DATABASES").local.rows] == ["information_schema", "empty", "shop"]


def test_show_full_tables_names_sequences_and_views_as_mariadb_does():
    from topology import TablePlacement

    placement = SNAP.placement.with_table(TablePlacement("shop", "seq1", "r1", {}, kind="sequence"))
    placement = placement.with_table(TablePlacement("shop", "v1", "r1", {}, kind="view"))
    snap = RoutingSnapshot(placement, REGIONS)
    rows = dict(run("SHOW FULL TABLES", snap=snap).local.rows)
    assert (rows["seq1"], rows["v1"], rows["users"]) == ("SEQUENCE", "VIEW", "BASE TABLE")
    where = run("SHOW FULL TABLES WHERE Table_type = 'SEQUENCE'", snap=snap)
    assert "'seq1' AS `Tables_in_shop`, 'SEQUENCE' AS `Table_type`" in where.sql


def test_show_tables_of_a_system_schema_goes_to_any_region():
    p = run("SHOW FULL TABLES FROM information_schema")
    assert p.op.name == "ANY" and p.sql == "SHOW FULL TABLES FROM information_schema"
    with pytest.raises(SqlError) as info:
        run("SHOW TABLES FROM nosuchdb")
    assert info.value.errno == 1049


def test_read_falls_back_to_live_in_sync_copy_when_primary_region_is_gone():
    snap = RoutingSnapshot(SNAP.placement, MappingProxyType({k: v for k, v in REGIONS.items() if k != "r1"}))
    assert run("SELECT * FROM users", snap=snap).regions == ("r2",)


def test_write_refused_while_a_copy_is_down():
    snap = RoutingSnapshot(SNAP.placement, MappingProxyType({k: v for k, v in REGIONS.items() if k != "r2"}))
    with pytest.raises(SqlError) as info:
        run("INSERT INTO users VALUES (1)", snap=snap)
    assert info.value.errno == 2003 and info.value.retriable


def test_last_insert_id_select_goes_to_the_region_that_inserted():
    p = run("SELECT LAST_INSERT_ID()", Session(last_insert_region="r2", last_insert_id=5))
    assert (p.op, p.regions) == (Op.READ, ("r2",))


def test_use_known_database():
    p = run("USE `shop`")
    assert (p.op, p.database) == (Op.USE, "shop")


def test_kind_of_with_update():
    assert classify("  /* c */ WITH x AS (SELECT 1) SELECT * FROM x") is Kind.SELECT


def test_select_database_is_answered_from_the_session():
    assert run("select database()").local.rows == (("shop",),)
    assert run("SELECT SCHEMA()", Session(database=None)).local.rows == ((None,),)


def test_last_insert_id_is_flagged_for_substitution_except_on_the_inserting_region():
    assert run("INSERT INTO orders (uid) VALUES (LAST_INSERT_ID())").uses_last_insert_id
    assert run("SELECT * FROM users WHERE id = LAST_INSERT_ID()").uses_last_insert_id
    exact = run("SELECT LAST_INSERT_ID()", Session(last_insert_region="r2", last_insert_id=5))
    assert not exact.uses_last_insert_id  # sent unchanged to the connection that inserted
    assert not run("SELECT * FROM users").uses_last_insert_id


def test_sequence_functions_write_the_sequence_on_every_copy():
    # (The planner does not care that `users` is a table here: the routes are the point.)
    p = run("SELECT NEXTVAL(users)")
    assert (p.op, p.regions) == (Op.WRITE, ("r1", "r2"))
    p = run("SELECT NEXT VALUE FOR shop.orders, 'nextval(items)'")
    assert (p.op, p.regions) == (Op.WRITE, ("r2", "r1"))
    p = run("SELECT LASTVAL(orders)")  # the session's last value: where NEXTVAL ran, the primary
    assert (p.op, p.regions) == (Op.READ, ("r2",))
    p = run("INSERT INTO users (id, name) VALUES (NEXTVAL(orders), 'a')")  # orders is on users' regions
    assert (p.op, p.regions, p.sequences) == (Op.WRITE, ("r1", "r2"), ())


def test_nextval_of_a_sequence_placed_apart_is_evaluated_on_its_copies_first():
    p = run("INSERT INTO users (id, name) VALUES (NEXTVAL(items), 'a'), (NEXT VALUE FOR items, 'b')")
    assert (p.op, p.regions) == (Op.WRITE, ("r1", "r2"))
    assert [name for name, _ in p.sequences] == ["shop.items"]
    with pytest.raises(SqlError) as e:
        run("UPDATE users SET id = NEXTVAL(items)")  # per row: it cannot be evaluated once
    assert e.value.errno == 1235


def test_information_schema_of_any_shape_is_merged_then_run_on_one_region():
    for sql, views in (
        ("SELECT COUNT(*) FROM information_schema.tables", ["tables"]),
        ("SELECT t.TABLE_NAME, COUNT(c.COLUMN_NAME) FROM information_schema.TABLES t JOIN information_schema.COLUMNS c "
         "USING (TABLE_SCHEMA, TABLE_NAME) GROUP BY 1", ["tables", "columns"]),
        ("SELECT * FROM information_schema.KEY_COLUMN_USAGE k WHERE k.TABLE_NAME IN "
         "(SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'VIEW')", ["key_column_usage", "tables"]),
    ):
        p = run(sql)
        assert (p.op, list(p.catalog_views)) == (Op.CATALOG, views), sql


def test_replace_view_keeps_the_clients_alias_and_strings():
    from proxy.catalogscatter import replace_view

    d = "(SELECT 1 AS `TABLE_NAME`)"
    assert replace_view("SELECT * FROM information_schema.TABLES t WHERE 'information_schema.TABLES' <> ''", "tables", d,
                        False) == f"SELECT * FROM {d} t WHERE 'information_schema.TABLES' <> ''"
    assert replace_view("SELECT COUNT(*) FROM `information_schema`.`tables` WHERE 1", "tables", d, False) == \
        f"SELECT COUNT(*) FROM {d} AS `TABLES` WHERE 1"
    assert replace_view("select * from tables join columns using (x)", "tables", d, True) == \
        f"select * from {d} AS `TABLES` join columns using (x)"


def test_information_schema_joined_with_the_clusters_tables_runs_where_they_are():
    p = run("SELECT name FROM users WHERE name IN (SELECT SCHEMA_NAME FROM information_schema.SCHEMATA)")
    assert (p.op, p.regions) == (Op.READ, ("r1",))
    p = run("SELECT o.id, t.TABLE_ROWS FROM orders o JOIN information_schema.TABLES t ON t.TABLE_NAME = 'orders'")
    assert (p.op, p.regions, list(p.catalog_views)) == (Op.CATALOG, ("r2",), ["tables"])
    with pytest.raises(SqlError):
        run("SELECT * FROM users JOIN information_schema.INNODB_TRX")


def test_show_table_status_of_every_table_is_information_schema_merged():
    for sql, op in (("SHOW TABLE STATUS", Op.CATALOG), ("SHOW TABLE STATUS LIKE 'o%'", Op.CATALOG),
                    ("SHOW TABLE STATUS WHERE Rows > 3", Op.CATALOG), ("SHOW TABLE STATUS LIKE 'users'", Op.READ)):
        assert run(sql).op is op, sql


def test_insert_scheduling_words_are_routed_like_the_insert():
    for sql in ("INSERT DELAYED INTO users VALUES (1)", "INSERT LOW_PRIORITY IGNORE INTO users VALUES (1)",
                "REPLACE HIGH_PRIORITY INTO users VALUES (1)",
                "INSERT users SELECT * FROM users ON DUPLICATE KEY UPDATE name = users.name + VALUES(users.name)",
                "INSERT INTO users VALUES (1, 'a') ON DUPLICATE KEY UPDATE name = VALUES(`users`.`name`)"):
        p = run(sql)
        assert (p.op, p.regions) == (Op.WRITE, ("r1", "r2")), sql


def test_a_write_to_tables_placed_apart_names_them_for_colocation():
    from proxy.planner import WritesApart

    with pytest.raises(WritesApart) as e:
        run("UPDATE users, items SET users.name = 'x', items.title = 'y' WHERE users.id = items.id")
    assert (e.value.errno, e.value.table, e.value.others) == (1235, ("shop", "users"), (("shop", "items"),))


def test_ddl_on_a_table_not_locked_while_the_session_holds_lock_tables_is_1100():
    from proxy.planextra import plan_ddl_under_lock
    from proxy.sessionstate import SessionState

    state = SessionState(database="shop", locked_regions=("r1", "r2"))
    assert plan_ddl_under_lock("ALTER TABLE users DISABLE KEYS", SNAP, state) is not None  # users: r1 + r2, locked
    with pytest.raises(SqlError) as e:
        plan_ddl_under_lock("TRUNCATE TABLE items", SNAP, state)  # items: r3 + r2: cannot be locked
    assert (e.value.errno, e.value.sqlstate) == (1100, "HY000")
    assert plan_ddl_under_lock("TRUNCATE TABLE items", SNAP, SessionState(database="shop")) is None  # no LOCK TABLES
