"""Faults on a running `minisql up` stack (issue 8): kill, freeze (and thaw)
its processes -- MariaDB servers, region agents, masters, proxies -- chosen
by role, on a seeded schedule.

Why this shape: a fault test must hit the real processes a user runs, at the
role that matters at that moment (the MariaDB holding a table's primary, the
leading master), and be reproducible: the schedule is a pure function of
the seed (`schedule`), the targets are resolved when each fault fires.

`kill` is SIGKILL (`minisql up` restarts the process with backoff, as a
supervisor would); `freeze` is SIGSTOP for some seconds then SIGCONT -- a
process that stops answering without its sockets closing, as in a long GC
pause; `partition` cuts a server's port on loopback for some seconds
(partition.py: every packet dropped, no RST) -- the primary's MariaDB, cut
off from its agent, the proxies and the other regions alike, or ZooKeeper,
cut off from every process at once (sessions expire if it lasts longer than
their timeout).  Partitions by network namespace are not done: every
process of a local stack shares the loopback interface.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .partition import Blackhole

KINDS = ("kill-primary-mariadb", "freeze-primary-mariadb", "kill-region-agent", "kill-leader-master",
         "freeze-leader-master", "kill-proxy", "freeze-proxy", "partition-primary-mariadb", "partition-zookeeper")
_LASTING = ("freeze", "partition")  # kinds that end by themselves after `Fault.seconds`


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the start
    kind: str
    seconds: float = 0.0  # how long a freeze lasts


def schedule(seed: int, duration: float, interval: float, kinds: tuple[str, ...] = KINDS) -> list[Fault]:
    """A fault every `interval` seconds (the first after one interval), each
    kind in turn in a seeded order, freezes and partitions of 3-8 s.  Pure."""
    rng = random.Random(seed)
    order = list(kinds)
    rng.shuffle(order)
    out = []
    t, i = interval, 0
    while t < duration:
        kind = order[i % len(order)]
        out.append(Fault(t, kind, round(rng.uniform(3.0, 8.0), 1) if kind.startswith(_LASTING) else 0.0))
        t += interval
        i += 1
    return out


class Stack:
    """A running `minisql up` on `data_dir` (its run/up.json and `minisql status`)."""

    def __init__(self, data_dir: str | Path, zk: str) -> None:
        self.data_dir = Path(data_dir)
        self.zk = zk
        self.blackhole = Blackhole()

    def children(self) -> dict[str, int]:
        state = json.loads((self.data_dir / "run" / "up.json").read_text())
        return {c["name"]: c["pid"] for c in state["children"]}

    def status(self) -> dict:
        out = subprocess.run([sys.executable, "-m", "minisql.cli", "status", "--zk", self.zk, "--json",
                              "--data-dir", str(self.data_dir)], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"minisql status failed: {out.stderr.strip()}")
        return json.loads(out.stdout)

    def target(self, kind: str, table: tuple[str, str]) -> str:
        """The process name a fault of `kind` hits now."""
        status = self.status()
        if "mariadb" in kind:
            entry = next(t for t in status["tables"] if (t["database"], t["table"]) == table)
            return f"mysql-{entry['primary']}"
        if "region-agent" in kind:
            entry = next(t for t in status["tables"] if (t["database"], t["table"]) == table)
            return f"region-{entry['primary']}"
        if "master" in kind:
            leader = status.get("leader") or {}
            return f"master-{leader.get('master_id', 'm1')}"
        proxies = sorted(n for n in self.children() if n.startswith("proxy"))
        return proxies[0]

    def port_of(self, kind: str, table: tuple[str, str]) -> tuple[str, int]:
        """(what, port) a partition of `kind` cuts now."""
        if kind == "partition-zookeeper":
            return "ZooKeeper", int(self.zk.rsplit(":", 1)[1])
        status = self.status()
        primary = next(t for t in status["tables"] if (t["database"], t["table"]) == table)["primary"]
        region = next(r for r in status["regions"] if r["id"] == primary)
        return f"MariaDB of {primary}", int(region["mysql_port"])

    def inject(self, fault: Fault, table: tuple[str, str]) -> str:
        """Fire `fault`; returns a line describing it."""
        if fault.kind.startswith("partition"):
            what, port = self.port_of(fault.kind, table)
            self.blackhole.cut(port)
            timer = threading.Timer(fault.seconds, self.blackhole.heal)
            timer.daemon = True
            timer.start()
            return f"partition: {what} (port {port}) cut off for {fault.seconds} s"
        name = self.target(fault.kind, table)
        pid = self.children()[name]
        if fault.kind.startswith("kill"):
            os.kill(pid, signal.SIGKILL)
            return f"SIGKILL {name} (pid {pid})"
        os.kill(pid, signal.SIGSTOP)

        def thaw() -> None:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

        timer = threading.Timer(fault.seconds, thaw)
        timer.daemon = True
        timer.start()
        return f"SIGSTOP {name} (pid {pid}) for {fault.seconds} s"


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - not yet
            pass
        time.sleep(0.5)
    raise TimeoutError(f"timed out waiting for {what}")
