"""Plans for the statements a driver or tool sends besides DML (pure, like
planbuilder.py, which calls these):

* ANALYZE / OPTIMIZE / REPAIR TABLE: they change a table's statistics or
  storage, so they run on every copy (the primary's result is the client's);
  CHECK / CHECKSUM TABLE only read: one copy.  `ANALYZE SELECT ...` (MariaDB's
  EXPLAIN ANALYZE) is planned like the SELECT it runs;
* HELP: MariaDB's help tables are the same on every region: any one;
* SET STATEMENT var=value[, ...] FOR <statement>: the inner statement is
  planned and the assignments go with it -- merged into the write's own
  pinning prefix on every copy (MariaDB allows one SET STATEMENT per statement);
* LOCK TABLES / UNLOCK TABLES: on every region holding a copy of a named table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Callable

from minisql.errors import ER_PARSE, ER_TABLE_NOT_LOCKED, SqlError, unsupported

from .ctas import CreateTableSelect
from .engine import Ddl, EveryRegion, FanOutWrite, Primitive, Reply, Route, VCursor
from .protocol import lenenc_str, text_row
from .planner import IDENT, QUALIFIED, RoutingSnapshot, SessionView, split_qualified, read_region, resolve_table
from .statements import blank_statement, strip_leading_noise

_MAINTENANCE = re.compile(
    r"^(analyze|optimize|repair|check|checksum)\s+(?:(?:no_write_to_binlog|local)\s+)?(table|tables)\s+", re.I)
_TABLE_ITEM = re.compile(rf"\s*{QUALIFIED}\s*(,)?", re.I)
_CHANGES_COPIES = {"analyze", "optimize", "repair"}


def plan_maintenance(sql: str, snap: RoutingSnapshot, session: SessionView, plan_inner: Callable[[str], Primitive]) -> Primitive:
    body = strip_leading_noise(sql).strip()
    m = _MAINTENANCE.match(body)
    if not m:
        if body[:7].lower() == "analyze":  # ANALYZE [FORMAT=JSON] <statement>: runs it
            inner = plan_inner(re.sub(r"^analyze\s+(?:format\s*=\s*\w+\s+)?", "", body, flags=re.I))
            if isinstance(inner, Route):
                return replace(inner, sql=sql, label="read")
            raise unsupported("ANALYZE of a statement that writes (run the statement itself)")
        raise SqlError(ER_PARSE, f"You have an error in your SQL syntax near '{body[:30]}'", "42000")
    verb = m.group(1).lower()
    tables = []
    names = []
    pos = m.end()
    while True:
        item = _TABLE_ITEM.match(body, pos)
        if not item:
            break
        tables.append(resolve_table(split_qualified(item.group(1), item.group(2)), session, snap))
        names.append(item.group(0).strip().rstrip(",").strip())
        pos = item.end()
        if not item.group(3):
            break
    if not tables:
        raise SqlError(ER_PARSE, f"You have an error in your SQL syntax near '{body[:30]}'", "42000")
    if verb not in _CHANGES_COPIES:
        return Route(sql, read_region(tuple(tables), snap), label="maintenance", epoch=snap.epoch)
    groups: dict[frozenset[str], list[int]] = {}  # the copies' regions -> tables there
    for i, t in enumerate(tables):
        groups.setdefault(frozenset(t.write_regions), []).append(i)

    def ordered(members: list[int]) -> tuple[str, ...]:  # the first table's primary first: its answer is the client's
        first = tables[members[0]]
        return (first.primary,) + tuple(sorted(set(first.write_regions) - {first.primary}))

    if len(groups) == 1:
        return EveryRegion(sql, f"{verb.upper()} TABLE", implicit_commit=True, regions=ordered(list(range(len(tables)))),
                           epoch=snap.epoch)
    # Tables placed apart: one statement per set of copies, the rows merged in the client's order.
    head, tail = body[:m.end()], body[pos:]
    return MaintenanceByRegions(tuple(
        EveryRegion(head + ", ".join(names[i] for i in members) + (" " + tail if tail.strip() else ""),
                    f"{verb.upper()} TABLE", implicit_commit=True, regions=ordered(members), epoch=snap.epoch)
        for members in groups.values()
    ), tuple(f"{t.database}.{t.name}" for t in tables), epoch=snap.epoch)


@dataclass(frozen=True, slots=True)
class MaintenanceByRegions:
    """ANALYZE / OPTIMIZE / REPAIR TABLE of tables placed on different regions:
    each set of copies runs the statement for its own tables; the result rows
    (Table, Op, Msg_type, Msg_text) come back in the order the client named them."""

    parts: tuple[EveryRegion, ...]
    order: tuple[str, ...]  # "db.table" as MariaDB names them in the Table column
    label: str = "maintenance"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        results = [(await part.execute(vc)).result for part in self.parts]
        first = next(r for r in results if r is not None)
        rank = {name: i for i, name in enumerate(self.order)}
        rows = [row for r in results if r is not None for row in r.rows]
        rows.sort(key=lambda row: rank.get((text_row(row)[0] or b"").decode("utf8", "surrogateescape"), len(rank)))
        return Reply(replace(first, rows=rows, more=None))

    def describe(self) -> dict[str, Any]:
        return {"MaintenanceByRegions": [part.describe() for part in self.parts]}


# -- SET STATEMENT ... FOR ----------------------------------------------------------------------
_SET_STATEMENT = re.compile(r"^set\s+statement\s+", re.I)
_FOR = re.compile(r"""'[^'\\]*(?:(?:\\.|'')[^'\\]*)*'?|"[^"\\]*(?:(?:\\.|"")[^"\\]*)*"?|`[^`]*`?|\bfor\b|[^'"`f]+|.""", re.I | re.S)


def split_set_statement(sql: str) -> tuple[str, str]:
    """(assignments, inner statement) of SET STATEMENT ... FOR ..."""
    body = strip_leading_noise(sql).strip()
    m = _SET_STATEMENT.match(body)
    if not m:
        raise SqlError(ER_PARSE, "You have an error in your SQL syntax near 'SET STATEMENT'", "42000")
    for tok in _FOR.finditer(body, m.end()):
        if tok.group().lower() == "for":
            return body[m.end():tok.start()].strip(), body[tok.end():].strip()
    raise SqlError(ER_PARSE, "You have an error in your SQL syntax near 'SET STATEMENT' (no FOR)", "42000")


def plan_set_statement(sql: str, plan_inner: Callable[[str], Primitive]) -> Primitive:
    assignments, inner_sql = split_set_statement(sql)
    if not assignments or not inner_sql:
        raise SqlError(ER_PARSE, "You have an error in your SQL syntax near 'SET STATEMENT'", "42000")
    inner: Any = plan_inner(inner_sql)
    if isinstance(inner, FanOutWrite):
        return replace(inner, statement_vars=assignments)
    if isinstance(inner, Route):
        return replace(inner, sql=sql)
    if isinstance(inner, (Ddl, CreateTableSelect)):  # the master has every region run SET STATEMENT <vars> FOR <ddl>
        return replace(inner, statement_vars=assignments)
    raise unsupported("SET STATEMENT ... FOR anything but a read, a write or table DDL")


# -- LOCK TABLES / UNLOCK TABLES ------------------------------------------------------------------
_LOCK = re.compile(r"^lock\s+tables?\s+", re.I)
_LOCK_ITEM = re.compile(
    rf"^\s*{QUALIFIED}(?:\s+(?:as\s+)?(?!read\b|write\b|low_priority\b)({IDENT}))?\s+"
    r"(read(?:\s+local)?|(?:low_priority\s+)?write(?:\s+concurrent)?)\s*$", re.I)


@dataclass(frozen=True, slots=True)
class LockTables:
    """LOCK TABLES: on every region holding an in-sync copy of a named table, with
    the items of the tables that region holds (a write must find its lock on
    every copy, a read on the copy it is routed to).  Commits first, as MariaDB.
    A region that refuses releases the locks already taken."""

    per_region: tuple[tuple[str, str], ...]  # (region, LOCK TABLES statement)
    label: str = "lock_tables"
    epoch: int = -1

    async def execute(self, vc: Any) -> Any:
        from .engine import end_transaction, ok
        from .txn import Event

        state = vc.state
        await end_transaction(vc, state.on(Event.IMPLICIT_COMMIT))
        await _unlock(vc)
        taken: list[str] = []
        try:
            for region, sql in self.per_region:
                await vc.run(region, sql, join=False)
                taken.append(region)
        except SqlError:
            state.locked_regions = tuple(taken)
            await _unlock(vc)
            raise
        state.locked_regions = tuple(taken)
        return ok()

    def describe(self) -> dict[str, Any]:
        return {"LockTables": [region for region, _ in self.per_region]}


@dataclass(frozen=True, slots=True)
class UnlockTables:
    label: str = "lock_tables"
    epoch: int = -1

    async def execute(self, vc: Any) -> Any:
        from .engine import ok

        await _unlock(vc)
        return ok()

    def describe(self) -> dict[str, Any]:
        return {"UnlockTables": True}


_TABLE_CHANGE = re.compile(
    rf"^(?:alter\s+(?:online\s+|ignore\s+)*table\s+|truncate\s+(?:table\s+)?"
    rf"|(?:create\s+(?:unique\s+|fulltext\s+|spatial\s+)?|drop\s+)index\s+{IDENT}\s+on\s+){QUALIFIED}",
    re.I,
)
_CHANGES_PLACEMENT = re.compile(r"\b(?:rename|references|foreign\s+key)\b", re.I)


def plan_ddl_under_lock(sql: str, snap: RoutingSnapshot, session: SessionView) -> Any:
    """ALTER TABLE / TRUNCATE / CREATE or DROP INDEX of a table this session holds
    under LOCK TABLES (mysqldump's `ALTER TABLE t DISABLE KEYS` between LOCK and
    UNLOCK): MariaDB runs it on the locking session's own connection; the
    master's connections would wait for that very lock.  So it runs on the
    session's connections to the table's copies, primary first (MariaDB's 1100
    there if that table itself is not locked); 1100 when its copies are not
    all on locked regions.  None for any other DDL (the master's)."""
    locked = getattr(session, "locked_regions", ())
    if not locked:
        return None
    body = strip_leading_noise(sql).strip()
    m = _TABLE_CHANGE.match(body)
    if m is None or _CHANGES_PLACEMENT.search(blank_statement(body)):
        return None
    table = resolve_table(split_qualified(m.group(1), m.group(2)), session, snap)
    if not set(table.write_regions) <= set(locked):
        # A locked table's copies are all on locked regions: this one is not locked, and
        # MariaDB refuses to touch it until UNLOCK TABLES.
        raise SqlError(ER_TABLE_NOT_LOCKED, f"Table '{table.name}' was not locked with LOCK TABLES", "HY000")
    return EveryRegion(sql, "DDL under LOCK TABLES", implicit_commit=True, regions=table.write_regions, epoch=snap.epoch)


async def _unlock(vc: Any) -> None:
    regions, vc.state.locked_regions = vc.state.locked_regions, ()
    for region in regions:
        try:
            await vc.run(region, "UNLOCK TABLES", join=False)
        except SqlError:
            pass  # a lost connection released its locks with it


def plan_lock_tables(sql: str, snap: RoutingSnapshot, session: SessionView) -> Primitive:
    body = strip_leading_noise(sql).strip().rstrip(";")
    if re.match(r"^unlock\s+tables?\s*$", body, re.I):
        return UnlockTables(epoch=snap.epoch)  # type: ignore[return-value]
    m = _LOCK.match(body)
    if not m:
        raise SqlError(ER_PARSE, f"You have an error in your SQL syntax near '{body[:30]}'", "42000")
    from .planbuilder import split_top_level

    by_region: dict[str, list[str]] = {}
    for item in split_top_level(body[m.end():]):
        im = _LOCK_ITEM.match(item)
        if not im:
            raise SqlError(ER_PARSE, f"You have an error in your SQL syntax near '{item.strip()[:30]}'", "42000")
        table = resolve_table(split_qualified(im.group(1), im.group(2)), session, snap)
        for region in table.write_regions:
            if region not in snap.regions:
                raise SqlError(2003, f"Region '{region}' is not available (failover may be in progress); try again")
            by_region.setdefault(region, []).append(item.strip())
    per_region = tuple((region, "LOCK TABLES " + ", ".join(items)) for region, items in sorted(by_region.items()))
    return LockTables(per_region, epoch=snap.epoch)  # type: ignore[return-value]


# -- SHOW [SESSION|GLOBAL] STATUS: the client-facing variables from the proxy ----------------
SHOW_STATUS = re.compile(r"^\s*show\s+(?:(session|local|global)\s+)?status\b", re.I)


@dataclass(frozen=True, slots=True)
class SessionStatus:
    """SHOW [SESSION|GLOBAL] STATUS: a region's answer, except the variables
    the region cannot know, which are the proxy's (VCursor.client_status):
    about the client's own connection (Compression, Ssl_cipher, Ssl_version;
    the region's connection is the proxy's, uncompressed, plain TCP) in
    session scope, and about client connections (Connections, Aborted_clients,
    Threads_connected, ...; metrics.ClientStatus) in both scopes."""

    sql: str
    label: str = "any"
    epoch: int = -1
    global_scope: bool = False

    async def execute(self, vc: VCursor) -> Reply:
        vc.state.statement()
        result = await vc.run(vc.any_region(), self.sql)
        own = vc.client_status(self.global_scope)
        rows = []
        for raw in result.rows:
            values = text_row(raw)
            name = (values[0] or b"").decode("ascii", "replace")
            if name in own and len(values) == 2:
                raw = lenenc_str(name.encode()) + lenenc_str(own[name].encode())
            rows.append(raw)
        return Reply(replace(result, rows=rows))

    def describe(self) -> dict[str, Any]:
        if self.global_scope:
            return {"SessionStatus": "any, client connection counters from the proxy"}
        return {"SessionStatus": "any, client connection's own rows from the proxy"}
