"""The topology service: every znode path and JSON encoding of the cluster.

This is the only module (with the backends under it) that knows how the
cluster is laid out in ZooKeeper.  proxy, master and region call these narrow
operations and never see a path or a kazoo object.

ZooKeeper layout (under `root`, default /minisql)::

    regions/<region_id>        EPHEMERAL   RegionInfo JSON (no passwords)
    load/<region_id>           EPHEMERAL   RegionLoad JSON, rewritten every few seconds
    placement                  PERSISTENT  Placement JSON; znode version = epoch
    election/n_<seq>           EPHEMERAL_SEQUENTIAL  LeaderInfo JSON; lowest leads
    queues/<queue>/req-<seq>   PERSISTENT_SEQUENTIAL request payload JSON
    queues/<queue>/req-<seq>/result  PERSISTENT  result JSON, written by the server

Error handling
--------------
* Placement edits are versioned read-modify-write: read (data, version), apply
  the caller's pure `mutate`, `set(..., version)`; on BadVersionError re-read and
  retry, up to `attempts`, then ConflictError.  Never a blind write.
* Ephemeral nodes (region registration, election) vanish with the session.
  The service re-creates them from its own task after the backend reports
  "connected" following "lost" -- never inside the listener (kazoo #355).
* Leadership is dropped the moment the session is *suspended*: an old leader
  must not keep acting while another may already have been elected.
* Queued requests are at-least-once: a server that dies mid-request leaves it
  without a result, and the next server runs it again, so handlers must be
  idempotent.  The caller deletes its request after reading the result.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from .backend import Backend, Cancel
from .model import LeaderInfo, Placement, RegionInfo, RegionLoad

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class Leadership:
    """One candidate's campaign for leadership (see Topology.campaign).

    Usage (the master's loop)::

        lead = topo.campaign(LeaderInfo("m1"))
        while True:
            await lead.wait_elected()
            ... act as leader until lead.wait_lost() returns ...

    After the session is lost the candidate re-enters the election by itself
    once a new session is up.
    """

    @property
    def is_leader(self) -> bool:
        raise NotImplementedError

    async def wait_elected(self) -> None:
        raise NotImplementedError

    async def wait_lost(self) -> None:
        raise NotImplementedError

    async def resign(self) -> None:
        """Leave the election for good (delete our candidate node)."""
        raise NotImplementedError


class Topology:
    def __init__(self, backend: Backend, root: str = "/minisql") -> None:
        raise NotImplementedError

    @classmethod
    def for_zookeeper(
        cls, hosts: str, root: str = "/minisql", session_timeout: float = 6.0
    ) -> "Topology":
        """A Topology over a real ZooKeeper ensemble (call `start()` next)."""
        raise NotImplementedError

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    @property
    def connected(self) -> bool:
        raise NotImplementedError

    # -- regions -------------------------------------------------------------
    async def register_region(self, info: RegionInfo) -> None:
        """Publish a live region (ephemeral); kept registered across session loss."""
        raise NotImplementedError

    async def unregister_region(self, region_id: str) -> None:
        raise NotImplementedError

    async def list_regions(self) -> dict[str, RegionInfo]:
        raise NotImplementedError

    def watch_regions(self, callback: Callable[[dict[str, RegionInfo]], None]) -> Cancel:
        """Call back now and on every change with all live regions."""
        raise NotImplementedError

    async def publish_load(self, load: RegionLoad) -> None:
        """Create-or-update this region's ephemeral load report."""
        raise NotImplementedError

    async def get_loads(self) -> dict[str, RegionLoad]:
        """Latest load report of every region that has one."""
        raise NotImplementedError

    # -- placement -----------------------------------------------------------
    async def get_placement(self) -> Placement:
        raise NotImplementedError

    async def update_placement(
        self, mutate: Callable[[Placement], Placement | None], *, attempts: int = 20
    ) -> Placement:
        """Versioned read-modify-write; `mutate` is pure and may run several times.

        Returns the placement as written (its `version` is the new znode
        version), or the current one unchanged when `mutate` returns None.
        """
        raise NotImplementedError

    def watch_placement(self, callback: Callable[[Placement], None]) -> Cancel:
        """Call back now and on every change with a whole new snapshot."""
        raise NotImplementedError

    # -- leadership ----------------------------------------------------------
    def campaign(self, candidate: LeaderInfo) -> Leadership:
        raise NotImplementedError

    async def get_leader(self) -> LeaderInfo | None:
        raise NotImplementedError

    # -- request queues (DDL to the master, data tasks to regions) -----------
    async def call(self, queue: str, payload: dict[str, Any], *, timeout: float = 30.0) -> dict[str, Any]:
        """Enqueue a request and wait for its result; raises CallTimeout."""
        raise NotImplementedError

    def serve(self, queue: str, handler: Handler) -> Cancel:
        """Run `handler` on each request of `queue`, one at a time, in order.

        An exception from the handler becomes the result
        {"error": {"errno": 1105, "sqlstate": "HY000", "message": str(exc)}}.
        """
        raise NotImplementedError
