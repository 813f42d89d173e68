"""Online copies (issue 8): a table gets a new copy while clients keep writing
to it, through two proxies, with PyMySQL's defaults -- and no client sees an
error, no acknowledged write is missing, and the copies end up equal.

The copy is started the way failover re-replication starts it: the replica is
marked STALE in the placement (as a region failing mid-statement does), and
the leading master re-copies it (master/copier.py: prepare_fill, FILLING,
every proxy acknowledges the epoch, fill_table in verified key chunks,
IN_SYNC).  Each writer owns the ids congruent to its number, so the expected
final table is known exactly; one writer also moves its rows to new primary
keys, which the proxies hold back while the copy fills (proxy/fillguard.py).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pymysql
import pytest

from topology import ReplicaState, Topology

from .cluster import Cluster, fresh_database, running_cluster

WRITERS = 8
ROWS = 30_000  # ids 0, 2, 4, ...: inserts land between them, all over the key range


@pytest.fixture(scope="module")
def cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory):
    yield from running_cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory, "online", proxies=2)


def set_replica_state(cluster: Cluster, database: str, table: str, region: str, state: ReplicaState) -> None:
    async def write() -> None:
        topo = Topology.for_zookeeper(cluster.zk_hosts, cluster.zk_root)
        await topo.start()
        try:
            def mutate(p: Any) -> Any:
                t = p.table(database, table)
                replicas = dict(t.replicas)
                replicas[region] = state
                return p.with_table(replace(t, replicas=MappingProxyType(replicas), epoch=t.epoch + 1))
            await topo.update_placement(mutate)
        finally:
            await topo.close()

    asyncio.run(write())


class Writer(threading.Thread):
    """Writes its own ids (id % WRITERS == number) and keeps the expected rows."""

    def __init__(self, cluster: Cluster, database: str, number: int, stop: threading.Event, model: dict[int, int]) -> None:
        super().__init__(daemon=True)
        self.cluster, self.database, self.number, self.stop, self.model = cluster, database, number, stop, model
        self.errors: list[str] = []
        self.done = 0
        self.moves = 0

    def run(self) -> None:
        rng = random.Random(self.number)
        conn = pymysql.connect(host="127.0.0.1", port=self.cluster.proxy_ports[self.number % 2], user="root", password="",
                               database=self.database)  # PyMySQL's defaults: autocommit off
        try:
            with conn.cursor() as cur:
                while not self.stop.is_set():
                    mine = [i for i in self.model if i < 10_000_000]
                    roll = rng.random()
                    try:
                        if roll < 0.35 or not mine:
                            new = rng.randrange(0, 2 * ROWS) // WRITERS * WRITERS + self.number
                            if new in self.model:
                                continue
                            cur.execute("INSERT INTO t (id, v, pad) VALUES (%s, %s, %s)", (new, 1, "n" * 30))
                            conn.commit()
                            self.model[new] = 1
                        elif roll < 0.85:
                            row = rng.choice(mine)
                            cur.execute("UPDATE t SET v = v + 1 WHERE id = %s", (row,))
                            conn.commit()
                            self.model[row] += 1
                        elif roll < 0.95 or self.number != 0:
                            row = rng.choice(mine)
                            cur.execute("DELETE FROM t WHERE id = %s", (row,))
                            conn.commit()
                            del self.model[row]
                        else:  # a primary-key change: held back while the copy fills
                            row = rng.choice(mine)
                            cur.execute("UPDATE t SET id = id + 10000000 WHERE id = %s", (row,))
                            conn.commit()
                            self.model[row + 10_000_000] = self.model.pop(row)
                            self.moves += 1
                        self.done += 1
                    except pymysql.MySQLError as e:
                        self.errors.append(repr(e))
                        conn.rollback()
        finally:
            conn.close()


def test_a_new_copy_fills_while_clients_write(cluster: Cluster) -> None:
    db = fresh_database(cluster, "online")
    conn = cluster.connect(database=db)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, v INT NOT NULL, pad VARCHAR(60), KEY (v))")
        for start in range(0, ROWS, 1000):
            cur.execute("INSERT INTO t VALUES " + ",".join(f"({2 * i}, 0, '{'p' * 50}')" for i in range(start, start + 1000)))
    conn.close()
    models: list[dict[int, int]] = [{} for _ in range(WRITERS)]
    for i in range(ROWS):
        models[(2 * i) % WRITERS][2 * i] = 0
    stop = threading.Event()
    writers = [Writer(cluster, db, n, stop, models[n]) for n in range(WRITERS)]
    for w in writers:
        w.start()
    try:
        time.sleep(2)
        table = cluster.state()["placement"].table(db, "t")
        replica = table.in_sync_replicas[0]
        done_before = sum(w.done for w in writers)
        set_replica_state(cluster, db, "t", replica, ReplicaState.STALE)
        seen: set[str] = set()

        def in_sync(state: dict[str, Any]) -> bool:
            t = state["placement"].table(db, "t")
            seen.add(t.replicas[replica].value)
            return t.replicas[replica] == ReplicaState.IN_SYNC

        cluster.wait_for(in_sync, "the new copy in sync", timeout=120)
        time.sleep(2)  # writes after the copy is in sync reach both copies
    finally:
        stop.set()
        for w in writers:
            w.join(timeout=30)
    errors = [e for w in writers for e in w.errors]
    assert errors == [], errors[:5]
    assert sum(w.done for w in writers) > done_before + 200  # writes went on during the copy
    assert "filling" in seen or "stale" in seen
    target = cluster.regions[replica]
    filled = [line for line in target.log_tail(400).splitlines() if f"filled {db}.t" in line]
    assert filled, "the copy was not made online"
    print(f"\n{filled[-1]}; {sum(w.done for w in writers)} writes ({done_before} before the copy), "
          f"{sum(w.moves for w in writers)} key moves, replica states seen {sorted(seen)}")
    expected = sorted((i, v) for m in models for i, v in m.items())
    conn = cluster.connect(database=db)
    with conn.cursor() as cur:
        cur.execute("SELECT id, v FROM t ORDER BY id")
        assert list(cur.fetchall()) == expected  # no acknowledged write lost, none half-applied
    conn.close()
    copies = cluster.rows_on_regions(db, "t", order_by="id")
    placed = cluster.state()["placement"].table(db, "t")
    assert set(copies) == set(placed.all_regions)
    assert copies[placed.primary] == copies[replica]
    assert [(r[0], r[1]) for r in copies[replica]] == expected
