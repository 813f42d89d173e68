"""`minisql proxy --workers 2` on real processes: two proxies behind one port
(SO_REUSEPORT), each with its own connection ids, seen as one cluster."""

from __future__ import annotations

import os
import signal
import time

import pymysql
import pytest

from .cluster import running_cluster


@pytest.fixture(scope="module")
def cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory):
    yield from running_cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory, "workers",
                               users={"root": ""}, proxy_args=["--workers", "2"])


def workers_of(parent_pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == parent_pid:
                        children.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return children


def test_two_workers_share_the_port_and_act_as_one_cluster(cluster):
    parent = cluster.proxy.pid
    assert parent is not None and len(workers_of(parent)) == 2
    clients = [cluster.connect() for _ in range(24)]  # all on one worker: odds 2 ** -23
    try:
        ids = {c.thread_id(): c for c in clients}
        assert len({i >> 22 for i in ids}) == 2  # two proxy numbers behind one port
        with clients[0].cursor() as cur:
            cur.execute("SHOW PROCESSLIST")
            listed = {row[0] for row in cur.fetchall()}
        assert set(ids) <= listed  # each worker lists the other's sessions
        mine = clients[0].thread_id() >> 22
        victim_id = next(i for i in ids if i >> 22 != mine)
        with clients[0].cursor() as cur:
            cur.execute(f"KILL {victim_id}")  # reaches the other worker
        with pytest.raises(pymysql.err.OperationalError) as e:
            ids[victim_id].cursor().execute("SELECT 1")
        assert e.value.args[0] == 2013
    finally:
        for c in clients:
            try:
                c.close()
            except pymysql.err.Error:
                pass


def test_a_worker_that_dies_takes_the_set_down_for_its_supervisor(cluster):
    """Never a silently smaller set: the parent stops the other worker and exits."""
    parent = cluster.proxy.pid
    workers = workers_of(parent)
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and cluster.proxy.alive:
        time.sleep(0.2)
    assert not cluster.proxy.alive and cluster.proxy.returncode not in (0, None)
    assert not any(os.path.exists(f"/proc/{w}") and open(f"/proc/{w}/stat").read().split()[2] != "Z" for w in workers)
