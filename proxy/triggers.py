"""Triggers through the gateway.

A trigger belongs to one table and fires where that table's rows change.
Every write reaches a table's primary and then each in-sync replica
(FanOutWrite), so a trigger must exist on exactly those copies: then each
copy fires it for the same rows and the copies stay identical.

* CREATE TRIGGER runs, as the client (MariaDB checks the TRIGGER privilege
  and sets DEFINER), on the table's primary and then each in-sync replica
  (`CreateTrigger`).  If a later copy refuses it, the earlier ones drop it
  again: a trigger on some copies only would make them differ silently.
* DROP TRIGGER runs on every live region, each told to drop it if there
  (`DropTrigger`); 1360 only when no region had it, as on one MariaDB.
* A copy the master makes later (a new replica, a moved table) gets the
  source's triggers, in their firing order, once its rows are in
  (region/tasks.py copy_table): triggers do not fire for the copy's rows.

A body that writes or reads other tables (an audit log, a counter in a
parent) needs them on the same regions, for good: the proxy first asks the
master to colocate them (`colocate`: moved if apart, and kept together by
`links` on the trigger's table through later moves and failovers), then
creates the trigger on the table's copies.  Refused (1235): a body that
CALLs a routine -- the tables it reaches cannot be named.

Limits, stated plainly: tables reached through stored functions the body
calls are not seen (as for CALL, routines.py); a trigger created while a
copy is being filled reaches that copy only if the copy has not yet read
its source's triggers (the same window as writes during a copy, issue 8).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from minisql.errors import ER_PARSE, SqlError, unsupported

from .clusterplan import warnings_result
from .engine import Reply, VCursor, end_transaction
from .planner import IDENT, RoutingSnapshot, SessionView, require_live, resolve_table, split_qualified
from .routines import body_facts, quote_ident
from .statements import DEFINER, strip_leading_noise
from .txn import Event

log = logging.getLogger(__name__)

ER_TRG_DOES_NOT_EXIST = 1360
ER_TRG_IN_WRONG_SCHEMA = 1435

_CREATE = re.compile(
    rf"^create(?:\s+or\s+replace)?(?:\s+{DEFINER})?\s+trigger\s+(?:if\s+not\s+exists\s+)?"
    rf"({IDENT})(?:\s*\.\s*({IDENT}))?\s+(?:before|after)\s+(?:insert|update|delete)\s+"
    rf"on\s+({IDENT})(?:\s*\.\s*({IDENT}))?\s+for\s+each\s+row\b"
    rf"(?:\s+(?:follows|precedes)\s+{IDENT}(?:\s*\.\s*{IDENT})?)?(.*)$",
    re.I | re.S,
)
_DROP = re.compile(rf"^drop\s+trigger\s+(if\s+exists\s+)?({IDENT}(?:\s*\.\s*{IDENT})?)\s*;?\s*$", re.I | re.S)


def plan_trigger_ddl(sql: str, snap: RoutingSnapshot, session: SessionView) -> Any:
    """CREATE TRIGGER -> CreateTrigger on its table's write copies; DROP TRIGGER -> DropTrigger."""
    text = strip_leading_noise(sql).strip()
    drop = _DROP.match(text)
    if drop is not None:
        return DropTrigger(sql, f"DROP TRIGGER {drop.group(2)}", if_exists=drop.group(1) is not None, epoch=snap.epoch)
    m = _CREATE.match(text)
    if m is None:
        if text[:4].lower() == "drop":
            raise SqlError(ER_PARSE, "You have an error in your SQL syntax near 'DROP TRIGGER'", "42000")
        raise SqlError(ER_PARSE, "You have an error in your SQL syntax near 'CREATE TRIGGER'", "42000")
    trigger = split_qualified(m.group(1), m.group(2))
    table = resolve_table(split_qualified(m.group(3), m.group(4)), session, snap)
    if trigger.database is not None and trigger.database.lower() != table.database.lower():
        raise SqlError(ER_TRG_IN_WRONG_SCHEMA, "Trigger in wrong schema", "HY000")
    facts = body_facts(m.group(5), table.database)
    if facts.calls:
        raise unsupported("a trigger whose body CALLs a routine (the tables it reaches cannot be named, so its copies "
                          "could differ)")
    own = (table.database, table.name)
    others = tuple(sorted({(t.database, t.name) for db, name in facts.tables if (db.lower(), name.lower()) != (
        own[0].lower(), own[1].lower()) and (t := snap.placement.table(db, name)) is not None}))
    regions = table.write_regions
    for region in regions:
        require_live(region, snap)
    undo = f"DROP TRIGGER IF EXISTS {quote_ident(table.database)}.{quote_ident(trigger.name)}"
    replaces = text[:30].lower().replace(" ", "").startswith("createorreplace")
    return CreateTrigger(sql, regions, None if replaces else undo, table=own, colocate=others, epoch=snap.epoch)


@dataclass(frozen=True, slots=True)
class CreateTrigger:
    """On the table's primary, then each in-sync replica; undone on the earlier
    copies if a later one refuses (OR REPLACE cannot be undone: logged)."""

    sql: str
    regions: tuple[str, ...]
    undo: str | None
    table: tuple[str, str] = ("", "")
    colocate: tuple[tuple[str, str], ...] = ()  # tables the body reaches: kept on the table's regions first
    label: str = "ddl"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        await end_transaction(vc, vc.state.on(Event.IMPLICIT_COMMIT))
        regions = self.regions
        if self.colocate:
            await vc.colocate(self.table, self.colocate)
            placed = vc.current_snapshot().placement.table(*self.table)
            regions = placed.write_regions if placed is not None else regions
        done: list[str] = []
        first = None
        for region in regions:
            try:
                result = await vc.run(region, self.sql, join=False)
            except SqlError:
                await self._undo(vc, done)
                raise
            done.append(region)
            first = first or result
        return Reply(first)

    async def _undo(self, vc: VCursor, done: list[str]) -> None:
        for region in done:
            if self.undo is None:
                log.error("CREATE OR REPLACE TRIGGER succeeded on %s but failed on a later copy: the copies' triggers "
                          "now differ", region)
                continue
            try:
                await vc.run(region, self.undo, join=False)
            except SqlError as e:
                log.error("could not undo CREATE TRIGGER on %s after a later copy refused it: %s", region, e)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"CreateTrigger": list(self.regions)}
        if self.colocate:
            out["colocate"] = [".".join(k) for k in self.colocate]
        return out


@dataclass(frozen=True, slots=True)
class DropTrigger:
    """On every live region that has the trigger (the table may have moved, or
    have copies being filled); 1360, or the client's IF EXISTS note, when none has."""

    sql: str
    strict_sql: str  # without IF EXISTS: a region answers 1360 where it has no such trigger
    if_exists: bool
    label: str = "ddl"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        await end_transaction(vc, vc.state.on(Event.IMPLICIT_COMMIT))
        dropped = None
        missing: SqlError | None = None
        for region in sorted(vc.snapshot.regions):
            try:
                result = await vc.run(region, self.strict_sql, join=False)
            except SqlError as e:
                if e.errno != ER_TRG_DOES_NOT_EXIST:
                    if dropped is None:
                        raise
                    log.error("DROP TRIGGER succeeded on a region but failed on %s: %s", region, e)
                    continue
                missing = e
                continue
            dropped = dropped or result
        if dropped is not None:
            vc.state.warnings = warnings_result([])  # a region's 1360 above is not the statement's
            return Reply(dropped)
        if self.if_exists:
            return Reply(await vc.run(vc.any_region(), self.sql, join=False))  # MariaDB's own note
        raise missing or SqlError(ER_TRG_DOES_NOT_EXIST, "Trigger does not exist", "HY000")

    def describe(self) -> dict[str, Any]:
        return {"DropTrigger": "every region holding it", "if_exists": self.if_exists}


# -- SHOW TRIGGERS / SHOW CREATE TRIGGER ------------------------------------------------------
_SHOW_TRIGGERS = re.compile(
    rf"^show\s+triggers(?:\s+(?:from|in)\s+({IDENT}))?(?:\s+like\s+('(?:[^'\\]|\\.|'')*'))?\s*;?\s*$", re.I | re.S)
_SHOW_CREATE_TRIGGER = re.compile(rf"^show\s+create\s+trigger\s+{IDENT}(?:\s*\.\s*{IDENT})?\s*;?\s*$", re.I)
_SHOW_TRIGGERS_COLUMNS = (
    "TRIGGER_NAME AS `Trigger`, EVENT_MANIPULATION AS `Event`, EVENT_OBJECT_TABLE AS `Table`, "
    "ACTION_STATEMENT AS `Statement`, ACTION_TIMING AS `Timing`, CREATED AS `Created`, SQL_MODE AS `sql_mode`, "
    "DEFINER AS `Definer`, CHARACTER_SET_CLIENT AS `character_set_client`, "
    "COLLATION_CONNECTION AS `collation_connection`, DATABASE_COLLATION AS `Database Collation`"
)


def show_triggers_query(sql: str, database: str | None) -> str | None:
    """SHOW TRIGGERS [FROM db] [LIKE 'table pattern'] as the information_schema
    query that asks every region (each lists the triggers of the copies it
    holds; catalog.py keeps each table's from its primary).  None: not that."""
    m = _SHOW_TRIGGERS.match(strip_leading_noise(sql).strip())
    if m is None:
        return None
    schema = split_qualified(m.group(1), None).name if m.group(1) else database
    if schema is None:
        raise SqlError(1046, "No database selected", "3D000")
    if "\\" in schema:
        raise unsupported("SHOW TRIGGERS of a database whose name has a backslash")
    where = "EVENT_OBJECT_SCHEMA = '" + schema.replace("'", "''") + "'"
    if m.group(2):
        where += f" AND EVENT_OBJECT_TABLE LIKE {m.group(2)}"
    return (f"SELECT {_SHOW_TRIGGERS_COLUMNS} FROM information_schema.TRIGGERS WHERE {where} "
            "ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER")


def plan_show_create_trigger(sql: str, snap: RoutingSnapshot) -> "ShowCreateTrigger | None":
    if _SHOW_CREATE_TRIGGER.match(strip_leading_noise(sql).strip()) is None:
        return None
    return ShowCreateTrigger(sql, epoch=snap.epoch)


@dataclass(frozen=True, slots=True)
class ShowCreateTrigger:
    """SHOW CREATE TRIGGER: answered by a region that has it (the regions holding
    its table's copies); 1360 from the last asked when none has."""

    sql: str
    label: str = "any"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        first = vc.any_region()
        error: SqlError | None = None
        for region in [first] + sorted(r for r in vc.snapshot.regions if r != first):
            try:
                return Reply(await vc.run(region, self.sql, join=False))
            except SqlError as e:
                if e.errno != ER_TRG_DOES_NOT_EXIST:
                    raise
                error = e
        raise error or SqlError(ER_TRG_DOES_NOT_EXIST, "Trigger does not exist", "HY000")

    def describe(self) -> dict[str, Any]:
        return {"ShowCreateTrigger": "a region that has it"}
