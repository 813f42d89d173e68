"""Triggers (proxy/triggers.py) against the logging fake cursor: which copies a
CREATE TRIGGER reaches, its undo when a later copy refuses, DROP TRIGGER on every
region with MariaDB's 1360, and the bodies that are refused."""

from __future__ import annotations

import asyncio

import pytest

from minisql.errors import SqlError
from proxy.planbuilder import plan_statement
from proxy.statements import AnalysisCache, Kind, classify

from .fakecursor import SNAP, LoggingCursor, ok_result

CACHE = AnalysisCache()


def plan(sql: str):
    cursor = LoggingCursor()
    return plan_statement(sql, classify(sql), SNAP, cursor.state, CACHE)


def run(cursor: LoggingCursor, sql: str):
    return asyncio.run(plan_statement(sql, classify(sql), cursor.snapshot, cursor.state, CACHE).execute(cursor))


@pytest.mark.parametrize("sql", [
    "CREATE TRIGGER t1 BEFORE INSERT ON users FOR EACH ROW SET NEW.id = NEW.id + 1",
    "create or replace definer = 'root'@'%' trigger t1 after update on shop.users for each row set @n = @n + 1",
    "CREATE DEFINER=CURRENT_USER() TRIGGER IF NOT EXISTS shop.t1 BEFORE DELETE ON users FOR EACH ROW BEGIN END",
    "DROP TRIGGER t1", "drop trigger if exists shop.t1",
])
def test_trigger_ddl_is_its_own_statement_class(sql):
    assert classify(sql) is Kind.TRIGGER


def test_create_trigger_reaches_the_primary_then_each_in_sync_copy():
    c = LoggingCursor()
    sql = "create trigger ac_trans before insert on users for each row precedes ac_sum set @dep = @dep + NEW.id"
    run(c, sql)
    assert c.log == [("r1", sql), ("r2", sql)]  # users: r1 primary, r2 in sync
    sql = "CREATE TRIGGER lg AFTER INSERT ON logs FOR EACH ROW SET @n = 1"
    c = LoggingCursor()
    run(c, sql)
    assert c.log == [("r3", sql)]  # logs' copy on r1 is still COPYING: it gets the trigger with its rows


def test_a_copy_that_refuses_undoes_the_trigger_on_the_earlier_ones():
    def respond(region, sql):
        if region == "r2" and sql.startswith("CREATE"):
            return SqlError(1142, "TRIGGER command denied", "42000")
        return None

    c = LoggingCursor(respond=respond)
    with pytest.raises(SqlError) as e:
        run(c, "CREATE TRIGGER t1 BEFORE INSERT ON users FOR EACH ROW SET @x = 1")
    assert e.value.errno == 1142
    assert c.log[-1] == ("r1", "DROP TRIGGER IF EXISTS `shop`.`t1`")


@pytest.mark.parametrize("body, named", [
    ("INSERT INTO orders VALUES (NEW.id)", ["shop.orders"]),
    ("SET NEW.total = (SELECT price FROM shop.items WHERE id = NEW.id)", ["shop.items"]),
    ("BEGIN INSERT INTO orders VALUES (NEW.id); UPDATE nowhere SET a = 1; END", ["shop.orders"]),  # (no table: no link)
])
def test_a_body_reaching_other_tables_colocates_them_first(body, named):
    p = plan(f"CREATE TRIGGER t1 BEFORE INSERT ON users FOR EACH ROW {body}")
    assert p.describe()["colocate"] == named
    c = LoggingCursor(respond=lambda region, sql: ok_result(0))
    asyncio.run(p.execute(c))
    assert c.log[0] == ("master", f"colocate shop.users with {', '.join(named)}")
    assert [r for r, _ in c.log[1:]] == ["r1", "r2"]


def test_a_body_that_calls_a_routine_is_refused():
    with pytest.raises(SqlError) as e:
        plan("CREATE TRIGGER t1 BEFORE INSERT ON users FOR EACH ROW CALL audit(NEW.id)")
    assert e.value.errno == 1235 and "CALL" in e.value.message


def test_create_trigger_errors_as_mariadb():
    with pytest.raises(SqlError) as e:
        plan("CREATE TRIGGER other.t1 BEFORE INSERT ON users FOR EACH ROW SET @x = 1")
    assert e.value.errno == 1435
    with pytest.raises(SqlError) as e:
        plan("CREATE TRIGGER t1 BEFORE INSERT ON nosuch FOR EACH ROW SET @x = 1")
    assert e.value.errno == 1146


def test_drop_trigger_reaches_every_region_and_is_1360_only_when_none_had_it():
    def respond(region, sql):
        if sql.startswith("DROP") and region != "r2":
            return SqlError(1360, "Trigger does not exist", "HY000")
        return None

    c = LoggingCursor(respond=respond)
    run(c, "DROP TRIGGER IF EXISTS t1")
    assert c.log == [("r1", "DROP TRIGGER t1"), ("r2", "DROP TRIGGER t1"), ("r3", "DROP TRIGGER t1")]
    assert c.state.warnings is not None and c.state.warnings.rows == []  # r3's 1360 is not the statement's

    nowhere = LoggingCursor(respond=lambda region, sql: SqlError(1360, "Trigger does not exist", "HY000")
                            if sql == "DROP TRIGGER t1" else None)
    with pytest.raises(SqlError) as e:
        run(nowhere, "DROP TRIGGER t1")
    assert e.value.errno == 1360
    run(nowhere, "DROP TRIGGER IF EXISTS t1")  # MariaDB's own note, from one region
    assert nowhere.log[-1][1] == "DROP TRIGGER IF EXISTS t1"


def test_show_triggers_asks_every_region_and_show_create_trigger_finds_a_holder():
    shown = plan("SHOW TRIGGERS LIKE 'acc%'")
    assert shown.describe()["CatalogScatter"]
    assert "EVENT_OBJECT_SCHEMA = 'shop' AND EVENT_OBJECT_TABLE LIKE 'acc%'" in shown.sql

    c = LoggingCursor(respond=lambda region, sql: SqlError(1360, "Trigger does not exist", "HY000")
                      if region != "r3" else None)
    run(c, "SHOW CREATE TRIGGER t1")
    assert c.log[-1] == ("r3", "SHOW CREATE TRIGGER t1")
