"""One client session: the thin shell between the wire and the statement engine.

Built on mysql-mimic's `BaseSession`, which receives raw SQL without parsing
it (mimic's full `Session` parses every statement and answers BEGIN, SET,
SHOW... itself with fakes).  Per statement, down the layers and never back:

    classify (regex) -> plan_statement (pure; planbuilder.py) -> a primitive
    -> primitive.execute(SessionCursor) (engine.py, cursor.py) -> Reply

All per-session state is in `self.state` (sessionstate.py): transaction,
participants, database, SET replay, LAST_INSERT_ID(), prepared statements.
This class holds what is not session *state* but session *plumbing*: the
backend connections, the account, mimic's variables (charset), the routing
table and the master.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import Any, AsyncIterator

from mysql_mimic.charset import CharacterSet
from mysql_mimic.session import BaseSession
from mysql_mimic.types import Capabilities
from mysql_mimic.variables import GlobalVariables, SessionVariables

from minisql.errors import ER_LOCK_DEADLOCK, ER_UNKNOWN, SqlError, unsupported
from topology import Topology

from . import metrics
from .accounts import AccountAdmin
from .auth import Account
from .backend import BackendError, BackendLost, QueryResult
from .commit import PROXY_TOKEN
from .cursor import SessionBackends, SessionCursor
from .engine import EveryRegion, FanOutWrite, Primitive, Reply, Route, ShowWarnings, end_transaction
from .planbuilder import SHARED_PRIMITIVES, STATE_DEPENDENT, PrimitiveCache, plan_statement
from .fillguard import FILL_WAIT, FillInProgress
from .planner import RegionUnavailable, WritesApart, plan_use_database
from .pool import BackendPool
from .prepared import (
    ExecuteRequest,
    PreparedStatement,
    Route as PsRoute,
    backend_execute_payload,
    interpolate,
    param_definition,
    param_literals,
    placeholder_positions,
)
from .routing import RoutingTable
from .sessionstate import SessionState
from .statements import BIG_STATEMENT, DML_KINDS, AnalysisCache, Kind, classify, unwrap_executable_comments
from .txn import Event
from .verdict import ASK_SERVER, server_verdict

FAILOVER_BUFFER = 10.0  # seconds a statement waits for a failover (_after_failover)
BUFFER_POLL = 0.25  # ... re-planned on each new snapshot, and this often (a restarting MariaDB)
MAX_BUFFERED = 1000  # statements held at once per proxy

log = logging.getLogger(__name__)


class ProxySession(BaseSession):
    """One client connection; see the module docstring."""

    def __init__(self, routing: RoutingTable, pool: BackendPool, topology: Topology, cache: AnalysisCache, version: str,
                 admin: AccountAdmin, cluster: Any = None, primitives: PrimitiveCache = SHARED_PRIMITIVES) -> None:
        self.primitives = primitives
        self.variables = SessionVariables(GlobalVariables())
        self.variables.set("version", version, force=True)
        self.username: str | None = None
        self.account: Account | None = None
        self.admin = admin
        self.routing = routing
        self.topology = topology
        self.cache = cache
        self.state = SessionState(xa_token=PROXY_TOKEN)
        self.backends = SessionBackends(pool)
        self.connection: Any = None
        self.cluster = cluster  # cluster.ClusterSessions: KILL and SHOW PROCESSLIST across proxies
        self.counted_epoch: int | None = None  # the epoch the running statement is counted under (routing.py)
        metrics.SESSIONS.inc()

    # -- views of the state (wire.py and accounts.py read these) -----------------------------
    @property
    def database(self) -> str | None:
        return self.state.database

    @database.setter
    def database(self, value: str | None) -> None:
        self.state.use(value or None)

    @property
    def tx(self) -> Any:
        return self.state.tx

    @property
    def statements(self) -> dict[int, PreparedStatement]:
        return self.state.statements

    @property
    def server_status(self) -> int:
        return self.state.server_status

    def authenticated(self, account: Account) -> None:
        """The client logged in (or changed user) as `account`: its statements run as it."""
        self.username = account.user
        self.account = account
        self.backends.login = self.backends.pool.login_for(account.user, account.host)

    def account_ref(self) -> dict[str, str]:
        """Who the master's region tasks run this session's DDL as."""
        if self.account is None:
            raise SqlError(1045, "Access denied: the session has no authenticated account", "28000")
        return {"user": self.account.user, "host": self.account.host}

    def cursor(self) -> SessionCursor:
        return SessionCursor(self, self.routing.snapshot)

    # -- mimic hooks ------------------------------------------------------------
    async def init(self, connection: Any) -> None:
        self.connection = connection
        self.state.connection_id = connection.connection_id
        self.backends.found_rows = Capabilities.CLIENT_FOUND_ROWS in connection.capabilities
        handshake_charset = str(self.variables.get("character_set_client"))
        if handshake_charset != "utf8mb4":
            self.set_charset(handshake_charset)
        if self.database:
            # CLIENT_CONNECT_WITH_DB: validate the database named at login.
            plan_use_database(self.database, self.routing.snapshot)

    def running_statements(self) -> list[tuple[str, Any, int]]:
        """(region, RegionInfo, MariaDB thread id) of each open backend connection."""
        snap = self.routing.snapshot
        out = []
        for region, conn in self.backends.conns.items():
            info = snap.regions.get(region)
            if info is not None and conn.thread_id and conn.is_open:
                out.append((region, info, conn.thread_id))
        return out

    async def kill_statements(self, targets: list[tuple[str, Any, int]]) -> None:
        """KILL QUERY on each target, from the proxy's own account (a dropped
        client's statement would otherwise keep running on the region)."""
        pool = self.backends.pool
        for region, info, thread_id in targets:
            try:
                killer = await pool.acquire(region, info.host, info.mysql_port, pool.internal)
                try:
                    await killer.run(f"KILL QUERY {thread_id}")
                finally:
                    pool.release(killer)
            except Exception as e:  # noqa: BLE001 - best effort; the statement's own timeout remains
                log.warning("could not kill the statement of a dropped client on %s: %s", region, e)

    async def close(self) -> None:
        metrics.SESSIONS.dec()
        if self.state.tx.active:
            metrics.TRANSACTIONS.labels("disconnect").inc()
        self._drop_lock_connection()
        self._drop_app_xa_connections()
        self.backends.close()

    def _drop_app_xa_connections(self) -> None:
        """Close (never pool) the connections of the client's own XA
        transaction: MariaDB then rolls back an ACTIVE or IDLE branch and
        detaches a PREPARED one, which any session may then finish (appxa.py)."""
        if self.state.app_xa:
            for region in list(self.state.participants):
                self.backends.drop(region)
            self.state.xa_finish()

    def _drop_lock_connection(self) -> None:
        """Close (never pool) the connection that ran lock functions: MariaDB then
        releases the session's GET_LOCK locks, whatever a pool reset would do."""
        if self.state.lock_region is not None:
            self.backends.drop(self.state.lock_region)
            self.state.lock_region = None

    async def reset(self, keep_database: bool = False) -> None:
        """COM_RESET_CONNECTION / COM_CHANGE_USER: roll back, let go of every
        backend connection, start from a fresh state (COM_RESET_CONNECTION
        keeps the default database, as MariaDB does)."""
        database = self.state.database
        self._drop_app_xa_connections()
        if self.state.tx.active:
            try:
                await end_transaction(self.cursor(), self.state.on(Event.ROLLBACK))
            except SqlError:
                pass
        self._drop_lock_connection()
        old = self.backends
        old.close()
        self.backends = SessionBackends(old.pool)
        self.backends.found_rows = old.found_rows
        self.backends.login = old.login
        self.state.reset()
        if keep_database:
            self.state.use(database)
        self.set_charset(str(self.variables.get("character_set_client")))

    async def use(self, database: str) -> None:
        plan_use_database(database, self.routing.snapshot)
        self.state.use(database)

    def drop_region(self, region: str) -> None:
        """A backend connection broke outside a primitive (mid-relay)."""
        self.state.lost(region)
        self.backends.drop(region)

    async def handle_query(self, sql: str, attrs: dict[str, str]) -> Any:  # pragma: no cover - wire uses execute()
        raise SqlError(ER_UNKNOWN, "internal: ProxySession is driven through execute()")

    def set_charset(self, name: str) -> None:
        """Make the client's character set the session's, end to end.

        mimic decodes the client's SQL with `character_set_client`; backend
        connections get `SET NAMES <name>` and re-encode the SQL with the same
        codec, so the bytes MariaDB receives are the bytes the client sent, and
        results (relayed raw) come back in the charset the client asked for.
        """
        name = name.strip().strip("'\"`").lower()
        if name == "utf8mb3":
            name = "utf8"
        if name not in CharacterSet.__members__:
            raise unsupported(f"the character set '{name}' through the gateway")
        codec = CharacterSet[name].codec
        for var in ("character_set_client", "character_set_results", "character_set_connection"):
            self.variables.set(var, name, force=True)
        self.backends.sql_encoding = codec
        for conn in self.backends.conns.values():
            conn.sql_encoding = codec
        if name != "utf8mb4" and "names" not in self.state.replay:
            self.state.record_set("names", f"SET NAMES {name}")

    # -- the statement path -------------------------------------------------------
    async def execute(self, sql: str, cursor: SessionCursor | None = None, planned: Primitive | None = None) -> Reply:
        """One statement (`planned`: its primitive at `cursor`'s snapshot, a
        prepared statement's kept plan)."""
        if cursor is None:
            cursor = self.cursor()
        epoch, inflight = cursor.snapshot.epoch, self.routing.inflight  # (routing.py: epoch acknowledgement)
        inflight[epoch] = inflight.get(epoch, 0) + 1
        self.counted_epoch = epoch
        try:
            return await self._execute(sql, cursor, planned)
        finally:
            self.counted_epoch = None
            left = inflight[epoch] - 1
            if left:
                inflight[epoch] = left
            else:
                del inflight[epoch]

    async def _execute(self, sql: str, cursor: SessionCursor, planned: Primitive | None) -> Reply:
        if "/*" in sql and "!" in sql:
            sql = unwrap_executable_comments(sql)  # /*!40101 SET ... */: what mysqldump writes
        snapshot, database = cursor.snapshot, self.state.database
        shared = not self.state.temp_tables  # a temporary table changes what a name means for this session only
        fresh = not self.state.participants  # nothing of an open transaction on any region yet
        primitive = planned or (self.primitives.get(sql, snapshot, database) if shared else None)
        if primitive is None:
            kind = classify(sql)
            if len(sql) >= BIG_STATEMENT and kind in DML_KINDS:
                await self.cache.prepare(sql, kind)  # analysed off the event loop
            try:
                primitive = plan_statement(sql, kind, snapshot, self.state, self.cache)
            except WritesApart as apart:
                cursor, primitive = await self._plan_colocated(apart, sql, kind)
            except RegionUnavailable as e:
                return await self._after_failover(sql, e, fresh)
            except FillInProgress as e:
                await self._wait_for_fill(e)
                return await self._execute(sql, self.cursor(), None)
            except SqlError as e:
                if e.errno not in ASK_SERVER:
                    raise
                raise await server_verdict(self, cursor, sql, e) from None
            if kind in DML_KINDS and shared:  # (EXECUTE name's plan depends on the session's PREPAREs)
                self.primitives.put(sql, snapshot, database, primitive)
        metrics.count_query(primitive.label)
        if self.state.warnings is not None and not isinstance(primitive, ShowWarnings):
            self.state.warnings = None  # saved warnings are about the previous statement only
        try:  # (inline, not a helper: one coroutine level less on the fast path)
            if isinstance(primitive, (Route, FanOutWrite)):
                return await primitive.execute(cursor)  # they set ROW_COUNT() themselves
            reply = await primitive.execute(cursor)
        except RegionUnavailable as e:
            if isinstance(primitive, (Route, FanOutWrite)):
                return await self._after_failover(sql, e, fresh)
            if fresh and not self.backends.open_regions():
                # A statement that may run anywhere (SET NAMES at connect, say) met a region
                # that refuses connections: nothing ran anywhere, so once more elsewhere
                # (any_region now passes over the refusing one).
                try:
                    reply = await primitive.execute(self.cursor())
                except SqlError as again:
                    await self._after_error(again, cursor)
                    raise
                result = reply.result
                self.state.row_count = result.affected_rows if result is not None and result.fields is None else 0
                return reply
            await self._after_error(e, cursor)
            raise
        except SqlError as e:
            await self._after_error(e, cursor)
            raise
        self.state.row_count = reply.result.affected_rows if reply.result is not None and reply.result.fields is None else 0
        return reply

    async def _after_failover(self, sql: str, error: RegionUnavailable, fresh: bool) -> Reply:
        """Buffering: a statement that needs a region which is down (not live,
        or refusing connections -- nothing was sent to it) waits for the
        failover or the region's restart, up to FAILOVER_BUFFER seconds, and is
        then planned again on the new placement: the client sees a pause, not
        an error.  Only when nothing of it or of an open transaction reached a
        region (`fresh` before, no participant after); at most MAX_BUFFERED
        statements per proxy wait at once.  Otherwise, or past the window, 2003."""
        if not fresh or self.state.participants or self.state.locked_regions or metrics.BUFFERED_NOW.value >= MAX_BUFFERED:
            raise error
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FAILOVER_BUFFER
        metrics.BUFFERED_NOW.value += 1
        metrics.BUFFERED.inc()
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    metrics.BUFFER_TIMEOUTS.inc()
                    raise error
                async with self.not_counted():
                    await self.routing.wait_changed(min(BUFFER_POLL, remaining))
                cursor = self.cursor()
                try:
                    primitive = plan_statement(sql, classify(sql), cursor.snapshot, self.state, self.cache)
                    reply = await primitive.execute(cursor)
                except RegionUnavailable as e:
                    if self.state.participants:
                        raise
                    error = e
                    continue
                if not isinstance(primitive, (Route, FanOutWrite)):
                    result = reply.result
                    self.state.row_count = result.affected_rows if result is not None and result.fields is None else 0
                return reply
        finally:
            metrics.BUFFERED_NOW.value -= 1

    async def _wait_for_fill(self, error: FillInProgress) -> None:
        """A write that must not run while its table has a FILLING copy
        (fillguard.py) waits for the copy to be in sync, up to FILL_WAIT
        seconds; then the client gets the 1205 (nothing ran anywhere)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FILL_WAIT
        key = error.table.database, error.table.name
        async with self.not_counted():
            await self._until_filled(key, deadline, error)

    async def _until_filled(self, key: tuple[str, str], deadline: float, error: FillInProgress) -> None:
        loop = asyncio.get_running_loop()
        while True:
            table = self.routing.snapshot.placement.table(*key)
            if table is None or not table.filling_replicas:
                metrics.FILL_WAITS.labels("ran").inc()
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                metrics.FILL_WAITS.labels("timeout").inc()
                raise error
            await self.routing.wait_changed(min(BUFFER_POLL, remaining))

    @contextlib.asynccontextmanager
    async def not_counted(self) -> AsyncIterator[None]:
        """While the running statement only waits (routing.RoutingTable.pause)."""
        epoch = self.counted_epoch
        paused = self.routing.pause(epoch)
        try:
            yield
        finally:
            if paused:
                assert epoch is not None
                self.routing.resume(epoch)

    async def _plan_colocated(self, apart: WritesApart, sql: str, kind: Kind) -> tuple[SessionCursor, Primitive]:
        """A multi-table write over tables placed apart: the master moves them
        onto one set of regions (and keeps them there); the statement is then
        planned on the placement that says so (a new cursor at that snapshot).
        Not inside a transaction or under LOCK TABLES (WritesApart's docstring)."""
        if self.state.tx.active or self.state.locked_regions:
            raise apart
        await self.cursor().colocate(apart.table, apart.others)
        cursor = self.cursor()
        return cursor, plan_statement(sql, kind, cursor.snapshot, self.state, self.cache)

    async def _after_error(self, e: SqlError, cursor: SessionCursor) -> None:
        """A statement failed.  A deadlock (1213) makes MariaDB roll back the
        whole transaction on the region that detected it; the other
        participants still hold the transaction's earlier statements, which the
        client's next COMMIT -- or the implicit commit of its next BEGIN, as
        sysbench sends -- would make durable on some copies only.  So they are
        rolled back too: the transaction is gone everywhere, as on one MariaDB."""
        if e.errno == ER_LOCK_DEADLOCK and self.state.tx.active:
            try:
                await end_transaction(cursor, self.state.on(Event.ABORT))
            except SqlError as failed:
                log.warning("rollback after a deadlock failed: %s", failed)

    async def on_every_region(self, sql: str, what: str) -> QueryResult:
        """Run `sql` on every live region as the client (account statements)."""
        reply = await EveryRegion(sql, what).execute(self.cursor())
        assert reply.result is not None
        return reply.result

    # -- server-side prepared statements (COM_STMT_*; see prepared.py) ----------------------
    async def prepare(self, sql: str) -> tuple[PreparedStatement, int]:
        """COM_STMT_PREPARE: (the statement, warnings).  A read routed to one region
        is prepared there (RELAY); anything else runs through the text path at
        execute (TEXT), with a write prepared once on its primary for MariaDB's
        own checks and parameter count."""
        metrics.count_query("prepare")
        if "/*" in sql and "!" in sql:
            sql = unwrap_executable_comments(sql)
        kind = classify(sql)
        cursor = self.cursor()
        primitive = None
        if kind in DML_KINDS or kind in (Kind.SHOW, Kind.DESCRIBE):
            try:
                primitive = plan_statement(sql, kind, cursor.snapshot, self.state, self.cache)
            except WritesApart as apart:
                cursor, primitive = await self._plan_colocated(apart, sql, kind)
        if isinstance(primitive, Route) and not primitive.last_insert_id and not primitive.connection_id:
            conn = await self._statement_connection(cursor, primitive)
            prepared = await cursor.call(conn, conn.prepare(sql.encode(conn.sql_encoding, "surrogateescape")))
            stmt = self.state.add_statement(sql=sql, route=PsRoute.RELAY, param_count=len(prepared.params),
                                            params=prepared.params, columns=prepared.columns)
            conn.prepared[stmt] = prepared.stmt_id
            return stmt, prepared.warnings
        if isinstance(primitive, FanOutWrite):  # a write: MariaDB checks it on the primary
            region = primitive.regions[0]
            await cursor.join(region)
            conn = await self.backends.get(region, cursor.snapshot, self.state)
            prepared = await cursor.call(conn, conn.prepare(sql.encode(conn.sql_encoding, "surrogateescape")))
            conn.close_statement(prepared.stmt_id)
            if len(prepared.params) != len(placeholder_positions(sql)):
                raise unsupported("this prepared statement (its placeholders could not be located in the text)")
            stmt = self.state.add_statement(sql=sql, route=PsRoute.TEXT, param_count=len(prepared.params),
                                            params=prepared.params, columns=prepared.columns)
            return stmt, prepared.warnings
        count = len(placeholder_positions(sql))
        stmt = self.state.add_statement(sql=sql, route=PsRoute.TEXT, param_count=count,
                                        params=[param_definition()] * count, columns=[])
        return stmt, 0

    async def _statement_connection(self, cursor: SessionCursor, route: Route) -> Any:
        self.state.statement()
        region = route.region or (cursor.last_region() if route.sticky else None) or cursor.any_region()
        if route.lock:
            self.state.lock_region = region
        return await cursor.connection(region)

    async def execute_prepared(self, stmt: PreparedStatement, req: ExecuteRequest) -> Reply:
        """COM_STMT_EXECUTE.  The statement's plan is kept on it for the snapshot
        and database it was made for (the parameters never change a route).
        RELAY: prepared on the target connection if it is new there, and
        forwarded; TEXT: the parameters become literals in the SQL, which runs
        as a text statement (writes fan out with pinned values)."""
        metrics.count_query("execute")
        cursor = self.cursor()
        try:
            primitive, kept = self._prepared_plan(stmt, cursor)
        except FillInProgress as e:
            await self._wait_for_fill(e)
            cursor = self.cursor()
            primitive, kept = self._prepared_plan(stmt, cursor)
        if stmt.route is PsRoute.TEXT:
            literals = param_literals(stmt, req, self.backends.sql_encoding, self.state.no_backslash_escapes)
            stmt.long_data.clear()
            sql = interpolate(stmt.sql, literals)
            if not kept:
                return await self.execute(sql)
            return await self.execute(sql, cursor, replace(primitive, sql=sql))
        if not isinstance(primitive, Route):
            raise unsupported("a prepared read whose table now needs another route; prepare it again")
        conn = await self._statement_connection(cursor, primitive)
        backend_id = conn.prepared.get(stmt)
        if backend_id is None:
            prepared = await cursor.call(conn, conn.prepare(stmt.sql.encode(conn.sql_encoding, "surrogateescape")))
            backend_id = conn.prepared[stmt] = prepared.stmt_id
        if stmt.long_data:
            try:
                for param, data in stmt.long_data.items():
                    conn.send_long_data(backend_id, param, bytes(data))
            finally:
                stmt.long_data.clear()
        try:  # (cursor.call inlined: the fast path of prepared reads)
            stream = await conn.execute_stream(backend_execute_payload(backend_id, stmt, req))
        except BackendError as e:
            raise e.to_sql_error()
        except (BackendLost, OSError) as e:
            raise self.backends.lost(conn, self.state, e) from None
        stmt.cursor = conn if stream.cursor else None
        return Reply(stream=stream)

    def _prepared_plan(self, stmt: PreparedStatement, cursor: SessionCursor) -> tuple[Any, bool]:
        """(primitive, kept): the plan of a prepared statement at this snapshot
        and database; `kept` when it is a Route / FanOutWrite that does not
        depend on session facts, so the next execute reuses it."""
        snapshot, database = cursor.snapshot, self.state.database
        kept = stmt.plan
        if kept is not None and kept[0] is snapshot and kept[1] == database and not self.state.temp_tables:
            return kept[2], True
        kind = classify(stmt.sql)
        if kind not in DML_KINDS and kind not in (Kind.SHOW, Kind.DESCRIBE):
            return None, False
        primitive = plan_statement(stmt.sql, kind, snapshot, self.state, self.cache)
        if isinstance(primitive, (Route, FanOutWrite)) and not STATE_DEPENDENT.search(stmt.sql):
            stmt.plan = (snapshot, database, primitive)
            return primitive, True
        return primitive, False

    async def fetch_prepared(self, stmt: PreparedStatement, rows: int) -> Reply:
        """COM_STMT_FETCH: more rows from the cursor the last execute opened."""
        conn = stmt.cursor
        backend_id = conn.prepared.get(stmt) if conn is not None else None
        if conn is None or backend_id is None or conn.closed:
            raise SqlError(1421, f"The statement ({stmt.stmt_id}) has no open cursor.", "HY000")
        return Reply(stream=await self.cursor().call(conn, conn.fetch_stream(backend_id, rows)))

    async def reset_prepared(self, stmt: PreparedStatement) -> None:
        """COM_STMT_RESET: long data dropped, an open cursor closed."""
        stmt.long_data.clear()
        conn, stmt.cursor = stmt.cursor, None
        if conn is not None and not conn.closed and stmt in conn.prepared:
            await self.cursor().call(conn, conn.reset_statement(conn.prepared[stmt]))

    def close_prepared(self, stmt_id: int) -> None:
        """COM_STMT_CLOSE (no answer): forgotten here and on every backend."""
        stmt = self.state.statements.pop(stmt_id, None)
        if stmt is None:
            return
        for conn in self.backends.conns.values():
            backend_id = conn.prepared.pop(stmt, None)
            if backend_id is not None and not conn.closed:
                conn.close_statement(backend_id)
