"""The one interface between engine primitives and the world (`VCursor`).

`CursorBase` holds what is the same for the real cursor and the unit tests'
logging fake: a statement about to run on a region first joins the open
transaction there (BEGIN with the session's begin statement, then the
savepoints still open), as decided by the session state.  `SessionCursor` is
the real one: backend connections of the session (`SessionBackends`), the
master for DDL, the account administration.

Each client session pins at most one connection per region for its lifetime
(no multiplexing yet), so session variables, user variables, temporary state
and open transactions behave as on a single MariaDB.  Connections opened
later replay the session's SETs and its default database.

Error handling: an ERR packet becomes the client's SqlError (the connection
is fine); a broken connection (BackendLost) is dropped and becomes 2013; if
it held part of the open transaction, the next statement on that region gets
2013 too (the transaction is gone there) until the client ends it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from minisql.errors import (CR_CONN_HOST_ERROR, CR_SERVER_LOST, ER_ACCESS_DENIED, ER_LOCK_WAIT_TIMEOUT, ER_NO_SUCH_TABLE,
                            ER_UNKNOWN, SqlError)
from minisql.xa import COMMIT, CREATE_DECISIONS, DECISIONS
from topology import CallTimeout, TopologyError

from . import metrics
from .backend import BackendConnection, BackendError, BackendLogin, BackendLost, QueryResult, ResultStream
from .clusterplan import warnings_result
from .engine import Reply
from .localinfile import ClientFile, capability_disabled
from .planner import RegionUnavailable, RoutingSnapshot
from .pool import BackendPool
from .sessionstate import SessionState
from .settle import settle_later

log = logging.getLogger(__name__)

DDL_TIMEOUT = 60.0
WRITE_LEASE_WAIT = 10.0  # seconds a write waits for a suspended ZooKeeper session (routing.py)


class SessionBackends:
    """The backend connections of one client session, one per region."""

    def __init__(self, pool: BackendPool) -> None:
        self.pool = pool
        self.conns: dict[str, BackendConnection] = {}
        self.last: BackendConnection | None = None
        self.sql_encoding = "utf8"  # the client's charset codec (ProxySession.set_charset)
        self.found_rows = False  # the client asked for CLIENT_FOUND_ROWS
        self.login: BackendLogin | None = None  # the client's region account (set at login)

    def open_regions(self) -> tuple[str, ...]:
        return tuple(r for r, c in self.conns.items() if not c.closed)

    async def get(self, region: str, snap: RoutingSnapshot, state: SessionState) -> BackendConnection:
        """The session's connection to `region`: opened (replaying the session's
        SETs) when needed, with the session's default database selected."""
        conn = self.conns.get(region)
        if conn is None or conn.closed:
            if region in state.broken:
                raise SqlError(CR_SERVER_LOST, f"Lost connection to region '{region}' during the transaction")
            info = snap.regions.get(region)
            if info is None:
                raise RegionUnavailable(region)
            if self.login is None:  # never fall back to the proxy's own account
                raise SqlError(ER_ACCESS_DENIED, "Access denied: the session has no authenticated account")
            if conn is not None:
                conn.close()
            conn = await self.pool.acquire(region, info.host, info.mysql_port, self.login, found_rows=self.found_rows)
            metrics.BACKEND_CONNECTS.labels(region).inc()
            conn.sql_encoding = self.sql_encoding
            self.conns[region] = conn
            for stmt in state.replay.values():
                await self.call(conn, conn.run(stmt), state)
        if state.database is not None and state.database != conn.current_db:
            try:
                await self.call(conn, conn.use(state.database), state)
            except SqlError as e:
                if e.errno != 1049:
                    raise
                # The region holds no table of this database; statements that
                # name no table still run there, with no default database.
        return conn

    async def call(self, conn: BackendConnection, call: Any, state: SessionState) -> Any:
        """Await one backend call: an ERR packet becomes the client's SqlError; a
        broken connection is dropped (the state learns the transaction lost a
        participant) and becomes 2013."""
        try:
            return await call
        except BackendError as e:
            raise e.to_sql_error()
        except (BackendLost, OSError) as e:
            raise self.lost(conn, state, e) from None

    def lost(self, conn: BackendConnection, state: SessionState, e: Exception) -> SqlError:
        """A broken connection: dropped, the state told (the transaction lost a participant); 2013."""
        state.lost(conn.region_id)
        self.drop(conn.region_id)
        return SqlError(CR_SERVER_LOST, f"Lost connection to region '{conn.region_id}' during query: {e}")

    def any_region(self, snap: RoutingSnapshot) -> str:
        if self.last is not None and not self.last.closed and self.last.region_id in snap.regions:
            return self.last.region_id
        for region in self.open_regions():
            if region in snap.regions:
                return region
        if not snap.regions:
            raise SqlError(CR_CONN_HOST_ERROR, "No region is available")
        # Not one that just refused a connection (it may be dying: its registration
        # lapses only after the ZooKeeper session timeout), unless no other is left.
        answering = sorted(r for r in snap.regions if not self.pool.recently_refused(r))
        return random.choice(answering or sorted(snap.regions))

    def drop(self, region: str) -> None:
        conn = self.conns.pop(region, None)
        if conn is not None:
            conn.close()
        if self.last is conn:
            self.last = None

    def close(self) -> None:
        """Give the connections back to the pool (it resets or closes them)."""
        for conn in self.conns.values():
            self.pool.release(conn)
        self.conns.clear()
        self.last = None


class CursorBase:
    """The transaction-joining rule shared by the real cursor and the fake."""

    state: SessionState
    snapshot: RoutingSnapshot

    async def _run(self, region: str, sql: str, prefix: str = "", infile: Any = None) -> QueryResult:
        raise NotImplementedError

    async def _stream(self, region: str, sql: str) -> ResultStream:
        raise NotImplementedError

    async def join(self, region: str) -> None:
        state = self.state
        if state.needs_join(region):
            xid = state.xa_branch(region)
            xa = False
            if xid is not None:
                try:
                    await self._run(region, f"XA START {xid.sql()}")
                    xa = True
                except SqlError as e:
                    if e.errno == CR_SERVER_LOST or state.app_xid is not None:
                        raise  # (the client's own XA branch never falls back to a plain transaction)
                    # The connection is in a state XA START refuses (1399/1400): this
                    # participant commits with the plain statements, as before XA.
                    log.warning("XA START on %s refused (%s): joining without XA", region, e)
                    metrics.XA_FALLBACK.inc()
            if not xa:
                await self._run(region, state.tx.begin_sql)
            for name in state.tx.savepoints:
                await self._run(region, f"SAVEPOINT `{name.replace('`', '``')}`")
            state.joined(region, xa)

    async def pipeline(self, region: str, statements: tuple[str, ...]) -> list[QueryResult | SqlError]:
        """Small statements sent to `region` together, one round trip (commit.py:
        XA END + XA PREPARE): each one's result or SqlError, in order.  Never joins."""
        raise NotImplementedError

    async def run(self, region: str, sql: str, *, join: bool = True, prefix: str = "", infile: Any = None) -> QueryResult:
        """`prefix` + `sql` on `region` (kept apart: a big statement sent to
        several regions with different prefixes is encoded once, never joined);
        `infile`: the LOAD DATA LOCAL file, should the region ask for it."""
        if join:
            await self.join(region)
        return await self._run(region, sql, prefix, infile)

    async def stream(self, region: str, sql: str) -> ResultStream:
        await self.join(region)
        return await self._stream(region, sql)


class SessionCursor(CursorBase):
    """The real VCursor of one statement: the session's backends at one snapshot."""

    def __init__(self, session: Any, snapshot: RoutingSnapshot) -> None:
        self.session = session
        self.state = session.state
        self.snapshot = snapshot
        self.backends: SessionBackends = session.backends
        self._encoded: tuple[str, str, bytes] | None = None  # (sql, encoding, bytes) of the last big statement

    def _body(self, sql: str, encoding: str) -> str | bytes:
        """A big statement's bytes, encoded once for all the regions it goes to."""
        if len(sql) < 1 << 16:
            return sql
        kept = self._encoded
        if kept is not None and kept[0] is sql and kept[1] == encoding:
            return kept[2]
        body = sql.encode(encoding, "surrogateescape")
        self._encoded = (sql, encoding, body)
        return body

    async def _run(self, region: str, sql: str, prefix: str = "", infile: Any = None) -> QueryResult:
        backends = self.backends
        conn = await backends.get(region, self.snapshot, self.state)
        backends.last = conn
        return await self.call(conn, conn.run(self._body(sql, conn.sql_encoding), prefix, infile))

    async def pipeline(self, region: str, statements: tuple[str, ...]) -> list[QueryResult | SqlError]:
        backends = self.backends
        conn = await backends.get(region, self.snapshot, self.state)
        backends.last = conn
        results = await self.call(conn, conn.pipeline(statements))
        return [r.to_sql_error() if isinstance(r, BackendError) else r for r in results]

    def settle_later(self, gtrid: str, branches: tuple[str, ...], outcome: str | None) -> None:
        """Finish a two-phase commit whose outcome was lost, in the background (settle.py)."""
        routing = self.session.routing
        settle_later(self.backends.pool, lambda: routing.snapshot.regions, gtrid, branches, outcome)

    @property
    def holds_lease(self) -> bool:
        return self.session.routing.holds_lease

    async def wait_for_lease(self) -> None:
        """A write while the proxy's ZooKeeper session is suspended: it waits up
        to WRITE_LEASE_WAIT for the session (and any failover it missed), then 2003."""
        if not await self.session.routing.wait_for_lease(WRITE_LEASE_WAIT):
            raise SqlError(CR_CONN_HOST_ERROR, "The proxy lost its ZooKeeper session: writes are paused until it is "
                                               "back (a failover may be in progress); try again")
        metrics.WRITES_HELD.inc()

    async def decide(self, region: str, gtrid: str) -> None:
        """The commit decision of `gtrid` (commit.py): its row in `region`'s
        decision table, on the proxy's internal account (the client's may
        not write there), in a transaction of its own."""
        info = self.session.routing.snapshot.regions.get(region) or self.snapshot.regions.get(region)
        if info is None:
            raise SqlError(CR_CONN_HOST_ERROR, f"Region '{region}' is not available to record the commit decision")
        pool = self.backends.pool
        conn = await pool.acquire_internal(region, info.host, info.mysql_port)
        insert = f"INSERT INTO {DECISIONS} (gtrid, outcome) VALUES ('{gtrid}', '{COMMIT}')"
        try:
            try:
                await conn.run(insert)
            except BackendError as e:
                if e.errno != ER_NO_SUCH_TABLE:
                    raise
                await conn.run(CREATE_DECISIONS)  # a region whose agent has not made it yet
                await conn.run(insert)
        except BackendError as e:
            raise e.to_sql_error()
        except (BackendLost, OSError) as e:
            conn.close()
            raise SqlError(CR_SERVER_LOST, f"Lost connection to region '{region}' recording the commit decision: {e}") from None
        finally:
            pool.release_internal(conn)

    def text_codec(self) -> str:
        return self.backends.sql_encoding

    def client_status(self, global_scope: bool) -> dict[str, str]:
        """The status variables the proxy answers: this proxy's client connection
        counters, and in session scope those about the client's own connection."""
        counters = metrics.CLIENT_STATUS.variables()
        connection = self.session.connection
        if global_scope or connection is None:
            return counters
        ssl_object = connection.stream.writer.get_extra_info("ssl_object") if connection.secure else None
        return {
            **counters,
            "Compression": "ON" if connection.stream.compressed else "OFF",
            "Ssl_cipher": ssl_object.cipher()[0] if ssl_object is not None else "",
            "Ssl_version": ssl_object.version() if ssl_object is not None else "",
        }

    def local_infile(self, keep: bool) -> ClientFile:
        """The client's file for LOAD DATA LOCAL (4166 if it did not offer one)."""
        connection = self.session.connection
        if connection is None or not connection.local_files:
            raise capability_disabled()
        return ClientFile(connection.read_local_file, keep)

    async def _stream(self, region: str, sql: str) -> ResultStream:
        backends = self.backends
        conn = await backends.get(region, self.snapshot, self.state)
        backends.last = conn
        return await self.call(conn, conn.query_stream(sql.encode(conn.sql_encoding, "surrogateescape")))

    async def stream(self, region: str, sql: str) -> ResultStream:
        """CursorBase.stream, flattened for the fast path (a read on an open
        connection outside a transaction): every coroutine level here is
        re-entered on each wake-up of the statement."""
        conn = await self.connection(region)
        try:
            return await conn.query_stream(sql.encode(conn.sql_encoding, "surrogateescape"))
        except BackendError as e:
            raise e.to_sql_error()
        except (BackendLost, OSError) as e:
            raise self.backends.lost(conn, self.state, e) from None

    async def connection(self, region: str) -> BackendConnection:
        """The session's connection to `region`, in the open transaction there,
        with the session's database: the last connection this statement used."""
        state = self.state
        if state.tx.active and region not in state.participants:
            await self.join(region)
        backends = self.backends
        conn = backends.conns.get(region)
        if conn is None or conn.closed or (state.database is not None and state.database != conn.current_db):
            conn = await backends.get(region, self.snapshot, state)
        backends.last = conn
        return conn

    async def call(self, conn: BackendConnection, call: Any) -> Any:
        """SessionBackends.call with this statement's session state."""
        return await self.backends.call(conn, call, self.state)

    def drop(self, region: str) -> None:
        self.state.lost(region)
        self.backends.drop(region)

    def any_region(self) -> str:
        return self.backends.any_region(self.snapshot)

    def current_snapshot(self) -> RoutingSnapshot:
        return self.session.routing.snapshot

    def last_region(self) -> str | None:
        last = self.backends.last
        if last is not None and not last.closed and last.region_id in self.snapshot.regions:
            return last.region_id
        return None

    def open_regions(self) -> tuple[str, ...]:
        return self.backends.open_regions()

    def set_charset(self, name: str) -> None:
        self.session.set_charset(name)

    def set_idle_timeout(self, seconds: float) -> None:
        """The client's SET wait_timeout: how long its connection may stay idle."""
        connection = self.session.connection
        if connection is not None and seconds > 0:
            connection.stream.timeout = seconds

    async def account_statement(self, sql: str) -> Reply:
        return await self.session.admin.execute(self.session, sql)

    async def show_grants(self, sql: str) -> Reply:
        return await self.session.admin.show_grants(self.session, sql)

    async def kill(self, target: int, query: bool) -> Reply:
        return await self._cluster().kill(self.session, target, query)

    async def processlist(self, full: bool) -> Reply:
        return await self._cluster().processlist(self.session, full)

    def _cluster(self) -> Any:
        cluster = self.session.cluster
        if cluster is None:  # a session made without the proxy's registry (tools, tests)
            raise SqlError(ER_UNKNOWN, "KILL and SHOW PROCESSLIST need the proxy's session registry")
        return cluster

    async def colocate(self, table: tuple[str, str], others: tuple[tuple[str, str], ...]) -> None:
        """Ask the master to keep `others` on `table`'s regions (moving them if
        apart); returns once this proxy sees the placement that says so."""
        await self._master({"op": "colocate", "table": list(table), "with": [list(o) for o in others]})

    async def ddl(self, sql: str, statement_vars: str = "") -> Reply:
        """DDL through the master's queue, as the client; waits until this proxy
        sees the placement the DDL produced."""
        result = await self._master(
            {"op": "ddl", "sql": sql, "database": self.state.database, "account": self.session.account_ref(),
             "statement_vars": statement_vars, "session_sets": self.state.ddl_settings(),
             "charset": str(self.session.variables.get("character_set_client"))})
        warnings = result.get("warnings") or []
        if warnings:  # what SHOW WARNINGS answers next (the regions that ran it are not the session's)
            self.state.warnings = warnings_result(warnings)
        return Reply(QueryResult(None, [], int(result.get("affected_rows", 0)), 0, len(warnings), 0, b""))

    async def _master(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request on the master's queue; its result once this proxy sees the
        placement it produced.  A refusal is raised (and kept for SHOW WARNINGS:
        the regions that ran it are not the session's)."""
        session = self.session
        try:
            async with session.not_counted():  # (a table move it causes may wait for this proxy's acknowledgement)
                result = await session.topology.call("master", request, timeout=DDL_TIMEOUT)
        except CallTimeout:
            raise SqlError(ER_LOCK_WAIT_TIMEOUT, f"No master answered within {DDL_TIMEOUT:.0f} s (is a master running?)")
        except TopologyError as e:
            raise SqlError(ER_UNKNOWN, f"Cannot reach ZooKeeper to reach the master: {e}")
        if "error" in result:
            error = SqlError.from_dict(result["error"])
            self.state.warnings = warnings_result([{"level": "Error", "code": error.errno, "message": error.message}])
            raise error
        version = int(result.get("placement_version", -1))
        try:
            await session.routing.wait_for_epoch(version)
        except asyncio.TimeoutError:
            log.warning("placement version %d not seen after a master request; answering anyway", version)
        return result
