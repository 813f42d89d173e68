"""INSERT ... SELECT across regions (proxy/insertselect.py): the text split, the
typed literals, and against the logging fake cursor the SELECT on one region,
then the same VALUES on the target's primary and replica."""

from __future__ import annotations

import asyncio

import pytest
from mysql_mimic.charset import CharacterSet
from mysql_mimic.packets import make_column_definition_41
from mysql_mimic.types import ColumnType

from minisql.errors import SqlError
from proxy.backend import QueryResult
from proxy.insertselect import LIMIT, column_kinds, render_row
from proxy.planbuilder import plan_statement
from proxy.protocol import lenenc_str
from proxy.statements import AnalysisCache, classify, split_insert_select

from .fakecursor import SNAP, LoggingCursor

CACHE = AnalysisCache()


def column(name: str, ctype: ColumnType, charset: CharacterSet = CharacterSet.binary) -> bytes:
    return make_column_definition_41(server_charset=CharacterSet.utf8mb4, name=name, column_type=ctype,
                                     character_set=charset)


def row(*values: bytes | None) -> bytes:
    return b"".join(b"\xfb" if v is None else lenenc_str(v) for v in values)


@pytest.mark.parametrize("sql, parts", [
    ("INSERT INTO t (a, b) SELECT x, y FROM u WHERE z = 'values'", ("INSERT INTO t (a, b) ", "SELECT x, y FROM u WHERE z = 'values'", "")),
    ("insert ignore into t select * from u on duplicate key update a = values(a);",
     ("insert ignore into t ", "select * from u", "on duplicate key update a = values(a)")),
    ("INSERT INTO t (SELECT a FROM u)", ("INSERT INTO t ", "(SELECT a FROM u)", "")),
    ("REPLACE INTO `select` /* select ( */ WITH c AS (SELECT 1) SELECT * FROM c",
     ("REPLACE INTO `select` /* select ( */ ", "WITH c AS (SELECT 1) SELECT * FROM c", "")),
    ("INSERT INTO t VALUES ((SELECT 1))", None),
    ("INSERT INTO t SET a = (SELECT 1)", None),
    ("INSERT INTO t SELECT * FROM u RETURNING id", None),
])
def test_the_select_of_an_insert_is_found_in_its_text(sql, parts):
    assert split_insert_select(sql) == parts


def test_rows_become_typed_literals():
    kinds = column_kinds([column("n", ColumnType.LONGLONG), column("d", ColumnType.DATETIME),
                          column("s", ColumnType.VAR_STRING, CharacterSet.utf8mb4), column("b", ColumnType.BLOB),
                          column("bits", ColumnType.BIT), column("x", ColumnType.NEWDECIMAL)])
    rendered = render_row(row(b"-12", b"2024-02-29 23:59:59.5", "l'été\\".encode(), b"\x00'", b"\x05", None), kinds)
    assert rendered == ("(-12, '2024-02-29 23:59:59.5', _utf8mb4 X'" + "l'été\\".encode().hex() + "', X'0027', X'05', NULL)")
    # a numeric column whose text is not a number is written as a string, never spliced raw
    assert render_row(row(b"1); DROP TABLE t; --"), column_kinds([column("n", ColumnType.LONG)])) == \
        "(X'" + b"1); DROP TABLE t; --".hex() + "')"


def select_answer(rows):
    fields = [column("id", ColumnType.LONG), column("name", ColumnType.VAR_STRING, CharacterSet.utf8mb4)]
    return QueryResult(fields, rows, 0, 0, 0, 0, b"")


def run(cursor: LoggingCursor, sql: str):
    primitive = plan_statement(sql, classify(sql), cursor.snapshot, cursor.state, CACHE)
    object.__setattr__(primitive.write, "clock", lambda: 1700000000.0)
    return primitive, asyncio.run(primitive.execute(cursor))


def test_select_on_one_region_then_the_same_values_on_every_copy():
    # UUID() in the SELECT: evaluated once, on a region holding items (r3 + r2); the write on users' r1 then r2
    def respond(region, sql):
        if sql.startswith("SELECT"):
            return select_answer([row(b"1", b"ash"), row(b"2", None)])
        return None

    c = LoggingCursor(respond=respond)
    primitive, _ = run(c, "INSERT INTO users (id, name) SELECT id, LEFT(UUID(), 3) FROM items WHERE id < 3")
    assert primitive.describe()["MaterializedInsert"]["select_on"] in ("r2", "r3")
    values = f"INSERT INTO users (id, name) VALUES (1, _utf8mb4 X'{b'ash'.hex()}'),(2, NULL)"
    writes = [(region, sql) for region, sql in c.log if values in sql]
    assert [region for region, _ in writes] == ["r1", "r2"]  # the primary, then the replica: the same text
    assert c.log[0][1] == "SELECT id, LEFT(UUID(), 3) FROM items WHERE id < 3"


def test_an_empty_select_writes_nothing():
    c = LoggingCursor(respond=lambda region, sql: select_answer([]) if sql.startswith("SELECT") else None)
    _, reply = run(c, "INSERT INTO users SELECT id, UUID() FROM items")
    assert reply.result.affected_rows == 0 and len(c.log) == 1


def test_more_than_the_bound_is_refused_before_anything_is_written():
    big = row(b"1", b"x" * (1 << 20))
    c = LoggingCursor(respond=lambda region, sql: select_answer([big] * (LIMIT.max_bytes >> 20))
                      if sql.startswith("SELECT") else None)
    with pytest.raises(SqlError) as e:
        run(c, "INSERT INTO users SELECT id, UUID() FROM items")
    assert e.value.errno == 1235 and len(c.log) == 1


def test_a_colocated_insert_select_still_runs_on_each_copy():
    c = LoggingCursor()
    sql = "INSERT INTO users SELECT * FROM orders"  # orders: r2 + r1, users: r1 + r2
    primitive = plan_statement(sql, classify(sql), SNAP, c.state, CACHE)
    assert "FanOutWrite" in primitive.describe()


def test_uuid_in_the_select_is_evaluated_once_for_every_copy():
    sql = "INSERT INTO users (id, name) SELECT id, UUID() FROM orders"  # colocated, but UUID() differs per copy
    primitive = plan_statement(sql, classify(sql), SNAP, LoggingCursor().state, CACHE)
    assert "MaterializedInsert" in primitive.describe()
    sql = "INSERT INTO users SELECT id, name FROM orders ON DUPLICATE KEY UPDATE name = UUID()"
    with pytest.raises(SqlError) as e:
        plan_statement(sql, classify(sql), SNAP, LoggingCursor().state, CACHE)
    assert e.value.errno == 1235
    sql = "INSERT INTO solo SELECT UUID()"  # one copy: runs as written
    assert "FanOutWrite" in plan_statement(sql, classify(sql), SNAP, LoggingCursor().state, CACHE).describe()


def test_set_user_variable_from_a_query_reads_where_the_table_is_then_sets_a_literal():
    def respond(region, sql):
        if sql.startswith("SELECT (SELECT"):
            return QueryResult([column("v", ColumnType.VAR_STRING, CharacterSet.utf8mb4)], [row(b"ash")], 0, 0, 0, 0, b"")
        return None

    c = LoggingCursor(respond=respond)
    sql = "SET @x := (SELECT name FROM items WHERE id = 1)"
    asyncio.run(plan_statement(sql, classify(sql), SNAP, c.state, CACHE).execute(c))
    assert c.log[0] == ("r3", "SELECT (SELECT name FROM items WHERE id = 1)")  # items' primary
    assert any(text == f"SET @x = _utf8mb4 X'{b'ash'.hex()}'" for _, text in c.log[1:])


@pytest.mark.parametrize("rows, outcome", [
    ([row(b"7", b"ash")], "SET @n = 7, @s = _utf8mb4 X'617368'"),
    ([], 1329),  # no row: a warning, the variables kept
    ([row(b"1", b"a"), row(b"2", b"b")], 1172),
])
def test_select_into_variables_sets_them_on_every_connection(rows, outcome):
    def respond(region, sql):
        if sql.startswith("SELECT id, name"):
            return QueryResult([column("id", ColumnType.LONG), column("name", ColumnType.VAR_STRING, CharacterSet.utf8mb4)],
                               rows, 0, 0, 0, 0, b"")
        return None

    c = LoggingCursor(respond=respond)
    sql = "SELECT id, name INTO @n, @s FROM items WHERE id = 7"
    primitive = plan_statement(sql, classify(sql), SNAP, c.state, CACHE)
    if outcome == 1172:
        with pytest.raises(SqlError) as e:
            asyncio.run(primitive.execute(c))
        assert e.value.errno == 1172
        return
    reply = asyncio.run(primitive.execute(c))
    assert c.log[0] == ("r3", "SELECT id, name   FROM items WHERE id = 7")  # the INTO clause cut out
    if outcome == 1329:
        assert reply.result.warnings == 1 and len(c.log) == 1
    else:
        assert any(text == outcome for _, text in c.log[1:]) and reply.result.affected_rows == 1
