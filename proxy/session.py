"""One client session: the glue between the wire, the planner and the executor.

Built on mysql-mimic's `BaseSession`, which receives raw SQL without parsing
it (mimic's full `Session` parses every statement and answers BEGIN, SET,
SHOW... itself with fakes).  Per statement:

    classify (regex) -> transaction control / SET / USE handled here
                     -> everything else: plan (pure) -> execute (backends)

Session variables: every SET the client sends is run on the session's backend
connections and recorded; connections opened later replay the record, so
`SELECT @@sql_mode` and `SHOW VARIABLES` always tell the truth.  SET GLOBAL is
refused: on a gateway it would change one region only.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import replace
from typing import Any

from mysql_mimic.charset import CharacterSet
from mysql_mimic.session import BaseSession
from mysql_mimic.types import Capabilities
from mysql_mimic.variables import GlobalVariables, SessionVariables

from minisql.errors import ER_LOCK_WAIT_TIMEOUT, ER_UNKNOWN, SqlError, unsupported
from topology import CallTimeout, Topology, TopologyError

from . import metrics
from .accounts import AccountAdmin
from .auth import Account
from .backend import BackendError, BackendLost, QueryResult
from .executor import OK_REPLY, Reply, SessionBackends, TransactionAborted, execute, run_statement, single_region
from .prepared import (
    ER_MAX_PREPARED_STMT_COUNT_REACHED,
    MAX_STATEMENTS_PER_SESSION,
    ExecuteRequest,
    PreparedStatement,
    Route,
    backend_execute_payload,
    interpolate,
    param_definition,
    param_literals,
    placeholder_positions,
)
from .planner import Op, Plan, plan, plan_use_database
from .pool import BackendPool
from .routing import RoutingTable
from .statements import BIG_STATEMENT, DML_KINDS, AnalysisCache, Kind, classify, strip_leading_noise, substitute_last_insert_id
from .txn import Effect, Event, TxState, transition

log = logging.getLogger(__name__)

DDL_TIMEOUT = 60.0
SERVER_STATUS_NO_BACKSLASH_ESCAPES = 0x0200

# The name and the operator only: the value is the rest of the item (a pattern
# ending in `(.*?)\s*$` is quadratic on long runs of spaces -- a client-controlled stall).
_SET_ITEM = re.compile(
    r"^\s*(?:(global|session|local|persist)\s+|@@(global|session|local)\.|@@)?"
    r"(`[^`]+(?:``[^`]*)*`|@?[\w$.]+|'[^']*')\s*(?::=|=)",
    re.I | re.S,
)
_FLUSH_LOCKING = re.compile(r"\bwith\s+read\s+lock\b|\bfor\s+export\b", re.I)
_SET_NAMES = re.compile(r"^\s*(names|character\s+set|charset)\b", re.I)
_SET_TRANSACTION = re.compile(r"^\s*(?:(global|session)\s+)?transaction\b", re.I)
_TRUE = {"1", "on", "true", "'on'", "'1'", "yes"}
_FALSE = {"0", "off", "false", "'off'", "'0'", "no"}


_TOP_LEVEL_TOKEN = re.compile(r"""'[^'\\]*(?:\\.[^'\\]*)*'?|"[^"\\]*(?:\\.[^"\\]*)*"?|`[^`]*`?|[(),]|[^'"`(),]+""", re.S)


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on `sep` (',') outside quotes and parentheses.

    Tokenised by one regex (quoted strings and runs of ordinary characters are
    single tokens), so a multi-megabyte SET value costs a few tokens, not a
    Python loop over every character on the event loop."""
    assert sep == ","
    parts, depth, start = [], 0, 0
    for m in _TOP_LEVEL_TOKEN.finditer(text):
        tok = m.group()
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
        elif tok == "," and depth == 0:
            parts.append(text[start:m.start()])
            start = m.end()
    parts.append(text[start:])
    return parts


def savepoint_name(sql: str) -> str:
    """The name at the end of SAVEPOINT / ROLLBACK TO / RELEASE SAVEPOINT, scanned
    from the end in linear time (a regex `search` for it was quadratic -- and a
    multi-megabyte statement froze the proxy)."""
    body = strip_leading_noise(sql).rstrip().rstrip(";").rstrip()
    if body.endswith("`"):
        start = body.rfind("`", 0, len(body) - 1)
        while start > 0 and body[start - 1] == "`":  # `` inside a quoted name
            start = body.rfind("`", 0, start - 1)
        if start >= 0 and start < len(body) - 2:
            return body[start + 1:-1].replace("``", "`")
    i = len(body)
    while i > 0 and (body[i - 1].isalnum() or body[i - 1] in "_$"):
        i -= 1
    if i == len(body) or i == 0:
        raise SqlError(1064, "You have an error in your SQL syntax near 'SAVEPOINT'", "42000")
    return body[i:]


class ProxySession(BaseSession):
    """State of one client connection; see the module docstring."""

    def __init__(self, routing: RoutingTable, pool: BackendPool, topology: Topology, cache: AnalysisCache, version: str,
                 admin: AccountAdmin) -> None:
        self.variables = SessionVariables(GlobalVariables())
        self.variables.set("version", version, force=True)
        self.username: str | None = None
        self.account: Account | None = None
        self.admin = admin
        self.database: str | None = None
        self.routing = routing
        self.topology = topology
        self.cache = cache
        self.backends = SessionBackends(pool)
        self.tx = TxState()
        self.no_backslash_escapes = False
        self.last_insert_id = 0
        self.last_insert_region: str | None = None
        self.connection: Any = None
        self.statements: dict[int, PreparedStatement] = {}  # COM_STMT_PREPARE ids
        self._next_stmt_id = 1
        metrics.SESSIONS.inc()

    @property
    def server_status(self) -> int:
        """The status flags of our OK/EOF packets: transaction state plus sql_mode's
        NO_BACKSLASH_ESCAPES."""
        return self.tx.server_status | (SERVER_STATUS_NO_BACKSLASH_ESCAPES if self.no_backslash_escapes else 0)

    def authenticated(self, account: Account) -> None:
        """The client logged in (or changed user) as `account`: its statements run as it."""
        self.username = account.user
        self.account = account
        self.backends.login = self.backends.pool.login_for(account.user, account.host)

    def _account_ref(self) -> dict[str, str]:
        """Who the master's region tasks run this session's DDL as."""
        if self.account is None:
            raise SqlError(1045, "Access denied: the session has no authenticated account", "28000")
        return {"user": self.account.user, "host": self.account.host}

    # -- mimic hooks ------------------------------------------------------------
    async def init(self, connection: Any) -> None:
        self.connection = connection
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
        if self.tx.active:
            metrics.TRANSACTIONS.labels("disconnect").inc()
        self.backends.close()

    async def reset(self) -> None:
        if self.tx.active:
            try:
                await self.backends.end_transaction(commit=False)
            except SqlError:
                pass
        self.backends.close()
        old = self.backends
        self.backends = SessionBackends(old.pool)
        self.backends.found_rows = old.found_rows
        self.backends.login = old.login
        self.tx = TxState()
        self.no_backslash_escapes = False
        self.statements.clear()
        self.set_charset(str(self.variables.get("character_set_client")))

    async def use(self, database: str) -> None:
        plan_use_database(database, self.routing.snapshot)
        self.database = database

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
        if name != "utf8mb4":
            self.backends.replay.setdefault("names", f"SET NAMES {name}")

    # -- the statement path -------------------------------------------------------
    async def execute(self, sql: str) -> Reply:
        kind = classify(sql)
        if kind is Kind.BEGIN:
            return await self._transaction(Event.BEGIN, begin_sql=strip_leading_noise(sql).rstrip().rstrip(";"))
        if kind is Kind.COMMIT:
            return await self._transaction(Event.COMMIT)
        if kind is Kind.ROLLBACK:
            return await self._transaction(Event.ROLLBACK)
        if kind in (Kind.SAVEPOINT, Kind.ROLLBACK_TO, Kind.RELEASE):
            return await self._savepoint(kind, sql)
        if kind is Kind.SET:
            return await self._set(sql)
        if kind is Kind.ACCOUNT:
            metrics.QUERIES.labels("account").inc()
            self.tx, effects = transition(self.tx, Event.IMPLICIT_COMMIT)
            await self._run_effects(effects)
            return await self.admin.execute(self, sql)
        if kind is Kind.SHOW_GRANTS:
            metrics.QUERIES.labels("show_grants").inc()
            return await self.admin.show_grants(self, sql)
        if kind is Kind.FLUSH:
            return await self._flush(sql)
        if len(sql) >= BIG_STATEMENT and kind in DML_KINDS:
            await self.cache.prepare(sql, kind)  # analysed off the event loop
        snap = self.routing.snapshot
        p = plan(sql, kind, snap, self, self.cache)
        metrics.QUERIES.labels(p.op.value).inc()
        if p.op is Op.USE:
            self.database = p.database
            return OK_REPLY
        if p.op is Op.DDL:
            return await self._ddl(p)
        if p.op is Op.LOCAL:
            return Reply(local=p.local)
        self.tx, _ = transition(self.tx, Event.STATEMENT)
        if p.uses_last_insert_id:
            # The statement may run on a region that did not run the INSERT.
            p = replace(p, sql=substitute_last_insert_id(p.sql, self.last_insert_id))
        try:
            reply = await execute(p, self.backends, snap, self.database, self.tx)
        except TransactionAborted:
            await self._abort()
            raise
        if p.op is Op.WRITE and reply.result is not None and reply.result.insert_id:
            self.last_insert_id = reply.result.insert_id
            self.last_insert_region = p.regions[0]
        return reply

    async def _abort(self) -> None:
        self.tx, _ = transition(self.tx, Event.ABORT)
        metrics.TRANSACTIONS.labels("aborted").inc()
        try:
            await self.backends.end_transaction(commit=False)
        except SqlError as e:
            log.warning("rollback after a failed replica write also failed: %s", e)

    async def _transaction(self, event: Event, begin_sql: str = "START TRANSACTION") -> Reply:
        metrics.QUERIES.labels("transaction").inc()
        was_active = self.tx.active
        self.tx, effects = transition(self.tx, event, begin_sql=begin_sql)
        await self._run_effects(effects)
        if event is not Event.BEGIN and was_active:
            metrics.TRANSACTIONS.labels("commit" if event is Event.COMMIT else "rollback").inc()
        return OK_REPLY

    async def _run_effects(self, effects: tuple) -> None:
        for effect in effects:
            await self.backends.end_transaction(commit=effect is Effect.COMMIT_ALL)

    async def _savepoint(self, kind: Kind, sql: str) -> Reply:
        name = savepoint_name(sql)
        event = {Kind.SAVEPOINT: Event.SAVEPOINT, Kind.ROLLBACK_TO: Event.ROLLBACK_TO, Kind.RELEASE: Event.RELEASE}[kind]
        self.tx, _ = transition(self.tx, event, savepoint=name)
        if self.tx.active:
            await self.backends.broadcast_in_txn(sql)
        return OK_REPLY

    # -- SET ------------------------------------------------------------------------
    async def _set(self, sql: str) -> Reply:
        metrics.QUERIES.labels("set").inc()
        body = strip_leading_noise(sql).strip().rstrip(";")
        items = split_top_level(body[3:])
        keys: list[str] = []
        autocommit: bool | None = None
        one_shot = False
        charset: str | None = None
        scopes: set[str] = set()
        for item in items:
            names = _SET_NAMES.match(item)
            if names:
                keys.append("names")
                charset = item[names.end():].split()[0] if item[names.end():].split() else ""
                if charset.strip("'\"`").lower() == "default":
                    charset = "utf8mb4"
                continue
            mt = _SET_TRANSACTION.match(item)
            if mt:
                scope = (mt.group(1) or "").lower()
                scopes.add("global" if scope == "global" else "session")
                if scope == "session":
                    keys.append("session transaction")
                else:
                    one_shot = True
                continue
            m = _SET_ITEM.match(item)
            if not m:
                raise unsupported(f"SET {item.strip()[:40]}")
            scope = (m.group(1) or m.group(2) or "").lower()
            name = m.group(3).strip("`").lower()
            if name.startswith("@@"):
                name = name[2:]
            for prefix in ("session.", "local."):
                if name.startswith(prefix):
                    name = name[len(prefix):]
            if name.startswith("global."):
                scope = "global"
            scopes.add("global" if scope in ("global", "persist") else "session")
            raw_value = item[m.end():].strip()
            if name == "autocommit":
                value = raw_value.lower()
                if value in _TRUE:
                    autocommit = True
                elif value in _FALSE:
                    autocommit = False
                else:
                    raise SqlError(1231, f"Variable 'autocommit' can't be set to the value of '{raw_value[:64]}'")
            keys.append(name)

        if "global" in scopes:
            if "session" in scopes:
                raise unsupported("SET mixing GLOBAL and session variables (send them as two statements)")
            return await self._set_global(sql)
        if charset is not None:
            self.set_charset(charset)  # before running it: refuses a charset we cannot carry
        # Validate on one backend first (a wrong value gets MariaDB's own error),
        # then reach every other open connection.
        snap = self.routing.snapshot
        region = self.backends.any_region(snap)
        conn = await self.backends.get(region, snap, self.database, self.tx)
        result = await run_statement(conn, sql, self.backends)
        # MariaDB tells, in the status flags, whether sql_mode now has
        # NO_BACKSLASH_ESCAPES; drivers read it to escape strings correctly.
        self.no_backslash_escapes = bool(result.server_status & SERVER_STATUS_NO_BACKSLASH_ESCAPES)
        conn.dirty = True
        for other, oconn in list(self.backends.conns.items()):
            if other != region and not oconn.closed:
                await run_statement(oconn, sql, self.backends)
                oconn.dirty = True
        if not one_shot:
            key = ",".join(keys)
            self.backends.replay.pop(key, None)
            self.backends.replay[key] = sql
        if autocommit is not None:
            # The backends already committed (SET autocommit=1 commits); keep our state in step.
            self.tx, effects = transition(self.tx, Event.AUTOCOMMIT_ON if autocommit else Event.AUTOCOMMIT_OFF)
            if effects:
                await self._run_effects(effects)
        return OK_REPLY

    async def _flush(self, sql: str) -> Reply:
        """FLUSH TABLES / PRIVILEGES / STATUS / ...: on every live region as the
        client (MariaDB checks RELOAD).  The forms that lock or export tables
        would hold one session's locks on every region: refused."""
        metrics.QUERIES.labels("flush").inc()
        if _FLUSH_LOCKING.search(sql):
            raise unsupported("FLUSH TABLES ... WITH READ LOCK / FOR EXPORT through the gateway")
        self.tx, effects = transition(self.tx, Event.IMPLICIT_COMMIT)
        await self._run_effects(effects)
        await self.on_every_region(sql, "FLUSH")
        return OK_REPLY

    async def _set_global(self, sql: str) -> Reply:
        """SET GLOBAL: on every live region, as the client -- MariaDB refuses it to
        a user without the privilege, and a global on one region only would make
        the cluster behave differently by region.  The first region's error is the
        client's; a later region that fails is logged (and differs until fixed)."""
        await self.on_every_region(sql, "SET GLOBAL")
        return OK_REPLY

    async def on_every_region(self, sql: str, what: str) -> QueryResult:
        """Run `sql` on every live region as the client, in region order; the
        first region's error is the client's (nothing ran), a later region's is
        logged (the regions differ until repaired).  Returns the first result."""
        snap = self.routing.snapshot
        regions = sorted(snap.regions)
        if not regions:
            raise SqlError(2003, "No region is available")
        first: QueryResult | None = None
        for region in regions:
            try:
                conn = await self.backends.get(region, snap, self.database, self.tx)
                result = await run_statement(conn, sql, self.backends)
            except SqlError:
                if first is None:
                    raise
                log.error("%s succeeded on %s but failed on %s: the regions now differ", what, regions[0], region)
                continue
            first = first or result
        assert first is not None
        return first

    # -- DDL ------------------------------------------------------------------------
    async def _ddl(self, p: Plan) -> Reply:
        self.tx, effects = transition(self.tx, Event.IMPLICIT_COMMIT)
        await self._run_effects(effects)
        try:
            result = await self.topology.call(
                "master",
                {"op": "ddl", "sql": p.sql, "database": self.database, "account": self._account_ref()},
                timeout=DDL_TIMEOUT,
            )
        except CallTimeout:
            raise SqlError(ER_LOCK_WAIT_TIMEOUT, f"No master answered the DDL within {DDL_TIMEOUT:.0f} s (is a master running?)")
        except TopologyError as e:
            raise SqlError(ER_UNKNOWN, f"Cannot reach ZooKeeper to run DDL: {e}")
        if "error" in result:
            raise SqlError.from_dict(result["error"])
        version = int(result.get("placement_version", -1))
        try:
            await self.routing.wait_for_epoch(version)
        except asyncio.TimeoutError:
            log.warning("placement version %d not seen after DDL; answering anyway", version)
        warnings = result.get("warnings") or []
        return Reply(QueryResult(None, [], int(result.get("affected_rows", 0)), 0, len(warnings), 0, b""))


    # -- server-side prepared statements (COM_STMT_*; see prepared.py) ----------------------
    async def prepare(self, sql: str) -> tuple[PreparedStatement, int]:
        """COM_STMT_PREPARE: (the statement, warnings).  A read routed to one region
        is prepared there (RELAY); anything else runs through the text path at
        execute (TEXT), with a write prepared once on its primary for MariaDB's
        own checks and parameter count."""
        if len(self.statements) >= MAX_STATEMENTS_PER_SESSION:
            raise SqlError(ER_MAX_PREPARED_STMT_COUNT_REACHED,
                           f"Can't create more than max_prepared_stmt_count statements (current value: {MAX_STATEMENTS_PER_SESSION})", "42000")
        metrics.QUERIES.labels("prepare").inc()
        kind = classify(sql)
        stmt_id = self._next_stmt_id
        self._next_stmt_id = stmt_id % 0xFFFFFFFF + 1
        p: Plan | None = None
        if kind in DML_KINDS or kind in (Kind.SHOW, Kind.DESCRIBE):
            p = plan(sql, kind, self.routing.snapshot, self, self.cache)
        if p is not None and p.op in (Op.READ, Op.ANY, Op.STICKY):
            stmt = PreparedStatement(stmt_id, sql, Route.RELAY, 0, [], [])
            conn = await self._statement_connection(p)
            prepared = await self._backend_call(conn, conn.prepare(sql.encode(conn.sql_encoding, "surrogateescape")))
            conn.prepared[stmt] = prepared.stmt_id
            conn.dirty = True
        elif p is not None and p.op is Op.WRITE:
            stmt = PreparedStatement(stmt_id, sql, Route.TEXT, 0, [], [])
            conn = await self._statement_connection(p)
            prepared = await self._backend_call(conn, conn.prepare(sql.encode(conn.sql_encoding, "surrogateescape")))
            conn.close_statement(prepared.stmt_id)
        else:
            count = len(placeholder_positions(sql))
            stmt = PreparedStatement(stmt_id, sql, Route.TEXT, count, [param_definition()] * count, [])
            self.statements[stmt_id] = stmt
            return stmt, 0
        if stmt.route is Route.TEXT and len(prepared.params) != len(placeholder_positions(sql)):
            raise unsupported("this prepared statement (its placeholders could not be located in the text)")
        stmt.param_count, stmt.params, stmt.columns = len(prepared.params), prepared.params, prepared.columns
        self.statements[stmt_id] = stmt
        return stmt, prepared.warnings

    async def _statement_connection(self, p: Plan) -> Any:
        snap = self.routing.snapshot
        region = p.regions[0] if p.op is Op.WRITE else single_region(p, self.backends, snap)
        self.tx, _ = transition(self.tx, Event.STATEMENT)
        conn = await self.backends.get(region, snap, self.database, self.tx)
        self.backends.last = conn
        return conn

    async def _backend_call(self, conn: Any, call: Any) -> Any:
        try:
            return await call
        except BackendError as e:
            raise e.to_sql_error()
        except (BackendLost, OSError) as e:
            self.backends.drop(conn.region_id)
            raise SqlError(2013, f"Lost connection to region '{conn.region_id}' during query: {e}")

    async def execute_prepared(self, stmt: PreparedStatement, req: ExecuteRequest) -> Reply:
        """COM_STMT_EXECUTE.  RELAY: planned again (the placement may have moved
        the table), prepared on the target connection if it is new there, and
        forwarded; TEXT: the parameters become literals in the SQL, which takes
        the text path (writes fan out with pinned values)."""
        metrics.QUERIES.labels("execute").inc()
        if stmt.route is Route.TEXT:
            literals = param_literals(stmt, req, self.backends.sql_encoding, self.no_backslash_escapes)
            stmt.long_data.clear()
            stmt.long_data_size = 0
            return await self.execute(interpolate(stmt.sql, literals))
        p = plan(stmt.sql, classify(stmt.sql), self.routing.snapshot, self, self.cache)
        if p.op not in (Op.READ, Op.ANY, Op.STICKY):
            raise unsupported("a prepared read whose table now needs another route; prepare it again")
        conn = await self._statement_connection(p)
        backend_id = conn.prepared.get(stmt)
        if backend_id is None:
            prepared = await self._backend_call(conn, conn.prepare(stmt.sql.encode(conn.sql_encoding, "surrogateescape")))
            backend_id = conn.prepared[stmt] = prepared.stmt_id
            conn.dirty = True
        try:
            for param, data in stmt.long_data.items():
                conn.send_long_data(backend_id, param, bytes(data))
        finally:
            stmt.long_data.clear()
            stmt.long_data_size = 0
        stream = await self._backend_call(conn, conn.execute_stream(backend_execute_payload(backend_id, stmt, req)))
        stmt.cursor = conn if stream.cursor else None
        return Reply(stream=stream)

    async def fetch_prepared(self, stmt: PreparedStatement, rows: int) -> Reply:
        """COM_STMT_FETCH: more rows from the cursor the last execute opened."""
        conn = stmt.cursor
        backend_id = conn.prepared.get(stmt) if conn is not None else None
        if conn is None or backend_id is None or conn.closed:
            raise SqlError(1421, f"The statement ({stmt.stmt_id}) has no open cursor.", "HY000")
        return Reply(stream=await self._backend_call(conn, conn.fetch_stream(backend_id, rows)))

    async def reset_prepared(self, stmt: PreparedStatement) -> None:
        """COM_STMT_RESET: long data dropped, an open cursor closed."""
        stmt.long_data.clear()
        stmt.long_data_size = 0
        conn, stmt.cursor = stmt.cursor, None
        if conn is not None and not conn.closed and stmt in conn.prepared:
            await self._backend_call(conn, conn.reset_statement(conn.prepared[stmt]))

    def close_prepared(self, stmt_id: int) -> None:
        """COM_STMT_CLOSE (no answer): forgotten here and on every backend."""
        stmt = self.statements.pop(stmt_id, None)
        if stmt is None:
            return
        for conn in self.backends.conns.values():
            backend_id = conn.prepared.pop(stmt, None)
            if backend_id is not None and not conn.closed:
                conn.close_statement(backend_id)
