"""Pure helpers of the region agent: quoting, error mapping, /proc parsing, dispatch."""

from __future__ import annotations

import asyncio
import os

import pymysql
import pytest

from minisql.errors import SqlError
from region.load import find_mariadb_pid, read_cpu_ticks
from region.mysql import qualified, quote_ident, sql_error_of
from region.tasks import RegionTasks, _starts_with_create

QUOTE_CASES = [
    ("t", "`t`"),
    ("we`ird", "`we``ird`"),
    ("my table", "`my table`"),
    ("a%s", "`a%s`"),
]


@pytest.mark.parametrize("name, quoted", QUOTE_CASES)
def test_quote_ident(name, quoted):
    assert quote_ident(name) == quoted


def test_qualified():
    assert qualified("d`b", "t") == "`d``b`.`t`"


ERROR_CASES = [
    # (driver exception, errno, sqlstate)
    (pymysql.err.IntegrityError(1062, "Duplicate entry '1' for key 'PRIMARY'", sqlstate="23000"), 1062, "23000"),
    (pymysql.err.OperationalError(1050, "Table 't' already exists"), 1050, "42S01"),  # catalogue SQLSTATE
    (pymysql.err.OperationalError(1234, "something new"), 1234, "HY000"),
    (pymysql.err.OperationalError(2003, "Can't connect to MySQL server"), 2003, "HY000"),
    (pymysql.err.InterfaceError(0, ""), 2013, "HY000"),
    (ConnectionRefusedError(111, "refused"), 2003, "HY000"),
    (asyncio.TimeoutError(), 2003, "HY000"),
    (ValueError("boom"), 1105, "HY000"),
]


@pytest.mark.parametrize("exc, errno, sqlstate", ERROR_CASES, ids=[type(c[0]).__name__ + str(c[1]) for c in ERROR_CASES])
def test_sql_error_of(exc, errno, sqlstate):
    err = sql_error_of(exc)
    assert (err.errno, err.sqlstate) == (errno, sqlstate)


def test_sql_error_of_keeps_the_message_and_passes_sql_errors_through():
    assert sql_error_of(pymysql.err.OperationalError(1050, "Table 't' already exists")).message == (
        "Table 't' already exists"
    )
    original = SqlError(1049, "Unknown database 'x'")
    assert sql_error_of(original) is original


@pytest.mark.parametrize(
    "sql, expected",
    [("CREATE TABLE t (a int)", True), ("  create index i on t (a)", True), ("ALTER TABLE t ADD b int", False),
     ("DROP TABLE t", False)],
)
def test_starts_with_create(sql, expected):
    assert _starts_with_create(sql) is expected


def test_read_cpu_ticks_of_this_process():
    ticks = read_cpu_ticks(os.getpid())
    assert ticks is not None and ticks >= 0
    assert read_cpu_ticks(2**22 + 12345) is None  # no such pid


def test_find_mariadb_pid_rejects_other_processes(tmp_path):
    pid_file = tmp_path / "x.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    assert find_mariadb_pid(str(pid_file)) is None  # a python process, not mariadbd
    assert find_mariadb_pid(str(tmp_path / "missing.pid")) is None


def test_unknown_op_and_bad_payloads_become_error_results():
    async def main() -> None:
        tasks = RegionTasks("r1", pool=None, creds=None, mysql_host="127.0.0.1", mysql_port=1)  # type: ignore[arg-type]
        unknown = await tasks.handle({"op": "format_disk"})
        assert unknown["error"]["errno"] == 1235
        missing = await tasks.handle({"op": "drop_table", "database": "d"})
        assert missing["error"]["errno"] == 1105 and "'table'" in missing["error"]["message"]
        system = await tasks.handle({"op": "drop_database", "database": "mysql"})
        assert system["error"]["errno"] == 1044
        self_copy = await tasks.handle(
            {"op": "copy_table", "database": "d", "table": "t", "source": {"region_id": "r1", "host": "h", "port": 1}}
        )
        assert self_copy["error"]["errno"] == 1105 and "itself" in self_copy["error"]["message"]

    asyncio.run(main())


def test_fix_bytes_escaping_only_changes_bytes():
    from region.mysql import fix_bytes_escaping

    class FakeConn:
        def escape(self, obj):
            if isinstance(obj, bytes):
                raise TypeError("'str' object is not callable")  # aiomysql 0.3.2 + PyMySQL 1.2
            return f"<{obj}>"

    conn = fix_bytes_escaping(FakeConn())
    assert conn.escape(b"\x00'\xff") == "_binary X'0027ff'"
    assert conn.escape(bytearray(b"")) == "_binary X''"
    assert conn.escape(5) == "<5>"
    assert FakeConn().escape(5) == "<5>"  # the class itself is untouched


def test_ddl_is_sent_in_the_clients_character_set_when_it_can_carry_the_text():
    from region.tasks import _client_encoding

    assert _client_encoding("latin1", ("CREATE VIEW v AS SELECT 'caf\u00e9'",)) == "latin1"
    assert _client_encoding("KOI8R", ("CREATE TABLE t (a INT)",)) == "koi8r"
    assert _client_encoding("latin1", ("CREATE VIEW v AS SELECT '\u2603'",)) is None  # not in latin1: utf8mb4
    assert _client_encoding("utf8mb4", ("x",)) is None and _client_encoding("binary", ("x",)) is None
    assert _client_encoding("no-such-charset", ("x",)) is None and _client_encoding(None, ("x",)) is None


def test_a_task_from_an_older_leader_epoch_is_refused():
    tasks = RegionTasks("r1", pool=None, creds=None, mysql_host="127.0.0.1", mysql_port=1)  # type: ignore[arg-type]

    def handle(payload):
        return asyncio.run(tasks.handle(payload))

    first = handle({"op": "xa_forget", "older_than": 5, "epoch": 7})  # served (and refused for its own reason)
    assert "older_than" in first["error"]["message"] and tasks.leader_epoch == 7
    stale = handle({"op": "xa_forget", "older_than": 5, "epoch": 6})
    assert "leader epoch 6 is older than 7" in stale["error"]["message"]
    newer = handle({"op": "xa_forget", "older_than": 5, "epoch": 9})
    assert "older_than" in newer["error"]["message"] and tasks.leader_epoch == 9
    unstamped = handle({"op": "xa_forget", "older_than": 5})  # tools and tests send none
    assert "older_than" in unstamped["error"]["message"]


def test_a_returning_region_drops_only_the_copies_the_placement_gives_to_others():
    from region.stale import stale_tables
    from topology import EMPTY_PLACEMENT, ReplicaState, TablePlacement

    p = EMPTY_PLACEMENT.with_database("shop").with_database("empty")
    p = p.with_table(TablePlacement("shop", "moved", "r2", {"r3": ReplicaState.IN_SYNC}))  # failed over away from r1
    p = p.with_table(TablePlacement("shop", "kept", "r2", {"r1": ReplicaState.IN_SYNC}))
    present = [("shop", "moved", "BASE TABLE"), ("shop", "kept", "BASE TABLE"), ("shop", "unknown", "BASE TABLE"),
               ("other", "moved", "BASE TABLE"), ("mysql", "user", "BASE TABLE")]
    assert stale_tables(p, "r1", present) == [("shop", "moved", "BASE TABLE")]
    assert stale_tables(EMPTY_PLACEMENT, "r1", present) == []  # an empty placement drops nothing


def test_fill_key_ranges_are_lexicographic_over_a_composite_key():
    from region.fill import after_key, upto_key

    where, params = after_key(["a", "b"], (1, "x"))
    assert where == "((`a` > %s) OR (`a` = %s AND `b` > %s))" and params == [1, 1, "x"]
    where, params = upto_key(["a", "b"], (1, "x"))
    assert where == "((`a` < %s) OR (`a` = %s AND `b` < %s) OR (`a` = %s AND `b` = %s))"
    assert params == [1, 1, "x", 1, "x"]
    assert after_key(["id"], (5,)) == ("((`id` > %s))", [5])


def test_fill_literals_are_exact_for_every_known_type():
    from region.fill import exact_text, literal_sql

    assert literal_sql("b", "blob") == "IF(`b` IS NULL, 'NULL', CONCAT('X''', HEX(`b`), ''''))"  # bytes, any charset
    assert literal_sql("f", "float") == "IF(`f` IS NULL, 'NULL', CAST(`f` AS DOUBLE))"  # not its 6-digit text
    assert literal_sql("bits", "bit") == "IF(`bits` IS NULL, 'NULL', CONCAT('0x', HEX(`bits`)))"
    assert literal_sql("d", "datetime") == "IF(`d` IS NULL, 'NULL', QUOTE(`d`))"
    assert literal_sql("u", "uuid") is None  # unknown here: copied through Python rows
    assert exact_text("f", "float") == "CAST(`f` AS DOUBLE)" and exact_text("x", "double") == "`x`"
