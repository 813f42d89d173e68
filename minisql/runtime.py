"""Process plumbing shared by `minisql proxy`, `master` and `region`.

Each long-running component needs the same things: a Prometheus endpoint, a
stop event set by SIGTERM/SIGINT, a way to keep retrying a topology call
(ZooKeeper may come up after us) until it works or we are told to stop, and
its ZooKeeper identity from the secrets file.  Keeping them here means the
three processes behave identically.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any, Awaitable, Callable

from prometheus_client import start_http_server

from topology import NotAuthorizedError, TopologyError, ZooKeeperAuth

from .config import load_zk_credentials

log = logging.getLogger(__name__)


def serve_metrics(port: int, host: str = "") -> bool:
    """Start the Prometheus endpoint on host:port (port 0: none; host "": all
    interfaces).  False if it cannot listen there.

    Callers pass the address they advertise (or loopback): metrics reveal
    table names, row counts and load, so they are not for everyone.
    """
    if not port:
        return True
    try:
        start_http_server(port, addr=host or "0.0.0.0")
    except OSError as exc:
        log.error("cannot serve metrics on %s:%d: %s (choose another --metrics-host/--metrics-port)",
                  host or "0.0.0.0", port, exc)
        return False
    return True


def cluster_zk_auth(secrets: str | os.PathLike[str] | None) -> ZooKeeperAuth | None:
    """The cluster identity for proxy, master and region (None: anonymous).

    Every znode such a process creates is then readable and writable by the
    cluster identity only, plus readable by the status identity when the
    secrets name one.  Raises ConfigError on a malformed secrets file.
    """
    creds = load_zk_credentials(secrets)
    if not creds.configured:
        log.warning(
            "no ZooKeeper credentials (zk_user/zk_password in --secrets, or MINISQL_ZK_USER/"
            "MINISQL_ZK_PASSWORD): the cluster's znodes are readable and writable by anyone "
            "who can reach ZooKeeper"
        )
        return None
    readers = ((creds.status_user, creds.status_password),) if creds.status_configured else ()
    return ZooKeeperAuth(creds.user, creds.password, readers)


def status_zk_auth(secrets: str | os.PathLike[str] | None) -> ZooKeeperAuth | None:
    """The read-only status identity for `minisql status` (None: anonymous)."""
    creds = load_zk_credentials(secrets)
    if not creds.status_configured:
        return None
    return ZooKeeperAuth(creds.status_user, creds.status_password)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (call from inside the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def retry_until_stopped(action: Callable[[], Awaitable[object]], stop: asyncio.Event, what: str) -> bool:
    """Retry `action` with exponential backoff (0.2 s .. 5 s) on TopologyError.

    Returns True once it succeeds, False if `stop` was set first.  A
    NotAuthorizedError is raised at once: wrong ZooKeeper credentials do not
    fix themselves, and retrying would only hide the cause in warnings.
    """
    delay = 0.2
    while not stop.is_set():
        try:
            await action()
            return True
        except NotAuthorizedError as exc:
            log.error("could not %s: %s", what, exc)
            raise
        except TopologyError as exc:
            log.warning("could not %s (%s); retrying in %.1fs", what, exc, delay)
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except asyncio.TimeoutError:
            pass
        delay = min(delay * 2, 5.0)
    return False


async def watch_loop_lag(gauge: Any, *, interval: float = 0.25, warn_after: float = 0.5) -> None:
    """Measure how late the event loop runs a timer: the time every client waited
    for whatever held the loop.  Exported as `gauge` (the latest lag) and logged
    when over `warn_after` seconds -- a loop that stalls is a bug to find, and
    this says when it happened."""
    loop = asyncio.get_running_loop()
    while True:
        expected = loop.time() + interval
        await asyncio.sleep(interval)
        lag = max(0.0, loop.time() - expected)
        gauge.set(lag)
        if lag > warn_after:
            log.warning("event loop blocked for %.2f s", lag)
