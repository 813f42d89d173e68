"""The client's own XA transactions (proxy/appxa.py) against the logging fake
cursor: one branch per region the transaction reaches, every XA statement on
all of them, MariaDB's errors for statements in the wrong state, and
recovery of branches a disconnected session left prepared."""

from __future__ import annotations

import asyncio

import pytest

from minisql.errors import SqlError
from minisql.xa import FORMAT_ID
from proxy.appxa import MARKER, AppXid, branches_in, parse_xa
from proxy.backend import QueryResult
from proxy.protocol import lenenc_str
from proxy.statements import Kind, classify

from .fakecursor import ok_result
from .fakecursor import run_sql as run
from .fakecursor import xa_cursor as cursor

PIN = "SET STATEMENT timestamp=1700000000.000000 FOR "


def branch(region: str, gtrid: bytes = b"g1", bqual: bytes = b"", fmt: int = 1) -> str:
    return f"X'{gtrid.hex()}',X'{(bqual + MARKER + region.encode()).hex()}',{fmt}"




def recover_rows(*branches: tuple[int, bytes, bytes]) -> QueryResult:
    rows = [b"".join(lenenc_str(v) for v in (str(f).encode(), str(len(g)).encode(), str(len(b)).encode(), g + b))
            for f, g, b in branches]
    return QueryResult([b"formatID", b"gtrid_length", b"bqual_length", b"data"], rows, 0, 0, 0, 0, b"")


def test_xa_statements_are_parsed_as_mariadb_spells_them():
    assert classify("XA START 'x'") is Kind.XA
    assert parse_xa("xa begin 'a','b',7").xid == AppXid(b"a", b"b", 7)
    assert parse_xa("XA START X'00ff', 0x61").xid == AppXid(b"\x00\xff", b"a", 1)
    assert parse_xa("XA COMMIT 'a' ONE PHASE").one_phase
    assert parse_xa("XA RECOVER FORMAT='SQL'").sql_format
    for bad, errno in (("XA START 'a' JOIN", 1398), ("XA END 'a' SUSPEND", 1398), ("XA COMMIT 'a' TWICE", 1064),
                       ("XA START ''", 1398), ("XA START '" + "x" * 65 + "'", 1398), ("XA NONSENSE", 1064)):
        with pytest.raises(SqlError) as e:
            parse_xa(bad)
        assert e.value.errno == errno, bad


def test_a_client_xa_transaction_has_a_branch_on_every_region_it_writes_and_ends_on_all():
    c = cursor()
    run(c, "XA START 'g1'")
    assert c.state.app_xa == "ACTIVE" and c.state.server_status & 1
    run(c, "UPDATE users SET name = 'a' WHERE id = 1")  # users: primary r1, replica r2
    run(c, "UPDATE items SET n = 2 WHERE id = 1")  # items: primary r3, replica r2
    assert c.log[:4] == [
        ("r1", f"XA START {branch('r1')}"),
        ("r1", PIN + "UPDATE users SET name = 'a' WHERE id = 1"),
        ("r2", f"XA START {branch('r2')}"),
        ("r2", PIN + "UPDATE users SET name = 'a' WHERE id = 1"),
    ]
    assert ("r3", f"XA START {branch('r3')}") in c.log
    assert not any("COMMIT" in sql or "PREPARE" in sql for _, sql in c.log)  # the client decides, not the proxy
    c.log.clear()
    run(c, "XA END 'g1'")
    run(c, "XA PREPARE 'g1'")
    assert c.state.app_xa == "PREPARED"
    run(c, "XA COMMIT 'g1'")
    assert sorted(c.log) == sorted([(r, f"XA {verb} {branch(r)}") for verb in ("END", "PREPARE", "COMMIT")
                                    for r in ("r1", "r2", "r3")])
    assert c.state.app_xa == "" and not c.state.tx.active and not c.state.participants


def test_one_phase_commit_of_several_branches_prepares_them_first():
    c = cursor()
    run(c, "XA START 'g1'")
    run(c, "UPDATE users SET name = 'a' WHERE id = 1")
    run(c, "XA END 'g1'")
    c.log.clear()
    run(c, "XA COMMIT 'g1' ONE PHASE")
    assert [sql.split(" X'")[0] for _, sql in c.log] == ["XA PREPARE", "XA PREPARE", "XA COMMIT", "XA COMMIT"]


def test_one_phase_commit_of_one_branch_is_one_statement():
    c = cursor()
    run(c, "XA START 'g1'")
    run(c, "UPDATE solo SET n = 1 WHERE id = 1")  # one copy, on r1
    run(c, "XA END 'g1'")
    c.log.clear()
    run(c, "XA COMMIT 'g1' ONE PHASE")
    assert c.log == [("r1", f"XA COMMIT {branch('r1')} ONE PHASE")]


def test_a_failed_prepare_rolls_every_branch_back():
    def respond(region, sql):
        if sql.startswith("XA PREPARE") and region == "r2":
            return SqlError(1614, "Transaction branch was rolled back: deadlock was detected", "XA102")
        return ok_result(1)

    c = cursor(respond)
    run(c, "XA START 'g1'")
    run(c, "UPDATE users SET name = 'a' WHERE id = 1")
    run(c, "XA END 'g1'")
    with pytest.raises(SqlError) as e:
        run(c, "XA PREPARE 'g1'")
    assert e.value.errno == 1614
    assert ("r1", f"XA ROLLBACK {branch('r1')}") in c.log and c.state.app_xa == ""


@pytest.mark.parametrize("sql, state, errno", [
    ("COMMIT", "ACTIVE", 1399), ("BEGIN", "ACTIVE", 1399), ("SET autocommit = 1", "ACTIVE", 1399),
    ("XA START 'g2'", "ACTIVE", 1399), ("XA PREPARE 'g1'", "ACTIVE", 1399), ("XA COMMIT 'g1'", "ACTIVE", 1399),
    ("XA END 'g2'", "ACTIVE", 1399), ("XA COMMIT 'g1'", "IDLE", 1399), ("XA END 'g1'", "IDLE", 1399),
    ("XA COMMIT 'g1' ONE PHASE", "PREPARED", 1399),
])
def test_statements_in_the_wrong_xa_state_get_mariadbs_errors(sql, state, errno):
    c = cursor()
    run(c, "XA START 'g1'")
    run(c, "UPDATE users SET name = 'a' WHERE id = 1")
    if state in ("IDLE", "PREPARED"):
        run(c, "XA END 'g1'")
    if state == "PREPARED":
        run(c, "XA PREPARE 'g1'")
    with pytest.raises(SqlError) as e:
        run(c, sql)
    assert e.value.errno == errno and state in e.value.message
    assert c.state.app_xa == state  # nothing changed


def test_a_new_region_after_xa_end_is_refused():
    c = cursor()
    run(c, "XA START 'g1'")
    run(c, "UPDATE solo SET n = 1 WHERE id = 1")
    run(c, "XA END 'g1'")
    with pytest.raises(SqlError) as e:
        run(c, "UPDATE items SET n = 2 WHERE id = 1")  # r3, r2: not in the transaction
    assert e.value.errno == 1399


def test_xa_start_inside_an_open_transaction_is_outside_work():
    c = cursor()
    run(c, "BEGIN")
    with pytest.raises(SqlError) as e:
        run(c, "XA START 'g1'")
    assert e.value.errno == 1400


def test_recovery_finds_the_branches_a_gone_session_left_prepared():
    ours = (FORMAT_ID, b"ms1:r1:t0.0:1", b"r1")  # the cluster's own branch: never shown, never touched
    found = {
        "r1": [(1, b"g1", b"q" + MARKER + b"r1"), ours],
        "r2": [(1, b"g1", b"q" + MARKER + b"r2"), (1, b"other", b"")],  # a branch not made through the cluster
        "r3": [],
    }

    def respond(region, sql):
        if sql == "XA RECOVER":
            return recover_rows(*found[region])
        return ok_result(0)

    c = cursor(respond)
    reply = run(c, "XA RECOVER")
    assert len(reply.result.rows) == 1  # g1 once, though it has two branches
    assert branches_in(reply.result.rows, {"r1"}) == []  # the answer is the client's xid, not a branch
    c.log.clear()
    run(c, "XA COMMIT 'g1','q'")
    assert sorted(x for x in c.log if x[1] != "XA RECOVER") == [
        ("r1", f"XA COMMIT {branch('r1', bqual=b'q')}"), ("r2", f"XA COMMIT {branch('r2', bqual=b'q')}")]
    with pytest.raises(SqlError) as e:
        run(c, "XA ROLLBACK 'nope'")
    assert e.value.errno == 1397


def test_an_abort_by_the_proxy_rolls_the_client_branches_back():
    from proxy.commit import end_transaction
    from proxy.txn import Event

    c = cursor()
    run(c, "XA START 'g1'")
    run(c, "UPDATE users SET name = 'a' WHERE id = 1")
    c.log.clear()
    asyncio.run(end_transaction(c, c.state.on(Event.ABORT)))
    assert sorted(c.log) == sorted([(r, f"XA {v} {branch(r)}") for r in ("r1", "r2") for v in ("END", "ROLLBACK")])
    assert c.state.app_xa == "" and not c.state.tx.active


def test_finishing_another_sessions_xid_needs_autocommit_as_on_mariadb():
    c = cursor()
    run(c, "SET autocommit = 0")
    with pytest.raises(SqlError) as e:
        run(c, "XA COMMIT 'g1'")
    assert e.value.errno == 1400  # MariaDB: in_multi_stmt_transaction_mode()
