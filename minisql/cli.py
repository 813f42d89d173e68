"""The `minisql` command: run one component, the whole local stack, or show status.

    minisql up [--data-dir ./.minisql] [--regions 3] ...   # everything on this machine
    minisql up --proxies 2 --mariadb-option=--character-set-server=latin1
    minisql proxy  --port 6033 --secrets FILE --users FILE  # one component
    minisql master --id m1
    minisql region --id r1 --mysql-port 3307 --secrets FILE
    minisql status [--json]

The component modules (proxy.cli, master.cli, region.cli) are imported only
when their subcommand runs, so the rest works without them.  `up` and
`status` live in their own modules (`minisql.up`, the one-machine supervisor,
and `minisql.status`): this module only parses the command line and
dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from topology import NotAuthorizedError

from .config import ConfigError, _log_level, add_common_arguments, setup_logging
from .mariadb_options import OptionError, parse_option
from .status import run_status
from .up import run_up

COMPONENTS: dict[str, tuple[str, str]] = {
    "proxy": ("proxy.cli", "run a MySQL-protocol gateway (what clients connect to)"),
    "master": ("master.cli", "run a master candidate (leader elected in ZooKeeper)"),
    "region": ("region.cli", "run a region agent beside one MariaDB server"),
}


# -- components -----------------------------------------------------------------
def _run_component(name: str, argv: Sequence[str]) -> int:
    module_name, description = COMPONENTS[name]
    parser = argparse.ArgumentParser(prog=f"minisql {name}", description=description)
    add_common_arguments(parser)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            print(f"minisql {name}: component not available: {exc}", file=sys.stderr)
            return 2
        raise
    for attr in ("add_arguments", "run"):
        if not callable(getattr(module, attr, None)):
            print(f"minisql {name}: {module_name} has no {attr}() yet", file=sys.stderr)
            return 2
    module.add_arguments(parser)
    args = parser.parse_args(list(argv))
    setup_logging(args.log_level)
    try:
        code = module.run(args)
    except ConfigError as exc:
        print(f"minisql {name}: error: {exc}", file=sys.stderr)
        return 2
    except NotAuthorizedError as exc:  # wrong ZooKeeper identity: a configuration error too
        print(f"minisql {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(code or 0)



def _mariadb_option(text: str) -> str:
    """argparse type of --mariadb-option: a bad option is a usage error (exit 2)."""
    try:
        return parse_option(text)
    except OptionError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- parser -----------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minisql",
        description="MiniSQL Cluster: a distributed MySQL gateway over MariaDB regions, coordinated by ZooKeeper.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    up = sub.add_parser(
        "up",
        help="run the whole stack on this machine (ZooKeeper, MariaDB, regions, masters, proxies)",
        description="Run ZooKeeper, one MariaDB + region agent per region, the masters and the proxies on "
        "this machine until Ctrl-C.  Data and logs live in --data-dir and survive restarts.",
    )
    up.add_argument("--data-dir", default="./.minisql", help="where data, secrets and logs live (default: ./.minisql)")
    up.add_argument("--regions", type=int, default=3, help="number of regions, each with its own MariaDB (default: 3)")
    up.add_argument("--masters", type=int, default=2, help="number of master candidates (default: 2)")
    up.add_argument(
        "--port", type=int, default=6033, help="proxy's MySQL port; with --proxies N, proxy pK uses port+K-1 (default: 6033)"
    )
    up.add_argument(
        "--proxies",
        type=int,
        default=1,
        metavar="N",
        help="number of proxies, sharing ZooKeeper, accounts and secrets (1..10, default: 1)",
    )
    up.add_argument(
        "--proxy-workers",
        type=int,
        default=1,
        metavar="W",
        help="processes per proxy sharing its port (minisql proxy --workers; proxies x workers <= 10, default: 1)",
    )
    up.add_argument("--zk-port", type=int, default=2181, help="ZooKeeper client port (default: 2181)")
    up.add_argument(
        "--mysql-base-port", type=int, default=3307, help="MariaDB port of r1; rK uses base+K-1 (default: 3307)"
    )
    up.add_argument(
        "--metrics-base-port",
        type=int,
        default=9200,
        help="proxy pK's metrics port is base+K-1; masters use base+10.., region rK base+20+K (default: 9200)",
    )
    up.add_argument(
        "--mariadb-option",
        dest="mariadb_options",
        action="append",
        default=[],
        type=_mariadb_option,
        metavar="OPTION",
        help="server option for every region's MariaDB, repeatable: --mariadb-option=--character-set-server=latin1 "
        "or --mariadb-option character-set-server=latin1.  Options the stack manages (--port, --socket, "
        "--datadir, --user, --secure-file-priv, --local-infile, ...) are refused",
    )
    up.add_argument("--zk-root", default="/minisql", help="ZooKeeper root path of the cluster (default: /minisql)")
    up.add_argument("--log-level", default="INFO", type=_log_level, help="log level of every process (default: INFO)")
    up.set_defaults(func=run_up)

    st = sub.add_parser(
        "status",
        help="show regions, table placement and the master leader",
        description="Read the cluster state from ZooKeeper and print it.",
    )
    add_common_arguments(st)
    st.add_argument("--json", action="store_true", help="print JSON instead of tables")
    st.add_argument(
        "--secrets",
        default=None,
        help="JSON file with zk_status_user / zk_status_password (the read-only ZooKeeper identity)",
    )
    st.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for ZooKeeper (default: 10)")
    st.add_argument(
        "--data-dir",
        default=None,
        help="data dir of a `minisql up`: also list its proxies, and read DIR/secrets.json unless --secrets is given",
    )
    st.set_defaults(func=run_status)

    for name, (_, help_text) in COMPONENTS.items():
        # Parsed by _run_component (which imports the component for its flags).
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMPONENTS:
        return _run_component(argv[0], argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return int(func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
