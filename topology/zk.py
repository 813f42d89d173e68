"""The real `Backend`: ZooKeeper through kazoo, bridged onto asyncio.

kazoo has no asyncio support: its results complete, its watches fire and its
state listeners run in kazoo's own threads.  This module is the one place
that crosses that boundary, so everything above it can stay single-threaded
on the event loop:

* every operation uses a kazoo `*_async()` call; the IAsyncResult is bridged
  to an asyncio future with `rawlink` + `loop.call_soon_threadsafe`, so the
  loop never blocks on ZooKeeper;
* `KazooClient.start()/stop()/close()` block, so they run in an executor;
* watch and state callbacks only hop to the loop (`call_soon_threadsafe`);
  all real work happens there.  A state listener that blocked would hang
  kazoo's connection thread (kazoo #355).

Watches.  We use raw one-shot watches, not kazoo's DataWatch/ChildrenWatch
recipes: kazoo drops its whole watcher table whenever the connection is
suspended (`_reset_watchers`), so correctness needs a re-read after every
reconnect anyway.  Each `_Watcher` is a tiny serial re-reader: any watch event
or "connected" transition marks it dirty; one task at a time re-reads the node
(re-arming the watch) and calls back only when the value differs from the
last one delivered.  Reads run serially, so the newest value always arrives
last.  A missing node is watched with `exists` until it appears.

Error handling
--------------
* kazoo exceptions are translated into `topology.errors` exactly once, in
  `_translate`.  Connection loss, session expiry, operation timeouts, and any
  ZooKeeper error while we are not connected become TopologyUnavailable.
* An operation issued while the connection is down is queued by kazoo until
  reconnect; we bound every operation with `op_timeout` so callers get
  TopologyUnavailable instead of hanging through a long partition.  The
  request may still be applied later by the server: callers of create() must
  treat TopologyUnavailable as "maybe done" (service.py does).
* Connection retries forever (KazooRetry max_tries=-1): after a session
  expiry kazoo makes a new session by itself; listeners hear "suspended",
  "lost", "connected", and all ephemerals of the old session are gone.
* Recursive delete is not atomic in ZooKeeper: children created while we
  delete make the final delete fail with NotEmpty, and we retry a few times.
* NoAuth (and AuthFailed) become NotAuthorizedError naming the path: the
  process's ZooKeeper identity is wrong or missing, which no retry fixes.

Access control
--------------
With a `ZooKeeperAuth` the session authenticates with the digest scheme
(kazoo re-sends `auth_data` after every reconnect) and `default_acl` puts the
cluster-only ACL on every znode we create, parents made by `makepath`
included.  `secure_tree` re-applies that ACL to znodes made before ACLs were
configured (see topology.auth).  Without one, znodes stay world-open as before.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Optional

from .auth import ZooKeeperAuth, same_acl
from .backend import Backend, Cancel, ChildrenCallback, DataCallback, SessionListener, SessionListeners
from .errors import (
    BadVersionError,
    FencedError,
    NodeExistsError,
    NoNodeError,
    NotAuthorizedError,
    NotEmptyError,
    TopologyError,
    TopologyUnavailable,
)

log = logging.getLogger(__name__)

_UNSET: Any = object()
_RETRY_MIN = 0.1
_RETRY_MAX = 2.0


class _Watcher:
    """A persistent watch built from kazoo's one-shot watches (see module docstring)."""

    def __init__(self, backend: "ZooKeeperBackend", path: str, kind: str, callback: Callable[..., None]):
        self._backend = backend
        self._path = path
        self._kind = kind  # "data" | "children"
        self._callback = callback
        self._dirty = False
        self._task: Optional[asyncio.Task[None]] = None
        self._last: Any = _UNSET
        self.cancelled = False
        # One bound-method object, so kazoo's watcher sets de-duplicate it.
        self._on_event_fn = self._on_event

    def _on_event(self, _event: Any) -> None:  # kazoo event thread
        if not self.cancelled:
            self._backend._hop(self.kick)

    def kick(self) -> None:  # loop thread
        if self.cancelled:
            return
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def cancel(self) -> None:
        self.cancelled = True
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _run(self) -> None:
        delay = _RETRY_MIN
        while self._dirty and not self.cancelled:
            self._dirty = False
            try:
                value = await self._read()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._dirty = True
                if not self._backend.connected:
                    return  # the next "connected" transition kicks us again
                if not isinstance(exc, TopologyUnavailable):
                    log.warning("watch on %s: %s; retrying", self._path, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)
                continue
            if value is _UNSET:
                self._dirty = True  # the node appeared between our two reads
                continue
            if self.cancelled or value == self._last:
                continue
            self._last = value
            try:
                if self._kind == "data":
                    self._callback(*value)
                else:
                    self._callback(list(value))
            except Exception:
                log.exception("watch callback for %s failed", self._path)

    async def _read(self) -> Any:
        b, client, watch = self._backend, self._backend._require_client(), self._on_event_fn
        try:
            if self._kind == "data":
                data, stat = await b._call(lambda: client.get_async(self._path, watch=watch), self._path)
                return (data, stat.version)
            return sorted(await b._call(lambda: client.get_children_async(self._path, watch=watch), self._path))
        except NoNodeError:
            stat = await b._call(lambda: client.exists_async(self._path, watch=watch), self._path)
            if stat is not None:
                return _UNSET
            return (None, -1) if self._kind == "data" else []


class ZooKeeperBackend(Backend):
    """A kazoo session to `hosts` ("h1:2181,h2:2181"), used only from one event loop.

    `auth`: the digest identity to log in with and to protect created znodes
    with (None: anonymous, znodes open to everyone).
    """

    def __init__(
        self,
        hosts: str,
        session_timeout: float = 6.0,
        *,
        connect_timeout: float = 15.0,
        op_timeout: float | None = None,
        auth: ZooKeeperAuth | None = None,
    ) -> None:
        self._hosts = hosts
        self._auth = auth
        self._session_timeout = session_timeout
        self._connect_timeout = connect_timeout
        self._op_timeout = op_timeout if op_timeout is not None else max(10.0, 2 * session_timeout)
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = "lost"
        self._connected_evt: asyncio.Event | None = None
        self._listeners = SessionListeners()
        self._watchers: set[_Watcher] = set()
        self._closed = False

    # -- plumbing --------------------------------------------------------------
    def _hop(self, fn: Callable[..., None], *args: Any) -> None:
        """From any kazoo thread: run `fn(*args)` on the loop, never blocking."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed in between: nobody to tell
            pass

    def _require_client(self) -> Any:
        if self._client is None or self._closed:
            raise TopologyUnavailable("ZooKeeper backend not started")
        return self._client

    def _translate(self, exc: BaseException, path: str = "") -> TopologyError:
        """The one place kazoo exceptions become topology errors."""
        from kazoo import exceptions as ke
        from kazoo.handlers.threading import KazooTimeoutError

        if isinstance(exc, TopologyError):
            return exc
        text = f"{type(exc).__name__}: {exc}".rstrip(": ")
        if path:
            text = f"{path}: {text}"
        if isinstance(exc, (ke.NoAuthError, ke.AuthFailedError)):
            who = f"digest user {self._auth.user!r}" if self._auth is not None else "an anonymous client"
            return NotAuthorizedError(
                f"ZooKeeper refused access to {path or 'the cluster'} for {who} ({type(exc).__name__}): "
                f"the znode's ACL does not grant this identity the permission; check the ZooKeeper "
                f"credentials this process was given"
            )
        if isinstance(exc, ke.NoNodeError):
            return NoNodeError(text)
        if isinstance(exc, ke.NodeExistsError):
            return NodeExistsError(text)
        if isinstance(exc, ke.BadVersionError):
            return BadVersionError(text)
        if isinstance(exc, ke.NotEmptyError):
            return NotEmptyError(text)
        if isinstance(
            exc,
            (
                ke.ConnectionLoss,
                ke.SessionExpiredError,  # includes ConnectionClosedError
                ke.OperationTimeoutError,
                ke.ConnectionDropped,
                ke.ZookeeperStoppedError,
                KazooTimeoutError,
                TimeoutError,
            ),
        ):
            return TopologyUnavailable(text)
        if isinstance(exc, ke.ZookeeperError) and not self.connected:
            return TopologyUnavailable(text)
        return TopologyError(text)

    async def _call(self, make: Callable[[], Any], path: str = "") -> Any:
        """Run one kazoo `*_async()` call and await its IAsyncResult on the loop."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def settle(result: Any) -> None:  # loop thread
            if fut.done():
                return
            if result.successful():
                fut.set_result(result.value)
            else:
                fut.set_exception(result.exception)

        def completed(result: Any) -> None:  # kazoo thread
            try:
                loop.call_soon_threadsafe(settle, result)
            except RuntimeError:
                pass

        try:
            make().rawlink(completed)
            async with asyncio.timeout(self._op_timeout):
                return await fut
        except TimeoutError as exc:
            raise TopologyUnavailable(f"ZooKeeper operation timed out after {self._op_timeout}s") from exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise self._translate(exc, path) from exc

    # -- session -------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._state == "connected" and not self._closed

    @property
    def client_id(self) -> tuple[int, bytes] | None:
        """(session id, password) of the current session; for tests that force expiry."""
        return None if self._client is None else self._client.client_id

    async def start(self) -> None:
        from kazoo.client import KazooClient
        from kazoo.retry import KazooRetry

        if self._client is not None and not self._closed:
            return
        self._loop = asyncio.get_running_loop()
        self._connected_evt = asyncio.Event()
        self._closed = False
        client = KazooClient(
            hosts=self._hosts,
            timeout=self._session_timeout,
            connection_retry=KazooRetry(max_tries=-1, delay=0.1, backoff=2, max_delay=_RETRY_MAX),
            auth_data=self._auth.auth_data() if self._auth is not None else None,
            default_acl=self._auth.acl() if self._auth is not None else None,
        )
        client.add_listener(self._on_kazoo_state)
        self._client = client
        try:
            await self._loop.run_in_executor(None, client.start, self._connect_timeout)
            # The CONNECTED listener call is still hopping to the loop: wait for
            # it so `connected` is True when start() returns.
            async with asyncio.timeout(self._connect_timeout):
                await self._connected_evt.wait()
        except Exception as exc:
            self._client = None
            await self._loop.run_in_executor(None, _stop_quietly, client)
            translated = self._translate(exc)
            if isinstance(translated, NotAuthorizedError):
                raise translated from exc
            raise TopologyUnavailable(f"cannot connect to ZooKeeper at {self._hosts}: {exc}") from exc

    async def close(self) -> None:
        client, self._client = self._client, None
        self._closed = True
        for w in list(self._watchers):
            w.cancel()
        self._watchers.clear()
        if client is not None:
            await asyncio.get_running_loop().run_in_executor(None, _stop_quietly, client)
        self._state = "lost"

    def _on_kazoo_state(self, state: Any) -> None:  # kazoo connection thread: must not block
        from kazoo.protocol.states import KazooState

        name = {
            KazooState.CONNECTED: "connected",
            KazooState.SUSPENDED: "suspended",
            KazooState.LOST: "lost",
        }.get(state)
        if name is not None:
            self._hop(self._set_state, name)

    def _set_state(self, name: str) -> None:  # loop thread
        if self._closed and name != "lost":
            return
        self._state = name
        if self._connected_evt is not None:
            if name == "connected":
                self._connected_evt.set()
            else:
                self._connected_evt.clear()
        if name == "connected":
            # kazoo forgets its watches on every suspension: re-read them all.
            for w in list(self._watchers):
                w.kick()
        self._listeners.emit(name)

    def add_session_listener(self, listener: SessionListener) -> Cancel:
        return self._listeners.add(listener)

    # -- operations ----------------------------------------------------------
    async def get(self, path: str) -> tuple[bytes, int]:
        client = self._require_client()
        data, stat = await self._call(lambda: client.get_async(path), path)
        return data, stat.version

    async def create(
        self,
        path: str,
        data: bytes = b"",
        *,
        ephemeral: bool = False,
        sequential: bool = False,
        makepath: bool = True,
    ) -> str:
        client = self._require_client()
        return await self._call(
            lambda: client.create_async(
                path, data, ephemeral=ephemeral, sequence=sequential, makepath=makepath
            ),
            path,
        )

    async def set(self, path: str, data: bytes, version: int) -> int:
        client = self._require_client()
        stat = await self._call(lambda: client.set_async(path, data, version), path)
        return stat.version

    async def set_fenced(self, path: str, data: bytes, version: int, fence: str) -> int:
        client = self._require_client()

        def multi() -> Any:
            t = client.transaction()
            t.check(fence, -1)  # -1: any version; fails with NoNode once the fence is gone
            if version == -1:
                t.create(path, data)
            else:
                t.set_data(path, data, version)
            return t.commit_async()

        from kazoo.exceptions import NoNodeError as KazooNoNode, RolledBackError

        results = await self._call(multi, path)
        check, write = results[0], results[1]
        if isinstance(check, Exception) and not isinstance(check, RolledBackError):
            if isinstance(check, KazooNoNode):
                raise FencedError(f"{fence} is gone: not the leader; {path} was not written")
            raise self._translate(check, fence)
        if isinstance(write, Exception):
            raise self._translate(write, path)
        return 0 if version == -1 else write.version

    async def delete(self, path: str, version: int = -1, *, recursive: bool = False) -> None:
        client = self._require_client()
        if not recursive:
            await self._call(lambda: client.delete_async(path, version), path)
            return
        if version != -1:
            _, current = await self.get(path)
            if current != version:
                raise BadVersionError(f"{path}: expected version {version}, is {current}")
        for _ in range(5):
            for child in await self.children(path):
                try:
                    await self.delete(f"{path.rstrip('/')}/{child}", recursive=True)
                except NoNodeError:
                    pass  # someone else removed it: fine
            try:
                await self._call(lambda: client.delete_async(path, version), path)
                return
            except NotEmptyError:
                continue  # a child appeared while we deleted: go round again
        raise NotEmptyError(f"{path}: children keep appearing during recursive delete")

    async def children(self, path: str) -> list[str]:
        client = self._require_client()
        return sorted(await self._call(lambda: client.get_children_async(path), path))

    async def secure_tree(self, path: str) -> int:
        """Put our ACL on `path` and every znode under it that lacks it.

        Why: a cluster that ran before ZooKeeper credentials were configured
        left world-open znodes, and a new znode only inherits nothing -- so
        without this an anonymous client could still rewrite the placement.
        Needs ADMIN on each node (world-open nodes grant it); a node owned by
        another identity raises NotAuthorizedError.  Nodes that vanish while
        we walk are skipped.
        """
        if self._auth is None:
            return 0
        client = self._require_client()
        want = self._auth.acl()
        changed = 0
        pending = [path]
        while pending:
            node = pending.pop()
            try:
                acl, _stat = await self._call(lambda n=node: client.get_acls_async(n), node)
                if not same_acl(list(acl), want):
                    await self._call(lambda n=node: client.set_acls_async(n, want), node)
                    changed += 1
                kids = await self.children(node)
            except NoNodeError:
                continue
            pending.extend(f"{node.rstrip('/')}/{k}" for k in kids)
        return changed

    # -- watches -------------------------------------------------------------
    def _watch(self, path: str, kind: str, callback: Callable[..., None]) -> Cancel:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        w = _Watcher(self, path, kind, callback)
        self._watchers.add(w)
        w.kick()

        def cancel() -> None:
            w.cancel()
            self._watchers.discard(w)

        return cancel

    def watch_data(self, path: str, callback: DataCallback) -> Cancel:
        return self._watch(path, "data", callback)

    def watch_children(self, path: str, callback: ChildrenCallback) -> Cancel:
        return self._watch(path, "children", callback)


def _stop_quietly(client: Any) -> None:
    """Blocking: stop and close a KazooClient (run in an executor)."""
    try:
        client.stop()
    finally:
        client.close()
