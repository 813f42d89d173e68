"""The executor: runs a Plan on the session's backend connections.

Each client session pins at most one connection per region for its lifetime
(no multiplexing yet), so session variables, user variables, temporary state
and open transactions behave exactly as on a single MariaDB.

Writes to a replicated table (primary + in-sync replicas) keep the copies
identical without MariaDB replication:

* the statement runs on the primary first, inside a transaction, so the
  primary's row locks order conflicting writers; replicas run it next, while
  those locks are held; the primary commits last.  Two sessions updating the
  same row therefore reach every copy in the same order;
* `SET STATEMENT timestamp=..., rand_seed1/2=..., insert_id=... FOR <sql>`
  pins NOW(), column defaults, RAND() and the AUTO_INCREMENT value to the
  primary's, so the copies compute the same rows;
* a statement that fails on the primary never reaches a replica; one that
  fails on a replica rolls the primary back (autocommit) or rolls the whole
  transaction back (explicit transaction), and the client gets an error.

Error handling -- where state can be lost:
* a replica that applied a statement with a different affected-row count than
  the primary has diverged (it was already different); the primary is rolled
  back, the client gets an error, and minisql_proxy_replica_divergence_total
  counts it.  Marking such a replica STALE is the master's job (later issue).
* COMMIT goes to replica-only connections first and primaries last; if a
  primary COMMIT fails after its replicas committed (the primary's server
  died), the replicas hold the transaction and the primary does not: the
  client gets an error for an outcome that is, as with any lost COMMIT reply,
  unknown.  XA two-phase commit would close this window (not built yet).
* a connection that breaks mid-transaction loses that transaction: all other
  connections are rolled back and the client gets 2013.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

from minisql.errors import CR_CONN_HOST_ERROR, CR_SERVER_LOST, ER_ACCESS_DENIED, ER_UNKNOWN, SqlError

from . import metrics
from .backend import BackendConnection, BackendError, BackendLogin, BackendLost, QueryResult, ResultStream
from .pool import BackendPool
from .planner import LocalResult, Op, Plan, RoutingSnapshot
from .txn import TxState

log = logging.getLogger(__name__)


class TransactionAborted(SqlError):
    """A write failed on a replica inside a transaction: the whole transaction
    must be rolled back, or the copies would differ by that statement."""


@dataclass(slots=True)
class Reply:
    """What the wire layer sends back: an OK or a whole result, a result still
    streaming from a backend, or a result the proxy made itself."""

    result: QueryResult | None = None
    local: LocalResult | None = None
    stream: ResultStream | None = None


OK_REPLY = Reply(QueryResult(None, [], 0, 0, 0, 0, b""))


class SessionBackends:
    """The backend connections of one client session."""

    def __init__(self, pool: BackendPool) -> None:
        self.pool = pool
        self.conns: dict[str, BackendConnection] = {}
        self.in_txn: list[str] = []  # regions with an open backend transaction, in join order
        self.primary_in_txn: set[str] = set()  # regions written as primary in this transaction
        self.replay: dict[str, str] = {}  # variable key -> SET statement, replayed on new connections
        self.last: BackendConnection | None = None
        self.sql_encoding = "utf8"  # the client's charset codec (ProxySession.set_charset)
        self.found_rows = False  # the client asked for CLIENT_FOUND_ROWS
        self.login: BackendLogin | None = None  # the client's region account (set at login)

    def open_regions(self) -> tuple[str, ...]:
        return tuple(r for r, c in self.conns.items() if not c.closed)

    async def get(self, region: str, snap: RoutingSnapshot, database: str | None, tx: TxState) -> BackendConnection:
        conn = self.conns.get(region)
        if conn is None or conn.closed:
            if conn is not None and region in self.in_txn:
                raise SqlError(CR_SERVER_LOST, f"Lost connection to region '{region}' during the transaction")
            info = snap.regions.get(region)
            if info is None:
                raise SqlError(CR_CONN_HOST_ERROR, f"Region '{region}' is not available (failover may be in progress); try again")
            if self.login is None:  # never fall back to the proxy's own account
                raise SqlError(ER_ACCESS_DENIED, "Access denied: the session has no authenticated account")
            conn = await self.pool.acquire(region, info.host, info.mysql_port, self.login, found_rows=self.found_rows)
            metrics.BACKEND_CONNECTS.labels(region).inc()
            conn.sql_encoding = self.sql_encoding
            self.conns[region] = conn
            try:
                for stmt in self.replay.values():
                    await conn.run(stmt)
                    conn.dirty = True
            except BackendError as e:
                raise e.to_sql_error()
        try:
            if database != conn.current_db and database is not None:
                try:
                    await conn.use(database)
                except BackendError as e:
                    if e.errno != 1049:
                        raise
                    # The region holds no table of this database; statements that
                    # name no table still run, with no default database.
            if tx.active and region not in self.in_txn:
                await conn.run(tx.begin_sql)
                for sp in tx.savepoints:
                    await conn.run(f"SAVEPOINT `{sp}`")
                self.in_txn.append(region)
        except BackendError as e:
            raise e.to_sql_error()
        except (BackendLost, OSError) as e:
            self.drop(region)
            raise SqlError(CR_SERVER_LOST, f"Lost connection to region '{region}': {e}")
        return conn

    def any_region(self, snap: RoutingSnapshot) -> str:
        if self.last is not None and not self.last.closed and self.last.region_id in snap.regions:
            return self.last.region_id
        for region in self.open_regions():
            if region in snap.regions:
                return region
        if not snap.regions:
            raise SqlError(CR_CONN_HOST_ERROR, "No region is available")
        return random.choice(sorted(snap.regions))

    def drop(self, region: str) -> None:
        conn = self.conns.pop(region, None)
        if conn is not None:
            conn.close()
        if self.last is conn:
            self.last = None

    async def end_transaction(self, commit: bool) -> None:
        """COMMIT or ROLLBACK every connection in the transaction (replicas first)."""
        order = [r for r in self.in_txn if r not in self.primary_in_txn] + [r for r in self.in_txn if r in self.primary_in_txn]
        self.in_txn = []
        self.primary_in_txn = set()
        first_error: SqlError | None = None
        for region in order:
            conn = self.conns.get(region)
            if conn is None or conn.closed:
                continue
            try:
                if first_error is not None and commit:
                    await conn.run("ROLLBACK")
                else:
                    await conn.run("COMMIT" if commit else "ROLLBACK")
            except BackendError as e:
                first_error = first_error or e.to_sql_error()
            except (BackendLost, OSError) as e:
                self.drop(region)
                first_error = first_error or SqlError(CR_SERVER_LOST, f"Lost connection to region '{region}' at {'COMMIT' if commit else 'ROLLBACK'}: {e}")
        if first_error is not None:
            raise first_error

    async def broadcast_in_txn(self, sql: str) -> None:
        for region in self.in_txn:
            conn = self.conns.get(region)
            if conn is not None and not conn.closed:
                try:
                    await conn.run(sql)
                except BackendError as e:
                    raise e.to_sql_error()

    def close(self) -> None:
        """Give clean connections back to the pool, close the rest."""
        for region, conn in self.conns.items():
            if region in self.in_txn:
                conn.dirty = True  # closing rolls the transaction back server-side
            self.pool.release(conn)
        self.conns.clear()
        self.in_txn = []


async def run_statement(conn: BackendConnection, sql: str, backends: SessionBackends) -> QueryResult:
    try:
        return await conn.run(sql)
    except BackendError as e:
        raise e.to_sql_error()
    except (BackendLost, OSError) as e:
        backends.drop(conn.region_id)
        raise SqlError(CR_SERVER_LOST, f"Lost connection to region '{conn.region_id}' during query: {e}")


async def stream_statement(conn: BackendConnection, sql: str, backends: SessionBackends) -> ResultStream:
    """Send one statement and return its result with the rows still to come."""
    try:
        return await conn.query_stream(sql.encode(conn.sql_encoding, "surrogateescape"))
    except BackendError as e:
        raise e.to_sql_error()
    except (BackendLost, OSError) as e:
        backends.drop(conn.region_id)
        raise SqlError(CR_SERVER_LOST, f"Lost connection to region '{conn.region_id}' during query: {e}")


def _statement_prefix(ts: float, seeds: tuple[int, int] | None, insert_id: int = 0) -> str:
    parts = [f"timestamp={ts:.6f}"]
    if seeds is not None:
        parts.append(f"rand_seed1={seeds[0]}, rand_seed2={seeds[1]}")
    if insert_id:
        parts.append(f"insert_id={insert_id}")
    return "SET STATEMENT " + ", ".join(parts) + " FOR "


def single_region(plan: Plan, backends: SessionBackends, snap: RoutingSnapshot) -> str:
    """The region a READ / ANY / STICKY plan runs on."""
    if plan.op is Op.READ:
        return plan.regions[0]
    if plan.op is Op.STICKY and backends.last is not None and not backends.last.closed:
        return backends.last.region_id
    return backends.any_region(snap)


async def execute(plan: Plan, backends: SessionBackends, snap: RoutingSnapshot, database: str | None, tx: TxState) -> Reply:
    """Run a READ / WRITE / ANY / STICKY plan and return the reply to relay."""
    if plan.op is Op.LOCAL:
        return Reply(local=plan.local)
    if plan.op is Op.WRITE:
        return await _execute_write(plan, backends, snap, database, tx)
    region = single_region(plan, backends, snap)
    conn = await backends.get(region, snap, database, tx)
    backends.last = conn
    return Reply(stream=await stream_statement(conn, plan.sql, backends))


async def _execute_write(plan: Plan, backends: SessionBackends, snap: RoutingSnapshot, database: str | None, tx: TxState) -> Reply:
    primary, replicas = plan.regions[0], plan.regions[1:]
    pconn = await backends.get(primary, snap, database, tx)
    backends.last = pconn
    if not replicas:
        return Reply(await run_statement(pconn, plan.sql, backends))

    ts = time.time()
    seeds = (random.randrange(1, 2**30), random.randrange(1, 2**30)) if plan.uses_rand else None
    own_txn = not tx.active
    if own_txn:
        await run_statement(pconn, "START TRANSACTION", backends)
    else:
        backends.primary_in_txn.add(primary)
    try:
        result = await run_statement(pconn, _statement_prefix(ts, seeds) + plan.sql, backends)
    except SqlError:
        if own_txn and not pconn.closed:
            await run_statement(pconn, "ROLLBACK", backends)
        raise

    replica_sql = _statement_prefix(ts, seeds, result.insert_id) + plan.sql
    failure: SqlError | None = None
    for region in replicas:
        try:
            rconn = await backends.get(region, snap, database, tx)
            rresult = await run_statement(rconn, replica_sql, backends)
        except SqlError as e:
            failure = SqlError(e.errno if e.errno >= 2000 else ER_UNKNOWN,
                               f"Write failed on replica region '{region}' after the primary accepted it: ({e.errno}) {e.message}")
            break
        if rresult.affected_rows != result.affected_rows:
            metrics.REPLICA_DIVERGENCE.labels(region).inc()
            log.error(
                "replica divergence: %s affected %d rows on primary %s but %d on replica %s",
                plan.sql[:200], result.affected_rows, primary, rresult.affected_rows, region,
            )
            failure = SqlError(ER_UNKNOWN, f"The copies of the table disagree (primary '{primary}' changed {result.affected_rows} rows, replica '{region}' {rresult.affected_rows}); the statement was rolled back")
            break
    if failure is not None:
        if own_txn:
            if not pconn.closed:
                await run_statement(pconn, "ROLLBACK", backends)
        else:
            failure = TransactionAborted(failure.errno, failure.message + "; the transaction was rolled back")
        raise failure
    if own_txn:
        await run_statement(pconn, "COMMIT", backends)
    return Reply(result)
