"""CREATE TABLE ... SELECT (proxy/ctas.py) against the logging fake cursor:
MariaDB's own CREATE ... SELECT into a scratch temporary table, the definition
through the master, the rows to every copy, the table dropped if they fail."""

from __future__ import annotations

import asyncio

import pytest
from mysql_mimic.charset import CharacterSet
from mysql_mimic.packets import make_column_definition_41
from mysql_mimic.types import ColumnType

from minisql.errors import SqlError
from proxy.backend import QueryResult
from proxy.planbuilder import plan_statement
from proxy.planner import RoutingSnapshot
from proxy.protocol import lenenc_str
from proxy.statements import AnalysisCache, classify
from topology import TablePlacement

from .fakecursor import IN_SYNC, REGIONS, SNAP, LoggingCursor, placement

CACHE = AnalysisCache()
SCRATCH_DEFINITION = "CREATE TEMPORARY TABLE `__minisql_ctas` (\n  `id` int(11) NOT NULL,\n  `name` varchar(20) DEFAULT NULL\n) ENGINE=InnoDB"


def respond(fail_insert: bool = False):
    def answer(region, sql):
        if sql.startswith("SHOW CREATE TABLE"):
            return QueryResult([b"t", b"c"], [lenenc_str(b"x") + lenenc_str(SCRATCH_DEFINITION.encode())], 0, 0, 0, 0, b"")
        if sql.startswith("SELECT `id`, `name` FROM"):
            fields = [make_column_definition_41(server_charset=CharacterSet.utf8mb4, name="id", column_type=ColumnType.LONG,
                                                character_set=CharacterSet.binary),
                      make_column_definition_41(server_charset=CharacterSet.utf8mb4, name="name",
                                                column_type=ColumnType.VAR_STRING, character_set=CharacterSet.utf8mb4)]
            return QueryResult(fields, [lenenc_str(b"1") + lenenc_str(b"ash"), lenenc_str(b"2") + b"\xfb"], 0, 0, 0, 0, b"")
        if fail_insert and "INSERT INTO `shop`.`copy`" in sql:
            return SqlError(1406, "Data too long", "22001")
        return None
    return answer


def cursor(fail_insert: bool = False) -> LoggingCursor:
    c = LoggingCursor(respond=respond(fail_insert))
    c.snapshot_after_ddl = RoutingSnapshot(placement().with_table(TablePlacement("shop", "copy", "r3", {"r1": IN_SYNC})), REGIONS)
    return c


def run(c: LoggingCursor, sql: str):
    primitive = plan_statement(sql, classify(sql), SNAP, c.state, CACHE)
    return primitive, asyncio.run(primitive.execute(c))


def test_mariadb_shapes_the_table_then_the_master_places_it_and_every_copy_gets_the_rows():
    c = cursor()
    sql = "CREATE TABLE copy (PRIMARY KEY (id)) SELECT u.id, i.title AS name FROM users u JOIN items i ON i.id = u.id JOIN solo s ON s.id = u.id"
    primitive, reply = run(c, sql)
    assert primitive.describe() == {"CreateTableSelect": "`shop`.`copy`", "select_on": "r1", "copies": ["shop.items from r3"]}
    scratch = [text for region, text in c.log if region == "r1" and "__minisql_ctas" in text]
    assert scratch[1] == "CREATE TEMPORARY TABLE `shop`.`__minisql_ctas` " + sql[len("CREATE TABLE copy "):]
    assert c.ddls == ["CREATE TABLE `shop`.`copy` (\n  `id` int(11) NOT NULL,\n  `name` varchar(20) DEFAULT NULL\n) ENGINE=InnoDB"]
    rows = f"INSERT INTO `shop`.`copy` (`id`, `name`) VALUES (1, _utf8mb4 X'{b'ash'.hex()}'),(2, NULL)"
    assert [region for region, text in c.log if text.endswith(rows)] == ["r3", "r1"]  # the new table's copies
    assert reply.result.affected_rows == 2 and reply.result.info == lenenc_str(b"Records: 2  Duplicates: 0  Warnings: 0")
    assert ("r1", "DROP TEMPORARY TABLE IF EXISTS `shop`.`__minisql_ctas`") in c.log


def test_rows_that_fail_leave_no_table_behind():
    c = cursor(fail_insert=True)
    with pytest.raises(SqlError) as e:
        run(c, "CREATE TABLE copy SELECT id, name FROM users")
    assert e.value.errno == 1406
    assert c.ddls[-1] == "DROP TABLE IF EXISTS `shop`.`copy`"


def test_an_existing_table_is_mariadbs_1050_or_its_note():
    c = cursor()
    with pytest.raises(SqlError) as e:
        run(c, "CREATE TABLE users SELECT 1 AS id")
    assert e.value.errno == 1050 and c.log == []
    _, reply = run(c, "CREATE TABLE IF NOT EXISTS users SELECT 1 AS id")
    assert reply.result.warnings == 1 and c.ddls == [] and c.log == []


LIKE_SOURCE = ("CREATE TABLE `users` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n  `boss` int(11) DEFAULT NULL,\n"
               "  PRIMARY KEY (`id`),\n  CONSTRAINT `fk` FOREIGN KEY (`boss`) REFERENCES `users` (`id`)\n"
               ") ENGINE=InnoDB AUTO_INCREMENT=5 DEFAULT CHARSET=utf8mb4")


def like_cursor() -> LoggingCursor:
    return LoggingCursor(respond=lambda region, sql: QueryResult(
        [b"t", b"c"], [lenenc_str(b"users") + lenenc_str(LIKE_SOURCE.encode())], 0, 0, 0, 0, b"")
        if sql.startswith("SHOW CREATE TABLE") else None)


def test_create_table_like_copies_the_definition_as_mariadb_does():
    c = like_cursor()
    run(c, "CREATE TABLE clone LIKE users")
    assert c.log == [("r1", "SHOW CREATE TABLE `shop`.`users`")]  # where users is read
    assert c.ddls == ["CREATE TABLE `shop`.`clone` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n  `boss` int(11) DEFAULT NULL,\n"
                      "  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"]  # no FOREIGN KEY, no counter


def test_create_or_replace_is_drop_then_create_and_never_drops_its_own_source():
    c = like_cursor()
    run(c, "CREATE OR REPLACE TABLE users2 (id INT)")
    assert c.ddls == ["DROP TABLE IF EXISTS `shop`.`users2`", "CREATE TABLE users2 (id INT)"]
    c = like_cursor()
    run(c, "CREATE OR REPLACE TABLE users LIKE orders")  # users exists: replaced, not 1050
    assert c.ddls[0] == "DROP TABLE IF EXISTS `shop`.`users`" and c.ddls[1].startswith("CREATE TABLE `shop`.`users` (")
    for sql, errno in (("CREATE OR REPLACE TABLE users SELECT * FROM users", 1093),
                       ("CREATE OR REPLACE TABLE users LIKE users", 1066)):
        c = like_cursor()
        with pytest.raises(SqlError) as e:
            run(c, sql)
        assert e.value.errno == errno and c.ddls == []


def test_set_statement_for_create_select_reaches_mariadbs_create_and_the_master():
    c = cursor()
    run(c, "SET STATEMENT sql_mode='' FOR CREATE TABLE copy SELECT id, name FROM users")
    assert ("r1", "SET STATEMENT sql_mode='' FOR CREATE TEMPORARY TABLE `shop`.`__minisql_ctas` SELECT id, name FROM users") in c.log
    assert c.ddls[0].startswith("SET STATEMENT sql_mode='' FOR CREATE TABLE `shop`.`copy`")
