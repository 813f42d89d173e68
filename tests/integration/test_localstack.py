"""The local stack itself: real ZooKeeper and MariaDB from the fixtures, the
config files, the `minisql` command line, and `minisql up` start/stop."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import MappingProxyType

import pymysql
import pytest

from minisql import cli
from minisql.config import (
    BackendCredentials,
    ConfigError,
    ProxyUser,
    load_backend_credentials,
    load_users,
    native_password_hash,
    write_backend_credentials,
    write_users,
)
from minisql.localstack import MariaDBProcess, ProcessStartError, free_port, port_accepts

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _minisql_argv() -> list[str]:
    script = Path(sys.executable).parent / "minisql"
    return [str(script)] if script.exists() else [sys.executable, "-m", "minisql.cli"]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


# -- servers from the fixtures ------------------------------------------------------
def test_zookeeper_serves(zookeeper, zk_root):
    assert zookeeper.hosts == f"127.0.0.1:{zookeeper.port}"
    assert zookeeper.four_letter("ruok") == "imok"
    assert "Mode: standalone" in zookeeper.four_letter("stat")

    from kazoo.client import KazooClient

    client = KazooClient(hosts=zookeeper.hosts, timeout=2.0)
    client.start(timeout=15)
    try:
        client.create(f"{zk_root}/probe", b"hello", makepath=True, ephemeral=True)
        data, stat_ = client.get(f"{zk_root}/probe")
        assert data == b"hello"
        assert stat_.ephemeralOwner == client.client_id[0]
        # tickTime=1000 / minSessionTimeout=2000: a 2 s session is granted as asked
        # (the default tickTime=2000 would stretch it to 4 s).
        assert client._session_timeout == 2000
    finally:
        client.stop()
        client.close()


def test_mariadbs_serve_backend_user(mariadbs, backend_credentials):
    assert len(mariadbs) == 3
    assert len({m.port for m in mariadbs}) == 3
    for m in mariadbs:
        assert m.alive
        assert Path(m.socket).exists()
        assert m.query("SELECT 1") == [(1,)]

    m = mariadbs[0]
    conn = pymysql.connect(
        host="127.0.0.1",
        port=m.port,
        user=backend_credentials.user,
        password=backend_credentials.password,
        autocommit=True,
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT CURRENT_USER(), @@port, @@character_set_server, @@log_bin, VERSION()")
            user, port, charset, log_bin, version = cur.fetchone()
            assert user == f"{backend_credentials.user}@127.0.0.1"
            assert port == m.port
            assert charset == "utf8mb4"
            assert log_bin == 0
            assert "MariaDB" in version
            cur.execute("SHOW GRANTS")
            grants = " ".join(row[0] for row in cur.fetchall())
            assert "ALL PRIVILEGES ON *.*" in grants and "WITH GRANT OPTION" in grants
            cur.execute("CREATE DATABASE IF NOT EXISTS ls_probe")
            cur.execute("CREATE TABLE ls_probe.t (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB")
            cur.execute("INSERT INTO ls_probe.t VALUES (1, 'a'), (2, '\U0001F600')")
            cur.execute("SELECT v FROM ls_probe.t ORDER BY id")
            assert [r[0] for r in cur.fetchall()] == ["a", "\U0001F600"]
            cur.execute("XA START 'x1'")
            cur.execute("INSERT INTO ls_probe.t VALUES (3, 'xa')")
            cur.execute("XA END 'x1'")
            cur.execute("XA PREPARE 'x1'")
            cur.execute("XA COMMIT 'x1'")
            cur.execute("SELECT COUNT(*) FROM ls_probe.t")
            assert cur.fetchone()[0] == 3
            cur.execute("DROP DATABASE ls_probe")
    finally:
        conn.close()

    # The wrong password is refused: the account really has one.
    with pytest.raises(pymysql.err.OperationalError) as info:
        pymysql.connect(host="127.0.0.1", port=m.port, user=backend_credentials.user, password="wrong")
    assert info.value.args[0] == 1045


def test_mariadb_restart_keeps_data_and_stops_clean(tmp_path, mariadb_template, backend_credentials):
    server = MariaDBProcess(
        tmp_path / "db",
        free_port(),
        backend_user=backend_credentials.user,
        backend_password=backend_credentials.password,
    )
    assert server.install_from_template(mariadb_template) is True
    assert server.install_from_template(mariadb_template) is False  # already installed
    try:
        server.start()
        server.query("CREATE DATABASE keep")
        server.query("CREATE TABLE keep.t (id INT PRIMARY KEY)")
        server.query("INSERT INTO keep.t VALUES (42)")
        pid = server.pid
        assert server.stop() == 0
        assert not Path(f"/proc/{pid}").exists()
        assert not port_accepts(server.port)

        assert server.install() is False  # reused, not reinstalled
        server.start()
        assert server.query("SELECT id FROM keep.t") == [(42,)]
        conn = server.backend_connection()
        conn.close()

        server.kill()  # a crash: the next start recovers
        server.start()
        assert server.query("SELECT id FROM keep.t") == [(42,)]
    finally:
        server.stop()
    assert not server.alive


def test_start_failure_is_reported_with_log(tmp_path, mariadb_template):
    server = MariaDBProcess(tmp_path / "bad", free_port(), extra_args=["--no-such-option-at-all"])
    server.install_from_template(mariadb_template)
    with pytest.raises(ProcessStartError) as info:
        server.start(timeout=60)
    assert "exited during start-up" in str(info.value)
    assert "no-such-option-at-all" in info.value.log_tail
    assert not server.alive


# -- config files --------------------------------------------------------------------
def test_native_password_hash():
    assert native_password_hash("") == ""
    # MySQL: SELECT PASSWORD('password') = '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19'
    assert native_password_hash("password") == "2470c0c06dee42fd1618bb99005adca2ec9d1e19"


def test_secrets_and_users_files(tmp_path, monkeypatch):
    monkeypatch.delenv("MINISQL_BACKEND_USER", raising=False)
    monkeypatch.delenv("MINISQL_BACKEND_PASSWORD", raising=False)
    secrets = tmp_path / "secrets.json"
    write_backend_credentials(secrets, BackendCredentials("minisql", "s3cret"))
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert load_backend_credentials(str(secrets)) == BackendCredentials("minisql", "s3cret")
    assert "s3cret" not in repr(load_backend_credentials(str(secrets)))

    monkeypatch.setenv("MINISQL_BACKEND_PASSWORD", "from-env")
    assert load_backend_credentials(str(secrets)).password == "from-env"
    monkeypatch.setenv("MINISQL_BACKEND_USER", "envuser")
    assert load_backend_credentials(None) == BackendCredentials("envuser", "from-env")
    monkeypatch.delenv("MINISQL_BACKEND_USER")
    monkeypatch.delenv("MINISQL_BACKEND_PASSWORD")
    with pytest.raises(ConfigError, match="MINISQL_BACKEND_USER"):
        load_backend_credentials(None)
    with pytest.raises(ConfigError, match="does not exist"):
        load_backend_credentials(str(tmp_path / "missing.json"))

    users = tmp_path / "users.json"
    write_users(users, {"root": ProxyUser("root", ""), "app": ProxyUser("app", native_password_hash("pw"))})
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    loaded = load_users(str(users))
    assert loaded["root"] == ProxyUser("root", "")
    assert loaded["app"].native_password_hash == native_password_hash("pw")
    users.write_text(json.dumps({"users": {"u": {"native_password_hash": "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"}}}))
    assert load_users(str(users))["u"].native_password_hash == native_password_hash("password")
    users.write_text(json.dumps({"users": {"u": {"password": "plain"}}}))
    with pytest.raises(ConfigError, match="plain-text"):
        load_users(str(users))
    users.write_text(json.dumps({"users": {"u": {"native_password_hash": "abc"}}}))
    with pytest.raises(ConfigError, match="40 hex"):
        load_users(str(users))


# -- command line ----------------------------------------------------------------------
def test_minisql_help():
    for args in (["--help"], ["up", "--help"], ["status", "--help"]):
        result = subprocess.run(_minisql_argv() + args, capture_output=True, text=True, timeout=60, env=_child_env())
        assert result.returncode == 0, result.stderr
        assert "usage: minisql" in result.stdout
    result = subprocess.run(_minisql_argv() + ["up", "--help"], capture_output=True, text=True, timeout=60, env=_child_env())
    for flag in ("--data-dir", "--regions", "--port", "--zk-port", "--mysql-base-port", "--metrics-base-port", "--masters",
                 "--proxies", "--mariadb-option"):
        assert flag in result.stdout


class _FakeTopology:
    def __init__(self, hosts, root):
        self.hosts, self.root = hosts, root

    async def start(self):
        pass

    async def close(self):
        pass

    async def list_regions(self):
        from topology import RegionInfo

        return {
            "r1": RegionInfo("r1", "127.0.0.1", 3307, 9221),
            "r2": RegionInfo("r2", "127.0.0.1", 3308, 9222),
        }

    async def get_placement(self):
        from topology import EMPTY_PLACEMENT, ReplicaState, TablePlacement

        t = TablePlacement(
            "shop",
            "orders",
            "r1",
            MappingProxyType({"r2": ReplicaState.IN_SYNC, "r3": ReplicaState.COPYING}),
        )
        return EMPTY_PLACEMENT.with_table(t).with_database("empty")

    async def get_leader(self):
        from topology import LeaderInfo

        return LeaderInfo("m1", "127.0.0.1", 9210)

    async def get_loads(self):
        from topology import RegionLoad

        return {"r1": RegionLoad("r1", delay=0.4), "r2": RegionLoad("r2")}  # r2: no heartbeat yet


@pytest.fixture()
def listening_port():
    """A port something listens on (stands in for ZooKeeper for the fake topology)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_status_output(monkeypatch, capsys, listening_port):
    import topology

    zk = f"127.0.0.1:{listening_port}"

    monkeypatch.setattr(topology.Topology, "for_zookeeper", classmethod(lambda cls, h, r="/minisql", **kw: _FakeTopology(h, r)))
    assert cli.main(["status", "--zk", zk, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["leader"]["master_id"] == "m1"
    assert [(r["id"], r["mysql_port"], r["alive"], r["delay"]) for r in doc["regions"]] == [
        ("r1", 3307, True, 0.4),
        ("r2", 3308, True, None),
        ("r3", None, False, None),
    ]
    assert doc["tables"] == [
        {
            "database": "shop",
            "table": "orders",
            "primary": "r1",
            "replicas": {"r2": "in_sync", "r3": "copying"},
            "epoch": 1,
            "group": None,
            "references": [],
            "links": [],
            "kind": "table",
        }
    ]
    assert doc["empty_databases"] == ["empty"]

    assert cli.main(["status", "--zk", zk]) == 0
    text = capsys.readouterr().out
    assert "Master leader: m1" in text
    assert "shop.orders" in text and "r2 (in_sync), r3 (copying)" in text
    assert "r3" in text and "NO" in text
    assert "DELAY" in text and "0.4s" in text


def test_status_unreachable_zookeeper_fails_cleanly(monkeypatch, capsys, listening_port):
    import topology

    assert cli.main(["status", "--zk", f"127.0.0.1:{free_port()}"]) == 2
    assert "nothing listens at ZooKeeper" in capsys.readouterr().err

    class Broken(_FakeTopology):
        async def start(self):
            raise ConnectionRefusedError("connection refused")

    monkeypatch.setattr(topology.Topology, "for_zookeeper", classmethod(lambda cls, h, r="/minisql", **kw: Broken(h, r)))
    assert cli.main(["status", "--zk", f"127.0.0.1:{listening_port}"]) == 2
    assert "cannot read the cluster state" in capsys.readouterr().err


# -- minisql up ----------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _run_up(data: Path, out_path: Path, while_up=None) -> tuple[int, str]:
    """Run `minisql up` (one region, one master) until it is up or gives up;
    SIGTERM it if it is up.  Returns (exit code, output).

    `while_up(ports)`, if given, runs once the stack is up, before the
    SIGTERM; whatever it raises is re-raised after the stack has stopped.
    """
    ports = {"proxy": free_port(), "zk": free_port(), "mysql": free_port(), "metrics": free_port()}
    argv = _minisql_argv() + [
        "up",
        "--data-dir", str(data),
        "--regions", "1",
        "--masters", "1",
        "--port", str(ports["proxy"]),
        "--zk-port", str(ports["zk"]),
        "--mysql-base-port", str(ports["mysql"]),
        "--metrics-base-port", str(ports["metrics"]),
    ]  # fmt: skip
    failure: BaseException | None = None
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=_child_env())
    try:
        deadline = time.monotonic() + 180
        while proc.poll() is None and time.monotonic() < deadline:
            if "MiniSQL Cluster is up" in out_path.read_text(errors="replace"):
                if while_up is not None:
                    try:
                        while_up(ports)
                    except BaseException as exc:  # stop the stack first
                        failure = exc
                break
            time.sleep(0.2)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if failure is not None:
        raise failure
    return code, out_path.read_text(errors="replace")


def _listening_addresses(port: int) -> set[str]:
    """IPv4 addresses with a TCP socket in LISTEN state on `port` ("v6" for any IPv6 one)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                address, hex_port = fields[1].split(":")
                if fields[3] == "0A" and int(hex_port, 16) == port:
                    if len(address) == 8:
                        found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
                    else:
                        found.add("v6")
    return found


def _check_stack_plumbing(data: Path, ports: dict[str, int]) -> None:
    """While `minisql up` runs: metrics on loopback only, znodes closed to
    anonymous clients, `minisql status` works with the status identity."""
    from kazoo.client import KazooClient
    from kazoo.exceptions import NoAuthError

    base = ports["metrics"]
    for port in (base, base + 10, base + 21):  # proxy, master m1, region r1
        assert _listening_addresses(port) == {"127.0.0.1"}, port
    mysql = pwd.getpwnam("mysql") if os.geteuid() == 0 and _has_user("mysql") else None
    if mysql is not None:  # as root: mariadbd switches to mysql unless a parent dir locks it out
        pid = int((data / "regions" / "r1" / "mysql" / "mariadbd.pid").read_text())
        uid = int(next(l for l in Path(f"/proc/{pid}/status").read_text().splitlines() if l.startswith("Uid:")).split()[1])
        blocked = any(not (p.stat().st_mode & 0o001) for p in data.parents)
        assert uid == (0 if blocked else mysql.pw_uid), (uid, blocked)
    secrets = json.loads((data / "secrets.json").read_text())
    assert secrets["zk_user"] and secrets["zk_password"] and secrets["zk_status_user"] and secrets["zk_status_password"]
    zk = f"127.0.0.1:{ports['zk']}"
    anonymous = KazooClient(hosts=zk, timeout=4.0)
    anonymous.start(timeout=15)
    try:
        with pytest.raises(NoAuthError):
            anonymous.get_children("/minisql/regions")
        with pytest.raises(NoAuthError):
            anonymous.create("/minisql/placement-intruder", b"")
    finally:
        anonymous.stop()
        anonymous.close()
    status = subprocess.run(
        _minisql_argv() + ["status", "--zk", zk, "--json", "--secrets", str(data / "secrets.json")],
        capture_output=True, text=True, timeout=60, env=_child_env(),
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert [r["id"] for r in doc["regions"]] == ["r1"] and doc["leader"]["master_id"] == "m1"


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _check_up_run(data: Path, code: int, output: str) -> None:
    state = json.loads((data / "run" / "up.json").read_text())
    names = [c["name"] for c in state["children"]]
    assert names[:2] == ["zookeeper", "mysql-r1"], output
    for child in state["children"]:
        assert not _alive(child["pid"]), f"{child['name']} (pid {child['pid']}) still running\n{output}"
    assert "all processes stopped" in output, output
    assert "ready for connections" in (data / "logs" / "mysql-r1.log").read_text(errors="replace")
    if "MiniSQL Cluster is up" in output:
        assert code == 0, output
    else:  # a component failed: it must be named, with its log
        assert code == 1, output
        assert "exited" in output and "last lines of" in output, output


def test_up_starts_servers_and_leaves_nothing_behind(tmp_path):
    """ZooKeeper and MariaDB must come up; whatever the components do (until
    they exist `up` names the failed one and exits 1; once they do, we stop it
    with SIGTERM), no child may survive, and a second run reuses the data."""
    data = tmp_path / "stack"
    checked = []
    code, output = _run_up(data, tmp_path / "up1.out", lambda ports: checked.append(_check_stack_plumbing(data, ports)))
    _check_up_run(data, code, output)
    assert checked or "MiniSQL Cluster is up" not in output
    assert (data / "logs" / "zookeeper.log").exists()
    assert (data / "zookeeper" / "data" / "version-2").is_dir()
    assert stat.S_IMODE((data / "secrets.json").stat().st_mode) == 0o600
    assert load_users(str(data / "users.json"))["root"].native_password_hash == ""
    secrets_before = (data / "secrets.json").read_text()

    code, output = _run_up(data, tmp_path / "up2.out")
    _check_up_run(data, code, output)
    assert (data / "secrets.json").read_text() == secrets_before
    mysql_log = (data / "logs" / "mysql-r1.log").read_text(errors="replace")
    assert mysql_log.count("=== mariadb-install-db") == 1  # installed once, reused after


def test_up_refuses_busy_port(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            _minisql_argv()
            + ["up", "--data-dir", str(tmp_path / "d"), "--regions", "1", "--masters", "1", "--zk-port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env=_child_env(),
        )
    assert result.returncode == 1
    assert f"{port} (ZooKeeper (--zk-port))" in result.stderr


def test_status_against_real_zookeeper(zookeeper, zk_root, capsys):
    """An empty cluster root: no leader, no regions, no tables."""
    assert cli.main(["status", "--zk", zookeeper.hosts, "--zk-root", zk_root, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["leader"] is None
    assert doc["regions"] == [] and doc["tables"] == []
    assert doc["zk"] == zookeeper.hosts and doc["zk_root"] == zk_root


def test_up_adds_zookeeper_credentials_to_an_old_secrets_file(tmp_path, monkeypatch):
    """A data dir from before ZooKeeper ACLs keeps its backend password and
    gains the two ZooKeeper identities (generated, file still 0600)."""
    from minisql.up import LocalCluster

    for var in ("MINISQL_BACKEND_USER", "MINISQL_BACKEND_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    cluster = LocalCluster(cli.build_parser().parse_args(["up", "--data-dir", str(tmp_path)]))
    write_backend_credentials(cluster.secrets_path, BackendCredentials("minisql", "old-password"))
    assert cluster._ensure_files() == BackendCredentials("minisql", "old-password")
    doc = json.loads(cluster.secrets_path.read_text())
    assert doc["backend_password"] == "old-password"
    assert doc["zk_user"] == "minisql" and doc["zk_status_user"] == "minisql-status"
    assert len(doc["zk_password"]) >= 24 and doc["zk_password"] != doc["zk_status_password"]
    assert stat.S_IMODE(cluster.secrets_path.stat().st_mode) == 0o600
    cluster._ensure_files()  # nothing missing any more: unchanged
    assert json.loads(cluster.secrets_path.read_text()) == doc
