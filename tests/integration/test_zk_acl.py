"""ZooKeeper ACLs against a real ZooKeeper: the cluster identity owns every
znode, the status identity may only read, anyone else gets nothing.

Uses kazoo directly (allowed in tests) for the anonymous client, so the
check does not go through the code under test.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Awaitable

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import OPEN_ACL_UNSAFE

from minisql import cli
from minisql.config import (
    BackendCredentials,
    ConfigError,
    ZooKeeperCredentials,
    load_zk_credentials,
    write_backend_credentials,
)
from minisql.runtime import cluster_zk_auth, status_zk_auth
from topology import (
    NotAuthorizedError,
    Placement,
    RegionInfo,
    ReplicaState,
    TablePlacement,
    Topology,
    ZooKeeperAuth,
)

pytestmark = pytest.mark.integration

CREDS = ZooKeeperCredentials("cluster", "cluster-pw", "watcher", "watcher-pw")
CLUSTER = ZooKeeperAuth("cluster", "cluster-pw", readers=(("watcher", "watcher-pw"),))
STATUS = ZooKeeperAuth("watcher", "watcher-pw")


def run(coro: Awaitable[Any], timeout: float = 30.0) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


def kazoo(hosts: str, auth: tuple[str, str] | None = None) -> KazooClient:
    client = KazooClient(hosts=hosts, timeout=4.0, auth_data=[("digest", f"{auth[0]}:{auth[1]}")] if auth else None)
    client.start(timeout=15)
    return client


def add_table(p: Placement) -> Placement:
    return p.with_table(TablePlacement("shop", "orders", "r1", {"r2": ReplicaState.IN_SYNC}))


async def populate(hosts: str, root: str, auth: ZooKeeperAuth | None) -> Placement:
    """What a region and the master leave behind: a region, a load node, a placement."""
    topo = Topology.for_zookeeper(hosts, root, auth=auth)
    await topo.start()
    try:
        await topo.register_region(RegionInfo("r1", "127.0.0.1", 3307, 9221))
        return await topo.update_placement(add_table)
    finally:
        await topo.close()


def every_znode(client: KazooClient, root: str) -> list[str]:
    found, pending = [], [root]
    while pending:
        node = pending.pop()
        found.append(node)
        pending.extend(f"{node}/{kid}" for kid in client.get_children(node))
    return found


def test_cluster_identity_owns_everything_status_reads_anonymous_gets_nothing(zookeeper, zk_root):
    written = run(populate(zookeeper.hosts, zk_root, CLUSTER))
    assert written.table("shop", "orders") is not None

    # Every znode under the root: cluster all, watcher read, nobody else.
    owner = kazoo(zookeeper.hosts, ("cluster", "cluster-pw"))
    try:
        nodes = every_znode(owner, zk_root)
        assert f"{zk_root}/placement" in nodes and f"{zk_root}/election" in nodes
        for node in nodes:
            acl, _ = owner.get_acls(node)
            entries = {(a.id.scheme, a.id.id.split(":")[0], a.perms) for a in acl}
            assert entries == {("digest", "cluster", 31), ("digest", "watcher", 1)}, (node, acl)
    finally:
        owner.stop()
        owner.close()

    # An unauthenticated client cannot read or write anything.
    anon = kazoo(zookeeper.hosts)
    try:
        for action in (
            lambda: anon.get(f"{zk_root}/placement"),
            lambda: anon.get_children(f"{zk_root}/regions"),
            lambda: anon.set(f"{zk_root}/placement", b"{}"),
            lambda: anon.create(f"{zk_root}/queues/master", b""),
            lambda: anon.create(f"{zk_root}/intruder", b""),
            lambda: anon.delete(f"{zk_root}/placement"),
            lambda: anon.set_acls(f"{zk_root}/placement", OPEN_ACL_UNSAFE),
        ):
            with pytest.raises(NoAuthError):
                action()
    finally:
        anon.stop()
        anon.close()

    # The status identity reads through the topology API, and cannot write.
    async def as_status() -> None:
        topo = Topology.for_zookeeper(zookeeper.hosts, zk_root, auth=STATUS, read_only=True)
        await topo.start()
        try:
            assert (await topo.get_placement()).table("shop", "orders") is not None
            # r1 left with its session; listing `regions/` needs READ, which we have.
            assert await topo.list_regions() == {}
            assert await topo.get_leader() is None
            with pytest.raises(NotAuthorizedError, match="placement"):
                await topo.update_placement(lambda p: p.with_database("evil"))
            with pytest.raises(NotAuthorizedError):
                await topo.register_region(RegionInfo("r9", "10.0.0.9", 3306, 0))
        finally:
            await topo.close()

    run(as_status())
    watcher = kazoo(zookeeper.hosts, ("watcher", "watcher-pw"))
    try:
        data, _ = watcher.get(f"{zk_root}/placement")
        assert "orders" in data.decode()
        with pytest.raises(NoAuthError):
            watcher.set(f"{zk_root}/placement", b"{}")
        with pytest.raises(NoAuthError):
            watcher.create(f"{zk_root}/regions/r9", b"{}", ephemeral=True)
    finally:
        watcher.stop()
        watcher.close()

    # The placement survived every attempt.
    assert run(populate_check(zookeeper.hosts, zk_root)) == written.to_json()


async def populate_check(hosts: str, root: str) -> bytes:
    topo = Topology.for_zookeeper(hosts, root, auth=CLUSTER)
    await topo.start()
    try:
        return (await topo.get_placement()).to_json()
    finally:
        await topo.close()


def test_wrong_or_missing_identity_is_a_clear_error(zookeeper, zk_root):
    run(populate(zookeeper.hosts, zk_root, CLUSTER))

    async def start(auth: ZooKeeperAuth | None, read_only: bool = False) -> None:
        topo = Topology.for_zookeeper(zookeeper.hosts, zk_root, auth=auth, read_only=read_only)
        await topo.start()
        try:
            await topo.get_placement()
        finally:
            await topo.close()

    # A cluster process without credentials, or with the wrong password, fails
    # at start with NotAuthorizedError (not a retriable TopologyUnavailable).
    with pytest.raises(NotAuthorizedError, match="anonymous client"):
        run(start(None))
    with pytest.raises(NotAuthorizedError, match="'cluster'"):
        run(start(ZooKeeperAuth("cluster", "wrong-password")))
    with pytest.raises(NotAuthorizedError, match=f"{zk_root}/placement"):
        run(start(None, read_only=True))
    run(start(STATUS, read_only=True))  # the read-only identity may read


def test_legacy_world_open_znodes_are_secured_at_start(zookeeper, zk_root, caplog):
    """A cluster that ran without credentials: the first process with them
    takes its znodes over, so anonymous clients lose access from then on."""
    run(populate(zookeeper.hosts, zk_root, None))
    anon = kazoo(zookeeper.hosts)
    try:
        anon.get(f"{zk_root}/placement")  # world-open: readable
        with caplog.at_level(logging.WARNING, logger="topology.service"):
            run(populate_check(zookeeper.hosts, zk_root))
        assert any("restricted the ACL" in r.getMessage() for r in caplog.records)
        with pytest.raises(NoAuthError):
            anon.get(f"{zk_root}/placement")
        with pytest.raises(NoAuthError):
            anon.get_children(f"{zk_root}/queues")
    finally:
        anon.stop()
        anon.close()


def test_without_credentials_behaviour_is_unchanged_but_warned(zookeeper, zk_root, caplog, monkeypatch):
    for var in ("MINISQL_ZK_USER", "MINISQL_ZK_PASSWORD", "MINISQL_ZK_STATUS_USER", "MINISQL_ZK_STATUS_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    with caplog.at_level(logging.WARNING, logger="minisql.runtime"):
        assert cluster_zk_auth(None) is None
    assert any("readable and writable by anyone" in r.getMessage() for r in caplog.records)
    run(populate(zookeeper.hosts, zk_root, None))
    anon = kazoo(zookeeper.hosts)
    try:
        acl, _ = anon.get_acls(f"{zk_root}/placement")
        assert [(a.id.scheme, a.id.id) for a in acl] == [("world", "anyone")]
    finally:
        anon.stop()
        anon.close()


def test_zk_credentials_in_the_secrets_file(tmp_path, monkeypatch):
    for var in ("MINISQL_ZK_USER", "MINISQL_ZK_PASSWORD", "MINISQL_ZK_STATUS_USER", "MINISQL_ZK_STATUS_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    secrets = tmp_path / "secrets.json"
    write_backend_credentials(secrets, BackendCredentials("minisql", "db-pw"), CREDS)
    doc = json.loads(secrets.read_text())
    assert doc == {
        "backend_user": "minisql", "backend_password": "db-pw",
        "zk_user": "cluster", "zk_password": "cluster-pw",
        "zk_status_user": "watcher", "zk_status_password": "watcher-pw",
    }  # fmt: skip
    assert oct(secrets.stat().st_mode & 0o777) == "0o600"
    assert load_zk_credentials(str(secrets)) == CREDS
    assert "cluster-pw" not in repr(load_zk_credentials(str(secrets)))
    assert cluster_zk_auth(str(secrets)) == CLUSTER
    assert status_zk_auth(str(secrets)) == STATUS
    assert "watcher-pw" not in repr(CLUSTER)

    monkeypatch.setenv("MINISQL_ZK_PASSWORD", "from-env")
    assert load_zk_credentials(str(secrets)).password == "from-env"
    monkeypatch.setenv("MINISQL_ZK_USER", "")
    with pytest.raises(ConfigError, match="zk_user"):
        load_zk_credentials(str(secrets))
    monkeypatch.delenv("MINISQL_ZK_USER")
    monkeypatch.delenv("MINISQL_ZK_PASSWORD")
    secrets.write_text(json.dumps({"zk_user": "a:b", "zk_password": "x"}))
    with pytest.raises(ConfigError, match="':'"):
        load_zk_credentials(str(secrets))
    generated = ZooKeeperCredentials.generate()
    assert generated.configured and generated.status_configured
    assert generated.password != generated.status_password


def test_minisql_status_reads_with_the_status_identity(zookeeper, zk_root, tmp_path, capsys, monkeypatch):
    for var in ("MINISQL_ZK_USER", "MINISQL_ZK_PASSWORD", "MINISQL_ZK_STATUS_USER", "MINISQL_ZK_STATUS_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    run(populate(zookeeper.hosts, zk_root, CLUSTER))
    # The status command needs only the read-only identity: give it a file
    # that holds nothing else.
    status_secrets = tmp_path / "status.json"
    status_secrets.write_text(json.dumps({"zk_status_user": "watcher", "zk_status_password": "watcher-pw"}))
    status_secrets.chmod(0o600)
    argv = ["status", "--zk", zookeeper.hosts, "--zk-root", zk_root, "--json"]
    assert cli.main([*argv, "--secrets", str(status_secrets)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["alive"]) for r in doc["regions"]] == [("r1", False), ("r2", False)]
    assert [t["table"] for t in doc["tables"]] == ["orders"]

    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "NoAuth" in err and "anonymous client" in err
