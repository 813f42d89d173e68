"""Sessions that are one cluster across proxies: ids, SHOW PROCESSLIST, KILL,
and the lock region's connections (issue 6; the pure rules are clusterplan.py).

`ClusterSessions` is this proxy's registry of client connections -- mysql-mimic's
`Control` (server.py asks it for each new connection's id) -- and its end of
the cluster-wide session features:

* at start it claims a proxy number in ZooKeeper (topology/proxies.py); ids
  are `number << 22 | counter`, so the owner of any id is its top bits;
* SHOW PROCESSLIST: this proxy's rows, plus every other live proxy's, asked
  for over its ZooKeeper request queue concurrently (a proxy that does not
  answer within PEER_TIMEOUT is left out and logged, not waited for);
* KILL: done here when the id is ours, else sent to the owning proxy's queue;
  the owner checks the rights (own user, or CONNECTION ADMIN / SUPER) and
  either KILLs the session's in-flight statements on the regions (MariaDB
  answers the client 1317 itself and the transaction survives, as MariaDB
  does) or cancels the connection (its client reads 1927, then EOF);
* the lock region: when it changes, the connections sessions hold there are
  dropped, so their locks are lost as on a crash of that server, and never
  held in two places at once.

Why ZooKeeper queues and not proxy-to-proxy sockets: every proxy already has
an authenticated session there (the cluster's ACL'd identity), nothing new
listens, and a KILL or a process list is rare -- none of this is on the
statement path, which pays one attribute write per command (wire.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mysql_mimic.constants import KillKind
from mysql_mimic.types import Commands

from minisql.errors import ER_CONNECTION_KILLED, ER_QUERY_INTERRUPTED, ER_UNKNOWN, SqlError
from topology import CallTimeout, Topology, TopologyError
from topology.proxies import ProxyInfo, ProxyRegistration, call_proxy, list_proxies, watch_proxies

from .clusterplan import (
    INFO_FULL_CAP,
    ConnectionIds,
    global_privileges,
    lock_region,
    may_kill_any,
    may_see_all,
    not_owner,
    owner_of,
    processlist_result,
    trim_info,
    unknown_thread,
)
from .commit import PROXY_TOKEN
from .engine import Reply, ok
from .planner import RoutingSnapshot

log = logging.getLogger(__name__)

PEER_TIMEOUT = 3.0  # seconds another proxy has to answer a process-list request
KILL_TIMEOUT = 10.0

_COMMAND_NAMES = {
    Commands.COM_QUERY: "Query", Commands.COM_STMT_EXECUTE: "Execute", Commands.COM_STMT_PREPARE: "Prepare",
    Commands.COM_STMT_FETCH: "Fetch", Commands.COM_INIT_DB: "Init DB", Commands.COM_FIELD_LIST: "Field List",
    Commands.COM_PING: "Ping", Commands.COM_CHANGE_USER: "Change user", Commands.COM_RESET_CONNECTION: "Reset connection",
    Commands.COM_STMT_RESET: "Reset stmt", Commands.COM_STMT_CLOSE: "Close stmt",
    Commands.COM_STMT_SEND_LONG_DATA: "Long Data", Commands.COM_PROCESS_KILL: "Kill",
}
_BACKGROUND: set[asyncio.Future[Any]] = set()


def _in_background(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    _BACKGROUND.add(task)  # outlives the request; keep a reference until done
    task.add_done_callback(_BACKGROUND.discard)


class ClusterSessions:
    """This proxy's client connections and the cluster-wide session features."""

    def __init__(self, topology: Topology, routing: Any, host: str, port: int, metrics_port: int = 0) -> None:
        self.topology = topology
        self.routing = routing
        self.connections: dict[int, Any] = {}  # connection id -> wire.ProxyConnection
        self.ids = ConnectionIds(0)
        self.proxies: dict[int, ProxyInfo] = {}
        # The instance token is also the proxy's part of every XA gtrid (commit.py): the
        # resolver tells a dead proxy's prepared transactions by it and settles them at once.
        self._info = ProxyInfo(0, host, port, metrics_port, instance=PROXY_TOKEN)
        self.registration: ProxyRegistration | None = None
        self._cancel_watch: Any = None
        self._lock_region: str | None = None

    @property
    def number(self) -> int:
        return self.ids.number

    async def start(self) -> None:
        """Claim a proxy number and serve this proxy's queue (before clients connect)."""
        if self.registration is None:  # one registration across retries (retry_until_stopped)
            self.registration = ProxyRegistration(self.topology, self._info, on_number=self.ids.renumber)
        self.ids.renumber(await self.registration.claim())
        self.registration.serve(self._handle)
        self._cancel_watch = watch_proxies(self.topology, self._on_proxies)
        self._lock_region = lock_region(self.routing.snapshot)
        self.routing.listeners.append(self._on_routing)
        self.routing.on_drained = self.registration.acknowledge
        self.routing.acknowledge_when_drained()
        log.info("proxy number %d: connection ids %d..", self.number, self.number << 22)

    async def close(self) -> None:
        self.routing.on_drained = None
        if self._on_routing in self.routing.listeners:
            self.routing.listeners.remove(self._on_routing)
        if self._cancel_watch is not None:
            self._cancel_watch()
        if self.registration is not None:
            await self.registration.release()

    def _on_proxies(self, proxies: dict[int, ProxyInfo]) -> None:
        self.proxies = proxies

    # -- mysql-mimic's Control (server.py) ----------------------------------------------------
    async def add(self, connection: Any) -> int:
        connection_id = self.ids.next(self.connections)
        self.connections[connection_id] = connection
        connection.command_since = asyncio.get_running_loop().time()
        return connection_id

    async def remove(self, connection_id: int) -> None:
        self.connections.pop(connection_id, None)

    async def kill(self, session: Any, target: int, query: bool) -> Reply:
        """KILL [QUERY] target for `session` (wherever the target lives)."""
        own = session.connection
        account = session.account
        admin = may_kill_any(self._privileges(session))
        if own is not None and target == own.connection_id:
            if query:
                raise SqlError(ER_QUERY_INTERRUPTED, "Query execution was interrupted", "70100")
            # MariaDB answers its own KILL with 1927 and closes; the wire layer
            # closes the connection after writing this error.
            raise SqlError(ER_CONNECTION_KILLED, "Connection was killed", "70100")
        number = owner_of(target)
        if number == self.number:
            self._kill_here(target, query, account.user, admin)
            return ok()
        peer = self.proxies.get(number)
        if peer is None:  # the watch may lag a proxy that just started
            peer = (await self._fresh_proxies()).get(number)
        if peer is None:
            raise unknown_thread(target)
        try:
            answer = await call_proxy(self.topology, peer, {"op": "kill", "id": target, "query": query,
                                                          "user": account.user, "admin": admin}, timeout=KILL_TIMEOUT)
        except CallTimeout:
            raise SqlError(ER_UNKNOWN, f"Proxy {number}, which owns thread {target}, did not answer the KILL within {KILL_TIMEOUT:.0f} s")
        except TopologyError as e:
            raise SqlError(ER_UNKNOWN, f"Cannot reach ZooKeeper to KILL thread {target}: {e}")
        if "error" in answer:
            raise SqlError.from_dict(answer["error"])
        return ok()

    def _kill_here(self, target: int, query: bool, user: str, admin: bool) -> None:
        conn = self.connections.get(target)
        if conn is None:
            raise unknown_thread(target)
        owner = conn.account.user if conn.account is not None else None
        if not admin and owner != user:
            raise not_owner(target)
        session = conn.session
        running = [t for t in session.running_statements() if _in_flight(session, t[0])]
        if query:
            if conn.command is None:
                return  # idle: nothing to interrupt (MariaDB: a no-op)
            if running:
                # MariaDB interrupts the statement and answers the client 1317 itself,
                # through the proxy; the connection and the transaction stay.
                _in_background(session.kill_statements(running))
            else:  # waiting in the proxy (a pool, the master): interrupt it here
                conn.kill(KillKind.QUERY)
            return
        conn.kill(KillKind.CONNECTION)
        if running:  # the cancel closes the session's sockets; the statements must stop too
            _in_background(session.kill_statements(running))

    async def processlist(self, session: Any, full: bool) -> Reply:
        """SHOW [FULL] PROCESSLIST: every live proxy's sessions (see module docstring)."""
        user = None if may_see_all(self._privileges(session)) else session.account.user
        rows = self.rows(user, full)
        peers = [p for n, p in self.proxies.items() if n != self.number]
        answers = await asyncio.gather(*(self._ask_rows(p, user, full) for p in peers))
        for answer in answers:
            rows.extend(answer)
        return Reply(processlist_result(rows))

    async def _ask_rows(self, peer: ProxyInfo, user: str | None, full: bool) -> list[list[Any]]:
        try:
            answer = await call_proxy(self.topology, peer, {"op": "processlist", "user": user, "full": full},
                                      timeout=PEER_TIMEOUT)
        except (CallTimeout, TopologyError) as e:
            log.warning("SHOW PROCESSLIST: proxy %d (%s:%d) did not answer: %s", peer.number, peer.host, peer.port, e)
            return []
        if "error" in answer:
            log.warning("SHOW PROCESSLIST: proxy %d answered an error: %s", peer.number, answer["error"])
            return []
        return [list(r) for r in answer.get("rows", [])]

    def rows(self, user: str | None, full: bool) -> list[list[Any]]:
        """This proxy's sessions as SHOW PROCESSLIST rows (only `user`'s unless None)."""
        now = asyncio.get_running_loop().time()
        out = []
        for connection_id, conn in list(self.connections.items()):
            account = conn.account
            if user is not None and (account is None or account.user != user):
                continue
            command, info = _command_and_info(conn)
            state = None if command in ("Sleep", "Connect") else "Executing"
            out.append([connection_id, account.user if account is not None else "unauthenticated user", _host(conn),
                        conn.session.state.database, command, max(0, int(now - conn.command_since)), state,
                        trim_info(info, full), 0.0])
        return out

    # -- requests from other proxies (topology/proxies.py serves them one at a time) -------------
    async def _handle(self, payload: dict[str, Any]) -> dict[str, Any]:
        op = payload.get("op")
        try:
            if op == "processlist":
                user = payload.get("user")
                return {"rows": self.rows(None if user is None else str(user), bool(payload.get("full")))}
            if op == "kill":
                self._kill_here(int(payload["id"]), bool(payload.get("query")), str(payload.get("user")),
                                bool(payload.get("admin")))
                return {"ok": True}
        except SqlError as e:
            return {"error": e.to_dict()}
        return {"error": SqlError(ER_UNKNOWN, f"unknown proxy request {op!r}").to_dict()}

    async def _fresh_proxies(self) -> dict[int, ProxyInfo]:
        try:
            self.proxies = await list_proxies(self.topology)
        except TopologyError as e:
            log.warning("could not list the proxies: %s", e)
        return self.proxies

    def _privileges(self, session: Any) -> frozenset[str]:
        account = session.account
        record = session.admin.accounts.snapshot.get(account.user, account.host) if account is not None else None
        return global_privileges(record.grants) if record is not None else frozenset()

    # -- the lock region -----------------------------------------------------------------------
    def _on_routing(self, snap: RoutingSnapshot) -> None:
        region = lock_region(snap)
        if region == self._lock_region:
            return
        old, self._lock_region = self._lock_region, region
        log.warning("lock region changed from %s to %s: user-level locks held on %s are lost", old, region, old)
        for conn in list(self.connections.values()):
            state = conn.session.state
            if state.lock_region is not None and state.lock_region != region:
                conn.session.drop_region(state.lock_region)
                state.lock_region = None


def _in_flight(session: Any, region: str) -> bool:
    conn = session.backends.conns.get(region)
    return conn is not None and conn.in_flight


def _host(conn: Any) -> str:
    peer = conn.stream.writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return conn.client_host


def _command_and_info(conn: Any) -> tuple[str, str | None]:
    data = conn.command
    if conn.account is None:
        return "Connect", None
    if data is None:
        return "Sleep", None
    name = _COMMAND_NAMES.get(data[0], "Query")
    if data[0] == Commands.COM_QUERY:
        return name, data[1:1 + 4 * INFO_FULL_CAP].decode(conn.client_charset.codec, "surrogateescape")
    if data[0] == Commands.COM_STMT_EXECUTE and len(data) >= 5:
        stmt = conn.session.statements.get(int.from_bytes(data[1:5], "little"))
        return name, stmt.sql if stmt is not None else None
    return name, None
