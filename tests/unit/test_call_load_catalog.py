"""CALL routing, LOAD DATA fan-out and merged information_schema reads, against the
logging fake cursor: which statements reach which region, in which order."""

from __future__ import annotations

import asyncio

import pytest

from minisql.errors import SqlError
from proxy.backend import QueryResult
from proxy.planbuilder import plan_statement
from proxy.protocol import lenenc_str
from proxy.routines import body_facts, plan_call
from proxy.statements import AnalysisCache, classify

from .fakecursor import SNAP, LoggingCursor, ok_result

CACHE = AnalysisCache()


def definition(body: str) -> QueryResult:
    row = b"".join(lenenc_str(v.encode()) for v in ("p", "STRICT_TRANS_TABLES", body, "utf8mb4", "utf8mb4_general_ci", "x"))
    return QueryResult([b"col"] * 6, [row], 1, 0, 0, 0, b"")


def run(cursor: LoggingCursor, sql: str):
    primitive = plan_statement(sql, classify(sql), cursor.snapshot, cursor.state, CACHE)
    if hasattr(primitive, "clock"):
        object.__setattr__(primitive, "clock", lambda: 1700000000.0)
    return asyncio.run(primitive.execute(cursor))


def responder(bodies: dict[str, str]):
    def respond(region: str, sql: str):
        for name, body in bodies.items():
            if sql.startswith("SHOW CREATE PROCEDURE") and sql.endswith(f".`{name}`"):
                return definition(body)
        if sql.startswith("SHOW CREATE PROCEDURE"):
            return SqlError(1305, "PROCEDURE does not exist", "42000")
        return ok_result(1)
    return respond


def test_body_facts_name_tables_writes_and_nested_calls():
    facts = body_facts("BEGIN /* from ghost */ INSERT INTO t0 VALUES ('from fake'); SELECT a INTO v FROM other.t1 "
                       "JOIN `t 2` ON 1; CALL inner_proc(1); END", "db")
    assert {("db", "t0"), ("other", "t1"), ("db", "t 2")} <= facts.tables
    assert ("db", "ghost") not in facts.tables and ("db", "fake") not in facts.tables  # comments and strings skipped
    assert facts.writes and facts.calls == {("db", "inner_proc")}
    assert not body_facts("BEGIN SELECT COUNT(*) FROM users; END", "shop").writes


def test_a_reading_call_goes_to_a_region_holding_its_tables():
    c = LoggingCursor(respond=responder({"p": "CREATE PROCEDURE p() BEGIN SELECT * FROM users JOIN orders ON 1; END"}))
    run(c, "CALL p()")
    assert c.log[-1] == ("r2", "CALL p()")  # both tables are on r1 and r2; the first named (orders) has its primary on r2


def test_a_writing_call_fans_out_like_a_write():
    c = LoggingCursor(respond=responder({"p": "CREATE PROCEDURE p() BEGIN UPDATE orders SET total = 0; END"}))
    run(c, "CALL p()")
    calls = [(region, sql) for region, sql in c.log if "CALL" in sql or sql in ("START TRANSACTION", "COMMIT")]
    assert [r for r, _ in calls] == ["r2", "r2", "r1", "r2"]  # BEGIN, CALL on the primary, CALL on the replica, COMMIT
    assert calls[1][1].endswith("FOR CALL p()") and "rand_seed1" in calls[1][1]


def test_nested_calls_are_followed():
    c = LoggingCursor(respond=responder({
        "outer_p": "CREATE PROCEDURE outer_p() BEGIN CALL inner_p(); END",
        "inner_p": "CREATE PROCEDURE inner_p() BEGIN SELECT * FROM items; END",
    }))
    run(c, "CALL outer_p()")
    assert c.log[-1] == ("r3", "CALL outer_p()")


def test_writes_to_tables_on_different_regions_are_refused():
    facts = [body_facts("BEGIN INSERT INTO users VALUES (1); INSERT INTO items VALUES (1); END", "shop")]
    with pytest.raises(SqlError) as info:
        plan_call("CALL p()", facts, SNAP, None, 1)
    assert info.value.errno == 1235


def test_a_write_to_no_known_table_is_refused_not_guessed():
    facts = [body_facts("BEGIN INSERT INTO nowhere VALUES (1); END", "shop")]
    with pytest.raises(SqlError) as info:
        plan_call("CALL p()", facts, SNAP, None, 1)
    assert info.value.errno == 1235


def test_an_unknown_procedure_gets_mariadbs_own_error_from_any_region():
    c = LoggingCursor(respond=responder({}))
    run(c, "CALL missing()")
    assert c.log[-1][1] == "CALL missing()"


def test_load_data_local_sends_the_client_file_to_every_copy_in_one_transaction_each():
    c = LoggingCursor(respond=lambda region, sql: ok_result(3, 10 if region == "r1" and "LOAD" in sql else 0))
    run(c, "LOAD DATA LOCAL INFILE 'x.csv' INTO TABLE users")
    assert c.log == [
        ("r1", "START TRANSACTION"),
        ("r1", "SET STATEMENT timestamp=1700000000.000000 FOR LOAD DATA LOCAL INFILE 'x.csv' INTO TABLE users <- client file"),
        ("r2", "SET STATEMENT timestamp=1700000000.000000, insert_id=10 FOR LOAD DATA LOCAL INFILE 'x.csv' INTO TABLE users <- client file"),
        ("r1", "COMMIT"),
    ]


# -- information_schema merged from every region (catalogscatter.py) ------------------------
def test_a_catalog_query_keeps_each_table_once_from_its_primary():
    from proxy.catalogscatter import encode_row

    held = {"r1": ["users", "orders", "solo", "logs"], "r2": ["users", "orders", "items"], "r3": ["items", "logs"]}
    sent = []

    def respond(region, sql):
        sent.append(sql)
        rows = [encode_row([name.encode(), f"{region}:{name}".encode(), b"shop", name.encode(), name.encode()])
                for name in held[region]]
        rows.append(encode_row([b"TABLES", region.encode(), b"information_schema", b"TABLES", b"TABLES"]))
        return QueryResult([b"f"] * 5, rows, len(rows), 0, 0, 0, b"")

    c = LoggingCursor(respond=respond)
    reply = run(c, "SELECT TABLE_NAME, CREATE_OPTIONS FROM information_schema.TABLES ORDER BY TABLE_NAME LIMIT 10")
    assert sent[0].startswith("SELECT TABLE_NAME, CREATE_OPTIONS, `table_schema` AS `__minisql_0`, `table_name` AS `__minisql_1`, "
                              "`table_name` AS `__minisql_2` FROM information_schema.TABLES ORDER BY TABLE_NAME")
    assert "LIMIT" not in sent[0]  # applied after the merge
    from proxy.protocol import text_row

    rows = [tuple(v.decode() for v in text_row(r)) for r in reply.result.rows]
    assert rows == [("TABLES", "r1"), ("items", "r3:items"), ("logs", "r3:logs"), ("orders", "r2:orders"),
                    ("solo", "r1:solo"), ("users", "r1:users")]
    assert len(reply.result.fields) == 2


def test_show_status_rows_about_the_client_connection_are_the_proxys():
    def respond(region, sql):
        rows = [lenenc_str(b"Compression") + lenenc_str(b"OFF"), lenenc_str(b"Bytes_sent") + lenenc_str(b"42")]
        return QueryResult([b"f", b"f"], rows, 2, 0, 0, 0, b"")

    c = LoggingCursor(respond=respond)
    reply = run(c, "SHOW STATUS")
    from proxy.protocol import text_row
    assert [tuple(text_row(r)) for r in reply.result.rows] == [(b"Compression", b"ON"), (b"Bytes_sent", b"42")]


def test_show_global_status_counts_client_connections_at_the_proxy():
    def respond(region, sql):
        rows = [lenenc_str(name) + lenenc_str(b"1") for name in (b"Aborted_clients", b"Compression", b"Connections")]
        return QueryResult([b"f", b"f"], rows, 2, 0, 0, 0, b"")

    c = LoggingCursor(respond=respond)
    reply = run(c, "SHOW GLOBAL STATUS")
    from proxy.protocol import text_row
    # the proxy's counters; Compression is the region's (global scope: not about this client)
    assert [tuple(text_row(r)) for r in reply.result.rows] == [(b"Aborted_clients", b"7"), (b"Compression", b"1"),
                                                              (b"Connections", b"9")]
