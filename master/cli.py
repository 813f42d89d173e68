"""`minisql master`: run one master candidate (several may run; one leads).

    minisql master --id m1 --metrics-port 9210 [--metrics-host H] [--secrets FILE] \\
        [--zk HOST:PORT] [--zk-root /minisql]

`run` blocks until SIGTERM/SIGINT and returns the exit code (0 on a clean
stop, 2 on a configuration error).  A master needs no MariaDB credentials: it
only talks to ZooKeeper and, through it, to the region agents.  `--secrets`
supplies its ZooKeeper identity (zk_user/zk_password; see minisql.config).
Metrics listen on --metrics-host, by default the advertised host or, without
one, loopback: they are not meant for the whole network unless asked.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from minisql.heartbeat import MAX_PROMOTE_DELAY
from minisql.runtime import cluster_zk_auth, serve_metrics, stop_on_signals

from minisql.config import add_common_arguments, setup_logging
from topology import Topology

from .leader import Master, MasterConfig

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    if "--zk" not in parser._option_string_actions:  # the caller may have added them already
        add_common_arguments(parser)
    parser.add_argument("--id", dest="master_id", required=True, help="master id (unique in the cluster)")
    parser.add_argument("--metrics-port", type=int, default=9210, help="Prometheus port (0: none; default 9210)")
    parser.add_argument("--advertise-host", default="", help="host published with the leader info (default: hostname)")
    parser.add_argument(
        "--metrics-host",
        default=None,
        help="address the metrics endpoint listens on (default: --advertise-host, else 127.0.0.1)",
    )
    parser.add_argument("--secrets", default=None, help="JSON file with zk_user / zk_password (ZooKeeper identity)")
    parser.add_argument(
        "--failover-grace",
        type=float,
        default=2.0,
        help="seconds a region may be missing before its tables fail over (default 2)",
    )
    parser.add_argument(
        "--max-promote-delay",
        type=float,
        default=MAX_PROMOTE_DELAY,
        help="a copy whose region's heartbeat delay is this many seconds behind the other regions' "
        f"is not promoted (default {MAX_PROMOTE_DELAY:g})",
    )
    parser.add_argument("--task-timeout", type=float, default=30.0, help="seconds to wait for a region DDL task")
    parser.add_argument("--copy-timeout", type=float, default=600.0, help="seconds to wait for a table copy")
    parser.add_argument(
        "--zk-session-timeout", type=float, default=6.0, help="ZooKeeper session timeout in seconds (default 6)"
    )


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    config = MasterConfig(
        master_id=args.master_id,
        host=args.advertise_host,
        metrics_port=args.metrics_port,
        failover_grace=args.failover_grace,
        max_promote_delay=args.max_promote_delay,
        task_timeout=args.task_timeout,
        copy_timeout=args.copy_timeout,
    )
    auth = cluster_zk_auth(args.secrets)
    if not serve_metrics(config.metrics_port, metrics_host(args)):
        return 2
    return asyncio.run(_main(args, config, auth))


def metrics_host(args: argparse.Namespace) -> str:
    """--metrics-host, else the advertised host, else loopback."""
    return args.metrics_host or args.advertise_host or "127.0.0.1"


async def _main(args: argparse.Namespace, config: MasterConfig, auth) -> int:
    stop = stop_on_signals()
    topology = Topology.for_zookeeper(args.zk, args.zk_root, session_timeout=args.zk_session_timeout, auth=auth)
    return await Master(config, topology).run(stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="minisql master", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
