"""Atomic commit across regions (proxy/commit.py), against the logging fake
cursor: which XA statement reaches which region, in which order, and what
is decided where -- including every failure point of the protocol."""

from __future__ import annotations


import pytest

from minisql.errors import CR_SERVER_LOST, SqlError
from minisql.xa import FORMAT_ID
from proxy.backend import QueryResult

from .fakecursor import ok_result
from .fakecursor import run_sql as run
from .fakecursor import xa_cursor as cursor

PIN = "SET STATEMENT timestamp=1700000000.000000 FOR "
G1 = "ms1:r1:t0.0:1"


def xid(gtrid: str, region: str) -> str:
    return f"'{gtrid}','{region}',{FORMAT_ID}"




def prepared(gtrid: str, *regions: str) -> list:
    return [step for r in regions for step in ((r, f"XA END {xid(gtrid, r)}"), (r, f"XA PREPARE {xid(gtrid, r)}"))]


def committed(gtrid: str, *regions: str) -> list:
    return [(r, f"XA COMMIT {xid(gtrid, r)}") for r in regions]


def rolled_back(gtrid: str, *regions: str) -> list:
    return [step for r in regions for step in ((r, f"XA END {xid(gtrid, r)}"), (r, f"XA ROLLBACK {xid(gtrid, r)}"))]


def test_an_autocommit_write_commits_both_copies_in_two_phases_decided_on_the_primary():
    c = cursor()
    run(c, "UPDATE users SET name = 'a' WHERE id = 1")
    assert c.log == [
        ("r1", f"XA START {xid(G1, 'r1')}"),
        ("r1", PIN + "UPDATE users SET name = 'a' WHERE id = 1"),
        ("r2", f"XA START {xid(G1, 'r2')}"),
        ("r2", PIN + "UPDATE users SET name = 'a' WHERE id = 1"),
        *prepared(G1, "r2", "r1"),
        ("decide@r1", G1),
        ("decide@r2", G1),  # the backup copy of the decision: it outlives a failover of r1
        *committed(G1, "r2", "r1"),
    ]


def test_copies_that_disagree_are_both_rolled_back_and_nothing_is_decided():
    c = cursor(lambda region, sql: ok_result(0 if region == "r2" and "UPDATE" in sql else 1))
    with pytest.raises(SqlError) as e:
        run(c, "UPDATE users SET name = 'a' WHERE id = 1")
    assert "disagree" in e.value.message
    assert c.log[-4:] == rolled_back(G1, "r1", "r2")
    assert not any(r.startswith("decide") for r, _ in c.log)


def test_a_failed_prepare_rolls_every_branch_back():
    def respond(region, sql):
        return SqlError(1614, "Transaction branch was rolled back: deadlock", "XA102") if region == "r2" and "PREPARE" in sql else ok_result(1)

    c = cursor(respond)
    with pytest.raises(SqlError) as e:
        run(c, "UPDATE users SET name = 'a' WHERE id = 1")
    assert e.value.errno == 1614
    assert c.log[-4:] == rolled_back(G1, "r2", "r1")
    assert not any(r.startswith("decide") for r, _ in c.log)


def test_when_the_resolver_decided_first_the_branches_are_rolled_back_and_the_client_told():
    def respond(region, sql):
        return SqlError(1062, "Duplicate entry", "23000") if region == "decide@r1" else ok_result(1)

    c = cursor(respond)
    with pytest.raises(SqlError) as e:
        run(c, "UPDATE users SET name = 'a' WHERE id = 1")
    assert e.value.errno == 1402
    assert c.log[-4:] == rolled_back(G1, "r2", "r1")


def test_a_lost_decision_leaves_the_prepared_branches_to_be_settled_by_the_decision_row():
    def respond(region, sql):
        return SqlError(CR_SERVER_LOST, "Lost connection", "HY000") if region == "decide@r1" else ok_result(1)

    c = cursor(respond)
    with pytest.raises(SqlError) as e:
        run(c, "UPDATE users SET name = 'a' WHERE id = 1")
    assert e.value.errno == CR_SERVER_LOST and "resolver" in e.value.message
    # No XA COMMIT, no XA ROLLBACK here: the decision row rules, read by the background settle.
    assert c.log[-2:] == [("decide@r1", G1), ("settle", f"{G1} r2,r1 None")]
    assert set(c.dropped) == {"r1", "r2"}  # their prepared branches are detached, not reused


def test_a_commit_that_fails_after_the_decision_is_an_unknown_outcome_not_an_ok():
    # Decided: the resolver commits r2's prepared branch -- unless r1 (the decider) is
    # lost as well and failed over, when it rolls it back.  The client cannot be told OK.
    def respond(region, sql):
        return SqlError(CR_SERVER_LOST, "Lost connection", "HY000") if region == "r2" and "XA COMMIT" in sql else ok_result(1)

    c = cursor(respond)
    with pytest.raises(SqlError) as e:
        run(c, "UPDATE users SET name = 'a' WHERE id = 1")
    assert e.value.errno == CR_SERVER_LOST and "r2" in e.value.message
    assert ("decide@r1", G1) in c.log and ("r1", f"XA COMMIT {xid(G1, 'r1')}") in c.log and "r2" in c.dropped
    assert ("settle", f"{G1} r2 commit") in c.log  # r2's branch is committed in the background


def test_a_primary_error_rolls_its_branch_back_and_never_reaches_the_replica():
    c = cursor(lambda region, sql: SqlError(1062, "Duplicate entry", "23000") if "INSERT" in sql else ok_result(1))
    with pytest.raises(SqlError):
        run(c, "INSERT INTO users VALUES (1)")
    assert c.log == [("r1", f"XA START {xid(G1, 'r1')}"), ("r1", PIN + "INSERT INTO users VALUES (1)"),
                     *rolled_back(G1, "r1")]


def test_an_explicit_transaction_over_two_primaries_is_one_gtrid_decided_by_its_first_region():
    c = cursor()
    run(c, "BEGIN")
    run(c, "UPDATE users SET name = 'a' WHERE id = 1")  # users: r1 + r2
    run(c, "UPDATE items SET title = 'b' WHERE id = 2")  # items: r3 + r2
    run(c, "COMMIT")
    starts = [(r, sql) for r, sql in c.log if sql.startswith("XA START")]
    assert starts == [("r1", f"XA START {xid(G1, 'r1')}"), ("r2", f"XA START {xid(G1, 'r2')}"),
                      ("r3", f"XA START {xid(G1, 'r3')}")]
    tail = c.log[-11:]
    assert sorted(tail[:6]) == sorted(prepared(G1, "r1", "r2", "r3"))
    assert tail[6:8] == [("decide@r1", G1), ("decide@r2", G1)]  # the decider, then the backup: the smallest other
    assert sorted(tail[8:]) == sorted(committed(G1, "r1", "r2", "r3"))
    assert not c.state.tx.active and c.state.xa_gtrid is None


def test_a_transaction_on_one_region_ends_in_one_phase():
    c = cursor()
    run(c, "START TRANSACTION")
    run(c, "SELECT name FROM users WHERE id = 1")
    run(c, "ROLLBACK")
    assert c.log == [("r1", f"XA START {xid(G1, 'r1')}"), ("r1", "SELECT name FROM users WHERE id = 1"),
                     *rolled_back(G1, "r1")]
    c = cursor()
    run(c, "BEGIN")
    run(c, "SELECT name FROM users WHERE id = 1")
    run(c, "COMMIT")
    assert c.log[-2:] == [("r1", f"XA END {xid(G1, 'r1')}"), ("r1", f"XA COMMIT {xid(G1, 'r1')} ONE PHASE")]


def test_read_only_and_consistent_snapshot_transactions_stay_plain():
    for begin in ("START TRANSACTION READ ONLY", "START TRANSACTION WITH CONSISTENT SNAPSHOT"):
        c = cursor()
        run(c, begin)
        run(c, "SELECT name FROM users WHERE id = 1")
        run(c, "COMMIT")
        assert not any("XA" in sql for _, sql in c.log), c.log
        assert ("r1", "COMMIT") in c.log


def test_a_region_refusing_xa_start_joins_plainly_and_commits_after_the_decision():
    def respond(region, sql):
        return SqlError(1399, "XAER_RMFAIL", "XAE07") if region == "r2" and sql.startswith("XA START") else ok_result(1)

    c = cursor(respond)
    run(c, "BEGIN")
    run(c, "UPDATE users SET name = 'a' WHERE id = 1")
    run(c, "UPDATE items SET title = 'b' WHERE id = 2")
    run(c, "COMMIT")
    assert ("r2", "BEGIN") in c.log  # the client's own begin statement
    decided = c.log.index(("decide@r1", G1))
    assert c.log.index(("r2", "COMMIT")) > decided


def test_set_autocommit_1_commits_an_open_xa_transaction_before_it_reaches_the_regions():
    c = cursor()
    run(c, "SET autocommit = 0")
    run(c, "UPDATE users SET name = 'a' WHERE id = 1")
    run(c, "SET autocommit = 1")
    commit_at = c.log.index(("decide@r1", G1))
    set_at = max(i for i, (_, sql) in enumerate(c.log) if sql == "SET autocommit = 1")
    assert commit_at < set_at
    assert not c.state.tx.active and c.state.tx.autocommit


def test_the_one_phase_warnings_reach_the_client_state():
    c = cursor(lambda region, sql: QueryResult(None, [], 0, 0, 1, 0, b"") if "ROLLBACK" in sql else ok_result(1))
    run(c, "BEGIN")
    run(c, "SELECT name FROM users WHERE id = 1")
    reply = run(c, "ROLLBACK")
    assert reply.result.warnings == 1  # 1196 from a MyISAM change, as one MariaDB says


def test_fault_points_are_named_with_colons_and_an_optional_count():
    from proxy.faults import _parse

    assert _parse("commit:prepared") == ("commit:prepared", 1)
    assert _parse("commit:decided:3") == ("commit:decided", 3)
    assert _parse("") == ("", 1)


def test_a_primary_refusing_xa_start_still_gets_identical_copies():
    # XA START and the statement share a round trip: the statement ran (and committed)
    # outside XA, so the replica follows as before XA, and nothing is decided.
    c = cursor(lambda region, sql: SqlError(1399, "XAER_RMFAIL", "XAE07") if sql.startswith("XA START") else ok_result(1))
    run(c, "UPDATE users SET name = 'a' WHERE id = 1")
    assert [(r, s) for r, s in c.log if "UPDATE" in s] == [("r1", PIN + "UPDATE users SET name = 'a' WHERE id = 1"),
                                                          ("r2", PIN + "UPDATE users SET name = 'a' WHERE id = 1")]
    assert not any(r.startswith("decide") for r, _ in c.log)


def test_a_replica_refusing_xa_start_makes_the_primary_commit_too():
    c = cursor(lambda region, sql: SqlError(1399, "XAER_RMFAIL", "XAE07") if region == "r2" and sql.startswith("XA START")
               else ok_result(1))
    run(c, "UPDATE users SET name = 'a' WHERE id = 1")
    assert c.log[-4:] == [*prepared(G1, "r1"), ("decide@r1", G1), *committed(G1, "r1")]


def test_a_replica_that_cannot_be_reached_rolls_the_primary_branch_back_and_stays_retriable():
    from proxy.planner import RegionUnavailable

    def respond(region, sql):
        return RegionUnavailable("r2") if region == "r2" else ok_result(1)

    c = cursor(respond)
    with pytest.raises(RegionUnavailable):  # the session may hold it for the failover and run it again
        run(c, "UPDATE users SET name = 'a' WHERE id = 1")
    assert c.log[-2:] == rolled_back(G1, "r1")


def test_a_backup_that_already_recorded_abort_rolls_everything_back():
    """The resolver judged the decider failed over and recorded `abort` on the
    backup first: the proxy must not commit any branch."""
    c = cursor(lambda region, sql: SqlError(1062, "Duplicate entry", "23000") if region == "decide@r2" else ok_result(1))
    with pytest.raises(SqlError) as e:
        run(c, "UPDATE users SET name = 'a' WHERE id = 1")
    assert e.value.errno == 1402
    assert not any("XA COMMIT" in sql for _, sql in c.log)
    assert sorted(step for step in c.log if "XA ROLLBACK" in step[1]) == [
        ("r1", f"XA ROLLBACK {xid(G1, 'r1')}"), ("r2", f"XA ROLLBACK {xid(G1, 'r2')}")]
