"""Statements over tables on disjoint regions (issue 7): a join, an
`INSERT ... SELECT`, a multi-table `UPDATE`/`DELETE` and a cross-table
subquery read or change exactly what one MariaDB would.

With three regions and two copies per table, two tables always share a
region, so this module runs a 4-region cluster (the session's three MariaDB
servers plus one of its own) and places `a` on one pair and `b` on the other.
Each statement runs through the gateway and, as the reference, against one
plain MariaDB holding both tables; results and final rows must match, and
every copy of a changed table must hold the same rows.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pymysql
import pytest

from minisql.localstack import MariaDBProcess, free_port

from .cluster import fresh_database, running_cluster


@pytest.fixture(scope="module")
def fourth_mariadb(mariadb_template, backend_credentials):
    base = Path(tempfile.mkdtemp(prefix="minisql-test-mariadb4-"))
    os.chmod(base, 0o711)
    server = MariaDBProcess(base / "r4", free_port(), backend_user=backend_credentials.user,
                            backend_password=backend_credentials.password, name="mariadb-r4")
    try:
        server.install_from_template(mariadb_template)
        server.launch()
        server.wait_ready(timeout=120)
        yield server
    finally:
        server.terminate()
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(zookeeper, mariadbs, fourth_mariadb, backend_credentials, tmp_path_factory):
    yield from running_cluster(zookeeper, [*mariadbs, fourth_mariadb], backend_credentials, tmp_path_factory,
                               "disjoint", users={"root": ""})


A = "CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(20), n INT NOT NULL DEFAULT 0)"
B = "CREATE TABLE b (id INT PRIMARY KEY, a_id INT, w VARCHAR(20), k INT, KEY (a_id))"
ROWS = [
    "INSERT INTO a VALUES (1, 'one', 10), (2, 'two', 20), (3, 'three', 30), (4, NULL, 40)",
    "INSERT INTO b VALUES (10, 1, 'x', 5), (11, 1, 'y', 6), (12, 3, 'z', 7), (13, 9, 'orphan', 8)",
]
# Each step: (statement, is it a read whose rows are compared).
STEPS = [
    ("SELECT a.id, a.v, b.w FROM a JOIN b ON b.a_id = a.id ORDER BY a.id, b.id", True),
    ("SELECT a.id, COUNT(b.id), SUM(b.k) FROM a LEFT JOIN b ON b.a_id = a.id GROUP BY a.id ORDER BY a.id", True),
    ("SELECT id FROM a WHERE id IN (SELECT a_id FROM b WHERE k > 5) ORDER BY id", True),
    ("INSERT INTO a (id, v, n) SELECT 100 + id, w, k FROM b WHERE a_id = 1", False),
    ("UPDATE a JOIN b ON b.a_id = a.id SET a.n = a.n + b.k, a.v = CONCAT(IFNULL(a.v, ''), '+', b.w)", False),
    ("UPDATE a SET n = n * 2 WHERE id IN (SELECT a_id FROM b)", False),
    ("DELETE a FROM a JOIN b ON b.a_id = a.id WHERE b.k = 7", False),
    ("INSERT INTO b (id, a_id, w, k) SELECT 200 + id, id, v, n FROM a WHERE id > 100", False),
    ("SELECT a.id, a.v, a.n, b.id, b.w FROM a LEFT JOIN b ON b.a_id = a.id ORDER BY a.id, b.id", True),
]


def place_apart(cluster, cur, db: str) -> None:
    """Create a and b on disjoint region pairs (placement is least-loaded
    first; filler tables shift the load until the pairs differ)."""
    cur.execute(A)
    cur.execute(B)
    for i in range(8):
        placement = cluster.state()["placement"]
        a, b = placement.table(db, "a"), placement.table(db, "b")
        if not set(a.write_regions) & set(b.write_regions):
            return
        cur.execute(f"CREATE TABLE filler_{i} (x INT)")
        cur.execute("DROP TABLE b")
        cur.execute(B)
    raise AssertionError(f"a {a.write_regions} and b {b.write_regions} keep sharing a region")


def run_all(conn, results: list) -> None:
    """Run ROWS and STEPS on `conn` (PyMySQL's defaults: autocommit off),
    committing after each write, and keep what each read returned."""
    with conn.cursor() as cur:
        for sql in ROWS:
            cur.execute(sql)
        conn.commit()
        for sql, is_read in STEPS:
            affected = cur.execute(sql)
            results.append((sql, list(cur.fetchall()) if is_read else affected))
            conn.commit()


def test_statements_over_tables_on_disjoint_regions_match_one_mariadb(cluster, fourth_mariadb, backend_credentials):
    db = fresh_database(cluster, "apart")
    setup = cluster.connect(database=db)
    try:
        place_apart(cluster, setup.cursor(), db)
    finally:
        setup.close()
    placement = cluster.state()["placement"]
    a, b = placement.table(db, "a"), placement.table(db, "b")
    assert not set(a.write_regions) & set(b.write_regions), (a.write_regions, b.write_regions)

    # The reference: one MariaDB holding both tables.
    ref_db = f"ref_{db}"
    direct = pymysql.connect(host="127.0.0.1", port=fourth_mariadb.port, user=backend_credentials.user,
                             password=backend_credentials.password)
    try:
        with direct.cursor() as cur:
            cur.execute(f"CREATE DATABASE {ref_db}")
            cur.execute(f"USE {ref_db}")
            cur.execute(A)
            cur.execute(B)
        expected: list = []
        run_all(direct, expected)
        with direct.cursor() as cur:
            ref_rows = {}
            for t in ("a", "b"):
                cur.execute(f"SELECT * FROM {t} ORDER BY id")
                ref_rows[t] = list(cur.fetchall())
            cur.execute(f"DROP DATABASE {ref_db}")
    finally:
        direct.close()

    client = pymysql.connect(host="127.0.0.1", port=cluster.proxy_port, user="root", password="", database=db)
    try:
        got: list = []
        run_all(client, got)
    finally:
        client.close()

    assert len(got) == len(expected) == len(STEPS)
    assert expected[0][1] and expected[4][1] == 2, expected  # the join matched rows; the UPDATE changed rows 1 and 3
    for (sql, want), (_, have) in zip(expected, got):
        assert have == want, sql
    for t in ("a", "b"):
        on_regions = cluster.rows_on_regions(db, t, order_by="id")
        assert set(on_regions) == set(placement.table(db, t).write_regions), (t, on_regions.keys())
        for region, rows in on_regions.items():
            assert rows == ref_rows[t], (t, region)
    # The tables were read where they are, not copied for good: still apart.
    after = cluster.state()["placement"]
    assert not set(after.table(db, "a").write_regions) & set(after.table(db, "b").write_regions)


def test_a_multi_table_write_over_tables_apart_brings_them_together(cluster):
    """`UPDATE a, b SET a..., b...` writes both tables: no copy could run it
    over tables apart, so the master moves them onto one pair and keeps them
    there (links); the statement then runs there.  Inside a transaction it
    is refused (the move would wait for the session's own locks)."""
    db = fresh_database(cluster, "apartw")
    conn = pymysql.connect(host="127.0.0.1", port=cluster.proxy_port, user="root", password="", database=db)
    try:
        cur = conn.cursor()
        place_apart(cluster, cur, db)
        cur.execute(ROWS[0])
        cur.execute(ROWS[1])
        conn.commit()
        # PyMySQL's default autocommit=0: the UPDATE opens the transaction.
        with pytest.raises(pymysql.err.NotSupportedError) as refused:
            cur.execute("SELECT 1 FROM a LIMIT 1")
            cur.execute("UPDATE a JOIN b ON b.a_id = a.id SET a.n = 0, b.k = 0")
        assert refused.value.args[0] == 1235
        conn.rollback()
        affected = cur.execute("UPDATE a JOIN b ON b.a_id = a.id SET a.n = a.n + 1, b.k = b.k + 100")
        conn.commit()
        assert affected == 5  # a rows 1 and 3, b rows 10, 11, 12
        cur.execute("SELECT id, n FROM a ORDER BY id")
        assert cur.fetchall() == ((1, 11), (2, 20), (3, 31), (4, 40))
        cur.execute("SELECT id, k FROM b ORDER BY id")
        assert cur.fetchall() == ((10, 105), (11, 106), (12, 107), (13, 8))
    finally:
        conn.close()
    placement = cluster.state()["placement"]
    a, b = placement.table(db, "a"), placement.table(db, "b")
    assert set(a.write_regions) == set(b.write_regions)
    assert (db, "b") in a.links
    for t in ("a", "b"):
        copies = cluster.rows_on_regions(db, t, order_by="id")
        assert set(copies) == set(a.write_regions) and len({tuple(r) for r in copies.values()}) == 1, (t, copies)
