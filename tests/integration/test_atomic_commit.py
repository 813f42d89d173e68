"""Atomic commit across copies and regions (issue 8), with real processes:
a proxy is killed (SIGKILL, proxy/faults.py) at each point of the two-phase
commit -- after every branch is prepared, after the decision, after the
first XA COMMIT -- and every copy of every table must then hold the whole
transaction or none of it, once the master's resolver has settled what the
proxy left prepared.  Clients use PyMySQL's defaults (autocommit off)."""

from __future__ import annotations

import os
import time

import pymysql
import pytest

from minisql.xa import recovered

from .cluster import fresh_database, running_cluster


@pytest.fixture(scope="module")
def cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory):
    yield from running_cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory, "xa", users={"root": ""})


def prepared_branches(cluster) -> dict[str, list]:
    found = {}
    for i in range(1, len(cluster.mariadbs) + 1):
        conn = cluster.connect_region(f"r{i}")
        try:
            with conn.cursor() as cur:
                cur.execute("XA RECOVER")
                found[f"r{i}"] = recovered(list(cur.fetchall()))
        finally:
            conn.close()
    return found


def wait_resolved(cluster, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while any(prepared_branches(cluster).values()):
        assert time.monotonic() < deadline, f"still prepared: {prepared_branches(cluster)}"
        time.sleep(0.5)


def setup_tables(cluster, db: str, apart: bool = True) -> None:
    """accounts and ledger, with different primaries (a transfer spans regions)
    unless not `apart` (after a region came back empty, it takes every new
    table's primary for a while)."""
    conn = cluster.connect(database=db)
    try:
        cur = conn.cursor()
        cur.execute("CREATE TABLE accounts (id INT PRIMARY KEY, balance INT NOT NULL)")
        cur.execute("INSERT INTO accounts VALUES (1, 100), (2, 100)")
        ledger = "CREATE TABLE ledger (id INT AUTO_INCREMENT PRIMARY KEY, src INT, dst INT, amount INT)"
        cur.execute(ledger)
        for i in range(40):  # (a region that just came back empty takes every new table for a while)
            placement = cluster.state()["placement"]
            if not apart or placement.table(db, "ledger").primary != placement.table(db, "accounts").primary:
                return
            cur.execute(f"CREATE TABLE filler_{i} (x INT)")
            cur.execute("DROP TABLE ledger")
            cur.execute(ledger)
        raise AssertionError("ledger keeps its primary with accounts")
    finally:
        conn.close()


def copies_of(cluster, db: str) -> dict[str, set]:
    """table -> the distinct row sets its copies hold (one element: all equal)."""
    return {t: {tuple(rows) for rows in cluster.rows_on_regions(db, t, order_by="id").values()}
            for t in ("accounts", "ledger")}


def transfer(port: int, db: str, amount: int) -> None:
    conn = pymysql.connect(host="127.0.0.1", port=port, user="root", password="", database=db)  # autocommit off
    try:
        cur = conn.cursor()
        cur.execute("UPDATE accounts SET balance = balance - %s WHERE id = 1", (amount,))
        cur.execute("UPDATE accounts SET balance = balance + %s WHERE id = 2", (amount,))
        cur.execute("INSERT INTO ledger (src, dst, amount) VALUES (1, 2, %s)", (amount,))
        conn.commit()
    finally:
        conn.close()


# `make chaos` repeats each kill point XA_KILL_ROUNDS times (make test: once).
ROUNDS = range(int(os.environ.get("XA_KILL_ROUNDS", "1")))


@pytest.mark.parametrize("round_", ROUNDS)
@pytest.mark.parametrize("point, applied", [
    ("commit:prepared", False),  # no decision yet: the resolver aborts
    ("commit:decided_once", True),  # decided on the decider only: the resolver copies it, commits everything
    ("commit:decided", True),  # decided (decider and backup), nothing committed: the resolver commits everything
    ("commit:partly_committed", True),  # one region committed: the resolver commits the rest
])
def test_a_proxy_killed_mid_commit_leaves_all_or_nothing_on_every_copy(cluster, point, applied, round_):
    db = fresh_database(cluster, "xa")
    setup_tables(cluster, db)
    victim, port = cluster.start_extra_proxy(f"proxy-{point.split(':')[1]}", {"MINISQL_FAULT": point})
    try:
        with pytest.raises(pymysql.err.OperationalError) as lost:
            transfer(port, db, 10)
        assert lost.value.args[0] in (2013, 2006), lost.value
        victim.wait(timeout=10)
        assert victim.returncode == -9  # killed at the point, as a crash
    finally:
        victim.stop()
    wait_resolved(cluster)
    rows = copies_of(cluster, db)
    assert all(len(states) == 1 for states in rows.values()), rows  # every copy equal
    balances = next(iter(rows["accounts"]))
    ledger = next(iter(rows["ledger"]))
    if applied:
        assert balances == ((1, 90), (2, 110)) and [r[1:] for r in ledger] == [(1, 2, 10)]
    else:
        assert balances == ((1, 100), (2, 100)) and ledger == ()
    # The rows are not left locked: the next transfer through a healthy proxy commits.
    transfer(cluster.proxy_port, db, 5)
    total = sum(b for _, b in next(iter(copies_of(cluster, db)["accounts"])))
    assert total == 200


def test_an_autocommit_write_killed_after_prepare_is_rolled_back_on_both_copies(cluster):
    db = fresh_database(cluster, "xa1")
    setup_tables(cluster, db)
    victim, port = cluster.start_extra_proxy("proxy-auto", {"MINISQL_FAULT": "commit:prepared"})
    try:
        conn = pymysql.connect(host="127.0.0.1", port=port, user="root", password="", database=db, autocommit=True)
        with pytest.raises(pymysql.err.OperationalError):
            conn.cursor().execute("UPDATE accounts SET balance = 0 WHERE id = 1")
    finally:
        victim.stop()
    wait_resolved(cluster)
    rows = copies_of(cluster, db)
    assert rows["accounts"] == {((1, 100), (2, 100))}, rows


def test_commits_through_a_healthy_proxy_leave_nothing_prepared(cluster):
    db = fresh_database(cluster, "xa2")
    setup_tables(cluster, db)
    for amount in range(1, 21):
        transfer(cluster.proxy_port, db, amount)
    assert not any(prepared_branches(cluster).values())
    rows = copies_of(cluster, db)
    assert all(len(states) == 1 for states in rows.values()), rows
    assert next(iter(rows["accounts"])) == ((1, 100 - 210), (2, 100 + 210))
    assert len(next(iter(rows["ledger"]))) == 20


@pytest.mark.parametrize("point, applied", [("commit:prepared", False), ("commit:decided", True)])
def test_a_decider_lost_mid_commit_is_failed_over_and_its_orphans_settled(cluster, point, applied):
    """The proxy dies mid-commit, and the decider region leaves the cluster
    before the resolver settled anything: once the master has failed it over
    (its copies and decision table discarded), the resolver settles the
    branches on the other regions by the backup's copy of the decision --
    rolled back if the proxy died before deciding, committed if it had
    decided -- so the promoted copies are consistent, hold exactly what was
    decided, and their rows are writable again.  Runs last in this module:
    it takes a region away (and brings its agent back at the end)."""
    db = fresh_database(cluster, "xa3")
    setup_tables(cluster, db, apart=False)  # (accounts alone has two copies: two branches, a decider and a backup)
    decider = cluster.state()["placement"].table(db, "accounts").primary  # the transfer touches it first
    victim, port = cluster.start_extra_proxy("proxy-orphan", {"MINISQL_FAULT": point})
    try:
        with pytest.raises(pymysql.err.OperationalError):
            transfer(port, db, 10)
    finally:
        victim.stop()
    agent = cluster.regions[decider]
    agent.kill()  # SIGKILL: its ZooKeeper session expires, the master fails it over
    try:
        cluster.wait_for(lambda s: all(decider not in s["placement"].table(db, t).all_regions
                                       for t in ("accounts", "ledger")), "the failover", timeout=90)
        deadline = time.monotonic() + 60
        while True:
            left = {r: b for r, b in prepared_branches(cluster).items() if r != decider and b}
            if not left:
                break
            assert time.monotonic() < deadline, f"orphans still prepared: {left}; masters: " + "\n".join(
                m.log_tail(15) for m in cluster.masters.values())
            time.sleep(0.5)
        placement = cluster.state()["placement"]
        for t in ("accounts", "ledger"):
            copies = cluster.rows_on_regions(db, t, order_by="id")
            serving = {r: rows for r, rows in copies.items() if r in placement.table(db, t).all_regions}
            assert len({tuple(rows) for rows in serving.values()}) == 1, (t, serving)
        accounts = next(iter(r for reg, r in cluster.rows_on_regions(db, "accounts", order_by="id").items()
                             if reg == placement.table(db, "accounts").primary))
        ledger = next(iter(r for reg, r in cluster.rows_on_regions(db, "ledger", order_by="id").items()
                           if reg == placement.table(db, "ledger").primary))
        if applied:
            assert accounts == [(1, 90), (2, 110)] and [r[1:] for r in ledger] == [(1, 2, 10)]
        else:
            assert accounts == [(1, 100), (2, 100)] and ledger == []
        transfer(cluster.proxy_port, db, 5)  # the rows the orphans held are free
    finally:
        cluster.start_region(decider, cluster.mariadbs[int(decider[1:]) - 1].port)
    # Back, the decider drops its stale copies (region/stale.py) once the resolver has
    # settled its own prepared branch on them.
    deadline = time.monotonic() + 60
    while decider in cluster.rows_on_regions(db, "accounts") or decider in cluster.rows_on_regions(db, "ledger"):
        assert time.monotonic() < deadline, f"{decider} keeps its stale copies"
        time.sleep(1)
    assert not prepared_branches(cluster)[decider]
