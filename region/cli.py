"""`minisql region`: run a region agent beside one MariaDB server.

    minisql region --id r1 --mysql-host 127.0.0.1 --mysql-port 3307 \\
        --metrics-port 9221 --secrets secrets.json [--advertise-host H] \\
        [--metrics-host H] [--zk HOST:PORT] [--zk-root /minisql] [--log-level INFO]

`run` blocks until SIGTERM/SIGINT and returns the exit code (0 on a clean
stop, 2 on a configuration error).  The secrets file holds the MariaDB
account and the ZooKeeper identity (see minisql.config).  Metrics listen on
the advertised host (published in ZooKeeper with the metrics port), not on
every interface; --metrics-host overrides it (e.g. 0.0.0.0 in a container
whose MariaDB runs elsewhere).
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from minisql.runtime import cluster_zk_auth, serve_metrics, stop_on_signals

from minisql.config import ConfigError, add_common_arguments, load_backend_credentials, setup_logging
from topology import Topology

from .agent import RegionAgent, RegionConfig

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    if "--zk" not in parser._option_string_actions:  # the caller may have added them already
        add_common_arguments(parser)
    parser.add_argument("--id", dest="region_id", required=True, help="region id (unique in the cluster)")
    parser.add_argument("--mysql-host", default="127.0.0.1", help="this region's MariaDB host (default 127.0.0.1)")
    parser.add_argument("--mysql-port", type=int, default=3306, help="this region's MariaDB port (default 3306)")
    parser.add_argument(
        "--advertise-host",
        default=None,
        help="host other processes use to reach this MariaDB (default: --mysql-host)",
    )
    parser.add_argument("--metrics-port", type=int, default=9221, help="Prometheus port (0: none; default 9221)")
    parser.add_argument(
        "--metrics-host",
        default=None,
        help="address the metrics endpoint listens on (default: --advertise-host, i.e. --mysql-host)",
    )
    parser.add_argument(
        "--secrets", default=None, help="JSON file with backend_user / backend_password (and zk_user / zk_password)"
    )
    parser.add_argument("--load-interval", type=float, default=3.0, help="seconds between load reports")
    parser.add_argument(
        "--zk-session-timeout", type=float, default=6.0, help="ZooKeeper session timeout in seconds (default 6)"
    )


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        creds = load_backend_credentials(args.secrets)
        auth = cluster_zk_auth(args.secrets)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    config = RegionConfig(
        region_id=args.region_id,
        mysql_host=args.mysql_host,
        mysql_port=args.mysql_port,
        advertise_host=args.advertise_host,
        metrics_port=args.metrics_port,
        load_interval=args.load_interval,
    )
    if not serve_metrics(config.metrics_port, args.metrics_host or config.public_host):
        return 2
    return asyncio.run(_main(args, config, creds, auth))


async def _main(args: argparse.Namespace, config: RegionConfig, creds, auth) -> int:
    stop = stop_on_signals()
    topology = Topology.for_zookeeper(args.zk, args.zk_root, session_timeout=args.zk_session_timeout, auth=auth)
    return await RegionAgent(config, topology, creds).run(stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="minisql region", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
