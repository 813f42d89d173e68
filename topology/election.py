"""Leader election among master candidates (`Topology.campaign` -> `Leadership`).

ZooKeeper layout: ``election/n_<seq>`` under the cluster root, EPHEMERAL_SEQUENTIAL,
holding the candidate's LeaderInfo JSON plus a nonce; the lowest sequence leads.

Error handling
--------------
* Leadership is dropped the moment the session is *suspended*: an old leader
  must not keep acting while another may already have been elected.
* Election nodes are ephemeral and vanish with the session; the candidate
  re-creates its node from its own `SerialJob` after the backend reports
  "connected" following "lost" -- never inside the listener (kazoo #355).
* A create whose answer is lost (TopologyUnavailable) may still have been
  applied.  Election nodes carry a random nonce in their JSON so a candidate
  can find (and adopt or delete) a node it is not sure it made.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import TYPE_CHECKING

from .errors import NoNodeError, TopologyUnavailable
from .model import LeaderInfo
from .serial import SerialJob
from .znodes import dump_json, sequence_number

if TYPE_CHECKING:
    from .service import Topology

# Named after the module this code was split from, so log lines (which show
# the logger name) and any logging configuration stay exactly as before.
log = logging.getLogger("topology.service")


class Leadership:
    """One candidate's campaign for leadership (see Topology.campaign).

    Usage (the master's loop)::

        lead = topo.campaign(LeaderInfo("m1"))
        while True:
            await lead.wait_elected()
            ... act as leader until lead.wait_lost() returns ...

    After the session is lost the candidate re-enters the election by itself
    once a new session is up.

    How: the candidate owns one ephemeral-sequential node `election/n_<seq>`
    holding its LeaderInfo JSON (plus a nonce); the lowest sequence leads.
    Every candidate watches the election children and re-checks on each
    change; only a connected candidate whose node is lowest leads.
    """

    def __init__(self, topo: "Topology", candidate: LeaderInfo) -> None:
        self._topo = topo
        self._backend = topo._backend
        self._dir = topo._path("election")
        self._nonce = uuid.uuid4().hex
        self._data = dump_json({**candidate.to_dict(), "nonce": self._nonce})
        self._node: str | None = None  # our node's name under election/
        self._uncertain = False  # a create may have happened without our hearing of it
        self._leader = False
        self._resigned = False
        self._cleanup: SerialJob | None = None
        self._elected = asyncio.Event()
        self._lost = asyncio.Event()
        self._lost.set()
        self._serial = SerialJob(topo, self._check, f"election:{candidate.master_id}")
        self._cancel_watch = self._backend.watch_children(self._dir, lambda _kids: self._serial.kick())
        topo._leaderships.add(self)
        self._serial.kick()

    @property
    def is_leader(self) -> bool:
        return self._leader

    @property
    def fence(self) -> str | None:
        """While leading: the path of our election node.  Leader-only writes
        check it exists in the same ZooKeeper multi-op (Topology.update_placement),
        so a deposed leader's late write fails instead of landing."""
        return f"{self._dir}/{self._node}" if self._leader and self._node else None

    @property
    def epoch(self) -> int | None:
        """While leading: our election node's sequence number, which grows with
        every new candidate node -- a newer leader always has a higher one."""
        return sequence_number(self._node) if self._leader and self._node else None

    async def wait_elected(self) -> None:
        await self._elected.wait()

    async def wait_lost(self) -> None:
        """Return once we are not the leader (at once if we are not leading now)."""
        await self._lost.wait()

    async def resign(self) -> None:
        """Leave the election for good (delete our candidate node).

        If ZooKeeper is unreachable the deletion is finished in the background
        once the session is back (a live node of ours would block the
        election); if the session dies instead, the node dies with it.
        """
        self._stop()
        cleanup = SerialJob(self._topo, self._delete_own_nodes, "resign")
        self._cleanup = cleanup
        try:
            await self._delete_own_nodes()
        except TopologyUnavailable:
            cleanup.kick()
            return
        cleanup.close()

    async def _delete_own_nodes(self) -> None:
        for name in await self._own_nodes():
            try:
                await self._backend.delete(f"{self._dir}/{name}")
            except NoNodeError:
                pass
        self._node = None
        if self._cleanup is not None:
            self._cleanup.close()

    def _stop(self) -> None:
        self._resigned = True
        self._step_down()
        self._serial.close()
        self._cancel_watch()
        self._topo._leaderships.discard(self)

    # -- internals -----------------------------------------------------------
    def _become_leader(self) -> None:
        if not self._leader:
            log.info("elected leader (%s)", self._node)
            self._leader = True
            self._lost.clear()
            self._elected.set()

    def _step_down(self) -> None:
        if self._leader:
            log.info("leadership lost (%s)", self._node)
            self._leader = False
            self._elected.clear()
            self._lost.set()

    def _on_session(self, state: str) -> None:
        """Called by the Topology's session listener, on the loop; never blocks."""
        if state in ("suspended", "lost"):
            self._step_down()
        if state == "lost":
            self._node = None  # the session and its ephemerals are gone
            self._uncertain = False
        # "connected": the Topology kicks every serial, ours included.

    async def _own_nodes(self) -> list[str]:
        """Election nodes carrying our nonce (normally just self._node)."""
        try:
            names = await self._backend.children(self._dir)
        except NoNodeError:
            return []
        mine = []
        for name in names:
            try:
                raw, _ = await self._backend.get(f"{self._dir}/{name}")
                if json.loads(raw).get("nonce") == self._nonce:
                    mine.append(name)
            except (NoNodeError, ValueError, AttributeError):
                continue
        return mine

    async def _check(self) -> None:
        if self._resigned:
            return
        if not self._backend.connected:
            self._step_down()
            return
        if self._node is None and self._uncertain:
            found = sorted(await self._own_nodes(), key=sequence_number)
            self._node = found[0] if found else None
            self._uncertain = False
        if self._node is None:
            try:
                path = await self._backend.create(
                    f"{self._dir}/n_", self._data, ephemeral=True, sequential=True, makepath=True
                )
            except TopologyUnavailable:
                self._uncertain = True
                raise
            self._node = path.rsplit("/", 1)[1]
        kids = await self._backend.children(self._dir)
        if self._resigned:
            return
        if self._node not in kids:
            # Deleted under us (or the session died and "lost" is on its way):
            # re-create on the next run.
            self._step_down()
            self._node = None
            self._serial.kick()
            return
        lowest = min(kids, key=sequence_number)
        if lowest == self._node and self._backend.connected:
            self._become_leader()
        else:
            self._step_down()
