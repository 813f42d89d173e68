"""The client's own XA transactions through a 3-region cluster (proxy/appxa.py),
with PyMySQL's defaults (autocommit off): a transaction writing two tables
whose primaries are on different regions, prepared, its client gone, then
found with XA RECOVER and committed (or rolled back) from another connection
-- every copy then holds all of it or none of it."""

from __future__ import annotations

import pymysql
import pytest

from .cluster import fresh_database, running_cluster


@pytest.fixture(scope="module")
def cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory):
    yield from running_cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory, "appxa")


def client(cluster, db: str) -> pymysql.connections.Connection:
    return pymysql.connect(host="127.0.0.1", port=cluster.proxy_port, user="root", password="", database=db)


def setup(cluster) -> str:
    db = fresh_database(cluster, "appxa")
    conn = cluster.connect(database=db)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE accounts (id INT PRIMARY KEY, balance INT NOT NULL)")
        cur.execute("INSERT INTO accounts VALUES (1, 100), (2, 100)")
        for _ in range(20):  # a ledger whose primary is elsewhere: the transaction spans regions
            cur.execute("CREATE TABLE ledger (id INT AUTO_INCREMENT PRIMARY KEY, amount INT)")
            p = cluster.state()["placement"]
            if p.table(db, "ledger").primary != p.table(db, "accounts").primary:
                break
            cur.execute("DROP TABLE ledger")
    conn.close()
    return db


def transfer_prepared(cluster, db: str, gtrid: str) -> None:
    conn = client(cluster, db)
    with conn.cursor() as cur:
        cur.execute(f"XA START '{gtrid}'")
        cur.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 1")
        cur.execute("UPDATE accounts SET balance = balance + 10 WHERE id = 2")
        cur.execute("INSERT INTO ledger (amount) VALUES (10)")
        cur.execute(f"XA END '{gtrid}'")
        cur.execute(f"XA PREPARE '{gtrid}'")
    conn.close()  # the application crashed: its branches stay prepared


def copies(cluster, db: str) -> dict[str, dict[str, list]]:
    placement = cluster.state()["placement"]
    out = {}
    for t in ("accounts", "ledger"):
        holders = placement.table(db, t).all_regions
        out[t] = {r: rows for r, rows in cluster.rows_on_regions(db, t, order_by="id").items() if r in holders}
    return out


def recovered(conn) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute("XA RECOVER")
        return list(cur.fetchall())


@pytest.mark.parametrize("finish, applied", [("COMMIT", True), ("ROLLBACK", False)])
def test_a_prepared_transaction_outlives_its_client_and_is_finished_from_another(cluster, finish, applied):
    db = setup(cluster)
    transfer_prepared(cluster, db, f"tm-{finish}")
    conn = client(cluster, db)
    try:
        with conn.cursor() as cur:  # with autocommit off, MariaDB refuses to finish another session's xid
            with pytest.raises(pymysql.err.OperationalError) as e:
                cur.execute(f"XA {finish} 'tm-{finish}'")
            assert e.value.args[0] == 1400
        conn.autocommit(True)  # as a transaction manager recovering does
        assert (1, len(f"tm-{finish}"), 0, f"tm-{finish}".encode()) in recovered(conn)
        with conn.cursor() as cur:
            cur.execute(f"XA {finish} 'tm-{finish}'")
        assert recovered(conn) == []
    finally:
        conn.close()
    for table, by_region in copies(cluster, db).items():
        assert len(by_region) == 2 and len({tuple(rows) for rows in by_region.values()}) == 1, (table, by_region)
    state = copies(cluster, db)
    accounts = next(iter(state["accounts"].values()))
    ledger = next(iter(state["ledger"].values()))
    if applied:
        assert accounts == [(1, 90), (2, 110)] and [r[1] for r in ledger] == [10]
    else:
        assert accounts == [(1, 100), (2, 100)] and ledger == []
    for region in ("r1", "r2", "r3"):  # nothing left prepared anywhere, ours or the client's
        raw = cluster.connect_region(region)
        try:
            assert recovered(raw) == []
        finally:
            raw.close()


def test_one_phase_commit_and_mariadbs_state_errors(cluster):
    db = setup(cluster)
    conn = client(cluster, db)
    try:
        with conn.cursor() as cur:
            cur.execute("XA START 'one'")
            cur.execute("UPDATE accounts SET balance = 0 WHERE id = 1")
            cur.execute("INSERT INTO ledger (amount) VALUES (1)")
            with pytest.raises(pymysql.err.OperationalError) as e:
                cur.execute("COMMIT")
            assert e.value.args[0] == 1399 and "ACTIVE" in e.value.args[1]
            cur.execute("XA END 'one'")
            with pytest.raises(pymysql.err.OperationalError) as e:
                cur.execute("SELECT * FROM accounts")  # MariaDB takes nothing but XA after XA END
            assert e.value.args[0] == 1399
            cur.execute("XA COMMIT 'one' ONE PHASE")
            with pytest.raises(pymysql.err.OperationalError) as e:
                cur.execute("XA COMMIT 'one'")  # not this session's any more; autocommit off: MariaDB's 1400
            assert e.value.args[0] == 1400
            conn.autocommit(True)
            with pytest.raises(pymysql.err.OperationalError) as e:
                cur.execute("XA COMMIT 'one'")  # gone everywhere
            assert e.value.args[0] == 1397
        conn.rollback()
    finally:
        conn.close()
    state = copies(cluster, db)
    assert all(rows[0] == (1, 0) for rows in state["accounts"].values())
    assert all(len(rows) == 1 for rows in state["ledger"].values())
