"""The fuzz suite's cluster: real ZooKeeper, 3 MariaDB, region agents, 2 masters, 1 proxy.

Accounts all have passwords (no empty-password quick path), so no fuzz input can
authenticate by accident: `fuzz` is the account the fuzzer logs in with, `root`
exists so user-name guesses hit a real account.  Before fuzzing, the fixture
creates the fuzz database (table `fz`, which the SQL fuzzer may mangle) and the
canary database, whose rows nothing may change: the test compares them, and
both copies of them, after the run.
"""

from __future__ import annotations

import uuid
from typing import Iterator

import pymysql
import pytest

from tests.integration.cluster import Cluster

from . import generators as g
from .harness import CANARY_DB, CANARY_ROWS
from .sqlgen import CREATE_TABLE, TABLE

CANARY = [(i, f"canary-{i}-{uuid.UUID(int=i).hex[:8]}") for i in range(1, CANARY_ROWS + 1)]


def _admin(cluster: Cluster, database: str | None = None) -> pymysql.connections.Connection:
    return pymysql.connect(host="127.0.0.1", port=cluster.proxy_port, user=g.FUZZ_USER, password=g.FUZZ_PASSWORD,
                           database=database, autocommit=True, connect_timeout=10, read_timeout=60)


@pytest.fixture(scope="module")
def fuzz_cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory) -> Iterator[Cluster]:
    c = Cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory.mktemp("fuzz-cluster"), f"/fuzz-{uuid.uuid4().hex[:8]}")
    try:
        c.start(users={g.FUZZ_USER: g.FUZZ_PASSWORD, "root": "root-" + uuid.uuid4().hex})
        conn = _admin(c)
        with conn.cursor() as cur:
            for db in ("fuzzdb", CANARY_DB):
                cur.execute(f"DROP DATABASE IF EXISTS {db}")
                cur.execute(f"CREATE DATABASE {db}")
            cur.execute(f"USE fuzzdb")
            cur.execute(CREATE_TABLE)
            cur.execute(f"INSERT INTO {TABLE} VALUES " + ", ".join(f"({i}, {i % 7}, 'row{i}', NULL)" for i in range(1, 21)))
            cur.execute(f"CREATE TABLE {CANARY_DB}.canary (id INT PRIMARY KEY, v VARCHAR(64) NOT NULL)")
            cur.executemany(f"INSERT INTO {CANARY_DB}.canary VALUES (%s, %s)", CANARY)
        conn.close()
        yield c
    finally:
        c.stop()


def canary_problems(cluster: Cluster) -> list[str]:
    """Empty when the canary reads back unchanged through the proxy and on both copies,
    and every copy of the fuzz table holds the same rows."""
    problems = []
    conn = _admin(cluster)
    with conn.cursor() as cur:
        cur.execute(f"SELECT id, v FROM {CANARY_DB}.canary ORDER BY id")
        rows = [tuple(r) for r in cur.fetchall()]
    conn.close()
    if rows != CANARY:
        changed = [r for r in rows if r not in CANARY][:5]
        problems.append(f"canary through the proxy changed: {len(rows)} rows, e.g. {changed}")
    copies = cluster.rows_on_regions(CANARY_DB, "canary", order_by="id")
    if len(copies) != 2 or any(rows != CANARY for rows in copies.values()):
        problems.append(f"canary copies differ from what was written: regions {sorted(copies)}, "
                        f"rows per copy {[len(r) for r in copies.values()]}")
    fz = cluster.rows_on_regions("fuzzdb", TABLE, order_by="id")
    if len({tuple(map(tuple, rows)) for rows in fz.values()}) > 1:
        problems.append(f"the copies of fuzzdb.{TABLE} diverged: " + "; ".join(f"{r}: {len(rows)} rows" for r, rows in fz.items()))
    return problems
