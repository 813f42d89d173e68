"""The topology service: every znode path and JSON encoding of the cluster.

This is the only module (with the backends and its sibling modules under it)
that knows how the cluster is laid out in ZooKeeper.  proxy, master and region
call these narrow operations and never see a path or a kazoo object.
`Topology` is the one entry point; it delegates leader election to
`election` (`Leadership`), request queues to `queues`, and follow-up work of
watches and session events to `serial` (`SerialJob`).

ZooKeeper layout (under `root`, default /minisql)::

    regions/<region_id>        EPHEMERAL   RegionInfo JSON (no passwords)
    load/<region_id>           EPHEMERAL   RegionLoad JSON, rewritten every few seconds
    placement                  PERSISTENT  Placement JSON; znode version = epoch
    election/n_<seq>           EPHEMERAL_SEQUENTIAL  LeaderInfo JSON; lowest leads
    queues/<queue>/req-<seq>   PERSISTENT_SEQUENTIAL request payload JSON
    queues/<queue>/req-<seq>/result  PERSISTENT  result JSON, written by the server

Error handling
--------------
(Leadership and queues: see the docstrings of `election` and `queues`.)

* Placement edits are versioned read-modify-write: read (data, version), apply
  the caller's pure `mutate`, `set(..., version)`; on BadVersionError re-read and
  retry, up to `attempts`, then ConflictError.  Never a blind write.
* Ephemeral nodes (region registration, election) vanish with the session.
  The service re-creates them from its own task after the backend reports
  "connected" following "lost" -- never inside the listener (kazoo #355).

Where state can be lost, and what we do about it:

* A region restarting within the session timeout finds its previous
  session's node still there: we overwrite its data, and a data watch on every
  node we own re-creates it when the old session finally expires.  Two live
  processes with the same region id would overwrite each other; that is a
  configuration error this layer cannot detect (the backend hides owners).
* Follow-up work triggered by watches and session events runs in `SerialJob`s,
  re-kicked on every "connected" (see `serial`).

Access control
--------------
Over ZooKeeper with a `ZooKeeperAuth` (see `auth`), every znode under the
root is readable and writable by the cluster identity only, plus readable by
the status identity.  `start()` also re-applies that ACL to znodes left
world-open by a run without credentials.  A `read_only` Topology (what
``minisql status`` uses) creates and repairs nothing, so a read-only
identity can start it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any, Callable, TypeVar

from .auth import ZooKeeperAuth
from .backend import Backend, Cancel
from .election import Leadership
from .errors import BadVersionError, ConflictError, FencedError, NodeExistsError, NoNodeError
from .model import EMPTY_PLACEMENT, LeaderInfo, Placement, RegionInfo, RegionLoad
from .queues import Handler, QueueServer, call_queue
from .serial import SerialJob
from .znodes import dump_json, sequence_number, update_document

log = logging.getLogger(__name__)

T = TypeVar("T")

_UNSET: Any = object()


class Topology:
    """Cluster topology over any `Backend`.

    Methods taking callbacks must be called from the event loop; callbacks run
    on it and must not block.  `result_ttl` is how long a queue server keeps a
    result nobody collected before deleting the request (10 minutes).
    """

    def __init__(
        self, backend: Backend, root: str = "/minisql", *, result_ttl: float = 600.0, read_only: bool = False
    ) -> None:
        self._backend = backend
        self.read_only = read_only
        self._root = "/" + root.strip("/")
        self.result_ttl = result_ttl
        self._serials: set[SerialJob] = set()
        self._leaderships: set[Leadership] = set()
        self._cancels: set[Cancel] = set()
        self._owned: dict[str, bytes] = {}  # ephemeral path -> data we keep alive
        self._owned_watches: dict[str, Cancel] = {}
        self._repair = SerialJob(self, self._repair_owned, "repair-ephemerals")
        self._cancel_listener = backend.add_session_listener(self._on_session)

    @classmethod
    def for_zookeeper(
        cls,
        hosts: str,
        root: str = "/minisql",
        session_timeout: float = 6.0,
        *,
        auth: ZooKeeperAuth | None = None,
        read_only: bool = False,
    ) -> "Topology":
        """A Topology over a real ZooKeeper ensemble (call `start()` next).

        `auth`: log in with this digest identity and make every znode we
        create cluster-only (None: anonymous and world-open, as before ACLs).
        `read_only`: never create or re-ACL anything (for ``minisql status``).
        """
        from .zk import ZooKeeperBackend  # lazily: unit tests never import kazoo

        return cls(ZooKeeperBackend(hosts, session_timeout=session_timeout, auth=auth), root, read_only=read_only)

    @property
    def backend(self) -> Backend:
        return self._backend

    def _path(self, *parts: str) -> str:
        return "/".join((self._root, *parts))

    async def start(self) -> None:
        await self._backend.start()
        if self.read_only:
            return
        try:
            for sub in ("regions", "load", "election", "queues"):
                try:
                    await self._backend.create(self._path(sub), makepath=True)
                except NodeExistsError:
                    pass
            changed = await self._backend.secure_tree(self._root) if self._root != "/" else 0
        except BaseException:
            # Do not leave a half-started session behind (a retry starts a new one).
            await self._backend.close()
            raise
        if changed:
            log.warning("restricted the ACL of %d znode(s) under %s that were open to everyone", changed, self._root)

    async def close(self) -> None:
        """Stop every watch, election and queue server, then end the session."""
        self._cancel_listener()
        for lead in list(self._leaderships):
            lead._stop()
        for cancel in list(self._cancels):
            cancel()
        for cancel in self._owned_watches.values():
            cancel()
        self._owned_watches.clear()
        for serial in list(self._serials):
            serial.close()
        await self._backend.close()

    @property
    def connected(self) -> bool:
        return self._backend.connected

    def _on_session(self, state: str) -> None:
        # On the loop, but must not block or await: only flags and kicks here.
        for lead in list(self._leaderships):
            lead._on_session(state)
        if state == "connected":
            for serial in list(self._serials):
                serial.kick()

    def _track(self, *cancels: Cancel) -> Cancel:
        def cancel_all() -> None:
            self._cancels.discard(cancel_all)
            for c in cancels:
                c()

        self._cancels.add(cancel_all)
        return cancel_all

    # -- ephemerals we keep alive ---------------------------------------------
    async def _put_ephemeral(self, path: str, data: bytes, *, update_first: bool = False) -> None:
        """Make the ephemeral node at `path` exist with `data`."""
        b = self._backend
        for _ in range(10):
            if update_first:
                try:
                    await b.set(path, data, -1)
                    return
                except NoNodeError:
                    pass
            try:
                await b.create(path, data, ephemeral=True, makepath=True)
                return
            except NodeExistsError:
                pass
            try:
                current, version = await b.get(path)
                if current != data:
                    await b.set(path, data, version)
                return
            except (NoNodeError, BadVersionError):
                continue  # it went away or changed under us: go round
        raise ConflictError(f"could not settle ephemeral node {path}")

    async def _keep(self, path: str, data: bytes, *, update_first: bool = False) -> None:
        first = path not in self._owned
        self._owned[path] = data
        try:
            await self._put_ephemeral(path, data, update_first=update_first and not first)
        except BaseException:
            if first and self._owned.get(path) is data:
                del self._owned[path]
            raise
        if path in self._owned and path not in self._owned_watches:
            def on_data(value: bytes | None, _version: int, p: str = path) -> None:
                if value is None and p in self._owned:
                    self._repair.kick()

            self._owned_watches[path] = self._backend.watch_data(path, on_data)

    async def _forget(self, path: str) -> None:
        self._owned.pop(path, None)
        cancel = self._owned_watches.pop(path, None)
        if cancel is not None:
            cancel()
        try:
            await self._backend.delete(path)
        except NoNodeError:
            pass

    async def _repair_owned(self) -> None:
        for path, data in list(self._owned.items()):
            if self._owned.get(path) is not data:
                continue  # replaced or forgotten meanwhile
            await self._put_ephemeral(path, data)
            if path not in self._owned:
                # Unregistered while we were re-creating it: undo.
                try:
                    await self._backend.delete(path)
                except NoNodeError:
                    pass

    async def _read_all(
        self, directory: str, parse: Callable[[dict[str, Any]], T], names: list[str] | None = None
    ) -> dict[str, T]:
        if names is None:
            try:
                names = await self._backend.children(directory)
            except NoNodeError:
                return {}

        async def read(name: str) -> T | None:
            try:
                raw, _ = await self._backend.get(f"{directory}/{name}")
                return parse(json.loads(raw))
            except NoNodeError:
                return None  # went away between listing and reading
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring malformed %s/%s: %s", directory, name, exc)
                return None

        values = await asyncio.gather(*(read(n) for n in names))
        return {n: v for n, v in zip(names, values) if v is not None}

    # -- the cluster's identity ------------------------------------------------
    async def cluster_id(self) -> str:
        """A random id made once per cluster (`cluster_id` under the root).

        Things a region keeps in its own MariaDB about this cluster (the leader
        epoch it served, region/fencing.py) are keyed by it: a ZooKeeper tree
        wiped and started again, or another cluster's root on the same
        MariaDB, is a new id, so nothing carries over by mistake."""
        path = self._path("cluster_id")
        for _ in range(3):
            try:
                raw, _version = await self._backend.get(path)
                return raw.decode()
            except NoNodeError:
                pass
            try:
                await self._backend.create(path, uuid.uuid4().hex.encode(), makepath=True)
            except NodeExistsError:
                pass  # another process made it first: read theirs
        raise ConflictError(f"could not read or create {path}")

    # -- regions -------------------------------------------------------------
    async def register_region(self, info: RegionInfo) -> None:
        """Publish a live region (ephemeral); kept registered across session loss."""
        await self._keep(self._path("regions", info.region_id), dump_json(info.to_dict()))

    async def unregister_region(self, region_id: str) -> None:
        await self._forget(self._path("load", region_id))
        await self._forget(self._path("regions", region_id))

    async def list_regions(self) -> dict[str, RegionInfo]:
        return await self._read_all(self._path("regions"), RegionInfo.from_dict)

    def watch_regions(self, callback: Callable[[dict[str, RegionInfo]], None]) -> Cancel:
        """Call back now and on every change with all live regions.

        Membership is watched on `regions/`, and each region's data too, so a
        region that re-registers with a new address is noticed.
        """
        directory = self._path("regions")
        data_watches: dict[str, Cancel] = {}
        last: list[Any] = [_UNSET]

        async def job() -> None:
            try:
                listing = await self._backend.children(directory)
            except NoNodeError:
                listing = []
            regions = await self._read_all(directory, RegionInfo.from_dict, listing)
            names = set(listing)
            for gone in [n for n in data_watches if n not in names]:
                data_watches.pop(gone)()
            for new in names - set(data_watches):
                data_watches[new] = self._backend.watch_data(f"{directory}/{new}", lambda _d, _v: serial.kick())
            if regions != last[0] and not serial.closed:
                last[0] = regions
                callback(dict(regions))

        serial = SerialJob(self, job, "watch-regions")
        cancel_children = self._backend.watch_children(directory, lambda _kids: serial.kick())
        serial.kick()

        def cancel_data() -> None:
            for c in data_watches.values():
                c()
            data_watches.clear()

        return self._track(cancel_children, serial.close, cancel_data)

    async def publish_load(self, load: RegionLoad) -> None:
        """Create-or-update this region's ephemeral load report."""
        await self._keep(self._path("load", load.region_id), dump_json(load.to_dict()), update_first=True)

    async def get_loads(self) -> dict[str, RegionLoad]:
        """Latest load report of every region that has one."""
        return await self._read_all(self._path("load"), RegionLoad.from_dict)

    # -- placement -----------------------------------------------------------
    async def get_placement(self) -> Placement:
        try:
            raw, version = await self._backend.get(self._path("placement"))
        except NoNodeError:
            return EMPTY_PLACEMENT
        return Placement.from_json(raw, version)

    async def update_placement(
        self, mutate: Callable[[Placement], Placement | None], *, attempts: int = 20
    ) -> Placement:
        """Versioned read-modify-write; `mutate` is pure and may run several times.

        Returns the placement as written (its `version` is the new znode
        version), or the current one unchanged when `mutate` returns None.
        Raises ConflictError after `attempts` lost races.  In a process that
        campaigns (a master), every write is fenced by its election node:
        FencedError if it does not lead.
        """
        return await update_document(
            self._backend, self._path("placement"), self.get_placement, mutate, Placement.from_json, "placement", attempts,
            fence=self._leader_fence if self._leaderships else None,
        )

    def leader_epoch(self) -> int | None:
        """While this process leads: its leader epoch (Leadership.epoch), which
        the master stamps on every region task so regions can refuse an older one."""
        for lead in self._leaderships:
            epoch = lead.epoch
            if epoch is not None:
                return epoch
        return None

    def _leader_fence(self) -> str:
        """The election node a campaigning process fences its placement writes
        with; FencedError when it is not the leader (any more)."""
        for lead in self._leaderships:
            node = lead.fence
            if node is not None:
                return node
        raise FencedError("not the leader: placement changes are the elected master's")

    def watch_placement(self, callback: Callable[[Placement], None]) -> Cancel:
        """Call back now and on every change with a whole new snapshot."""

        def on_data(raw: bytes | None, version: int) -> None:
            if raw is None:
                callback(EMPTY_PLACEMENT)
                return
            try:
                snapshot = Placement.from_json(raw, version)
            except (ValueError, KeyError, TypeError) as exc:
                log.error("ignoring malformed placement version %d: %s", version, exc)
                return
            callback(snapshot)

        return self._track(self._backend.watch_data(self._path("placement"), on_data))

    # -- leadership ----------------------------------------------------------
    def campaign(self, candidate: LeaderInfo) -> Leadership:
        """Enter the election (call from the loop); see Leadership."""
        return Leadership(self, candidate)

    async def get_leader(self) -> LeaderInfo | None:
        directory = self._path("election")
        try:
            names = await self._backend.children(directory)
        except NoNodeError:
            return None
        for name in sorted(names, key=sequence_number):
            try:
                raw, _ = await self._backend.get(f"{directory}/{name}")
                return LeaderInfo.from_dict(json.loads(raw))
            except NoNodeError:
                continue  # that candidate just left: the next one leads
        return None

    # -- request queues (DDL to the master, data tasks to regions) -----------
    async def call(self, queue: str, payload: dict[str, Any], *, timeout: float = 30.0) -> dict[str, Any]:
        """Enqueue a request and wait for its result; raises CallTimeout.

        The whole call (enqueue included) is bounded by `timeout`.  The
        request is deleted afterwards whatever happened; if that delete
        fails the server garbage-collects it after `result_ttl`.
        """
        return await call_queue(self, queue, payload, timeout=timeout)

    def serve(self, queue: str, handler: Handler) -> Cancel:
        """Run `handler` on each request of `queue`, one at a time, in order.

        An exception from the handler becomes the result
        {"error": {"errno": 1105, "sqlstate": "HY000", "message": str(exc)}}.
        Requests that already have a result are skipped; answered requests
        nobody collected are deleted after `result_ttl`.
        """
        server = QueueServer(self, queue, handler)
        return self._track(server.cancel)
