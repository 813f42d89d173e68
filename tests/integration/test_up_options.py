"""`minisql up --mariadb-option ... --proxies N` with real processes.

One stack for the module (2 regions, 1 master, 2 proxies, latin1 + MyISAM +
a changed stack default), because starting one costs seconds: the tests
read its regions directly, use both proxies, and check the banner and
`minisql status`.  The refusals need no stack: they must fail before
anything starts.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pymysql
import pytest

from minisql.localstack import free_port, port_is_free

from .test_localstack import _alive, _child_env, _minisql_argv

pytestmark = pytest.mark.integration

OPTIONS = ["--mariadb-option=--character-set-server=latin1", "--mariadb-option", "default_storage_engine=MyISAM",
           "--mariadb-option=--max-connections=321"]  # fmt: skip


def _free_base(offsets: list[int]) -> int:
    """A port base with base+offset free for every offset (below the kernel's ephemeral range)."""
    for _ in range(500):
        base = random.randint(20000, 32000 - max(offsets))
        if all(port_is_free(base + o) for o in offsets):
            return base
    raise AssertionError(f"no free port range for offsets {offsets}")


@dataclass
class Stack:
    data: Path
    out: Path
    proc: subprocess.Popen
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def secrets(self) -> dict:
        return json.loads((self.data / "secrets.json").read_text())


def _wait_up(stack: Stack, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "MiniSQL Cluster is up" in stack.output:
            return
        if stack.proc.poll() is not None:
            raise AssertionError(f"minisql up exited with {stack.proc.returncode}:\n{stack.output}")
        time.sleep(0.2)
    raise AssertionError(f"minisql up not up after {timeout:.0f}s:\n{stack.output}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("up-options")
    ports = {
        "proxy": _free_base([0, 1]),
        "zk": free_port(),
        "mysql": _free_base([0, 1]),
        "metrics": _free_base([0, 1, 10, 21, 22]),
    }
    argv = _minisql_argv() + [
        "up", "--data-dir", str(work / "stack"), "--regions", "2", "--masters", "1", "--proxies", "2",
        "--port", str(ports["proxy"]), "--zk-port", str(ports["zk"]),
        "--mysql-base-port", str(ports["mysql"]), "--metrics-base-port", str(ports["metrics"]), *OPTIONS,
    ]  # fmt: skip
    out = work / "up.out"
    with open(out, "wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=_child_env())
    s = Stack(work / "stack", out, proc, ports)
    try:
        _wait_up(s)
        yield s
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert code == 0, s.output
    assert "all processes stopped" in s.output, s.output
    for child in json.loads((s.data / "run" / "up.json").read_text())["children"]:
        assert not _alive(child["pid"]), f"{child['name']} (pid {child['pid']}) still running"


def _region(stack: Stack, k: int):
    secrets = stack.secrets()
    return pymysql.connect(
        host="127.0.0.1", port=stack.ports["mysql"] + k - 1, user=secrets["backend_user"],
        password=secrets["backend_password"], autocommit=True,
    )  # fmt: skip


def _proxy(stack: Stack, k: int, database: str | None = None):
    return pymysql.connect(
        host="127.0.0.1", port=stack.ports["proxy"] + k - 1, user="root", password="", database=database,
        autocommit=True, charset="utf8mb4",
    )  # fmt: skip


# -- --mariadb-option ------------------------------------------------------------------------
def test_every_region_runs_with_the_options_and_keeps_its_hardening(stack):
    for k in (1, 2):
        conn = _region(stack, k)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT @@global.character_set_server, @@global.collation_server, @@global.default_storage_engine,"
                    " @@global.max_connections, @@global.secure_file_priv, @@global.local_infile,"
                    " @@global.skip_name_resolve, @@global.port"
                )
                charset, collation, engine, max_conn, file_priv, local_infile, skip_resolve, port = cur.fetchone()
        finally:
            conn.close()
        assert (charset, collation, engine) == ("latin1", "latin1_swedish_ci", "MyISAM"), k
        assert max_conn == 321, k  # a stack default (500), overridden
        assert Path(file_priv) == stack.data / "regions" / f"r{k}" / "mysql-files", k
        assert (local_infile, skip_resolve, port) == (1, 1, stack.ports["mysql"] + k - 1), k
    assert "  mariadbd:  --character-set-server=latin1 --default_storage_engine=MyISAM --max-connections=321 " \
           "(on every region)" in stack.output  # fmt: skip


def test_the_options_come_after_the_defaults_and_before_the_managed_options(stack):
    state = json.loads((stack.data / "run" / "up.json").read_text())
    mysqls = {c["name"]: c["argv"] for c in state["children"] if c["name"].startswith("mysql-")}
    assert sorted(mysqls) == ["mysql-r1", "mysql-r2"]
    for argv in mysqls.values():
        first = argv.index("--character-set-server=latin1")
        assert argv[first : first + 3] == [
            "--character-set-server=latin1", "--default_storage_engine=MyISAM", "--max-connections=321",
        ]  # fmt: skip
        assert argv.index("--max-connections=500") < first
        assert not any(a.startswith("--collation-server=") for a in argv)  # would clash with latin1
        assert min(i for i, a in enumerate(argv) if a.startswith("--secure-file-priv=")) > first
        assert argv.index("--local-infile=1") > first


# -- --proxies ---------------------------------------------------------------------------------
def _select_when_known(cur, sql: str, timeout: float = 15.0) -> tuple:
    """Run `sql`, retrying while this proxy does not know the table yet (1146, 1049):
    only the proxy that ran a DDL waits for the new placement; the others get
    it from their ZooKeeper watch a moment later."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            cur.execute(sql)
            return cur.fetchall()
        except pymysql.err.MySQLError as exc:
            if exc.args[0] not in (1146, 1049) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_two_proxies_serve_the_same_tables(stack):
    one, two = _proxy(stack, 1), _proxy(stack, 2)
    try:
        with one.cursor() as c1, two.cursor() as c2:
            c1.execute("CREATE DATABASE shared")
            c1.execute("CREATE TABLE shared.t (id INT PRIMARY KEY, name VARCHAR(20))")
            c1.execute("INSERT INTO shared.t VALUES (1, 'caf\u00e9')")
            assert _select_when_known(c2, "SELECT id, name FROM shared.t") == ((1, "caf\u00e9"),)
            c2.execute("INSERT INTO shared.t VALUES (2, 'two')")
            c1.execute("SELECT id, name FROM shared.t ORDER BY id")
            assert c1.fetchall() == ((1, "caf\u00e9"), (2, "two"))
            # the regions' options reach the tables made through the gateway
            c2.execute("SHOW CREATE TABLE shared.t")
            ddl = c2.fetchone()[1]
            assert "ENGINE=MyISAM" in ddl and "CHARSET=latin1" in ddl, ddl
            c2.execute("DROP DATABASE shared")
    finally:
        one.close()
        two.close()


def test_banner_and_status_list_both_proxies(stack):
    p, m = stack.ports["proxy"], stack.ports["metrics"]
    assert f"  proxies:   p1 127.0.0.1:{p}, p2 127.0.0.1:{p + 1} (any of them" in stack.output
    assert f"  metrics:   proxies p1 :{m}, p2 :{m + 1}; masters m1 :{m + 10}; " in stack.output
    for port in (m, m + 1):  # each proxy has its own metrics endpoint
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            assert b"minisql_proxy_queries_total" in resp.read()
    assert (stack.data / "logs" / "proxy-p1.log").exists() and (stack.data / "logs" / "proxy-p2.log").exists()

    status = subprocess.run(
        _minisql_argv() + ["status", "--zk", f"127.0.0.1:{stack.ports['zk']}", "--data-dir", str(stack.data), "--json"],
        capture_output=True, text=True, timeout=60, env=_child_env(),
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert doc["proxies"] == [
        {"id": "p1", "host": "127.0.0.1", "port": p, "metrics_port": m, "serving": True},
        {"id": "p2", "host": "127.0.0.1", "port": p + 1, "metrics_port": m + 1, "serving": True},
    ]
    assert [r["id"] for r in doc["regions"]] == ["r1", "r2"]  # --data-dir also found the secrets
    text = subprocess.run(
        _minisql_argv() + ["status", "--zk", f"127.0.0.1:{stack.ports['zk']}", "--data-dir", str(stack.data)],
        capture_output=True, text=True, timeout=60, env=_child_env(),
    )  # fmt: skip
    assert text.returncode == 0, text.stderr
    assert f"p2  127.0.0.1:{p + 1}" in text.stdout and "Proxies (2, started by `minisql up`" in text.stdout


# -- refusals: before anything starts ---------------------------------------------------------------
@pytest.mark.parametrize(
    "option, message",
    [
        ("--mariadb-option=--secure-file-priv=/", "--secure-file-priv cannot be set with --mariadb-option: "
         "the regions' file access is confined"),
        ("--mariadb-option=--skip-grant-tables", "--skip-grant-tables cannot be set with --mariadb-option"),
        ("--mariadb-option=local_infile=0", "--local_infile cannot be set with --mariadb-option: the proxy relays"),
        ("--mariadb-option=--datad=/tmp", "--datad (mariadbd may read it as an abbreviation of --datadir)"),
        ("--mariadb-option=-P3306", "short options are not accepted"),
    ],
)  # fmt: skip
def test_a_forbidden_option_is_refused_before_anything_starts(tmp_path, option, message):
    data = tmp_path / "never"
    result = subprocess.run(
        _minisql_argv() + ["up", "--data-dir", str(data), "--zk-port", str(free_port()), option],
        capture_output=True, text=True, timeout=60, env=_child_env(),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "minisql up: error: argument --mariadb-option: " in result.stderr
    assert message in result.stderr
    assert not data.exists()


def test_overlapping_proxy_ports_are_refused(tmp_path):
    base = _free_base([0, 1, 2])
    result = subprocess.run(
        _minisql_argv() + ["up", "--data-dir", str(tmp_path / "d"), "--proxies", "3", "--port", str(base),
                           "--zk-port", str(base + 2)],
        capture_output=True, text=True, timeout=60, env=_child_env(),
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert f"port {base + 2} is wanted by both ZooKeeper (--zk-port) and proxy p3 (--port)" in result.stderr
    assert not (tmp_path / "d" / "zookeeper").exists()  # nothing started


def test_an_option_mariadb_does_not_know_names_the_region_and_its_log(tmp_path):
    """Not ours to check (MariaDB knows its options): the start fails with the region's log."""
    result = subprocess.run(
        _minisql_argv() + ["up", "--data-dir", str(tmp_path / "d"), "--regions", "1", "--masters", "1",
                           "--zk-port", str(free_port()), "--mysql-base-port", str(free_port()),
                           "--port", str(free_port()), "--metrics-base-port", str(_free_base([0, 10, 21])),
                           "--mariadb-option=--no-such-server-option=1"],
        capture_output=True, text=True, timeout=300, env=_child_env(),
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "mysql-r1 exited during start-up" in result.stderr
    assert "no-such-server-option" in result.stderr  # mariadbd's own complaint, from the log tail
    assert "all processes stopped" in result.stderr
