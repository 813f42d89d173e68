"""`minisql up` survives its own failures (issue 8): a child that dies is
restarted with backoff while the rest keeps serving; only SIGTERM stops the
stack.  Run as a user would: the real `minisql up` with 3 regions, PyMySQL
in its default mode (autocommit off), `kill -9` of the MariaDB holding a
table's primary and then of the proxy, while writes go on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pymysql

from minisql.processes import free_port, free_port_block, port_accepts

from .test_localstack import _alive, _child_env, _minisql_argv


def _children(data: Path) -> dict[str, int]:
    state = json.loads((data / "run" / "up.json").read_text())
    return {c["name"]: c["pid"] for c in state["children"]}


def _status(data: Path, zk_port: int) -> dict:
    out = subprocess.run(_minisql_argv() + ["status", "--zk", f"127.0.0.1:{zk_port}", "--json", "--data-dir", str(data)],
                         capture_output=True, text=True, timeout=60, env=_child_env())
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _insert_until_accepted(port: int, value: int, timeout: float = 90.0) -> float:
    """INSERT + COMMIT `value` through the proxy, retrying errors (a failover
    or a restart in progress); seconds until it was acknowledged."""
    start = time.monotonic()
    last: Exception | None = None
    while time.monotonic() - start < timeout:
        try:
            conn = pymysql.connect(host="127.0.0.1", port=port, user="root", password="", database="shop",
                                   connect_timeout=5, read_timeout=30, write_timeout=30)
            try:
                conn.cursor().execute("INSERT INTO t VALUES (%s)", (value,))
                conn.commit()
                return time.monotonic() - start
            finally:
                conn.close()
        except pymysql.err.MySQLError as exc:
            last = exc
            time.sleep(0.5)
    raise AssertionError(f"INSERT {value} not accepted within {timeout} s: {last}")


def _wait(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_mariadb_and_a_killed_proxy_are_restarted_and_no_write_is_lost(tmp_path):
    data = tmp_path / "stack"
    proxy_port, zk_port, metrics = free_port(), free_port(), free_port_block(30)
    mysql_base = free_port_block(3)
    out_path = tmp_path / "up.out"
    argv = _minisql_argv() + ["up", "--data-dir", str(data), "--port", str(proxy_port), "--zk-port", str(zk_port),
                              "--mysql-base-port", str(mysql_base), "--metrics-base-port", str(metrics)]
    with open(out_path, "wb") as out:
        up = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=_child_env())
    try:
        _wait(lambda: "MiniSQL Cluster is up" in out_path.read_text(errors="replace") or up.poll() is not None,
              "the stack", timeout=240)
        assert up.poll() is None, out_path.read_text(errors="replace")
        conn = pymysql.connect(host="127.0.0.1", port=proxy_port, user="root", password="")  # no database, autocommit off
        try:
            cur = conn.cursor()
            cur.execute("CREATE DATABASE shop")
            cur.execute("CREATE TABLE shop.t (id INT PRIMARY KEY)")
            cur.executemany("INSERT INTO shop.t VALUES (%s)", [(i,) for i in range(1, 11)])
            conn.commit()
        finally:
            conn.close()
        acked = list(range(1, 11))

        table = next(t for t in _status(data, zk_port)["tables"] if t["database"] == "shop" and t["table"] == "t")
        primary = table["primary"]
        victim = f"mysql-{primary}"
        old_pid = _children(data)[victim]
        os.kill(old_pid, signal.SIGKILL)

        for value in range(11, 21):  # writes go on: a failover or the restarted server takes them
            _insert_until_accepted(proxy_port, value)
            acked.append(value)
        _wait(lambda: _children(data)[victim] != old_pid and _alive(_children(data)[victim]), f"{victim} restarted")
        output = out_path.read_text(errors="replace")
        assert f"{victim} exited unexpectedly" in output and f"restarted {victim}" in output, output
        assert up.poll() is None  # the rest kept running

        proxy_pid = _children(data)["proxy"]
        os.kill(proxy_pid, signal.SIGKILL)
        _wait(lambda: _children(data)["proxy"] != proxy_pid and port_accepts(proxy_port), "the proxy restarted")
        for value in range(21, 26):
            _insert_until_accepted(proxy_port, value)
            acked.append(value)

        conn = pymysql.connect(host="127.0.0.1", port=proxy_port, user="root", password="", database="shop")
        try:
            cur = conn.cursor()
            cur.execute("SELECT id FROM t ORDER BY id")
            assert [r[0] for r in cur.fetchall()] == acked  # nothing acknowledged was lost, nothing twice
        finally:
            conn.close()
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=180)
    output = out_path.read_text(errors="replace")
    assert code == 0 and "all processes stopped" in output, output
    for name, pid in _children(data).items():
        assert not _alive(pid), f"{name} (pid {pid}) still running"
