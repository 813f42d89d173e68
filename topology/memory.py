"""An in-process `Backend` for unit tests: ZooKeeper semantics without ZooKeeper.

Why a fake at all: the topology service's hard parts (compare-and-set races,
ephemeral nodes vanishing with a session, elections, request queues) must be
testable in milliseconds and deterministically.  This fake keeps the
ZooKeeper rules that those parts rely on:

* versions start at 0 and grow by one per `set`; `set`/`delete` with a
  version are compare-and-set;
* ephemeral nodes belong to the session of the backend that created them and
  disappear when that session ends (`close`, `expire_session`); they cannot
  have children;
* sequential names get a 10-digit zero-padded counter kept per parent;
* watches are delivered later on the event loop (`loop.call_soon`), coalesced
  (a burst of changes is seen as the latest state, as a ZooKeeper re-read
  after a one-shot watch would see it), never while disconnected, and re-read
  after reconnecting;
* several `MemoryBackend`s sharing one `MemoryServer` behave like several
  processes talking to one ensemble.

Every operation first yields to the loop (`await asyncio.sleep(0)`), so two
tasks doing read-modify-write really interleave as they would over a network.

Error handling
--------------
Operations on a backend that is not connected (not started, closed, or inside
`suspend()`/`expire_session()`) raise TopologyUnavailable, like kazoo's
ConnectionLoss.  `expire_session()` loses this backend's ephemeral nodes
(other backends' watches see them go) and tells listeners "suspended",
"lost", then "connected" with a new session -- the sequence kazoo produces
after a real expiry -- so owners must re-create what they had.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .backend import Backend, Cancel, ChildrenCallback, DataCallback, SessionListener, SessionListeners
from .errors import (
    BadVersionError,
    FencedError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    TopologyError,
    TopologyUnavailable,
)

log = logging.getLogger(__name__)

_session_ids = itertools.count(1)
_UNSET: Any = object()


def _parent(path: str) -> str:
    head = path.rsplit("/", 1)[0]
    return head or "/"


def _join(parent: str, name: str) -> str:
    return parent.rstrip("/") + "/" + name


def _check_path(path: str) -> None:
    if not path.startswith("/") or (path != "/" and path.endswith("/")) or "//" in path:
        raise TopologyError(f"invalid znode path {path!r}")


@dataclass
class _Node:
    data: bytes
    version: int = 0
    owner: Optional[int] = None  # session id of an ephemeral node's creator
    next_seq: int = 0  # sequential-name counter for children
    children: set[str] = field(default_factory=set)


class _Watch:
    """One persistent watch of a backend: re-reads state when poked."""

    def __init__(self, backend: "MemoryBackend", path: str, kind: str, callback: Callable[..., None]):
        self.backend = backend
        self.path = path
        self.kind = kind  # "data" | "children"
        self.callback = callback
        self.cancelled = False
        self._scheduled = False
        self._last: Any = _UNSET

    def poke(self) -> None:
        """Schedule one delivery on the loop; several pokes before it runs coalesce."""
        if self.cancelled or self._scheduled or self.backend._loop is None:
            return
        self._scheduled = True
        self.backend._loop.call_soon(self._deliver)

    def _deliver(self) -> None:
        self._scheduled = False
        if self.cancelled or not self.backend._connected:
            return  # re-poked by the backend when it reconnects
        server = self.backend._server
        node = server.nodes.get(self.path)
        if self.kind == "data":
            value: Any = (None, -1) if node is None else (node.data, node.version)
        else:
            value = [] if node is None else sorted(node.children)
        if value == self._last:
            return
        self._last = value
        try:
            if self.kind == "data":
                self.callback(*value)
            else:
                self.callback(list(value))
        except Exception:  # a broken callback must not break the backend
            log.exception("watch callback for %s failed", self.path)


class MemoryServer:
    """The shared "ensemble": one tree of znodes and every watch on it."""

    def __init__(self) -> None:
        self.nodes: dict[str, _Node] = {"/": _Node(b"")}
        self.watches: set[_Watch] = set()

    # -- notification ----------------------------------------------------------
    def _changed(self, path: str, *, children_of_parent: bool) -> None:
        parent = _parent(path)
        for w in list(self.watches):
            if w.kind == "data" and w.path == path:
                w.poke()
            elif children_of_parent and w.kind == "children" and w.path in (parent, path):
                w.poke()

    # -- primitive mutations (synchronous, no session checks) -------------------
    def _create(self, path: str, data: bytes, owner: Optional[int], sequential: bool, makepath: bool) -> str:
        _check_path(path)
        parent_path = _parent(path)
        parent = self.nodes.get(parent_path)
        if parent is None:
            if not makepath:
                raise NoNodeError(parent_path)
            self._create(parent_path, b"", None, False, True)
            parent = self.nodes[parent_path]
        if parent.owner is not None:
            raise TopologyError(f"ephemeral node {parent_path} cannot have children")
        if sequential:
            path = f"{path}{parent.next_seq:010d}"
            parent.next_seq += 1
        if path in self.nodes:
            raise NodeExistsError(path)
        self.nodes[path] = _Node(bytes(data), owner=owner)
        parent.children.add(path.rsplit("/", 1)[1])
        self._changed(path, children_of_parent=True)
        return path

    def _remove(self, path: str) -> None:
        node = self.nodes[path]
        for child in list(node.children):
            self._remove(_join(path, child))
        del self.nodes[path]
        self.nodes[_parent(path)].children.discard(path.rsplit("/", 1)[1])
        self._changed(path, children_of_parent=True)

    def write(self, path: str, data: bytes) -> int:
        """Test hook: an unconditional write "by another client", done synchronously.

        Lets a test change a node in the middle of a read-modify-write (for
        example from inside a `mutate` function) to force a version conflict.
        Creates the node (persistent) if missing.  Returns the new version.
        """
        node = self.nodes.get(path)
        if node is None:
            self._create(path, data, None, False, True)
            return 0
        node.data = bytes(data)
        node.version += 1
        self._changed(path, children_of_parent=False)
        return node.version

    def _drop_session(self, session: int) -> None:
        for path in sorted((p for p, n in self.nodes.items() if n.owner == session), reverse=True):
            if path in self.nodes:
                self._remove(path)


class MemoryBackend(Backend):
    """One client "process" of a `MemoryServer` (a private server if none given)."""

    def __init__(self, server: MemoryServer | None = None) -> None:
        self._server = server if server is not None else MemoryServer()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = False
        self._session: int | None = None
        self._listeners = SessionListeners()
        self._watches: set[_Watch] = set()

    @property
    def server(self) -> MemoryServer:
        return self._server

    @property
    def session_id(self) -> int | None:
        return self._session

    @property
    def connected(self) -> bool:
        return self._connected

    # -- session -------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._connected:
            return
        self._session = next(_session_ids)
        self._connected = True
        self._loop.call_soon(self._emit, "connected")
        self._repoke()
        await asyncio.sleep(0)

    async def close(self) -> None:
        if self._session is not None:
            self._server._drop_session(self._session)
        was_connected = self._connected
        self._connected = False
        self._session = None
        for w in list(self._watches):
            w.cancelled = True
            self._server.watches.discard(w)
        self._watches.clear()
        if was_connected and self._loop is not None:
            self._loop.call_soon(self._emit, "lost")
        await asyncio.sleep(0)

    def suspend(self) -> None:
        """Test hook: lose the connection but keep the session (and its ephemerals)."""
        self._require_loop()
        self._connected = False
        self._loop.call_soon(self._emit, "suspended")  # type: ignore[union-attr]

    def resume(self) -> None:
        """Test hook: reconnect after `suspend()` or `expire_session(reconnect=False)`."""
        loop = self._require_loop()
        loop.call_soon(self._reconnect)

    def expire_session(self, *, reconnect: bool = True) -> None:
        """Test hook: the server expires this session, as after a long partition.

        Steps run on the loop in the order a kazoo client observes them:
        "suspended" (connection gone), then the ephemerals are deleted and
        "lost" is reported, then (unless `reconnect` is False) a new session is
        made and "connected" is reported.
        """
        loop = self._require_loop()
        self._connected = False
        loop.call_soon(self._emit, "suspended")
        loop.call_soon(self._expire)
        if reconnect:
            loop.call_soon(self._reconnect)

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise TopologyError("backend not started")
        return self._loop

    def _expire(self) -> None:
        if self._session is not None:
            self._server._drop_session(self._session)
            self._session = None
        self._emit("lost")

    def _reconnect(self) -> None:
        if self._connected:
            return
        if self._session is None:
            self._session = next(_session_ids)
        self._connected = True
        self._emit("connected")
        self._repoke()

    def _repoke(self) -> None:
        for w in list(self._watches):
            w.poke()

    def _emit(self, state: str) -> None:
        self._listeners.emit(state)

    def add_session_listener(self, listener: SessionListener) -> Cancel:
        return self._listeners.add(listener)

    # -- operations ----------------------------------------------------------
    async def _op(self) -> None:
        await asyncio.sleep(0)  # let other tasks interleave, as over a network
        if not self._connected:
            raise TopologyUnavailable("memory backend not connected")

    def _node(self, path: str) -> _Node:
        _check_path(path)
        node = self._server.nodes.get(path)
        if node is None:
            raise NoNodeError(path)
        return node

    async def get(self, path: str) -> tuple[bytes, int]:
        await self._op()
        node = self._node(path)
        return node.data, node.version

    async def create(
        self,
        path: str,
        data: bytes = b"",
        *,
        ephemeral: bool = False,
        sequential: bool = False,
        makepath: bool = True,
    ) -> str:
        await self._op()
        owner = self._session if ephemeral else None
        return self._server._create(path, data, owner, sequential, makepath)

    async def set(self, path: str, data: bytes, version: int) -> int:
        await self._op()
        return self._set(path, data, version)

    def _set(self, path: str, data: bytes, version: int) -> int:
        node = self._node(path)
        if version != -1 and version != node.version:
            raise BadVersionError(f"{path}: expected version {version}, is {node.version}")
        node.data = bytes(data)
        node.version += 1
        self._server._changed(path, children_of_parent=False)
        return node.version

    async def set_fenced(self, path: str, data: bytes, version: int, fence: str) -> int:
        await self._op()
        if self._server.nodes.get(fence) is None:
            raise FencedError(f"{fence} is gone: not the leader")
        if version == -1:
            self._server._create(path, data, None, False, True)
            return 0
        return self._set(path, data, version)

    async def delete(self, path: str, version: int = -1, *, recursive: bool = False) -> None:
        await self._op()
        if path == "/":
            raise TopologyError("cannot delete the root")
        node = self._node(path)
        if version != -1 and version != node.version:
            raise BadVersionError(f"{path}: expected version {version}, is {node.version}")
        if node.children and not recursive:
            raise NotEmptyError(path)
        self._server._remove(path)

    async def children(self, path: str) -> list[str]:
        await self._op()
        return sorted(self._node(path).children)

    # -- watches -------------------------------------------------------------
    def _watch(self, path: str, kind: str, callback: Callable[..., None]) -> Cancel:
        _check_path(path)
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        w = _Watch(self, path, kind, callback)
        self._watches.add(w)
        self._server.watches.add(w)
        w.poke()

        def cancel() -> None:
            w.cancelled = True
            self._watches.discard(w)
            self._server.watches.discard(w)

        return cancel

    def watch_data(self, path: str, callback: DataCallback) -> Cancel:
        return self._watch(path, "data", callback)

    def watch_children(self, path: str, callback: ChildrenCallback) -> Cancel:
        return self._watch(path, "children", callback)
