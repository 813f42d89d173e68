"""A logging fake VCursor for engine unit tests: records every statement that
would reach a region, in order, and answers from a script.  It shares the
transaction-joining rule with the real cursor (cursor.CursorBase), so what it
logs is what the real one would send."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable

from minisql.errors import CR_SERVER_LOST, SqlError
from proxy.backend import QueryResult
from proxy.cursor import CursorBase
from proxy.engine import Reply
from proxy.planner import RegionUnavailable, RoutingSnapshot
from proxy.sessionstate import SessionState
from topology import EMPTY_PLACEMENT, RegionInfo, ReplicaState, TablePlacement

IN_SYNC = ReplicaState.IN_SYNC


def placement():
    p = EMPTY_PLACEMENT.with_database("shop").with_database("empty")
    p = p.with_table(TablePlacement("shop", "users", "r1", {"r2": IN_SYNC}))
    p = p.with_table(TablePlacement("shop", "orders", "r2", {"r1": IN_SYNC}))
    p = p.with_table(TablePlacement("shop", "items", "r3", {"r2": IN_SYNC}))
    p = p.with_table(TablePlacement("shop", "logs", "r3", {"r1": ReplicaState.COPYING}))
    p = p.with_table(TablePlacement("shop", "solo", "r1", {}))
    return p


REGIONS = MappingProxyType({r: RegionInfo(r, "127.0.0.1", 3300 + i) for i, r in enumerate(("r1", "r2", "r3"), 1)})
SNAP = RoutingSnapshot(placement(), REGIONS)


def ok_result(affected: int = 1, insert_id: int = 0, status: int = 0) -> QueryResult:
    return QueryResult(None, [], affected, insert_id, 0, status, b"")


@dataclass
class FakeStream:
    region: str
    sql: str
    fields: list = field(default_factory=list)
    rows: list = field(default_factory=list)

    async def next_batch(self) -> list | None:
        rows, self.rows = self.rows, []
        return rows or None


Responder = Callable[[str, str], "QueryResult | SqlError | None"]


class LoggingCursor(CursorBase):
    def __init__(self, state: SessionState | None = None, respond: Responder | None = None, snapshot: RoutingSnapshot = SNAP) -> None:
        self.state = state or SessionState(database="shop")
        self.snapshot = snapshot
        self.log: list[tuple[str, str]] = []
        self.respond = respond or (lambda region, sql: None)
        self.open: list[str] = []
        self.last: str | None = None
        self.dropped: list[str] = []
        self.charsets: list[str] = []
        self.ddls: list[str] = []
        self.snapshot_after_ddl: RoutingSnapshot | None = None

    def _answer(self, region: str, sql: str) -> QueryResult:
        if region in self.dropped and region in self.state.broken:
            raise SqlError(CR_SERVER_LOST, f"Lost connection to region '{region}' during the transaction")
        self.log.append((region, sql))
        if region not in self.open:
            self.open.append(region)
        self.last = region
        answer = self.respond(region, sql)
        if isinstance(answer, SqlError):
            if answer.errno == CR_SERVER_LOST:
                self.drop(region)
            raise answer
        return answer or ok_result(0)

    async def _run(self, region: str, sql: str, prefix: str = "", infile: object = None) -> QueryResult:
        return self._answer(region, prefix + sql + (" <- client file" if infile is not None else ""))

    async def pipeline(self, region: str, statements: tuple[str, ...]) -> list:
        out: list = []
        for sql in statements:
            try:
                out.append(self._answer(region, sql))
            except SqlError as e:
                if e.errno == CR_SERVER_LOST or isinstance(e, RegionUnavailable):  # the connection, not the statement
                    raise
                out.append(e)
        return out

    holds_lease = True

    def settle_later(self, gtrid: str, branches: tuple, outcome: str | None) -> None:
        self.log.append(("settle", f"{gtrid} {','.join(branches)} {outcome}"))

    async def wait_for_lease(self) -> None:
        self.log.append(("lease", "waited"))

    async def decide(self, region: str, gtrid: str) -> None:
        """The commit decision: logged as ("decide@r1", gtrid); `respond` may refuse it."""
        self.log.append((f"decide@{region}", gtrid))
        answer = self.respond(f"decide@{region}", gtrid)
        if isinstance(answer, SqlError):
            raise answer

    def text_codec(self) -> str:
        return "utf8"

    def client_status(self, global_scope: bool) -> dict[str, str]:
        counters = {"Aborted_clients": "7", "Connections": "9"}
        return counters if global_scope else {"Compression": "ON", "Ssl_cipher": "", "Ssl_version": "", **counters}

    def local_infile(self, keep: bool) -> object:
        return ("client file", keep)

    async def _stream(self, region: str, sql: str) -> FakeStream:  # type: ignore[override]
        answer = self._answer(region, sql)
        return FakeStream(region, sql, answer.fields or [], list(answer.rows))

    def any_region(self) -> str:
        return self.last or "r1"

    def current_snapshot(self) -> RoutingSnapshot:
        return self.snapshot_after_ddl or self.snapshot

    def last_region(self) -> str | None:
        return self.last

    def open_regions(self) -> tuple[str, ...]:
        return tuple(self.open)

    def drop(self, region: str) -> None:
        self.state.lost(region)
        self.dropped.append(region)
        if region in self.open:
            self.open.remove(region)

    def set_charset(self, name: str) -> None:
        self.charsets.append(name)

    def set_idle_timeout(self, seconds: float) -> None:
        self.idle_timeout = seconds

    async def ddl(self, sql: str, statement_vars: str = "") -> Reply:
        self.ddls.append(f"SET STATEMENT {statement_vars} FOR {sql}" if statement_vars else sql)
        return Reply(ok_result(0))

    async def colocate(self, table: tuple[str, str], others: tuple[tuple[str, str], ...]) -> None:
        self.log.append(("master", f"colocate {'.'.join(table)} with {', '.join('.'.join(o) for o in others)}"))

    async def account_statement(self, sql: str) -> Reply:
        self.log.append(("accounts", sql))
        return Reply(ok_result(0))

    async def show_grants(self, sql: str) -> Reply:
        self.log.append(("accounts", sql))
        return Reply(ok_result(0))

    async def kill(self, target: int, query: bool) -> Reply:
        self.log.append(("cluster", f"KILL {'QUERY' if query else 'CONNECTION'} {target}"))
        return Reply(ok_result(0))

    async def processlist(self, full: bool) -> Reply:
        self.log.append(("cluster", "PROCESSLIST" + (" FULL" if full else "")))
        return Reply(ok_result(0))


def xa_cursor(respond: Responder | None = None) -> LoggingCursor:
    """A cursor whose session may use XA (a proxy token), every statement answered OK."""
    return LoggingCursor(state=SessionState(database="shop", xa_token="t0"), respond=respond or (lambda r, s: ok_result(1)))


def run_sql(c: LoggingCursor, sql: str) -> Reply:
    """Plan `sql` for the cursor's session and execute it, with NOW() pinned to 1700000000."""
    import asyncio

    from proxy.planbuilder import plan_statement
    from proxy.statements import AnalysisCache, classify

    primitive = plan_statement(sql, classify(sql), c.snapshot, c.state, _CACHE.setdefault("cache", AnalysisCache()))
    if hasattr(primitive, "clock"):
        object.__setattr__(primitive, "clock", lambda: 1700000000.0)
    return asyncio.run(primitive.execute(c))


_CACHE: dict = {}
