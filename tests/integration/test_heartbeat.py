"""Seed 004's replica delay, with real processes (minisql/heartbeat.py):
proxies write a heartbeat to every region once a second, each region agent
reports the age of the freshest beat in ZooKeeper and as a metric, and the
master never promotes a copy on a region whose heartbeat lags -- the table
waits until that region catches up, then fails over.

A region is made to lag for real: a client of its MariaDB holds
``LOCK TABLES mysql.minisql_heartbeat READ``, so the proxies' beats to it
wait (as a region whose write path stalls would) while its agent still reads
and reports."""

from __future__ import annotations

import time
import urllib.request

import pytest

from minisql.heartbeat import MAX_PROMOTE_DELAY

from .cluster import fresh_database, running_cluster


@pytest.fixture(scope="module")
def cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory):
    yield from running_cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory, "heartbeat")


def delays(state) -> dict[str, float | None]:
    return {r: (state["loads"][r].delay if r in state["loads"] else None) for r in state["regions"]}


def metrics_port(component) -> int:
    argv = component.command()
    return int(argv[argv.index("--metrics-port") + 1])


def test_every_region_reports_its_heartbeat_delay(cluster):
    state = cluster.wait_for(
        lambda s: len(s["regions"]) == 3 and all(d is not None and d < 3.0 for d in delays(s).values()),
        "a fresh heartbeat delay from every region", timeout=30,
    )
    assert set(delays(state)) == {"r1", "r2", "r3"}
    for region in ("r1", "r2", "r3"):
        conn = cluster.connect_region(region)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT writer, seq, UNIX_TIMESTAMP(NOW(6)) - beat_at FROM mysql.minisql_heartbeat")
                rows = cur.fetchall()
        finally:
            conn.close()
        assert len(rows) == 1 and rows[0][0].startswith("proxy"), rows  # one row per proxy
        assert rows[0][1] >= 1 and rows[0][2] < 3.0, rows
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port(cluster.regions[region])}/metrics").read()
        line = next(x for x in body.decode().splitlines() if x.startswith("minisql_region_heartbeat_delay_seconds "))
        assert 0.0 <= float(line.split()[1]) < 5.0, line


def test_a_lagging_copy_is_not_promoted_until_it_catches_up(cluster):
    db = fresh_database(cluster, "hb")
    conn = cluster.connect(database=db)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))")
        cur.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    conn.close()
    table = cluster.state()["placement"].table(db, "t")
    primary, replica = table.primary, next(iter(table.replicas))

    lock = cluster.connect_region(replica)
    with lock.cursor() as cur:
        cur.execute("LOCK TABLES mysql.minisql_heartbeat READ")  # beats to the replica's region wait
    killed = False
    try:
        cluster.wait_for(lambda s: (delays(s).get(replica) or 0) > MAX_PROMOTE_DELAY + 1,
                         f"{replica}'s heartbeat delay to grow", timeout=30)
        cluster.regions[primary].kill()  # SIGKILL: its session expires, the leader fails it over
        killed = True
        cluster.wait_for(lambda s: primary not in s["regions"], f"{primary} to leave", timeout=30)
        time.sleep(6)  # the failover grace (2 s) and a few rounds
        state = cluster.state()
        assert state["placement"].table(db, "t").primary == primary, "a lagging copy was promoted"
        assert delays(state)[replica] > MAX_PROMOTE_DELAY

        lock.close()  # the beats land: the replica catches up and is promoted
        state = cluster.wait_for(lambda s: s["placement"].table(db, "t").primary == replica,
                                 f"{replica} promoted once it caught up", timeout=30)
        assert delays(state)[replica] < MAX_PROMOTE_DELAY
        conn = cluster.connect(database=db)
        with conn.cursor() as cur:
            cur.execute("SELECT id, v FROM t ORDER BY id")
            assert cur.fetchall() == ((1, "a"), (2, "b"), (3, "c"))
            cur.execute("INSERT INTO t VALUES (4, 'd')")  # writable again
        conn.close()
    finally:
        if lock.open:
            lock.close()
        if killed:
            cluster.start_region(primary, cluster.mariadbs[int(primary[1:]) - 1].port)
