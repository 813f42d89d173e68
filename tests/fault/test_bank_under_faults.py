"""The bank workload through two proxies of a real `minisql up --proxies 2`,
with faults on its processes (tests/fault/bank.py, harness.py).

`make test` runs a bounded, seeded subset (57 s, a fault every 12 s: the
primary's MariaDB killed, a proxy killed, the leading master frozen,
ZooKeeper cut off from everyone);
`make chaos` runs every kind for 10 minutes, a fault every 30 s
(CHAOS_DURATION, CHAOS_INTERVAL, CHAOS_SEED, CHAOS_THREADS; CHAOS_KINDS picks
kinds, comma-separated)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from minisql.processes import free_port, free_port_block

from ..integration.test_localstack import _child_env, _minisql_argv
from .bank import run
from .harness import KINDS, Stack
from .partition import Blackhole

SUBSET = ("kill-primary-mariadb", "kill-proxy", "freeze-leader-master", "partition-zookeeper")


def test_bank_transfers_survive_faults_with_nothing_lost(tmp_path):
    duration = float(os.environ.get("CHAOS_DURATION", "57"))
    interval = float(os.environ.get("CHAOS_INTERVAL", "12"))
    kinds = KINDS if "CHAOS_DURATION" in os.environ else SUBSET
    if os.environ.get("CHAOS_KINDS"):  # e.g. CHAOS_KINDS=partition-zookeeper,kill-proxy
        kinds = tuple(os.environ["CHAOS_KINDS"].split(","))
        assert set(kinds) <= set(KINDS), f"unknown fault kinds: {set(kinds) - set(KINDS)}"
    data = tmp_path / "stack"
    base, zk_port, metrics = free_port_block(2), free_port(), free_port_block(30)
    mysql = free_port_block(3)
    out_path = tmp_path / "up.out"
    argv = _minisql_argv() + ["up", "--data-dir", str(data), "--proxies", "2", "--port", str(base),
                              "--zk-port", str(zk_port), "--mysql-base-port", str(mysql),
                              "--metrics-base-port", str(metrics)]
    with open(out_path, "wb") as out:
        up = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=_child_env())
    try:
        deadline = time.monotonic() + 240
        while "MiniSQL Cluster is up" not in out_path.read_text(errors="replace"):
            assert up.poll() is None and time.monotonic() < deadline, out_path.read_text(errors="replace")
            time.sleep(0.3)
        stack = Stack(data, f"127.0.0.1:{zk_port}")
        summary = run(stack, [base, base + 1], duration, interval, int(os.environ.get("CHAOS_THREADS", "6")),
                      int(os.environ.get("CHAOS_SEED", "1")), kinds=kinds)
        assert summary["acked"] > 0
    finally:
        Blackhole().heal()
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
        up.wait(timeout=180)
