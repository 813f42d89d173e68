"""`minisql proxy`: the MySQL-protocol gateway process."""

from __future__ import annotations

import argparse
import asyncio
import logging

from minisql.config import load_backend_credentials, load_users
from minisql.runtime import cluster_zk_auth, retry_until_stopped, serve_metrics, stop_on_signals, watch_loop_lag
from topology import Topology
from topology.accounts import AccountStore

from . import metrics
from .accounts import AccountAdmin, ClusterAccounts, bootstrap_accounts
from .auth import LoginGuard
from .cluster import ClusterSessions
from .insertselect import LIMIT as MATERIALIZE_LIMIT
from .heartbeat import HeartbeatWriter
from .pool import BackendPool
from .routing import RoutingTable
from .server import MIB, EdgeConfig, ProxyServer
from .tls import add_tls_arguments, edge_crypto
from .session import ProxySession
from .statements import AnalysisCache

log = logging.getLogger("minisql.proxy")

DEFAULT_VERSION = "5.5.5-10.11.0-MariaDB-minisql"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=6033, help="MySQL port to listen on (default 6033)")
    parser.add_argument("--metrics-port", type=int, default=9200, help="Prometheus metrics port (0: off)")
    parser.add_argument(
        "--workers", type=int, default=1,
        help="proxy processes sharing the port (SO_REUSEPORT), each a full proxy with its own connection ids; "
        "worker i serves metrics on --metrics-port + i (default 1; a proxy's event loop uses one core)",
    )
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # set for each worker
    parser.add_argument("--secrets", help="JSON file with the regions' backend_user/backend_password")
    parser.add_argument(
        "--users",
        help="JSON file of bootstrap accounts (mysql_native_password hashes, all privileges); seeded into ZooKeeper "
        "when missing there -- manage accounts with CREATE USER / GRANT afterwards",
    )
    limits = parser.add_argument_group("client limits (MariaDB's names and defaults)")
    limits.add_argument("--max-connections", type=int, default=2048, help="client connections per proxy, before and after login (default 2048)")
    limits.add_argument("--max-user-connections", type=int, default=0, help="connections per account (default 0: no limit)")
    limits.add_argument("--connect-timeout", type=float, default=10.0, help="seconds a client has to finish logging in (default 10)")
    limits.add_argument("--wait-timeout", type=float, default=28800.0, help="seconds an idle logged-in client is kept (default 28800)")
    limits.add_argument("--max-shipped-bytes", type=int, default=16 * MIB,
                        help="rows (as SQL text) the proxy holds to run one statement across regions: tables copied "
                        "where the statement runs (default 16 MiB); more gets 1235")
    limits.add_argument("--max-allowed-packet", type=int, default=16 * MIB, help="largest client message in bytes (default 16 MiB); larger gets 1153")
    add_tls_arguments(parser)
    limits.add_argument("--login-block-after", type=int, default=20, help="failed logins of one user from one host before it is blocked for a minute (0: never)")


async def serve(args: argparse.Namespace) -> int:
    tls, rsa = edge_crypto(args)
    MATERIALIZE_LIMIT.max_bytes = args.max_shipped_bytes
    credentials = load_backend_credentials(args.secrets)
    users = load_users(args.users)
    stop = stop_on_signals()
    topology = Topology.for_zookeeper(args.zk, args.zk_root, auth=cluster_zk_auth(args.secrets))
    if not await retry_until_stopped(topology.start, stop, "connect to ZooKeeper"):
        return 0
    routing = RoutingTable(topology)
    pool = BackendPool(credentials.user, credentials.password)
    server: ProxyServer | None = None
    cache = AnalysisCache()
    cluster: ClusterSessions | None = None
    heartbeat: HeartbeatWriter | None = None
    try:
        await routing.start()
        accounts = ClusterAccounts()
        AccountStore(topology).watch(accounts.update)
        if not await retry_until_stopped(
            lambda: bootstrap_accounts(topology, users, routing.snapshot.regions, credentials.user, credentials.password),
            stop, "seed the bootstrap accounts",
        ):
            return 0
        accounts.update(await AccountStore(topology).get())
        admin = AccountAdmin(topology, accounts, credentials.user, credentials.password)

        def version() -> str:
            # MariaDB announces itself as "5.5.5-<version>" in the handshake so
            # that MySQL drivers do not take 10.x for MySQL 8 (they would ask for
            # the utf8mb4_0900_ai_ci collation, which MariaDB lacks).
            for region in routing.snapshot.regions.values():
                if region.mysql_version:
                    return "5.5.5-" + region.mysql_version
            return DEFAULT_VERSION

        # A proxy number (unique connection ids) and this proxy's request queue,
        # before the first client connects (cluster.py).
        cluster = ClusterSessions(topology, routing, args.host, args.port, args.metrics_port)
        if not await retry_until_stopped(cluster.start, stop, "claim a proxy number"):
            return 0

        def session_factory() -> ProxySession:
            return ProxySession(routing, pool, topology, cache, version(), admin, cluster)

        edge = EdgeConfig(
            accounts=accounts,
            guard=LoginGuard(block_after=args.login_block_after),
            max_connections=args.max_connections,
            max_user_connections=args.max_user_connections,
            connect_timeout=args.connect_timeout,
            wait_timeout=args.wait_timeout or None,
            max_allowed_packet=args.max_allowed_packet,
            tls=tls,
            rsa=rsa,
        )
        server = ProxyServer(session_factory, edge, cluster)
        if not serve_metrics(args.metrics_port, args.host):
            return 2
        await server.start_server(host=args.host, port=args.port, reuse_port=args.reuse_port or None)
        lag_watch = asyncio.create_task(watch_loop_lag(metrics.LOOP_LAG))
        number = cluster.ids
        heartbeat = HeartbeatWriter(pool, routing, lambda: f"proxy{number.number}")
        heartbeat.start()
        log.info(
            "proxy listening on %s:%d (metrics :%s), placement epoch %d",
            args.host, args.port, args.metrics_port, routing.snapshot.epoch,
        )
        await stop.wait()
        lag_watch.cancel()
        return 0
    finally:
        log.info("proxy stopping")
        if heartbeat is not None:
            await heartbeat.close()
        if server is not None:
            server.close()
            await server.wait_closed()
        if cluster is not None:
            await cluster.close()
        routing.close()
        pool.close()
        cache.close()
        await topology.close()


def _return_big_blocks_to_the_os() -> None:
    """glibc raises its mmap threshold after a big block is freed, so the next
    16 MB statements come from the heap and RSS never goes down again; a fixed
    threshold keeps every block over 1 MiB mmapped and handed back on free."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def run(args: argparse.Namespace) -> int:
    """uvloop when installed (a dependency on Linux): it halves the cost of a
    relayed packet (docs/benchmarks.md); plain asyncio otherwise."""
    if args.workers > 1:
        from .workers import run_workers

        return run_workers(args.workers, args.metrics_port)
    _return_big_blocks_to_the_os()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(args))
    return uvloop.run(serve(args))
