"""The statement engine's primitives (after Vitess vtgate's `engine` package).

The planner (planbuilder.py) turns every statement -- SET, BEGIN and USE
included -- into one small primitive; the primitive executes itself through
a `VCursor`, the one interface to backends, the master and the session's
state.  Primitives hold no connections and no clocks of their own, so each is
unit-tested against a logging fake cursor (tests/unit/test_engine.py): which
statement reaches which region, in which order, what commits when.

Writes to a replicated table (`FanOutWrite`) keep the copies identical
without MariaDB replication:

* the statement runs on the primary first, inside a transaction, so the
  primary's row locks order conflicting writers; replicas run it next, while
  those locks are held; the primary commits last;
* `SET STATEMENT timestamp=..., rand_seed1/2=..., insert_id=... FOR <sql>`
  pins NOW(), column defaults, RAND() and the AUTO_INCREMENT value to the
  primary's, so the copies compute the same rows;
* a statement that fails on the primary never reaches a replica -- unless
  the primary's ROLLBACK warns that non-transactional tables kept part of
  it (1196): then the replicas run it too, to keep the same part; one that
  fails on a replica rolls the primary back (autocommit) or the whole
  transaction (explicit transaction), and the client gets an error.

Error handling -- where state can be lost:
* a replica that changed a different number of rows than the primary has
  diverged (it already differed); the primary is rolled back, the client gets
  an error, and minisql_proxy_replica_divergence_total counts it;
* COMMIT goes to replica-only participants first and primaries last; if a
  primary's COMMIT fails after its replicas committed, the outcome is, as with
  any lost COMMIT reply, unknown to the client (XA would close this window);
* a connection that breaks mid-transaction loses that transaction: the other
  participants are rolled back and the client gets 2013.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from minisql.errors import CR_SERVER_LOST, ER_UNKNOWN, SqlError
from minisql.xa import Xid, can_decide

from . import metrics
from .backend import QueryResult, ResultStream
from .commit import end_transaction, rollback_branch, two_phase_commit
from .planner import LocalResult, RegionUnavailable, RoutingSnapshot
from .pinning import order_by_key, substitute_nextvals, substitute_uuids, table_key
from .sessionstate import EndTransaction, SessionState
from .statements import ROW_COUNT, substitute_last_insert_id, substitute_row_count
from .txn import Event

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Reply:
    """What the wire layer sends back: an OK or a whole result, a result still
    streaming from a backend, or a result the proxy made itself."""

    result: QueryResult | None = None
    local: LocalResult | None = None
    stream: ResultStream | None = None


def ok(affected_rows: int = 0, warnings: int = 0) -> Reply:
    return Reply(QueryResult(None, [], affected_rows, 0, warnings, 0, b""))


class TransactionAborted(SqlError):
    """A write failed on a replica inside a transaction: the whole transaction
    was rolled back, or the copies would differ by that statement."""


class VCursor(Protocol):
    """Everything a primitive may touch (the real one: cursor.SessionCursor)."""

    state: SessionState
    snapshot: RoutingSnapshot

    async def run(self, region: str, sql: str, *, join: bool = True, prefix: str = "", infile: Any = None) -> QueryResult: ...
    async def pipeline(self, region: str, statements: tuple[str, ...]) -> list[QueryResult | SqlError]: ...  # one round trip
    async def decide(self, region: str, gtrid: str) -> None: ...  # the commit decision row (commit.py)
    def settle_later(self, gtrid: str, branches: tuple[str, ...], outcome: str | None) -> None: ...  # settle.py
    holds_lease: bool  # False while the proxy's ZooKeeper session is suspended (routing.py)
    async def wait_for_lease(self) -> None: ...  # a write waits for it, or gets 2003
    async def join(self, region: str) -> None: ...  # the session's open transaction started there too
    def local_infile(self, keep: bool) -> Any: ...
    def client_status(self, global_scope: bool) -> dict[str, str]: ...
    def text_codec(self) -> str: ...  # the codec of the session's SQL text (and of text results)
    async def stream(self, region: str, sql: str) -> ResultStream: ...
    def any_region(self) -> str: ...
    def current_snapshot(self) -> RoutingSnapshot: ...  # newer than `snapshot` after this statement's own DDL
    def last_region(self) -> str | None: ...
    def open_regions(self) -> tuple[str, ...]: ...
    def drop(self, region: str) -> None: ...
    def set_charset(self, name: str) -> None: ...
    def set_idle_timeout(self, seconds: float) -> None: ...
    async def ddl(self, sql: str, statement_vars: str = "") -> Reply: ...
    async def colocate(self, table: tuple[str, str], others: tuple[tuple[str, str], ...]) -> None: ...
    async def account_statement(self, sql: str) -> Reply: ...
    async def show_grants(self, sql: str) -> Reply: ...
    async def kill(self, target: int, query: bool) -> Reply: ...
    async def processlist(self, full: bool) -> Reply: ...


# -- primitives -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Route:
    """A statement for one region: `region`, else the connection that ran the
    previous statement (`sticky`: SHOW WARNINGS), else any.  Rows stream."""

    sql: str
    region: str | None = None
    sticky: bool = False
    last_insert_id: bool = False  # LAST_INSERT_ID() replaced by the session's value
    label: str = "read"
    epoch: int = -1
    lock: bool = False  # lock functions: `region` is the lock region (clusterplan.py)
    connection_id: bool = False  # CONNECTION_ID() already replaced by the session's id (not preparable as is)

    async def execute(self, vc: VCursor) -> Reply:
        state = vc.state
        state.statement()
        region = self.region or (vc.last_region() if self.sticky else None) or vc.any_region()
        if self.lock:
            state.lock_region = region  # its locks die with a change of lock region (cluster.py)
        sql = _session_values(self.sql, state, self.last_insert_id)
        stream = await vc.stream(region, sql)
        state.row_count = -1 if stream.fields is not None else stream.affected_rows
        return Reply(stream=stream)

    def describe(self) -> dict[str, Any]:
        target = self.region or ("sticky" if self.sticky else "any")
        out: dict[str, Any] = {"Route": target, **({"last_insert_id": True} if self.last_insert_id else {})}
        if self.lock:
            out["lock_region"] = True
        if self.connection_id:
            out["connection_id"] = True
        return out


def _session_values(sql: str, state: SessionState, last_insert_id: bool) -> str:
    """LAST_INSERT_ID() and ROW_COUNT() as the session knows them: the region
    this statement runs on may not have run the statement they are about."""
    if last_insert_id:
        sql = substitute_last_insert_id(sql, state.last_insert_id)
    if "(" in sql and ROW_COUNT.search(sql):
        sql = substitute_row_count(sql, state.row_count)
    return sql


def _pinned(ts: float | None, seeds: tuple[int, int] | None, insert_id: int = 0, statement_vars: str = "") -> str:
    """`ts` None: the session (or the statement) fixed @@timestamp itself, the
    same on every copy already -- the client's value stands."""
    parts = [statement_vars] if statement_vars else []
    if ts is not None:
        parts.append(f"timestamp={ts:.6f}")
    if seeds is not None:
        parts.append(f"rand_seed1={seeds[0]}, rand_seed2={seeds[1]}")
    if insert_id:
        parts.append(f"insert_id={insert_id}")
    return "SET STATEMENT " + ", ".join(parts) + " FOR " if parts else ""


_XA, _PLAIN, _REFUSED = "xa", "plain", "refused"
PIPELINED_STATEMENT = 1 << 16  # bigger statements go alone (they are framed from memoryviews)


async def _xa_write(vc: VCursor, region: str, xid: Xid, sql: str, prefix: str, infile: Any) -> tuple[str, Any]:
    """`XA START` then the statement on `region`; (how, the statement's
    QueryResult or SqlError).  `how`: _XA (in the branch), _PLAIN (XA START
    was refused but the pipelined statement ran, outside any transaction),
    _REFUSED (XA START refused, the statement not sent).  Small statements
    go in one round trip with their XA START."""
    if infile is None and len(sql) + len(prefix) < PIPELINED_STATEMENT:
        start, result = await vc.pipeline(region, (f"XA START {xid.sql()}", prefix + sql))
        return (_PLAIN if isinstance(start, SqlError) else _XA), result
    try:
        await vc.run(region, f"XA START {xid.sql()}", join=False)
    except SqlError as e:
        if e.errno == CR_SERVER_LOST:
            raise
        return _REFUSED, e
    try:
        return _XA, await vc.run(region, sql, prefix=prefix, infile=infile)
    except SqlError as e:
        if e.errno == CR_SERVER_LOST:
            raise
        return _XA, e


@dataclass(frozen=True, slots=True)
class FanOutWrite:
    """A write to the primary, then every in-sync replica (module docstring)."""

    sql: str
    regions: tuple[str, ...]  # primary first
    uses_rand: bool = False
    last_insert_id: bool = False
    statement_vars: str = ""  # SET STATEMENT <these> FOR ...: merged into the pinning prefix
    local_infile: bool = False  # LOAD DATA LOCAL: the client's file goes to every copy (localinfile.py)
    uuids: bool = False  # UUID() in INSERT ... VALUES: evaluated here, once per call, the same literal on every copy
    key_order: tuple[str, str] | None = None  # UPDATE/DELETE ... LIMIT without ORDER BY: ordered by this table's key
    sequences: tuple[tuple[str, tuple[str, ...]], ...] = ()  # ("db.seq", its regions): NEXTVAL evaluated there, once per call
    atomic: bool = True  # an autocommit write commits with XA (commit.py); False: a CALL, whose body may COMMIT or run DDL
    filling: frozenset[str] = frozenset()  # regions with a FILLING copy: written, affected rows not compared (fillguard.py)
    label: str = "write"
    epoch: int = -1
    clock: Any = field(default=time.time, compare=False, repr=False)
    seeds: Any = field(default=lambda: (random.randrange(1, 2**30), random.randrange(1, 2**30)), compare=False, repr=False)

    async def execute(self, vc: VCursor) -> Reply:
        if not vc.holds_lease:  # the ZooKeeper session is suspended: a failover may be unseen
            await vc.wait_for_lease()
        state = vc.state
        state.on(Event.STATEMENT)
        sql = _session_values(self.sql, state, self.last_insert_id)
        if self.uuids:
            sql = substitute_uuids(sql)
        if self.sequences:
            sql = await substitute_nextvals(vc, sql, dict(self.sequences), self._nextval)
        primary, replicas = self.regions[0], self.regions[1:]
        if self.key_order is not None:
            sql = order_by_key(sql, await table_key(vc, primary, self.key_order))
        infile = vc.local_infile(keep=bool(replicas)) if self.local_infile else None
        if not replicas:
            result = await vc.run(primary, sql, prefix=f"SET STATEMENT {self.statement_vars} FOR " if self.statement_vars else "",
                                  infile=infile)
            state.inserted(result.insert_id, primary)
            state.row_count = result.affected_rows
            return Reply(result)
        fixed = state.fixed_timestamp() or "timestamp" in self.statement_vars.lower()
        ts = None if fixed else self.clock()
        seeds = self.seeds() if self.uses_rand else None
        own_txn = not state.tx.active
        # Under LOCK TABLES, START TRANSACTION would release the client's table
        # locks (MariaDB's rule): the statement's own transaction is autocommit=0.
        locked = own_txn and primary in state.locked_regions
        if own_txn and not locked and self.atomic and state.xa_token and all(can_decide(r) for r in self.regions):
            reply = await self._atomic(vc, sql, primary, replicas, ts, seeds, infile)
            if reply is not None:
                return reply
        if own_txn:
            await vc.run(primary, "SET autocommit=0" if locked else "START TRANSACTION", join=False)
        else:
            state.wrote_as_primary(primary)
        try:
            result = await vc.run(primary, sql, prefix=_pinned(ts, seeds, 0, self.statement_vars), infile=infile)
        except SqlError as failed:
            if own_txn and await _rollback_quietly(vc, primary, locked) and infile is None:
                await self._replay_failure(vc, replicas, sql, _pinned(ts, seeds, 0, self.statement_vars), primary, failed)
            raise
        failure = await self._replicate(vc, replicas, sql, _pinned(ts, seeds, result.insert_id, self.statement_vars), primary, result,
                                        infile)
        if failure is not None:
            if own_txn:
                await _rollback_quietly(vc, primary, locked)
                raise failure
            metrics.TRANSACTIONS.labels("aborted").inc()
            try:
                await end_transaction(vc, state.on(Event.ABORT))
            except SqlError as e:
                log.warning("rollback after a failed replica write also failed: %s", e)
            raise TransactionAborted(failure.errno, failure.message + "; the transaction was rolled back")
        if own_txn:
            if result.warnings:
                # COMMIT would clear them: SHOW WARNINGS is answered from this copy (ShowWarnings).
                state.warnings = await vc.run(primary, "SHOW WARNINGS", join=False)
            await vc.run(primary, "COMMIT", join=False)
            if locked:
                await vc.run(primary, "SET autocommit=1", join=False)
        state.inserted(result.insert_id, primary)
        state.row_count = result.affected_rows
        return Reply(result)

    @staticmethod
    async def _nextval(vc: VCursor, sql: str, regions: tuple[str, ...]) -> QueryResult:
        reply = await FanOutWrite(sql, regions).execute(vc)
        assert reply.result is not None
        return reply.result

    async def _atomic(self, vc: VCursor, sql: str, primary: str, replicas: tuple[str, ...], ts: float | None,
                      seeds: tuple[int, int] | None, infile: Any) -> Reply | None:
        """An autocommit write on every copy as one XA transaction (commit.py):
        each copy's branch started and written (`XA START` and the statement
        in one round trip), the affected rows compared, then prepared and
        committed together -- or rolled back together.  None: the primary
        refused XA START before running anything; the caller runs the plain path."""
        state = vc.state
        gtrid = state.new_gtrid(primary)
        xids = {r: Xid(gtrid, r) for r in self.regions}
        first_prefix = _pinned(ts, seeds, 0, self.statement_vars)
        how, result = await _xa_write(vc, primary, xids[primary], sql, first_prefix, infile)
        if how == _REFUSED:
            log.warning("XA START on %s refused (%s): this write commits without XA", primary, result)
            metrics.XA_FALLBACK.inc()
            return None
        if isinstance(result, SqlError):
            if how == _XA and await rollback_branch(vc, primary, xids[primary]) and infile is None:
                await self._replay_failure(vc, replicas, sql, first_prefix, primary, result)
            raise result
        prefix = _pinned(ts, seeds, result.insert_id, self.statement_vars)
        if how == _PLAIN:  # XA START refused, the statement ran and committed: the copies follow, one by one
            log.error("XA START on %s refused: a write committed there without XA; replicating it plainly", primary)
            metrics.XA_FALLBACK.inc()
            failure = await self._replicate(vc, replicas, sql, prefix, primary, result, infile)
            if failure is not None:
                raise failure
            state.inserted(result.insert_id, primary)
            state.row_count = result.affected_rows
            return Reply(result)
        started, plain = [primary], False
        failure: SqlError | None = None
        for region in replicas:
            try:
                how, replica = await _xa_write(vc, region, xids[region], sql, prefix, infile)
            except SqlError as e:  # the replica's connection: nothing ran there
                for started_region in started:
                    await rollback_branch(vc, started_region, xids[started_region])
                if isinstance(e, RegionUnavailable):
                    raise  # nothing committed anywhere: the session may hold it for the failover
                raise SqlError(e.errno if e.errno >= 2000 else ER_UNKNOWN,
                               f"Write failed on replica region '{region}' after the primary accepted it: "
                               f"({e.errno}) {e.message}") from None
            if how == _XA:
                started.append(region)
            if isinstance(replica, SqlError):
                failure = SqlError(replica.errno if replica.errno >= 2000 else ER_UNKNOWN,
                                   f"Write failed on replica region '{region}' after the primary accepted it: "
                                   f"({replica.errno}) {replica.message}")
                break
            plain = plain or how == _PLAIN
            if replica.affected_rows != result.affected_rows and region not in self.filling:
                failure = self._diverged(primary, result, region, replica)
                break
        if failure is None and result.warnings:
            # The commit would clear them: SHOW WARNINGS is answered from this copy (ShowWarnings).
            state.warnings = await vc.run(primary, "SHOW WARNINGS", join=False)
        if failure is not None and not plain:
            for region in started:
                await rollback_branch(vc, region, xids[region])
            raise failure
        if plain:  # a replica committed outside XA: the others must commit too, or the copies differ
            log.error("XA START refused on a replica of %s: committed without atomicity", self.sql[:100])
            metrics.XA_FALLBACK.inc()
        order = tuple(r for r in (*replicas, primary) if r in started)
        await two_phase_commit(vc, EndTransaction(True, order, gtrid=gtrid, xa=frozenset(started)))
        if failure is not None:
            raise failure
        state.inserted(result.insert_id, primary)
        state.row_count = result.affected_rows
        return Reply(result)

    def _diverged(self, primary: str, result: QueryResult, region: str, replica: QueryResult) -> SqlError:
        metrics.REPLICA_DIVERGENCE.labels(region).inc()
        log.error("replica divergence: %s affected %d rows on primary %s but %d on replica %s",
                  self.sql[:200], result.affected_rows, primary, replica.affected_rows, region)
        return SqlError(ER_UNKNOWN, f"The copies of the table disagree (primary '{primary}' changed {result.affected_rows} rows, "
                                    f"replica '{region}' {replica.affected_rows}); the statement was rolled back")

    async def _replay_failure(self, vc: VCursor, replicas: tuple[str, ...], sql: str, prefix: str, primary: str,
                              failed: SqlError) -> None:
        """The primary failed part-way through a statement and its ROLLBACK
        could not undo everything (warning 1196: a MyISAM/Aria table kept the
        rows written before the error, as one MariaDB keeps them).  The
        replicas run the same statement, pinned alike, so they keep the same
        rows and fail the same way; a replica that does otherwise has diverged
        and is counted and logged (nothing can undo a non-transactional write)."""
        for region in replicas:
            try:
                await vc.run(region, sql, prefix=prefix)
            except SqlError as e:
                if e.errno == failed.errno:
                    continue
                outcome = f"failed with {e.errno}"
            else:
                outcome = "succeeded"
            metrics.REPLICA_DIVERGENCE.labels(region).inc()
            log.error("replica divergence: %s failed on primary %s with %d (non-transactional changes kept) but %s on replica %s",
                      self.sql[:200], primary, failed.errno, outcome, region)

    async def _replicate(self, vc: VCursor, replicas: tuple[str, ...], sql: str, prefix: str, primary: str,
                         result: QueryResult, infile: Any = None) -> SqlError | None:
        for region in replicas:
            try:
                replica = await vc.run(region, sql, prefix=prefix, infile=infile)
            except SqlError as e:
                return SqlError(e.errno if e.errno >= 2000 else ER_UNKNOWN,
                                f"Write failed on replica region '{region}' after the primary accepted it: ({e.errno}) {e.message}")
            if replica.affected_rows != result.affected_rows and region not in self.filling:
                return self._diverged(primary, result, region, replica)
        return None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"FanOutWrite": list(self.regions)}
        if self.uses_rand:
            out["pin_rand"] = True
        if self.last_insert_id:
            out["last_insert_id"] = True
        if self.statement_vars:
            out["statement_vars"] = self.statement_vars
        if self.local_infile:
            out["local_infile"] = True
        if self.uuids:
            out["uuid_literals"] = True
        if self.key_order is not None:
            out["order_by_key"] = ".".join(self.key_order)
        if self.sequences:
            out["nextval_from"] = {name: list(regions) for name, regions in self.sequences}
        if not self.atomic:
            out["no_xa"] = True
        if self.filling:
            out["filling"] = sorted(self.filling)
        return out


async def _rollback_quietly(vc: VCursor, region: str, locked: bool = False) -> bool:
    """ROLLBACK, logging a failure; True if MariaDB warned that changes to
    non-transactional tables could not be rolled back (1196)."""
    try:
        result = await vc.run(region, "ROLLBACK", join=False)
        if locked:
            await vc.run(region, "SET autocommit=1", join=False)
    except SqlError as e:
        log.warning("ROLLBACK on %s failed: %s", region, e)
        return False
    return bool(getattr(result, "warnings", 0))


@dataclass(frozen=True, slots=True)
class ShowWarnings:
    """SHOW WARNINGS / ERRORS / COUNT(*) ...: about the previous statement.  After an
    autocommit write to a replicated table the proxy committed it, which cleared
    MariaDB's diagnostics, so the warnings it saved are answered; otherwise the
    connection that ran the previous statement is asked."""

    sql: str
    label: str = "sticky"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        saved = vc.state.warnings
        if saved is None:
            return await Route(self.sql, None, sticky=True, label="sticky").execute(vc)
        body = self.sql.strip().rstrip(";").split()
        if [w.lower() for w in body[:2]] == ["show", "warnings"] and len(body) == 2:
            vc.state.warnings = saved  # SHOW WARNINGS does not clear them
            return Reply(saved)
        return await Route(self.sql, None, sticky=True, label="sticky").execute(vc)

    def describe(self) -> dict[str, Any]:
        return {"ShowWarnings": "saved, else sticky"}


@dataclass(frozen=True, slots=True)
class Local:
    """A result the proxy answers from the placement (SHOW TABLES, SELECT DATABASE())."""

    result: LocalResult
    label: str = "local"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        return Reply(local=self.result)

    def describe(self) -> dict[str, Any]:
        return {"Local": list(self.result.columns), "rows": len(self.result.rows)}


@dataclass(frozen=True, slots=True)
class EveryRegion:
    """SET GLOBAL, FLUSH ...: on every live region as the client (MariaDB checks
    the privilege).  The first region's error is the client's (nothing ran);
    a later region's is logged (the regions differ until repaired)."""

    sql: str
    what: str
    implicit_commit: bool = False
    regions: tuple[str, ...] | None = None  # None: every live region
    label: str = "every_region"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        if self.implicit_commit:
            await end_transaction(vc, vc.state.on(Event.IMPLICIT_COMMIT))
        regions = list(self.regions) if self.regions is not None else sorted(vc.snapshot.regions)
        if not regions:
            raise SqlError(2003, "No region is available")
        first: QueryResult | None = None
        for region in regions:
            try:
                result = await vc.run(region, self.sql, join=False)
            except SqlError:
                if first is None:
                    raise
                log.error("%s succeeded on %s but failed on %s: the regions now differ", self.what, regions[0], region)
                continue
            first = first or result
        return Reply(first)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"EveryRegion": self.what}
        if self.regions is not None:
            out["regions"] = list(self.regions)
        if self.implicit_commit:
            out["implicit_commit"] = True
        return out


@dataclass(frozen=True, slots=True)
class Ddl:
    """DDL goes to the master (placement changes with it); commits first, as MariaDB."""

    sql: str
    statement_vars: str = ""  # SET STATEMENT <these> FOR <sql>: applied by each region that runs it
    label: str = "ddl"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        await end_transaction(vc, vc.state.on(Event.IMPLICIT_COMMIT))
        return await vc.ddl(self.sql, self.statement_vars)

    def describe(self) -> dict[str, Any]:
        return {"Ddl": "master", "statement_vars": self.statement_vars} if self.statement_vars else {"Ddl": "master"}


class Primitive(Protocol):
    """What the planner returns: a small tree of these executes one statement."""

    label: str
    epoch: int

    async def execute(self, vc: VCursor) -> Reply: ...
    def describe(self) -> dict[str, Any]: ...
