"""`minisql status`: read the cluster state from ZooKeeper and print it.

Kept apart from the argparse entry point (`minisql.cli`) so the rendering
(`status_document`, `format_status`) can be read and tested without the rest
of the command line.  It talks to ZooKeeper only through `topology`.

Proxies do not register in ZooKeeper, so the cluster state cannot name them;
with ``--data-dir`` the proxies a running `minisql up` started there are
listed from its state file (`local_proxies`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from .config import ConfigError, setup_logging


def status_document(
    regions: Mapping[str, Any], placement: Any, leader: Any, loads: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What `minisql status` shows, as plain JSON-able data.

    `regions` is Topology.list_regions() (live regions), `placement` a
    Placement, `leader` a LeaderInfo or None.  Regions referenced by the
    placement but not registered are listed as not alive.  `loads`
    (Topology.get_loads()) adds each live region's heartbeat delay.
    """
    region_rows: dict[str, dict[str, Any]] = {}
    for rid, info in sorted(regions.items()):
        region_rows[rid] = {
            "id": rid,
            "host": info.host,
            "mysql_port": info.mysql_port,
            "metrics_port": info.metrics_port,
            "mysql_version": info.mysql_version,
            "alive": True,
            "delay": getattr((loads or {}).get(rid), "delay", None),
        }
    tables: list[dict[str, Any]] = []
    empty_databases: list[str] = []
    groups = placement.colocation_groups()
    for db, db_tables in sorted(placement.databases.items()):
        if not db_tables:
            empty_databases.append(db)
        for name, t in sorted(db_tables.items()):
            tables.append(
                {
                    "database": db,
                    "table": name,
                    "primary": t.primary,
                    "replicas": {r: getattr(s, "value", str(s)) for r, s in sorted(t.replicas.items())},
                    "epoch": t.epoch,
                    # The colocation group (FOREIGN KEY links), named by its first table; null alone.
                    "group": ".".join(groups[(db, name)][0]) if len(groups.get((db, name), ())) > 1 else None,
                    "references": [".".join(r) for r in t.references],
                    "links": [".".join(r) for r in t.links],
                    "kind": t.kind,
                }
            )
            for rid in t.all_regions:
                region_rows.setdefault(
                    rid,
                    {"id": rid, "host": None, "mysql_port": None, "metrics_port": None, "mysql_version": None, "alive": False,
                     "delay": None},
                )
    return {
        "leader": None
        if leader is None
        else {"master_id": leader.master_id, "host": leader.host, "metrics_port": leader.metrics_port},
        "regions": [region_rows[r] for r in sorted(region_rows)],
        "databases": sorted(placement.databases),
        "empty_databases": empty_databases,
        "tables": tables,
        "placement_version": placement.version,
    }


def up_is_running(data_dir: str | os.PathLike[str]) -> bool:
    """True while a `minisql up` supervises `data_dir` (it holds DIR/up.lock)."""
    try:
        fd = os.open(Path(data_dir) / "up.lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def local_proxies(data_dir: str | os.PathLike[str]) -> list[dict[str, Any]] | None:
    """The proxies the `minisql up` running on `data_dir` started, each with
    whether its port accepts connections now; None when no `minisql up` runs
    there (its run/up.json would be stale)."""
    from .localstack import port_accepts

    data_dir = Path(data_dir).expanduser()
    if not up_is_running(data_dir):
        return None
    try:
        state = json.loads((data_dir / "run" / "up.json").read_text())
    except (OSError, ValueError):
        return []
    rows = []
    for p in state.get("proxies", []) if isinstance(state, dict) else []:
        if not isinstance(p, dict) or not isinstance(p.get("port"), int):
            continue
        host = str(p.get("host") or "127.0.0.1")
        rows.append({
            "id": p.get("id"), "host": host, "port": p["port"], "metrics_port": p.get("metrics_port"),
            "serving": port_accepts(p["port"], host, timeout=1.0),
        })
    return rows


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cells = [[str(c) for c in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]


def format_status(doc: Mapping[str, Any]) -> str:
    lines: list[str] = []
    leader = doc["leader"]
    if leader is None:
        lines.append("Master leader: none elected")
    else:
        extra = []
        if leader.get("host"):
            extra.append(str(leader["host"]))
        if leader.get("metrics_port"):
            extra.append(f"metrics :{leader['metrics_port']}")
        lines.append(f"Master leader: {leader['master_id']}" + (f" ({', '.join(extra)})" if extra else ""))
    lines.append("")
    alive = sum(1 for r in doc["regions"] if r["alive"])
    lines.append(f"Regions ({alive} alive of {len(doc['regions'])}):")
    if doc["regions"]:
        lines += _table(
            ["ID", "ADDRESS", "MYSQL PORT", "ALIVE", "DELAY"],
            [
                [r["id"], r["host"], r["mysql_port"], "yes" if r["alive"] else "NO",
                 None if r.get("delay") is None else f"{r['delay']:.1f}s"]
                for r in doc["regions"]
            ],
        )
    else:
        lines.append("  (none registered)")
    lines.append("")
    lines.append(f"Tables ({len(doc['tables'])}, placement version {doc['placement_version']}):")
    if doc["tables"]:
        lines += _table(
            ["TABLE", "PRIMARY", "REPLICAS", "GROUP"],
            [
                [
                    f"{t['database']}.{t['table']}" + (f" ({t['kind']})" if t.get("kind", "table") != "table" else ""),
                    t["primary"],
                    ", ".join(f"{r} ({s})" for r, s in t["replicas"].items()) or "-",
                    t.get("group") or "-",
                ]
                for t in doc["tables"]
            ],
        )
    else:
        lines.append("  (none)")
    if doc["empty_databases"]:
        lines.append("")
        lines.append("Databases without tables: " + ", ".join(doc["empty_databases"]))
    if "proxies" in doc:  # only with --data-dir
        lines.append("")
        proxies = doc["proxies"]
        if proxies is None:
            lines.append(f"Proxies: no `minisql up` is running on {doc.get('data_dir')}")
        else:
            lines.append(f"Proxies ({len(proxies)}, started by `minisql up` on {doc.get('data_dir')}):")
            lines += _table(
                ["ID", "ADDRESS", "METRICS PORT", "SERVING"],
                [[p["id"], f"{p['host']}:{p['port']}", p["metrics_port"], "yes" if p["serving"] else "NO"] for p in proxies],
            )
    return "\n".join(lines)


async def _gather_status(zk: str, zk_root: str, timeout: float, auth: Any = None) -> dict[str, Any]:
    from topology import Topology

    # read_only: the status identity may only read, so start() must not try
    # to create the cluster's directories.
    topo = Topology.for_zookeeper(zk, zk_root, auth=auth, read_only=True)
    try:
        await asyncio.wait_for(topo.start(), timeout)
        regions = await asyncio.wait_for(topo.list_regions(), timeout)
        placement = await asyncio.wait_for(topo.get_placement(), timeout)
        leader = await asyncio.wait_for(topo.get_leader(), timeout)
        loads = await asyncio.wait_for(topo.get_loads(), timeout)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(topo.close(), timeout)
    return status_document(regions, placement, leader, loads)


def _zk_endpoints(connect: str) -> list[tuple[str, int]]:
    """("host", port) pairs of a ZooKeeper connect string ("h1:p1,h2:p2/chroot")."""
    endpoints = []
    for part in connect.split("/", 1)[0].split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("["):  # [v6]:port
            host, _, rest = part[1:].partition("]")
            port = rest.lstrip(":") or "2181"
        else:
            host, _, port = part.rpartition(":") if ":" in part else (part, "", "2181")
        try:
            endpoints.append((host, int(port)))
        except ValueError:
            continue
    return endpoints


def run_status(args: argparse.Namespace) -> int:
    """The `minisql status` command; 2 when ZooKeeper cannot be read."""
    from .localstack import port_accepts
    from .runtime import status_zk_auth

    setup_logging("WARNING" if args.log_level == "INFO" else args.log_level)
    if args.log_level != "DEBUG":
        logging.getLogger("kazoo").setLevel(logging.CRITICAL)
    endpoints = _zk_endpoints(args.zk)
    if endpoints and not any(port_accepts(port, host, timeout=1.0) for host, port in endpoints):
        print(f"minisql status: nothing listens at ZooKeeper {args.zk} -- is the cluster up (minisql up)?", file=sys.stderr)
        return 2
    data_dir = getattr(args, "data_dir", None)
    secrets = getattr(args, "secrets", None)
    if secrets is None and data_dir is not None and (Path(data_dir).expanduser() / "secrets.json").exists():
        secrets = str(Path(data_dir).expanduser() / "secrets.json")
    try:
        auth = status_zk_auth(secrets)
    except ConfigError as exc:
        print(f"minisql status: error: {exc}", file=sys.stderr)
        return 2
    # Not asyncio.run(): it would wait for a kazoo connect stuck in the executor.
    loop = asyncio.new_event_loop()
    try:
        doc = loop.run_until_complete(_gather_status(args.zk, args.zk_root, args.timeout, auth))
    except (asyncio.TimeoutError, TimeoutError):
        print(f"minisql status: ZooKeeper at {args.zk} did not answer within {args.timeout:.0f}s", file=sys.stderr)
        return 2
    except Exception as exc:  # TopologyUnavailable, connection refused, ...
        print(f"minisql status: cannot read the cluster state from {args.zk} ({args.zk_root}): {exc}", file=sys.stderr)
        return 2
    finally:
        loop.close()
    doc = {"zk": args.zk, "zk_root": args.zk_root, **doc}
    if data_dir is not None:
        doc["data_dir"] = str(Path(data_dir).expanduser().resolve())
        doc["proxies"] = local_proxies(data_dir)
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print(f"Cluster {args.zk_root} at ZooKeeper {args.zk}")
        print(format_status(doc))
    return 0
