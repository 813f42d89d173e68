"""Process plumbing shared by `minisql proxy`, `master` and `region`.

Each long-running component needs the same three things: a Prometheus
endpoint, a stop event set by SIGTERM/SIGINT, and a way to keep retrying a
topology call (ZooKeeper may come up after us) until it works or we are told
to stop.  Keeping them here means the three processes behave identically.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Awaitable, Callable

from prometheus_client import start_http_server

from topology import TopologyError

log = logging.getLogger(__name__)


def serve_metrics(port: int, host: str = "") -> bool:
    """Start the Prometheus endpoint (port 0: none).  False if the port is taken."""
    if not port:
        return True
    try:
        start_http_server(port, addr=host or "0.0.0.0")
    except OSError as exc:
        log.error("cannot serve metrics on port %d: %s", port, exc)
        return False
    return True


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (call from inside the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def retry_until_stopped(action: Callable[[], Awaitable[object]], stop: asyncio.Event, what: str) -> bool:
    """Retry `action` with exponential backoff (0.2 s .. 5 s) on TopologyError.

    Returns True once it succeeds, False if `stop` was set first.
    """
    delay = 0.2
    while not stop.is_set():
        try:
            await action()
            return True
        except TopologyError as exc:
            log.warning("could not %s (%s); retrying in %.1fs", what, exc, delay)
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except asyncio.TimeoutError:
            pass
        delay = min(delay * 2, 5.0)
    return False
