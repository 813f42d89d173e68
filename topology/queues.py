"""Request queues: `Topology.call` on one side, `Topology.serve` on the other.

DDL goes to the master and data tasks to regions this way.  ZooKeeper layout
under the cluster root::

    queues/<queue>/req-<seq>          PERSISTENT_SEQUENTIAL request payload JSON
    queues/<queue>/req-<seq>/result   PERSISTENT  result JSON, written by the server

Error handling
--------------
* Queued requests are at-least-once: a server that dies mid-request leaves it
  without a result, and the next server runs it again, so handlers must be
  idempotent.  The caller deletes its request after reading the result.
* A create whose answer is lost (TopologyUnavailable) may still have been
  applied: a request created that way is orphaned and is garbage-collected by
  the server `result_ttl` seconds after it answers it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from .backend import Cancel
from .errors import CallTimeout, NodeExistsError, NoNodeError, TopologyError
from .serial import SerialJob
from .znodes import dump_json, sequence_number

if TYPE_CHECKING:
    from .service import Topology

# Named after the module this code was split from, so log lines (which show
# the logger name) and any logging configuration stay exactly as before.
log = logging.getLogger("topology.service")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

# Region tasks that copy or scan a whole table run on a queue of their own: a
# queue is served one request at a time, and a copy (seconds to minutes, and
# an online fill waits for row locks) must not hold up DDL or the XA
# resolver's tasks on that region -- nor they the copy.
COPY_OPS = frozenset({"copy_table", "prepare_fill", "fill_table", "table_checksum"})


def region_queue(region_id: str, op: str | None = None) -> str:
    """The queue of region `region_id` that serves task `op` (the one place these names are made)."""
    return f"region-{region_id}-copy" if op in COPY_OPS else f"region-{region_id}"


def region_queues(region_id: str) -> tuple[str, str]:
    """Every queue a region serves."""
    return region_queue(region_id), region_queue(region_id, "copy_table")


def error_result(exc: BaseException) -> dict[str, Any]:
    """The result a failed handler sends back: a MySQL-style error the caller can raise."""
    return {"error": {"errno": 1105, "sqlstate": "HY000", "message": str(exc) or type(exc).__name__}}


async def call_queue(topo: "Topology", queue: str, payload: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """Enqueue a request and wait for its result (see `Topology.call`)."""
    body = dump_json(payload)
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bytes] = loop.create_future()
    req: str | None = None
    cancel: Cancel | None = None

    def on_result(raw: bytes | None, _version: int) -> None:
        if raw is not None and not answer.done():
            answer.set_result(raw)

    try:
        async with asyncio.timeout(timeout):
            req = await topo._backend.create(
                topo._path("queues", queue, "req-"), body, sequential=True, makepath=True
            )
            cancel = topo._backend.watch_data(f"{req}/result", on_result)
            raw = await answer
    except TimeoutError:
        raise CallTimeout(f"no answer on queue {queue!r} within {timeout}s") from None
    finally:
        if cancel is not None:
            cancel()
        if req is not None:
            try:
                await topo._backend.delete(req, recursive=True)
            except NoNodeError:
                pass
            except TopologyError as exc:
                log.warning("could not delete request %s (server will): %s", req, exc)
    return json.loads(raw)


class QueueServer:
    """Serves one request queue: one request at a time, in sequence order."""

    def __init__(self, topo: "Topology", queue: str, handler: Handler) -> None:
        self._topo = topo
        self._backend = topo._backend
        self._dir = topo._path("queues", queue)
        self._handler = handler
        self._answered: dict[str, float] = {}  # request name -> when first seen answered
        self._unwritten: dict[str, bytes] = {}  # results whose write failed: never re-run
        self._gc_timer: asyncio.TimerHandle | None = None
        self._serial = SerialJob(topo, self._pass, f"queue:{queue}")
        self._cancel_watch = self._backend.watch_children(self._dir, lambda _kids: self._serial.kick())
        self._serial.kick()

    def cancel(self) -> None:
        self._cancel_watch()
        self._serial.close()
        if self._gc_timer is not None:
            self._gc_timer.cancel()

    async def _pass(self) -> None:
        b = self._backend
        try:
            names = await b.children(self._dir)
        except NoNodeError:
            names = []
        live = set(names)
        for gone in [n for n in self._answered if n not in live]:
            del self._answered[gone]
        for gone in [n for n in self._unwritten if n not in live]:
            del self._unwritten[gone]
        ttl = self._topo.result_ttl
        for name in sorted((n for n in names if n.startswith("req-")), key=sequence_number):
            req = f"{self._dir}/{name}"
            if name in self._answered:
                if time.monotonic() - self._answered[name] > ttl:
                    # The caller vanished without collecting its result.
                    try:
                        await b.delete(req, recursive=True)
                    except NoNodeError:
                        pass
                    self._answered.pop(name, None)
                continue
            result = self._unwritten.get(name)
            if result is None:
                try:
                    await b.get(f"{req}/result")
                    self._answered[name] = time.monotonic()
                    continue
                except NoNodeError:
                    pass
                try:
                    raw, _ = await b.get(req)
                except NoNodeError:
                    continue  # the caller gave up meanwhile
                result = await self._run_handler(raw)
                self._unwritten[name] = result
            try:
                await b.create(f"{req}/result", result, makepath=False)
            except (NoNodeError, NodeExistsError):
                pass  # caller gone, or another server answered first
            self._unwritten.pop(name, None)
            self._answered[name] = time.monotonic()
        self._schedule_gc()

    async def _run_handler(self, raw: bytes) -> bytes:
        try:
            payload = json.loads(raw) if raw else {}
            if not isinstance(payload, dict):
                raise ValueError("request payload is not a JSON object")
            return dump_json(await self._handler(payload))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("queue %s handler failed: %s", self._dir, exc)
            return dump_json(error_result(exc))

    def _schedule_gc(self) -> None:
        if not self._answered or self._gc_timer is not None:
            return

        def fire() -> None:
            self._gc_timer = None
            self._serial.kick()

        delay = min(max(self._topo.result_ttl / 4, 0.01), 60.0)
        self._gc_timer = asyncio.get_running_loop().call_later(delay, fire)
