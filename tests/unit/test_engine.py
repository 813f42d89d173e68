"""Engine primitives against a logging fake cursor: which statement reaches
which region, in which order, what commits when, and what happens when a copy
fails or disagrees."""

from __future__ import annotations

import asyncio

import pytest

from minisql.errors import CR_SERVER_LOST, SqlError
from proxy.engine import TransactionAborted
from proxy.planbuilder import plan_statement
from proxy.sessionstate import SessionState
from proxy.statements import AnalysisCache, classify
from proxy.txn import TxState

from proxy.backend import QueryResult

from .fakecursor import LoggingCursor, ok_result

CACHE = AnalysisCache()
PIN = "SET STATEMENT timestamp=1700000000.000000 FOR "


def run(cursor: LoggingCursor, sql: str):
    primitive = plan_statement(sql, classify(sql), cursor.snapshot, cursor.state, CACHE)
    if hasattr(primitive, "clock"):
        object.__setattr__(primitive, "clock", lambda: 1700000000.0)
        object.__setattr__(primitive, "seeds", lambda: (11, 22))
    return asyncio.run(primitive.execute(cursor))


def test_autocommit_write_runs_on_primary_then_replica_then_commits_the_primary():
    c = LoggingCursor(respond=lambda region, sql: ok_result(1, 7 if region == "r1" and "INSERT" in sql else 0))
    reply = run(c, "INSERT INTO users (name) VALUES ('a')")
    assert c.log == [
        ("r1", "START TRANSACTION"),
        ("r1", PIN + "INSERT INTO users (name) VALUES ('a')"),
        ("r2", "SET STATEMENT timestamp=1700000000.000000, insert_id=7 FOR INSERT INTO users (name) VALUES ('a')"),
        ("r1", "COMMIT"),
    ]
    assert reply.result.insert_id == 7
    assert (c.state.last_insert_id, c.state.last_insert_region) == (7, "r1")


def test_rand_is_pinned_with_the_same_seeds_on_every_copy():
    c = LoggingCursor(respond=lambda region, sql: ok_result(1))
    run(c, "UPDATE orders SET total = RAND() WHERE id = 1")
    writes = [sql for _, sql in c.log if "UPDATE" in sql]
    assert writes == ["SET STATEMENT timestamp=1700000000.000000, rand_seed1=11, rand_seed2=22 FOR UPDATE orders SET total = RAND() WHERE id = 1"] * 2
    assert [region for region, sql in c.log if "UPDATE" in sql] == ["r2", "r1"]  # orders: primary r2


def test_a_table_with_one_copy_gets_a_plain_statement():
    c = LoggingCursor()
    run(c, "DELETE FROM solo LIMIT 1")
    assert c.log == [("r1", "DELETE FROM solo LIMIT 1")]


def test_primary_failure_never_reaches_the_replica():
    c = LoggingCursor(respond=lambda region, sql: SqlError(1062, "Duplicate entry", "23000") if "INSERT" in sql else None)
    with pytest.raises(SqlError) as info:
        run(c, "INSERT INTO users VALUES (1)")
    assert info.value.errno == 1062
    assert c.log == [("r1", "START TRANSACTION"), ("r1", PIN + "INSERT INTO users VALUES (1)"), ("r1", "ROLLBACK")]


def test_a_primary_failure_that_kept_non_transactional_rows_is_replayed_on_the_replica():
    # MyISAM: INSERT ... SELECT stops at a duplicate after writing a row, and ROLLBACK
    # warns (1196) that it stays.  The replica runs the same statement to keep the same row.
    def respond(region, sql):
        if "INSERT" in sql:
            return SqlError(1062, "Duplicate entry", "23000")
        if sql == "ROLLBACK":
            return QueryResult(None, [], 0, 0, 1, 0, b"")
        return None

    c = LoggingCursor(respond=respond)
    with pytest.raises(SqlError) as info:
        run(c, "INSERT INTO users SELECT 1 UNION ALL SELECT 1")
    assert info.value.errno == 1062
    assert c.log == [("r1", "START TRANSACTION"), ("r1", PIN + "INSERT INTO users SELECT 1 UNION ALL SELECT 1"),
                     ("r1", "ROLLBACK"), ("r2", PIN + "INSERT INTO users SELECT 1 UNION ALL SELECT 1")]


def test_replica_failure_rolls_the_primary_back():
    def respond(region, sql):
        return SqlError(1146, "Table doesn't exist", "42S02") if region == "r2" and "INSERT" in sql else ok_result(1)

    c = LoggingCursor(respond=respond)
    with pytest.raises(SqlError) as info:
        run(c, "INSERT INTO users VALUES (1)")
    assert "replica region 'r2'" in info.value.message
    assert c.log[-1] == ("r1", "ROLLBACK") and ("r1", "COMMIT") not in c.log


def test_divergence_rolls_back_and_is_an_error():
    c = LoggingCursor(respond=lambda region, sql: ok_result(2 if region == "r1" else 1) if "UPDATE" in sql else None)
    with pytest.raises(SqlError) as info:
        run(c, "UPDATE users SET a = 1 WHERE b = 2")
    assert "disagree" in info.value.message
    assert c.log[-1] == ("r1", "ROLLBACK")


def test_explicit_transaction_joins_lazily_and_commits_replicas_first():
    c = LoggingCursor(respond=lambda region, sql: ok_result(1))
    run(c, "BEGIN")
    assert c.log == [] and c.state.tx.active
    run(c, "UPDATE orders SET total = 1 WHERE id = 1")  # primary r2, replica r1
    run(c, "SELECT * FROM items")  # r3, read
    run(c, "COMMIT")
    assert c.log == [
        ("r2", "BEGIN"),
        ("r2", PIN + "UPDATE orders SET total = 1 WHERE id = 1"),
        ("r1", "BEGIN"),
        ("r1", PIN + "UPDATE orders SET total = 1 WHERE id = 1"),
        ("r3", "BEGIN"),
        ("r3", "SELECT * FROM items"),
        # replica-only participants first, the primary last
        ("r1", "COMMIT"), ("r3", "COMMIT"), ("r2", "COMMIT"),
    ]
    assert not c.state.tx.active and c.state.participants == []


def test_replica_failure_inside_a_transaction_aborts_all_of_it():
    def respond(region, sql):
        return SqlError(1205, "Lock wait timeout", "HY000") if region == "r2" and "users" in sql else ok_result(1)

    c = LoggingCursor(respond=respond)
    run(c, "START TRANSACTION")
    run(c, "UPDATE orders SET total = 1 WHERE id = 1")
    with pytest.raises(TransactionAborted):
        run(c, "UPDATE users SET a = 1 WHERE id = 1")
    assert not c.state.tx.active
    assert set(c.log[-2:]) == {("r1", "ROLLBACK"), ("r2", "ROLLBACK")}
    assert all(sql != "COMMIT" for _, sql in c.log)


def test_savepoint_under_autocommit_off_opens_the_transaction_and_is_replayed_on_join():
    c = LoggingCursor(state=SessionState(database="shop", tx=TxState(autocommit=False)))
    run(c, "SAVEPOINT a")
    assert c.state.tx.active and c.log == []
    run(c, "INSERT INTO solo VALUES (1)")
    run(c, "ROLLBACK TO SAVEPOINT a")
    run(c, "RELEASE SAVEPOINT a")
    assert c.log == [("r1", "START TRANSACTION"), ("r1", "SAVEPOINT `a`"), ("r1", "INSERT INTO solo VALUES (1)"),
                     ("r1", "ROLLBACK TO SAVEPOINT a"), ("r1", "RELEASE SAVEPOINT a")]
    with pytest.raises(SqlError) as info:
        run(c, "RELEASE SAVEPOINT a")
    assert info.value.errno == 1305


def test_set_runs_everywhere_and_is_replayed_and_autocommit_commits():
    c = LoggingCursor(respond=lambda region, sql: ok_result(0, status=0x0200) if "sql_mode" in sql else None)
    run(c, "SELECT * FROM users")  # opens r1
    run(c, "SELECT * FROM items")  # opens r3
    run(c, "SET sql_mode = 'NO_BACKSLASH_ESCAPES'")
    assert c.log[-2:] == [("r3", "SET sql_mode = 'NO_BACKSLASH_ESCAPES'"), ("r1", "SET sql_mode = 'NO_BACKSLASH_ESCAPES'")]
    assert c.state.no_backslash_escapes and c.state.replay == {"sql_mode": "SET sql_mode = 'NO_BACKSLASH_ESCAPES'"}
    run(c, "SET autocommit = 0")
    assert not c.state.tx.autocommit
    run(c, "INSERT INTO solo VALUES (1)")
    run(c, "SET autocommit = 1")
    assert ("r1", "COMMIT") in c.log and not c.state.tx.active
    run(c, "SET NAMES latin1")
    assert c.charsets == ["latin1"]


def test_set_transaction_inside_a_transaction_is_refused_as_in_mariadb():
    c = LoggingCursor(state=SessionState(database="shop"))
    run(c, "BEGIN")
    run(c, "INSERT INTO solo VALUES (1)")
    with pytest.raises(SqlError) as info:
        run(c, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
    assert info.value.errno == 1568
    run(c, "COMMIT")
    run(c, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")  # for the next transaction: fine
    run(c, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")


def test_a_connection_lost_mid_transaction_fails_the_commit_and_rolls_back_the_rest():
    broken = {"on": False}

    def respond(region, sql):
        if region == "r2" and broken["on"]:
            return SqlError(CR_SERVER_LOST, "gone", "HY000")
        return ok_result(1)

    c = LoggingCursor(respond=respond)
    run(c, "BEGIN")
    run(c, "UPDATE orders SET total = 1")
    broken["on"] = True
    with pytest.raises(SqlError):
        run(c, "SELECT * FROM orders")  # r2 breaks
    with pytest.raises(SqlError) as info:
        run(c, "COMMIT")
    assert info.value.errno == CR_SERVER_LOST
    assert c.log[-1] == ("r1", "ROLLBACK") and ("r1", "COMMIT") not in c.log


def test_reads_route_to_the_primary_sticky_or_any():
    c = LoggingCursor()
    run(c, "SELECT * FROM orders")
    run(c, "SHOW WARNINGS")
    run(c, "SELECT 1")
    assert c.log == [("r2", "SELECT * FROM orders"), ("r2", "SHOW WARNINGS"), ("r2", "SELECT 1")]


def test_last_insert_id_follows_the_session_not_the_connection():
    c = LoggingCursor(respond=lambda region, sql: ok_result(1, 42) if "INSERT" in sql else None)
    run(c, "INSERT INTO solo VALUES (NULL)")
    run(c, "UPDATE orders SET user_id = LAST_INSERT_ID() WHERE id = 1")
    assert ("r2", PIN + "UPDATE orders SET user_id = 42 WHERE id = 1") in c.log


def test_sql_level_prepare_execute_deallocate():
    c = LoggingCursor()
    run(c, "PREPARE s FROM 'SELECT * FROM orders WHERE id = ?'")
    run(c, "SET @id = 5")
    run(c, "EXECUTE s USING @id")
    assert c.log[-1] == ("r2", "SELECT * FROM orders WHERE id = @id")
    run(c, "DEALLOCATE PREPARE s")
    with pytest.raises(SqlError) as info:
        run(c, "EXECUTE s USING @id")
    assert info.value.errno == 1243
    with pytest.raises(SqlError) as info:
        run(c, "PREPARE t FROM 'SELECT * FROM nope WHERE id = ?'")
    assert info.value.errno == 1146  # checked at PREPARE, as MariaDB does


def test_ddl_commits_first_and_goes_to_the_master():
    c = LoggingCursor(respond=lambda region, sql: ok_result(1))
    run(c, "BEGIN")
    run(c, "INSERT INTO solo VALUES (1)")
    run(c, "CREATE TABLE t (id INT)")
    assert c.log[-1] == ("r1", "COMMIT") and c.ddls == ["CREATE TABLE t (id INT)"]
    assert not c.state.tx.active


def test_flush_and_set_global_reach_every_region():
    c = LoggingCursor()
    run(c, "FLUSH TABLES")
    run(c, "SET GLOBAL max_connections = 100")
    assert [r for r, _ in c.log] == ["r1", "r2", "r3", "r1", "r2", "r3"]


def test_warnings_of_an_autocommit_write_are_saved_before_the_commit_clears_them():
    warning = QueryResult([b"col"], [b"\x04Note"], 1, 0, 0, 0, b"")

    def respond(region, sql):
        if sql == "SHOW WARNINGS":
            return warning
        return QueryResult(None, [], 1, 0, 1, 0, b"") if "INSERT" in sql else None

    c = LoggingCursor(respond=respond)
    run(c, "INSERT INTO users VALUES (1)")
    assert [sql for _, sql in c.log][-2:] == ["SHOW WARNINGS", "COMMIT"]
    reply = run(c, "SHOW WARNINGS")
    assert reply.result is warning and c.log[-1] == ("r1", "COMMIT")  # answered from the saved copy


def test_under_lock_tables_a_write_keeps_the_locks():
    c = LoggingCursor(respond=lambda region, sql: ok_result(1))
    run(c, "LOCK TABLES users WRITE")
    assert c.log == [("r1", "LOCK TABLES users WRITE"), ("r2", "LOCK TABLES users WRITE")]
    run(c, "INSERT INTO users VALUES (1)")
    # START TRANSACTION would release the table locks: autocommit=0 instead.
    assert [sql for _, sql in c.log[2:]] == ["SET autocommit=0", PIN + "INSERT INTO users VALUES (1)", PIN + "INSERT INTO users VALUES (1)",
                                            "COMMIT", "SET autocommit=1"]
    run(c, "UNLOCK TABLES")
    assert c.log[-2:] == [("r1", "UNLOCK TABLES"), ("r2", "UNLOCK TABLES")] and c.state.locked_regions == ()


def test_uuid_in_insert_values_is_one_literal_per_call_the_same_on_every_copy():
    c = LoggingCursor(respond=lambda region, sql: ok_result(2))
    run(c, "INSERT INTO users (id, token) VALUES (1, UUID()), (2, 'uuid()')")
    writes = [sql for _, sql in c.log if "INSERT" in sql]
    assert len(writes) == 2 and writes[0] == writes[1]
    assert "UUID()" not in writes[0] and "'uuid()'" in writes[0]  # the string stays a string
    import re
    assert re.search(r"VALUES \(1, '[0-9a-f]{8}-[0-9a-f]{4}-1[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}'\)", writes[0])
    c2 = LoggingCursor(respond=lambda region, sql: ok_result(2))
    run(c2, "INSERT INTO users (id, token) VALUES (1, UUID()), (2, 'uuid()')")
    assert [sql for _, sql in c2.log if "INSERT" in sql][0] != writes[0]  # fresh values each run


def test_update_limit_without_order_by_is_ordered_by_the_primary_key_on_every_copy():
    from proxy.protocol import lenenc_str

    def keys(region, sql):
        if sql.startswith("SHOW KEYS"):
            def row(*v):
                return b"".join(b"\xfb" if x is None else lenenc_str(x.encode()) for x in v)
            rows = [row("users", "0", "PRIMARY", "2", "b", "A", "1", None, None, "", "BTREE", "", "", "NO"),
                    row("users", "0", "PRIMARY", "1", "a", "A", "1", None, None, "", "BTREE", "", "", "NO")]
            return QueryResult([b"c"] * 14, rows, 2, 0, 0, 0, b"")
        return ok_result(1)

    c = LoggingCursor(respond=keys)
    run(c, "DELETE FROM users WHERE name = 'limit' LIMIT 1")
    deletes = [sql for _, sql in c.log if "DELETE" in sql]
    assert deletes == [PIN + "DELETE FROM users WHERE name = 'limit' ORDER BY `a`, `b` LIMIT 1"] * 2


def test_a_session_that_fixed_its_timestamp_keeps_it_in_replicated_writes():
    c = LoggingCursor(respond=lambda region, sql: ok_result(1))
    run(c, "SET timestamp = 1288000000")
    run(c, "INSERT INTO users (name) VALUES (NOW())")
    writes = [sql for _, sql in c.log if "INSERT" in sql]
    assert writes == ["INSERT INTO users (name) VALUES (NOW())"] * 2  # the session's time, already on every connection
    run(c, "SET timestamp = DEFAULT")
    run(c, "INSERT INTO users (name) VALUES (NOW())")
    assert [sql for _, sql in c.log if "INSERT" in sql][-1].startswith(PIN)


def test_warnings_of_set_and_rollback_reach_the_client():
    def respond(region, sql):
        if sql.startswith("SET @@tmp_table_size") or sql == "ROLLBACK":
            return QueryResult(None, [], 0, 0, 1, 0, b"")  # MariaDB's 1292 / 1196
        return ok_result(1)

    c = LoggingCursor(respond=respond)
    assert run(c, "SET @@tmp_table_size = 1024").result.warnings == 1
    run(c, "BEGIN")
    run(c, "INSERT INTO solo VALUES (1)")
    assert run(c, "ROLLBACK").result.warnings == 1


def test_a_consistent_snapshot_is_taken_on_every_region_at_start_transaction():
    c = LoggingCursor(respond=lambda region, sql: ok_result(0))
    run(c, "START TRANSACTION WITH CONSISTENT SNAPSHOT")
    assert c.log == [(r, "START TRANSACTION WITH CONSISTENT SNAPSHOT") for r in ("r1", "r2", "r3")]
    run(c, "SELECT * FROM items")  # no second START TRANSACTION on its region
    assert [sql for _, sql in c.log].count("START TRANSACTION WITH CONSISTENT SNAPSHOT") == 3


def test_limit_on_a_keyless_table_orders_by_every_column():
    from proxy.protocol import lenenc_str

    def answer(region, sql):
        if sql.startswith("SHOW KEYS"):
            return QueryResult([b"c"] * 14, [], 0, 0, 0, 0, b"")
        if sql.startswith("SHOW COLUMNS"):
            return QueryResult([b"c"] * 6, [lenenc_str(b"v") + b"\xfb" * 5, lenenc_str(b"w`x") + b"\xfb" * 5], 2, 0, 0, 0, b"")
        return ok_result(1)

    c = LoggingCursor(respond=answer)
    run(c, "UPDATE orders SET total = 0 LIMIT 1")
    updates = [sql for _, sql in c.log if sql.startswith(PIN)]
    assert updates == [PIN + "UPDATE orders SET total = 0 ORDER BY `v`, `w``x` LIMIT 1"] * 2


def test_prepare_from_a_user_variable_takes_its_value():
    from proxy.protocol import lenenc_str

    def answer(region, sql):
        if sql == "SELECT @s":
            return QueryResult([b"c"], [lenenc_str(b"SELECT * FROM users WHERE id = ?")], 1, 0, 0, 0, b"")
        return ok_result(0)

    c = LoggingCursor(respond=answer)
    run(c, "PREPARE st FROM @s")
    assert c.state.named["st"] == "SELECT * FROM users WHERE id = ?"
    run(c, "EXECUTE st USING 1e0")
    assert c.log[-1] == ("r1", "SELECT * FROM users WHERE id = 1e0")


def test_a_statement_that_assigns_user_variables_sets_them_on_every_connection_after():
    from proxy.protocol import lenenc_str

    def answer(region, sql):
        if sql == "SELECT @c":
            return QueryResult([b"\x03def\x00\x00\x00\x02@c\x00\x0c\x3f\x00\x14\x00\x00\x00\x08\x80\x00\x00\x00\x00"],
                               [lenenc_str(b"3")], 1, 0, 0, 0, b"")
        return ok_result(1)

    c = LoggingCursor(respond=answer)
    run(c, "SELECT * FROM items")  # opens r3
    run(c, "UPDATE users SET id = (@c := @c + 1)")  # on r1 (primary), r2
    after = c.log[c.log.index(("r1", "SELECT @c")):]
    assert sorted(r for r, sql in after if sql == "SET @c = 3") == ["r1", "r2", "r3"]  # every open connection
    assert c.state.replay["@c"] == "SET @c = 3"  # and the ones opened later
