"""`minisql proxy --workers N`: N proxy processes on one port.

A proxy is one asyncio event loop, so it uses one core; ProxySQL runs
several threads for the same reason.  Each worker is a whole proxy -- its
own ZooKeeper session, proxy number and connection-id range, backend pool
and metrics port (`--metrics-port` + i) -- started with the parent's
command line and SO_REUSEPORT, so the kernel spreads new client connections
over them.  Sessions on different workers see each other as sessions on
different proxies do: SHOW PROCESSLIST lists all, KILL reaches any,
GET_LOCK contends (cluster.py).

Error handling: the parent only supervises.  SIGTERM / SIGINT are passed on
to every worker, which drain as a single proxy does.  If one worker exits
on its own, the parent stops the others and exits with that worker's code,
so whatever supervises the parent (`minisql up`, systemd, a container)
restarts the whole set -- never a silently smaller set.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time

log = logging.getLogger("minisql.proxy")

STOP_GRACE = 20.0  # seconds a worker has to drain after SIGTERM


def worker_argv(argv: list[str], metrics_port: int, index: int) -> list[str]:
    """The worker's command line: the parent's, as one reuse-port worker with its own metrics port."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--workers", "--metrics-port"):
            skip = True
            continue
        if arg.startswith(("--workers=", "--metrics-port=")) or arg == "--reuse-port":
            continue
        out.append(arg)
    port = metrics_port + index if metrics_port else 0
    return [sys.executable, "-m", "minisql.cli", *out, "--workers", "1", "--reuse-port", "--metrics-port", str(port)]


def run_workers(count: int, metrics_port: int) -> int:
    children = [subprocess.Popen(worker_argv(sys.argv[1:], metrics_port, i)) for i in range(count)]
    log.info("proxy: %d workers, pids %s", count, " ".join(str(c.pid) for c in children))
    stopping_since: float | None = None
    code = 0

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping_since
        if stopping_since is None:
            stopping_since = time.monotonic()
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while any(c.poll() is None for c in children):
        if stopping_since is None:
            gone = next((c for c in children if c.poll() is not None), None)
            if gone is not None:
                code = gone.returncode or 1
                log.error("proxy worker %d exited (%s); stopping the others", gone.pid, gone.returncode)
                stop(signal.SIGTERM, None)
        elif time.monotonic() - stopping_since > STOP_GRACE:
            for child in children:
                if child.poll() is None:
                    child.kill()
        time.sleep(0.2)
    return code
