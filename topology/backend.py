"""The narrow storage interface every topology backend implements.

Two implementations: `zk.ZooKeeperBackend` (kazoo, the real thing) and
`memory.MemoryBackend` (a faithful in-process fake for unit tests: versions,
ephemeral nodes tied to a session, sequential names, watches, and a way to
expire the session).  Everything above this interface -- paths, JSON, retry
loops, elections, request queues -- lives in `service.Topology` and is shared.

All methods are coroutines or plain callbacks on the asyncio loop: backends
hop from their own threads to the loop (kazoo) before calling back.

Error handling: methods raise only `topology.errors` exceptions.  Watches keep
firing across connection loss; after a session is lost and a new one is made,
ephemeral nodes are gone and each `SessionListener` is told "lost" then
"connected", so owners of ephemerals (region registration, leadership) can
re-create them from their own task, never from inside the listener.
"""

from __future__ import annotations

import abc
import logging
from typing import Callable, Optional

log = logging.getLogger(__name__)

# Callback types.  They run on the asyncio loop thread and must not block.
DataCallback = Callable[[Optional[bytes], int], None]  # (data or None if missing, version or -1)
ChildrenCallback = Callable[[list[str]], None]  # sorted child names ([] if the node is missing)
SessionListener = Callable[[str], None]  # "connected" | "suspended" | "lost"
Cancel = Callable[[], None]


class SessionListeners:
    """The session listeners a backend keeps: add (with a cancel), and emit.

    A listener that raises is logged and does not stop the others.
    """

    def __init__(self) -> None:
        self._listeners: list[SessionListener] = []

    def add(self, listener: SessionListener) -> Cancel:
        self._listeners.append(listener)

        def cancel() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return cancel

    def emit(self, state: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception:
                log.exception("session listener failed on %s", state)


class Backend(abc.ABC):
    @abc.abstractmethod
    async def start(self) -> None:
        """Connect (and wait until the session is established)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the session; its ephemeral nodes disappear."""

    @abc.abstractmethod
    async def get(self, path: str) -> tuple[bytes, int]:
        """Return (data, version).  Raises NoNodeError."""

    @abc.abstractmethod
    async def create(
        self,
        path: str,
        data: bytes = b"",
        *,
        ephemeral: bool = False,
        sequential: bool = False,
        makepath: bool = True,
    ) -> str:
        """Create a node and return its real path (with the sequence suffix if sequential).

        Raises NodeExistsError.  `makepath` creates missing persistent parents.
        """

    @abc.abstractmethod
    async def set(self, path: str, data: bytes, version: int) -> int:
        """Compare-and-set: write only if the node is at `version` (-1: any).

        Returns the new version.  Raises BadVersionError, NoNodeError.
        """

    @abc.abstractmethod
    async def set_fenced(self, path: str, data: bytes, version: int, fence: str) -> int:
        """`set`, applied only if the node `fence` exists, in one atomic
        operation (a ZooKeeper multi: check + setData).  Version -1 creates
        `path` instead.  Raises FencedError when `fence` is gone,
        BadVersionError, NoNodeError, NodeExistsError."""

    @abc.abstractmethod
    async def delete(self, path: str, version: int = -1, *, recursive: bool = False) -> None:
        """Delete a node.  Raises NoNodeError, BadVersionError, NotEmptyError."""

    @abc.abstractmethod
    async def children(self, path: str) -> list[str]:
        """Sorted child names.  Raises NoNodeError."""

    @abc.abstractmethod
    def watch_data(self, path: str, callback: DataCallback) -> Cancel:
        """Call back now with the current value, then on every change, until cancelled."""

    @abc.abstractmethod
    def watch_children(self, path: str, callback: ChildrenCallback) -> Cancel:
        """Call back now with the current children, then on every change, until cancelled.

        A missing node reports [] and is watched until it appears.
        """

    async def secure_tree(self, path: str) -> int:
        """Give `path` and everything under it this backend's ACL; returns how
        many znodes changed.  Backends without ACLs have nothing to do."""
        return 0

    @abc.abstractmethod
    def add_session_listener(self, listener: SessionListener) -> Cancel:
        """Be told of session state changes (see module docstring)."""

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """True while the session is usable."""
