"""`SerialJob`: how the topology runs the follow-up work of watches and sessions.

Follow-up work triggered by watches and session events (re-reads,
re-creations, elections, queue passes) runs in `SerialJob`s: one task at a
time, retried with backoff while connected, and re-kicked on every
"connected" (by `Topology`) so nothing stays stale after a partition.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Awaitable, Callable

from .errors import TopologyUnavailable

if TYPE_CHECKING:
    from .service import Topology

# Named after the module this code was split from, so log lines (which show
# the logger name) and any logging configuration stay exactly as before.
log = logging.getLogger("topology.service")

_RETRY_MIN = 0.05
_RETRY_MAX = 5.0


class SerialJob:
    """Run an async job in one task at a time; a kick during a run means one more run.

    Why: watch callbacks and session events come in bursts and from plain
    (non-async) callbacks.  Running the follow-up serially makes the newest
    read the last one acted on, and a burst costs one extra run, not one each.
    On failure the job is retried with backoff while the backend is
    connected; otherwise it waits for the next kick ("connected" kicks all).
    """

    def __init__(self, topo: "Topology", job: Callable[[], Awaitable[None]], name: str) -> None:
        self._topo = topo
        self._job = job
        self._name = name
        self._dirty = False
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        topo._serials.add(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def kick(self) -> None:
        if self._closed:
            return
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    def close(self) -> None:
        self._closed = True
        self._topo._serials.discard(self)
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    async def _run(self) -> None:
        delay = _RETRY_MIN
        while self._dirty and not self._closed:
            self._dirty = False
            try:
                await self._job()
                delay = _RETRY_MIN
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._dirty = True
                if isinstance(exc, TopologyUnavailable):
                    log.debug("%s: %s", self._name, exc)
                else:
                    log.exception("%s failed; retrying", self._name)
                if not self._topo._backend.connected:
                    return  # kicked again on "connected"
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, _RETRY_MAX)
