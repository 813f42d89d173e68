"""A whole MiniSQL cluster for end-to-end tests: real processes, real servers.

Uses the session's ZooKeeper and MariaDB fixtures and starts, as separate
`python -m minisql.cli ...` processes, one region agent per MariaDB, two
masters and one proxy (or more: `start(proxies=N)`), each under its own ZooKeeper root so test modules do
not see each other's placement.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import pymysql

from minisql.localstack import ManagedProcess, free_port, port_accepts
from minisql.processes import free_port_block
from topology import Topology

ROOT = Path(__file__).resolve().parents[2]


class Component(ManagedProcess):
    """One `minisql <component>` child process."""

    stop_timeout = 15.0

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, ready_port: int | None = None,
                 env_extra: dict[str, str] | None = None) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env.update(env_extra or {})
        super().__init__(name, log_path=log_path, env=env, cwd=ROOT)
        self._argv = [sys.executable, "-m", "minisql.cli", *argv]
        self.ready_port = ready_port

    def command(self) -> list[str]:
        return self._argv

    def probe(self) -> bool:
        return self.ready_port is None or port_accepts(self.ready_port)


class Cluster:
    def __init__(self, zookeeper: Any, mariadbs: Sequence[Any], credentials: Any, workdir: Path, zk_root: str) -> None:
        self.zk_hosts = zookeeper.hosts
        self.zk_root = zk_root
        self.mariadbs = list(mariadbs)
        self.credentials = credentials
        self.workdir = workdir
        self.secrets = workdir / "secrets.json"
        self.users = workdir / "users.json"
        self.proxy_port = free_port()
        self.proxy_metrics_port = free_port()
        self.regions: dict[str, Component] = {}
        self.masters: dict[str, Component] = {}
        self.proxy: Component | None = None
        self.proxies: list[Component] = []  # proxy 0 is `proxy`
        self.proxy_ports: list[int] = [self.proxy_port]

    def _common(self) -> list[str]:
        return ["--zk", self.zk_hosts, "--zk-root", self.zk_root, "--log-level", "INFO"]

    def start(self, users: dict[str, str] | None = None, proxy_args: Sequence[str] = (),
              user_options: dict[str, dict[str, Any]] | None = None, proxies: int = 1) -> "Cluster":
        """`user_options` adds users-file fields per user (e.g. require_ssl, sha2_password_hash);
        `proxies` proxies share the cluster, proxy i listening on `proxy_ports[i]`."""
        from minisql.config import native_password_hash

        self.secrets.write_text(json.dumps({"backend_user": self.credentials.user, "backend_password": self.credentials.password}))
        os.chmod(self.secrets, 0o600)
        accounts = users or {"root": ""}
        extra = user_options or {}
        self.users.write_text(json.dumps({"users": {
            u: {"native_password_hash": native_password_hash(p), **extra.get(u, {})} for u, p in accounts.items()
        }}))
        os.chmod(self.users, 0o600)
        for i, db in enumerate(self.mariadbs, start=1):
            self.start_region(f"r{i}", db.port)
        for m in ("m1", "m2"):
            self.start_master(m)
        self.proxy_ports += [free_port() for _ in range(proxies - 1)]
        if "--workers" in proxy_args:  # each worker serves metrics on its own port: base + i
            self.proxy_metrics_port = free_port_block(int(proxy_args[list(proxy_args).index("--workers") + 1]))
        for i, port in enumerate(self.proxy_ports):
            metrics = self.proxy_metrics_port if i == 0 else free_port()
            self.proxies.append(Component(
                "proxy" if i == 0 else f"proxy{i + 1}",
                ["proxy", *self._common(), "--port", str(port), "--metrics-port", str(metrics),
                 "--secrets", str(self.secrets), "--users", str(self.users), *proxy_args],
                self.workdir / ("proxy.log" if i == 0 else f"proxy{i + 1}.log"),
                ready_port=port,
            ))
        self.proxy = self.proxies[0]
        self.wait_for(lambda s: len(s["regions"]) == len(self.mariadbs) and s["leader"] is not None, "regions and a leader")
        for proc in self.proxies:
            proc.start(timeout=60)
        self._wait_for_accounts(list(accounts))
        return self

    def _wait_for_accounts(self, users: list[str], timeout: float = 30.0) -> None:
        """Until every region holds the seeded accounts (the region agents sync
        them from ZooKeeper in the background): a first statement sooner could
        meet a region that does not know its user yet (1044/1045)."""
        deadline = time.monotonic() + timeout
        while True:
            missing = []
            for i in range(1, len(self.mariadbs) + 1):
                conn = self.connect_region(f"r{i}")
                try:
                    with conn.cursor() as cur:
                        cur.execute("SELECT DISTINCT User FROM mysql.user")
                        have = {r[0] for r in cur.fetchall()}
                finally:
                    conn.close()
                missing += [f"{u}@r{i}" for u in users if u not in have]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"accounts not synced to the regions: {missing}")
            time.sleep(0.2)

    def start_region(self, region_id: str, mysql_port: int) -> Component:
        proc = Component(
            f"region-{region_id}",
            ["region", *self._common(), "--id", region_id, "--mysql-port", str(mysql_port),
             "--metrics-port", str(free_port()), "--secrets", str(self.secrets), "--load-interval", "1"],
            self.workdir / f"region-{region_id}.log",
        )
        proc.start(timeout=60)
        self.regions[region_id] = proc
        return proc

    def start_extra_proxy(self, name: str, env_extra: dict[str, str] | None = None) -> tuple[Component, int]:
        """Another proxy of this cluster (e.g. one armed with a fault point,
        proxy/faults.py); (its process, its port).  The caller stops it."""
        port = free_port()
        proc = Component(
            name,
            ["proxy", *self._common(), "--port", str(port), "--metrics-port", str(free_port()),
             "--secrets", str(self.secrets), "--users", str(self.users)],
            self.workdir / f"{name}.log", ready_port=port, env_extra=env_extra,
        )
        proc.start(timeout=60)
        return proc, port

    def start_master(self, master_id: str) -> Component:
        proc = Component(
            f"master-{master_id}",
            ["master", *self._common(), "--id", master_id, "--metrics-port", str(free_port())],
            self.workdir / f"master-{master_id}.log",
        )
        proc.start(timeout=60)
        self.masters[master_id] = proc
        return proc

    def stop(self) -> None:
        procs = list(self.proxies) + list(self.masters.values()) + list(self.regions.values())
        for proc in procs:
            if proc.alive:
                proc.terminate()
        for proc in procs:
            proc.stop()

    # -- observation ----------------------------------------------------------
    def state(self) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            topo = Topology.for_zookeeper(self.zk_hosts, self.zk_root)
            await topo.start()
            try:
                regions = await topo.list_regions()
                placement = await topo.get_placement()
                leader = await topo.get_leader()
                loads = await topo.get_loads()
                return {"regions": regions, "placement": placement, "leader": leader, "loads": loads}
            finally:
                await topo.close()

        return asyncio.run(read())

    def wait_for(self, predicate: Any, what: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = self.state()
            if predicate(state):
                return state
            time.sleep(0.3)
        logs = "\n".join(f"--- {p.name}\n{p.log_tail(20)}" for p in [*self.regions.values(), *self.masters.values()])
        raise AssertionError(f"timed out waiting for {what}; last state {state}\n{logs}")

    def connect(self, proxy: int = 0, **kwargs: Any) -> pymysql.connections.Connection:
        """A client of proxy number `proxy` (0: the first)."""
        kwargs.setdefault("user", "root")
        kwargs.setdefault("password", "")
        return pymysql.connect(host="127.0.0.1", port=self.proxy_ports[proxy], autocommit=True, **kwargs)

    def connect_region(self, region_id: str, **kwargs: Any) -> pymysql.connections.Connection:
        index = int(region_id[1:]) - 1
        return pymysql.connect(
            host="127.0.0.1", port=self.mariadbs[index].port, user=self.credentials.user,
            password=self.credentials.password, autocommit=True, **kwargs,
        )

    def rows_on_regions(self, database: str, table: str, order_by: str = "1") -> dict[str, list[tuple]]:
        """{region: rows} for every region where `database.table` exists."""
        found: dict[str, list[tuple]] = {}
        for i in range(1, len(self.mariadbs) + 1):
            region = f"r{i}"
            conn = self.connect_region(region)
            try:
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s",
                        (database, table),
                    )
                    if cur.fetchone()[0]:
                        cur.execute(f"SELECT * FROM `{database}`.`{table}` ORDER BY {order_by}")
                        found[region] = list(cur.fetchall())
            finally:
                conn.close()
        return found


def running_cluster(zookeeper: Any, mariadbs: Sequence[Any], credentials: Any, tmp_path_factory: Any, name: str,
                    **start: Any) -> Iterator[Cluster]:
    """A module fixture's body: a cluster under its own ZooKeeper root, started
    with `start` (Cluster.start's arguments), stopped when the module is done."""
    import uuid

    cluster = Cluster(zookeeper, mariadbs, credentials, tmp_path_factory.mktemp(name), f"/{name}-{uuid.uuid4().hex[:8]}")
    try:
        cluster.start(**start)
        yield cluster
    finally:
        cluster.stop()


def fresh_database(cluster: Cluster, prefix: str) -> str:
    """A new database for one test (the cluster is shared by the module)."""
    import uuid

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = cluster.connect()
    try:
        conn.cursor().execute(f"CREATE DATABASE {name}")
    finally:
        conn.close()
    return name
