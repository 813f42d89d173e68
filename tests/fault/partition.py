"""Network partitions on one machine: every packet to or from one TCP port
on loopback dropped, silently, for a while.

Why this shape: every process of a local stack talks over 127.0.0.1, so a
port is what tells one server's traffic from another's.  A cut port behaves
as a cut cable does, not as a dead process: no RST, no ICMP, a connect that
never completes and a read that never returns, until the peer's own timeouts
(TCP retransmission, ZooKeeper's session timeout, our statement and sample
timeouts) give up.  That is the fault `kill` and `freeze` cannot produce: a
frozen process's kernel still accepts connections and acknowledges data.

How: an HTB qdisc on `lo` whose default class passes everything, plus one
class whose queue holds nothing (`pfifo limit 0`), and u32 filters sending
packets with the port as source or destination to it.  The kernel this runs
on has no netem, no iptables and no tc actions; HTB, pfifo and u32 are
enough.  Needs root (CAP_NET_ADMIN) and `tc` from iproute2 (`make deps`
installs it).  Moving processes into network namespaces would need the
stack to start each region in its own namespace; `minisql up` does not.

Error handling: `heal()` removes the whole qdisc (idempotent), and is called
before every cut, so a run that crashed mid-partition does not leave the
machine partitioned for the next one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

DEV = "lo"


TC = shutil.which("tc") or next((p for p in ("/usr/sbin/tc", "/sbin/tc") if os.path.exists(p)), "tc")


def _tc(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([TC, *args], capture_output=True, text=True, timeout=10)
    if check and done.returncode != 0:
        raise RuntimeError(f"tc {' '.join(args)} failed: {done.stderr.strip()}")
    return done


class Blackhole:
    """Drops every packet to or from some ports of `lo` until healed."""

    def __init__(self, dev: str = DEV) -> None:
        self.dev = dev
        self._lock = threading.Lock()
        self.cut_ports: tuple[int, ...] = ()

    def cut(self, *ports: int) -> None:
        with self._lock:
            self._heal_locked()
            dev = self.dev
            _tc("qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10", "r2q", "100000")
            _tc("class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb", "rate", "100gbit")
            _tc("class", "add", "dev", dev, "parent", "1:", "classid", "1:20", "htb", "rate", "8bit", "ceil", "8bit")
            _tc("qdisc", "add", "dev", dev, "parent", "1:20", "handle", "20:", "pfifo", "limit", "0")
            for port in ports:
                for side in ("dport", "sport"):
                    _tc("filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1",
                        "u32", "match", "ip", side, str(port), "0xffff", "flowid", "1:20")
            self.cut_ports = tuple(ports)

    def heal(self) -> None:
        with self._lock:
            self._heal_locked()

    def _heal_locked(self) -> None:
        _tc("qdisc", "del", "dev", self.dev, "root", check=False)  # nothing installed: an error, ignored
        self.cut_ports = ()

    def dropped_packets(self) -> int:
        """Packets the cut class dropped so far (0 when healed): proof the cut held."""
        out = _tc("-s", "qdisc", "show", "dev", self.dev, check=False).stdout
        for block in out.split("qdisc ")[1:]:
            if block.startswith("pfifo 20:") and "dropped " in block:
                return int(block.split("dropped ", 1)[1].split(",", 1)[0])
        return 0
