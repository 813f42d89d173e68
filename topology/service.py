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

Where state can be lost, and what we do about it:

* A create whose answer is lost (TopologyUnavailable) may still have been
  applied.  Election nodes carry a random nonce in their JSON so a candidate
  can find (and adopt or delete) a node it is not sure it made; a request
  created that way is orphaned and is garbage-collected by the server
  `result_ttl` seconds after it answers it.
* A region restarting within the session timeout finds its previous
  session's node still there: we overwrite its data, and a data watch on every
  node we own re-creates it when the old session finally expires.  Two live
  processes with the same region id would overwrite each other; that is a
  configuration error this layer cannot detect (the backend hides owners).
* Follow-up work triggered by watches and session events (re-reads,
  re-creations, elections, queue passes) runs in `_Serial` jobs: one task at a
  time, retried with backoff while connected, and re-kicked on every
  "connected" so nothing stays stale after a partition.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from typing import Any, Awaitable, Callable, TypeVar

from .backend import Backend, Cancel
from .errors import (
    BadVersionError,
    CallTimeout,
    ConflictError,
    NodeExistsError,
    NoNodeError,
    TopologyError,
    TopologyUnavailable,
)
from .model import EMPTY_PLACEMENT, LeaderInfo, Placement, RegionInfo, RegionLoad

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
T = TypeVar("T")

_RETRY_MIN = 0.05
_RETRY_MAX = 5.0
_UNSET: Any = object()


def _seq(name: str) -> int:
    """The sequence number ZooKeeper appended to a sequential node's name."""
    digits = name[-10:]
    return int(digits) if digits.isdigit() else -1


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _error_result(exc: BaseException) -> dict[str, Any]:
    return {"error": {"errno": 1105, "sqlstate": "HY000", "message": str(exc) or type(exc).__name__}}


class _Serial:
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
        self._data = _dumps({**candidate.to_dict(), "nonce": self._nonce})
        self._node: str | None = None  # our node's name under election/
        self._uncertain = False  # a create may have happened without our hearing of it
        self._leader = False
        self._resigned = False
        self._cleanup: _Serial | None = None
        self._elected = asyncio.Event()
        self._lost = asyncio.Event()
        self._lost.set()
        self._serial = _Serial(topo, self._check, f"election:{candidate.master_id}")
        self._cancel_watch = self._backend.watch_children(self._dir, lambda _kids: self._serial.kick())
        topo._leaderships.add(self)
        self._serial.kick()

    @property
    def is_leader(self) -> bool:
        return self._leader

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
        cleanup = _Serial(self._topo, self._delete_own_nodes, "resign")
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
            found = sorted(await self._own_nodes(), key=_seq)
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
        lowest = min(kids, key=_seq)
        if lowest == self._node and self._backend.connected:
            self._become_leader()
        else:
            self._step_down()


class _QueueServer:
    """Serves one request queue: one request at a time, in sequence order."""

    def __init__(self, topo: "Topology", queue: str, handler: Handler) -> None:
        self._topo = topo
        self._backend = topo._backend
        self._dir = topo._path("queues", queue)
        self._handler = handler
        self._answered: dict[str, float] = {}  # request name -> when first seen answered
        self._unwritten: dict[str, bytes] = {}  # results whose write failed: never re-run
        self._gc_timer: asyncio.TimerHandle | None = None
        self._serial = _Serial(topo, self._pass, f"queue:{queue}")
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
        for name in sorted((n for n in names if n.startswith("req-")), key=_seq):
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
            return _dumps(await self._handler(payload))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("queue %s handler failed: %s", self._dir, exc)
            return _dumps(_error_result(exc))

    def _schedule_gc(self) -> None:
        if not self._answered or self._gc_timer is not None:
            return

        def fire() -> None:
            self._gc_timer = None
            self._serial.kick()

        delay = min(max(self._topo.result_ttl / 4, 0.01), 60.0)
        self._gc_timer = asyncio.get_running_loop().call_later(delay, fire)


class Topology:
    """Cluster topology over any `Backend`.

    Methods taking callbacks must be called from the event loop; callbacks run
    on it and must not block.  `result_ttl` is how long a queue server keeps a
    result nobody collected before deleting the request (10 minutes).
    """

    def __init__(self, backend: Backend, root: str = "/minisql", *, result_ttl: float = 600.0) -> None:
        self._backend = backend
        self._root = "/" + root.strip("/")
        self.result_ttl = result_ttl
        self._serials: set[_Serial] = set()
        self._leaderships: set[Leadership] = set()
        self._cancels: set[Cancel] = set()
        self._owned: dict[str, bytes] = {}  # ephemeral path -> data we keep alive
        self._owned_watches: dict[str, Cancel] = {}
        self._repair = _Serial(self, self._repair_owned, "repair-ephemerals")
        self._cancel_listener = backend.add_session_listener(self._on_session)

    @classmethod
    def for_zookeeper(
        cls, hosts: str, root: str = "/minisql", session_timeout: float = 6.0
    ) -> "Topology":
        """A Topology over a real ZooKeeper ensemble (call `start()` next)."""
        from .zk import ZooKeeperBackend  # lazily: unit tests never import kazoo

        return cls(ZooKeeperBackend(hosts, session_timeout=session_timeout), root)

    @property
    def backend(self) -> Backend:
        return self._backend

    def _path(self, *parts: str) -> str:
        return "/".join((self._root, *parts))

    async def start(self) -> None:
        await self._backend.start()
        for sub in ("regions", "load", "election", "queues"):
            try:
                await self._backend.create(self._path(sub), makepath=True)
            except NodeExistsError:
                pass

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

    # -- regions -------------------------------------------------------------
    async def register_region(self, info: RegionInfo) -> None:
        """Publish a live region (ephemeral); kept registered across session loss."""
        await self._keep(self._path("regions", info.region_id), _dumps(info.to_dict()))

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
            if regions != last[0] and not serial._closed:
                last[0] = regions
                callback(dict(regions))

        serial = _Serial(self, job, "watch-regions")
        cancel_children = self._backend.watch_children(directory, lambda _kids: serial.kick())
        serial.kick()

        def cancel_data() -> None:
            for c in data_watches.values():
                c()
            data_watches.clear()

        return self._track(cancel_children, serial.close, cancel_data)

    async def publish_load(self, load: RegionLoad) -> None:
        """Create-or-update this region's ephemeral load report."""
        await self._keep(self._path("load", load.region_id), _dumps(load.to_dict()), update_first=True)

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
        Raises ConflictError after `attempts` lost races.
        """
        path = self._path("placement")
        for attempt in range(attempts):
            current = await self.get_placement()
            new = mutate(current)
            if new is None:
                return current
            data = new.to_json()
            try:
                if current.version == -1:
                    await self._backend.create(path, data, makepath=True)
                    version = 0
                else:
                    version = await self._backend.set(path, data, current.version)
            except (BadVersionError, NodeExistsError, NoNodeError):
                # Another writer got there first (or deleted/created the node):
                # re-read and re-apply, with a little jitter against livelock.
                if attempt + 1 < attempts:
                    await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
                continue
            return Placement.from_json(data, version)
        raise ConflictError(f"placement update lost {attempts} races in a row")

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
        for name in sorted(names, key=_seq):
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
        body = _dumps(payload)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bytes] = loop.create_future()
        req: str | None = None
        cancel: Cancel | None = None

        def on_result(raw: bytes | None, _version: int) -> None:
            if raw is not None and not answer.done():
                answer.set_result(raw)

        try:
            async with asyncio.timeout(timeout):
                req = await self._backend.create(
                    self._path("queues", queue, "req-"), body, sequential=True, makepath=True
                )
                cancel = self._backend.watch_data(f"{req}/result", on_result)
                raw = await answer
        except TimeoutError:
            raise CallTimeout(f"no answer on queue {queue!r} within {timeout}s") from None
        finally:
            if cancel is not None:
                cancel()
            if req is not None:
                try:
                    await self._backend.delete(req, recursive=True)
                except NoNodeError:
                    pass
                except TopologyError as exc:
                    log.warning("could not delete request %s (server will): %s", req, exc)
        return json.loads(raw)

    def serve(self, queue: str, handler: Handler) -> Cancel:
        """Run `handler` on each request of `queue`, one at a time, in order.

        An exception from the handler becomes the result
        {"error": {"errno": 1105, "sqlstate": "HY000", "message": str(exc)}}.
        Requests that already have a result are skipped; answered requests
        nobody collected are deleted after `result_ttl`.
        """
        server = _QueueServer(self, queue, handler)
        return self._track(server.cancel)
