"""`minisql proxy`: the MySQL-protocol gateway process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from prometheus_client import start_http_server

from minisql.config import load_backend_credentials, load_users
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


async def serve(args: argparse.Namespace) -> None:
    credentials = load_backend_credentials(args.secrets)
    users = load_users(args.users)
    topology = Topology.for_zookeeper(args.zk, args.zk_root)
    await topology.start()
    routing = RoutingTable(topology)
    await routing.start()
    pool = BackendPool(credentials.user, credentials.password)
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
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.host)
    await server.start_server(host=args.host, port=args.port)
    log.info("proxy listening on %s:%d (metrics :%s), placement epoch %d", args.host, args.port, args.metrics_port, routing.snapshot.epoch)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("proxy stopping")
        server.close()
        await server.wait_closed()
        routing.close()
        pool.close()
        await topology.close()


def run(args: argparse.Namespace) -> int:
    asyncio.run(serve(args))
    return 0
