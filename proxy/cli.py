"""`minisql proxy`: the MySQL-protocol gateway process."""

from __future__ import annotations

import argparse
import asyncio
import logging

from minisql.config import load_backend_credentials, load_users
from minisql.runtime import retry_until_stopped, serve_metrics, stop_on_signals
from topology import Topology

from .auth import UsersIdentityProvider
from .backend import BackendPool
from .routing import RoutingTable
from .session import ProxySession
from .statements import AnalysisCache
from .wire import CAPABILITIES, ProxyServer

log = logging.getLogger("minisql.proxy")

DEFAULT_VERSION = "5.5.5-10.11.0-MariaDB-minisql"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=6033, help="MySQL port to listen on (default 6033)")
    parser.add_argument("--metrics-port", type=int, default=9200, help="Prometheus metrics port (0: off)")
    parser.add_argument("--secrets", help="JSON file with the regions' backend_user/backend_password")
    parser.add_argument("--users", help="JSON file with client accounts (mysql_native_password hashes)")


async def serve(args: argparse.Namespace) -> int:
    credentials = load_backend_credentials(args.secrets)
    users = load_users(args.users)
    stop = stop_on_signals()
    topology = Topology.for_zookeeper(args.zk, args.zk_root)
    if not await retry_until_stopped(topology.start, stop, "connect to ZooKeeper"):
        return 0
    routing = RoutingTable(topology)
    pool = BackendPool(credentials.user, credentials.password)
    server: ProxyServer | None = None
    try:
        await routing.start()
        cache = AnalysisCache()

        def version() -> str:
            # MariaDB announces itself as "5.5.5-<version>" in the handshake so
            # that MySQL drivers do not take 10.x for MySQL 8 (they would ask for
            # the utf8mb4_0900_ai_ci collation, which MariaDB lacks).
            for region in routing.snapshot.regions.values():
                if region.mysql_version:
                    return "5.5.5-" + region.mysql_version
            return DEFAULT_VERSION

        def session_factory() -> ProxySession:
            return ProxySession(routing, pool, topology, cache, version())

        server = ProxyServer(
            session_factory=session_factory,
            capabilities=CAPABILITIES,
            identity_provider=UsersIdentityProvider(users),
        )
        if not serve_metrics(args.metrics_port, args.host):
            return 2
        await server.start_server(host=args.host, port=args.port)
        log.info(
            "proxy listening on %s:%d (metrics :%s), placement epoch %d",
            args.host, args.port, args.metrics_port, routing.snapshot.epoch,
        )
        await stop.wait()
        return 0
    finally:
        log.info("proxy stopping")
        if server is not None:
            server.close()
            await server.wait_closed()
        routing.close()
        pool.close()
        await topology.close()


def run(args: argparse.Namespace) -> int:
    return asyncio.run(serve(args))
