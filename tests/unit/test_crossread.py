"""Reads across tables that share no region (proxy/crossread.py), against the
logging fake cursor: the region chosen, the temporary copy made there, the
client's statement unchanged, the copy dropped even when the statement fails."""

from __future__ import annotations

import asyncio

import pytest
from mysql_mimic.charset import CharacterSet
from mysql_mimic.packets import make_column_definition_41
from mysql_mimic.types import ColumnType

from minisql.errors import SqlError
from proxy.backend import QueryResult
from proxy.crossread import temporary_definition
from proxy.planbuilder import plan_statement
from proxy.protocol import lenenc_str
from proxy.statements import AnalysisCache, classify

from .fakecursor import SNAP, LoggingCursor

CACHE = AnalysisCache()
JOIN = "SELECT u.name, i.title FROM users u JOIN items i ON i.id = u.id JOIN solo s ON s.id = u.id"

SHOW_CREATE = """CREATE TABLE `items` (
  `id` int(11) NOT NULL,
  `title` varchar(20) DEFAULT NULL,
  `twice` int(11) GENERATED ALWAYS AS (`id` * 2) VIRTUAL,
  `owner` int(11) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `owner` (`owner`),
  CONSTRAINT `fk_owner` FOREIGN KEY (`owner`) REFERENCES `users` (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"""


def test_the_temporary_copy_keeps_columns_and_keys_but_not_foreign_keys():
    create, columns = temporary_definition(SHOW_CREATE, "shop", "items")
    assert create.startswith("CREATE TEMPORARY TABLE `shop`.`items` (\n")
    assert "FOREIGN KEY" not in create and "KEY `owner` (`owner`)\n)" in create
    assert "GENERATED ALWAYS AS" in create  # recomputed by the copy
    assert columns == ["id", "title", "owner"]


def respond(fail_query: bool = False):
    def answer(region, sql):
        if sql.startswith("SHOW CREATE TABLE"):
            return QueryResult([b"t", b"c"], [lenenc_str(b"items") + lenenc_str(SHOW_CREATE.encode())], 0, 0, 0, 0, b"")
        if sql.startswith("SELECT `id`"):
            fields = [make_column_definition_41(server_charset=CharacterSet.utf8mb4, name=n, column_type=t,
                                                character_set=c)
                      for n, t, c in (("id", ColumnType.LONG, CharacterSet.binary),
                                      ("title", ColumnType.VAR_STRING, CharacterSet.utf8mb4),
                                      ("owner", ColumnType.LONG, CharacterSet.binary))]
            return QueryResult(fields, [lenenc_str(b"1") + lenenc_str(b"ash") + b"\xfb"], 0, 0, 0, 0, b"")
        if sql == JOIN and fail_query:
            return SqlError(1054, "Unknown column", "42S22")
        return None
    return answer


def test_a_join_of_three_tables_on_no_common_region_runs_where_most_are():
    # users: r1+r2, items: r3+r2, solo: r1 -> r1 holds two (and both primaries); items comes from r3
    c = LoggingCursor(respond=respond())
    primitive = plan_statement(JOIN, classify(JOIN), SNAP, c.state, CACHE)
    assert primitive.describe() == {"MaterializedRead": "r1", "copies": ["shop.items from r3"]}
    asyncio.run(primitive.execute(c))
    assert [(region, sql.split(" (")[0].split(" VALUES")[0]) for region, sql in c.log] == [
        ("r3", "SHOW CREATE TABLE `shop`.`items`"),
        ("r3", "SELECT `id`, `title`, `owner` FROM `shop`.`items`"),
        ("r1", "CREATE TEMPORARY TABLE `shop`.`items`"),
        ("r1", "INSERT INTO `shop`.`items`"),
        ("r1", JOIN.split(" (")[0]),
        ("r1", "DROP TEMPORARY TABLE IF EXISTS `shop`.`items`"),
    ]
    assert f"VALUES (1, _utf8mb4 X'{b'ash'.hex()}', NULL)" in c.log[3][1]


def test_the_copy_is_dropped_when_the_statement_fails():
    c = LoggingCursor(respond=respond(fail_query=True))
    with pytest.raises(SqlError):
        asyncio.run(plan_statement(JOIN, classify(JOIN), SNAP, c.state, CACHE).execute(c))
    assert c.log[-1] == ("r1", "DROP TEMPORARY TABLE IF EXISTS `shop`.`items`")


def test_a_locking_read_across_regions_is_still_refused():
    with pytest.raises(SqlError) as e:
        plan_statement(JOIN + " FOR UPDATE", classify(JOIN), SNAP, LoggingCursor().state, CACHE)
    assert e.value.errno == 1235


def test_a_write_reading_a_table_its_copies_lack_ships_it_and_runs_the_clients_text():
    # users: r1 + r2; items: r3 + r2 -> items is copied to r1 only; both copies of users run the same text
    sql = "INSERT INTO users (id, name) SELECT id, title FROM items ON DUPLICATE KEY UPDATE name = items.title"
    c = LoggingCursor(respond=respond())
    primitive = plan_statement(sql, classify(sql), SNAP, c.state, CACHE)
    assert primitive.describe()["ShippedWrite"] == ["shop.items from r3 to r1"]
    object.__setattr__(primitive.write, "clock", lambda: 1700000000.0)
    asyncio.run(primitive.execute(c))
    runs = [region for region, text in c.log if text.endswith(sql)]
    assert runs == ["r1", "r2"]  # the primary, then the replica, each the client's own statement
    creates = [i for i, (region, text) in enumerate(c.log) if text.startswith("CREATE TEMPORARY TABLE")]
    first_run = next(i for i, (region, text) in enumerate(c.log) if text.endswith(sql))
    assert [c.log[i][0] for i in creates] == ["r1"] and creates[0] < first_run
    assert c.log[-1] == ("r1", "DROP TEMPORARY TABLE IF EXISTS `shop`.`items`")
