"""Live proxies: each claims a small number, and answers requests on its own queue.

Why: a MariaDB user expects one server -- connection ids unique across the
cluster, SHOW PROCESSLIST listing every session, KILL reaching any of them.
Each proxy therefore claims the smallest free number as an ephemeral znode
(its connection ids carry it in their top bits, so the owner of an id is known
without asking anyone), records its address and a per-start `instance` token
there, and serves a request queue named after its number (`proxy_queue`, the
one place that name is made).  ZooKeeper layout under the cluster root::

    proxies/<number>               EPHEMERAL  ProxyInfo JSON
    queues/proxy-<number>/req-...  the request queue of that proxy (see queues.py)

Error handling -- where state can be lost:
* the claim is re-checked on every "connected" and whenever the node
  vanishes (session expiry): the same number is taken again when it is still
  free; if another proxy took it meanwhile, the smallest free number is
  claimed and `on_number` reports the change (connections opened before keep
  ids with the old number -- see docs/architecture.md);
* requests carry the target's `instance`: a proxy that restarted on a reused
  number refuses requests meant for its predecessor (a late KILL must not hit
  a new session that happens to have the same id).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping

from .backend import Cancel
from .errors import NodeExistsError, NoNodeError, TopologyError
from .serial import SerialJob
from .znodes import dump_json

if TYPE_CHECKING:
    from .service import Topology

log = logging.getLogger(__name__)

MAX_PROXIES = 1024  # proxy numbers fit in the top 10 bits of a 32-bit connection id


def proxy_queue(number: int) -> str:
    """The request queue of proxy `number` (the one place this name is made)."""
    return f"proxy-{number}"


@dataclass(frozen=True)
class ProxyInfo:
    """What a live proxy advertises in `proxies/<number>`."""

    number: int
    host: str
    port: int
    metrics_port: int = 0
    instance: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: float = field(default_factory=time.time)
    epoch: int = -1  # the placement version every statement it runs was planned on (or newer): acknowledge()

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "host": self.host, "port": self.port, "metrics_port": self.metrics_port,
                "instance": self.instance, "started_at": self.started_at, "epoch": self.epoch}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ProxyInfo":
        return cls(number=int(d["number"]), host=str(d["host"]), port=int(d["port"]),
                   metrics_port=int(d.get("metrics_port", 0)), instance=str(d["instance"]),
                   started_at=float(d.get("started_at", 0.0)), epoch=int(d.get("epoch", -1)))


def smallest_free(taken: set[int]) -> int:
    """The smallest proxy number not in `taken` (TopologyError when all are)."""
    for n in range(MAX_PROXIES):
        if n not in taken:
            return n
    raise TopologyError(f"all {MAX_PROXIES} proxy numbers are taken")


class ProxyRegistration:
    """This proxy's claim on a number (see module docstring); `number` is current."""

    def __init__(self, topo: "Topology", info: ProxyInfo, on_number: Callable[[int], None] | None = None) -> None:
        self._topo = topo
        self._b = topo.backend
        self._dir = topo._path("proxies")
        self.info = info
        self._on_number = on_number
        self._watch: Cancel | None = None
        self._serial = SerialJob(topo, self._recheck, "proxy-claim")
        self._closed = False
        self._claimed = False  # nothing to keep before the first claim succeeded
        self._handler: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None = None
        self._serving: Cancel | None = None

    @property
    def number(self) -> int:
        return self.info.number

    async def claim(self) -> int:
        """Take the smallest free number (call once, before serving clients)."""
        await self._claim_new()
        return self.info.number

    async def _claim_new(self) -> None:
        for _ in range(MAX_PROXIES):
            try:
                taken = {int(n) for n in await self._b.children(self._dir) if n.isdigit()}
            except NoNodeError:
                taken = set()
            number = smallest_free(taken)
            if await self._create(number):
                return
        raise TopologyError("could not claim a proxy number (lost every race)")

    async def _create(self, number: int) -> bool:
        info = replace(self.info, number=number)
        try:
            await self._b.create(f"{self._dir}/{number}", dump_json(info.to_dict()), ephemeral=True, makepath=True)
        except NodeExistsError:
            return False
        old, self.info = self.info.number, info
        was_claimed, self._claimed = self._claimed, True
        if self._watch is not None:
            self._watch()
        self._watch = self._b.watch_data(f"{self._dir}/{number}", lambda raw, _v: raw is None and self._serial.kick())
        if was_claimed and old != number:
            if self._handler is not None:
                self.serve(self._handler)
            if self._on_number is not None:
                log.warning("proxy number changed from %d to %d (the old one was taken during a session loss)", old, number)
                self._on_number(number)
        return True

    def serve(self, handler: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> None:
        """Answer this proxy's queue with `handler` (moves with a number change);
        a request meant for another instance gets an error, not the handler."""
        self._handler = handler
        if self._serving is not None:
            self._serving()

        async def guarded(payload: dict[str, Any]) -> dict[str, Any]:
            if payload.get("instance") != self.info.instance:
                return {"error": {"errno": 1094, "sqlstate": "HY000", "message": "request for another proxy instance"}}
            return await handler(payload)

        self._serving = self._topo.serve(proxy_queue(self.info.number), guarded)

    async def _recheck(self) -> None:
        """After a session loss or the node's deletion: keep the number, or claim another."""
        if self._closed or not self._claimed:
            return
        path = f"{self._dir}/{self.info.number}"
        try:
            raw, _ = await self._b.get(path)
        except NoNodeError:
            if await self._create(self.info.number):
                return
            raw = b""
        try:
            if json.loads(raw).get("instance") == self.info.instance:
                return  # still ours
        except ValueError:
            pass
        await self._claim_new()

    async def acknowledge(self, epoch: int) -> None:
        """Publish that every statement this proxy still runs was planned on
        placement `epoch` or later (the master starts an online copy's row
        copy only once every live proxy says so: master/copier.py)."""
        if epoch <= self.info.epoch or self._closed:
            return
        self.info = replace(self.info, epoch=epoch)
        if not self._claimed:
            return
        try:
            await self._b.set(f"{self._dir}/{self.info.number}", dump_json(self.info.to_dict()), -1)
        except (NoNodeError, TopologyError) as e:  # re-created with the new epoch by _recheck
            log.warning("could not publish placement epoch %d: %s", epoch, e)

    async def release(self) -> None:
        self._closed = True
        self._serial.close()
        if self._serving is not None:
            self._serving()
        if self._watch is not None:
            self._watch()
        try:
            await self._b.delete(f"{self._dir}/{self.info.number}")
        except (NoNodeError, TopologyError):
            pass


async def list_proxies(topo: "Topology") -> dict[int, ProxyInfo]:
    """Every live proxy by number."""
    found = await topo._read_all(topo._path("proxies"), ProxyInfo.from_dict)
    return {info.number: info for info in found.values()}


async def wait_for_epoch(topo: "Topology", epoch: int, timeout: float, poll: float = 0.05) -> bool:
    """Until every live proxy has acknowledged placement `epoch` (True) or
    `timeout` passes (False).  A proxy that registers meanwhile plans on the
    placement it read at start, which is at least as new."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        behind = [p.number for p in (await list_proxies(topo)).values() if p.epoch < epoch]
        if not behind:
            return True
        if loop.time() >= deadline:
            log.warning("proxies %s have not acknowledged placement epoch %d in %.0f s", behind, epoch, timeout)
            return False
        await asyncio.sleep(poll)


def watch_proxies(topo: "Topology", callback: Callable[[dict[int, ProxyInfo]], None]) -> Cancel:
    """Call back now and whenever a proxy comes or goes, with every live proxy."""
    directory = topo._path("proxies")

    async def job() -> None:
        if not serial.closed:
            callback(await list_proxies(topo))

    serial = SerialJob(topo, job, "watch-proxies")
    cancel = topo.backend.watch_children(directory, lambda _kids: serial.kick())
    serial.kick()
    return topo._track(cancel, serial.close)


async def call_proxy(topo: "Topology", target: ProxyInfo, payload: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """A request to one proxy's queue, for its current instance only."""
    return await topo.call(proxy_queue(target.number), {**payload, "instance": target.instance}, timeout=timeout)
