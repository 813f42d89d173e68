"""Temporary tables: a session's own tables, on one region, invisible to others.

MariaDB keeps a temporary table on the connection that created it, so the
proxy creates it on one region's connection of the session and remembers
where (SessionState.temp_tables).  From then on the planner resolves the name
to that region before the placement (a temporary table hides a placed table
of the same name, as in MariaDB), so reads, writes and joins with the
session's normal tables route like any table with one copy: a join works
where the normal table has a copy on that region, and gets a clear 1235
otherwise.  The region is chosen so that `CREATE TEMPORARY TABLE ... LIKE t`
and `... SELECT ... FROM t` can run: a region holding `t`; with no table
named, the region of the session's other temporary tables, else the first
live region.

Error handling: temporary tables die with their connection, as in MariaDB
(a broken backend connection, COM_RESET_CONNECTION, COM_CHANGE_USER); the
names are then forgotten and the next use gets MariaDB's 1146.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from minisql.errors import ER_NO_DB, ER_PARSE, SqlError, unsupported

from .engine import Ddl, Reply, VCursor
from .planner import RoutingSnapshot, SessionView, split_qualified, read_region, resolve_table
from .statements import AnalysisCache, Kind, strip_leading_noise

_IDENT = r"(?:`[^`]+(?:``[^`]*)*`|[\w$]+)"
_NAME = rf"({_IDENT})(?:\s*\.\s*({_IDENT}))?"
_CREATE = re.compile(rf"^create\s+temporary\s+table\s+(?:if\s+not\s+exists\s+)?{_NAME}", re.I)
_LIKE = re.compile(rf"^\s*\(?\s*like\s+{_NAME}", re.I)
_SELECT = re.compile(r"\b(select|with)\b", re.I)
_DROP = re.compile(r"^drop\s+(?:temporary\s+)?tables?\s+(if\s+exists\s+)?", re.I)
_NAME_ITEM = re.compile(rf"\s*{_NAME}\s*(,)?")
_OTHER_DDL = re.compile(
    rf"^(?:alter\s+(?:online\s+|ignore\s+)*table|truncate(?:\s+table)?|rename\s+table"
    rf"|create\s+(?:or\s+replace\s+)?(?:unique\s+|fulltext\s+|spatial\s+)?index\s+(?:if\s+not\s+exists\s+)?{_IDENT}"
    rf"(?:\s+using\s+\w+)?\s+on|drop\s+index\s+(?:if\s+exists\s+)?{_IDENT}\s+on)\s+{_NAME}", re.I)


@dataclass(frozen=True, slots=True)
class TempTable:
    """A statement on the session's temporary tables, on their region."""

    sql: str
    region: str
    created: tuple[tuple[str, str], ...] = ()
    dropped: tuple[tuple[str, str], ...] = ()
    label: str = "temporary"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        result = await vc.run(self.region, self.sql)
        for key in self.dropped:
            vc.state.temp_tables.pop(key, None)
        for key in self.created:
            vc.state.temp_tables[key] = self.region
        return Reply(result)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"TempTable": self.region}
        if self.created:
            out["creates"] = [".".join(k) for k in self.created]
        if self.dropped:
            out["drops"] = [".".join(k) for k in self.dropped]
        return out


@dataclass(frozen=True, slots=True)
class DropBoth:
    """DROP TABLE naming temporary and normal tables: the temporary ones first."""

    temporary: TempTable
    normal: Ddl
    label: str = "temporary"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        await self.temporary.execute(vc)
        return await self.normal.execute(vc)

    def describe(self) -> dict[str, Any]:
        return {"DropBoth": [self.temporary.describe(), self.normal.describe()]}


def _names(keys: list[tuple[str, str]]) -> str:
    return ", ".join(".".join("`" + part.replace("`", "``") + "`" for part in key) for key in keys)


def _key(first: str, second: str | None, session: SessionView) -> tuple[str, str]:
    ref = split_qualified(first, second)
    database = ref.database or session.database
    if database is None:
        raise SqlError(ER_NO_DB, "No database selected")
    return database.lower(), ref.name.lower()


def plan_temporary(sql: str, kind: Kind, snap: RoutingSnapshot, session: SessionView, cache: AnalysisCache) -> TempTable:
    """CREATE / DROP TEMPORARY TABLE (Kind.TEMPORARY)."""
    body = strip_leading_noise(sql).strip()
    temporary: dict[tuple[str, str], str] = getattr(session, "temp_tables", {})
    m = _CREATE.match(body)
    if m:
        key = _key(m.group(1), m.group(2), session)
        rest = body[m.end():]
        like = _LIKE.match(rest)
        sources = ()
        if like:
            sources = (resolve_table(split_qualified(like.group(1), like.group(2)), session, snap),)
        else:
            select = _SELECT.search(rest)
            if select:
                analysis = cache.get(rest[select.start():], Kind.SELECT)
                sources = tuple(resolve_table(r, session, snap) for r in analysis.reads)
        if sources:
            region = read_region(sources, snap)
        elif temporary:
            region = next(iter(temporary.values()))
        elif snap.regions:
            region = sorted(snap.regions)[0]
        else:
            raise SqlError(2003, "No region is available")
        return TempTable(sql, region, created=(key,), epoch=snap.epoch)
    return _plan_drop(sql, body, session, temporary, snap, only_temporary=True)  # type: ignore[return-value]


def _plan_drop(sql: str, body: str, session: SessionView, temporary: dict[tuple[str, str], str], snap: RoutingSnapshot,
               only_temporary: bool) -> TempTable | DropBoth | None:
    m = _DROP.match(body)
    if not m:
        raise SqlError(ER_PARSE, f"You have an error in your SQL syntax near '{body[:30]}'", "42000")
    keys, pos = [], m.end()
    while True:
        item = _NAME_ITEM.match(body, pos)
        if not item:
            break
        keys.append(_key(item.group(1), item.group(2), session))
        pos = item.end()
        if not item.group(3):
            break
    found = [k for k in keys if k in temporary]
    if not only_temporary and not found:
        return None  # a DROP of normal tables: the master's
    if len(found) != len(keys):
        if only_temporary and m.group(1):  # DROP TEMPORARY TABLE IF EXISTS of unknown names: MariaDB notes it
            region = next(iter(temporary.values()), None) or (sorted(snap.regions)[0] if snap.regions else None)
            if region is not None and found:
                return TempTable(sql, temporary[found[0]], dropped=tuple(found), epoch=snap.epoch)
            if region is not None:
                return TempTable(sql, region, epoch=snap.epoch)
        if only_temporary:
            missing = next(k for k in keys if k not in temporary)
            raise SqlError(1051, f"Unknown table '{'.'.join(missing)}'", "42S02")
        # Temporary and normal tables in one DROP TABLE: the temporary ones on their region,
        # then the others through the master, as two statements MariaDB would run as one.
        regions = {temporary[k] for k in found}
        if len(regions) != 1:
            raise unsupported("DROP of temporary tables on different regions (one statement each)")
        exists = "IF EXISTS " if m.group(1) else ""
        temp = TempTable(f"DROP TEMPORARY TABLE {exists}{_names(found)}", regions.pop(), dropped=tuple(found), epoch=snap.epoch)
        return DropBoth(temp, Ddl(f"DROP TABLE {exists}{_names([k for k in keys if k not in temporary])}", epoch=snap.epoch))
    regions = {temporary[k] for k in found}
    if len(regions) != 1:
        raise unsupported("DROP of temporary tables on different regions (one statement each)")
    return TempTable(sql, regions.pop(), dropped=tuple(found), epoch=snap.epoch)


def plan_ddl_on_temporary(sql: str, snap: RoutingSnapshot, session: SessionView) -> TempTable | DropBoth | None:
    """DROP / ALTER / TRUNCATE / RENAME / CREATE INDEX / DROP INDEX naming a session's temporary table goes to
    its region, not to the master (None: not about temporary tables)."""
    temporary: dict[tuple[str, str], str] = getattr(session, "temp_tables", {})
    if not temporary:
        return None
    body = strip_leading_noise(sql).strip()
    if _DROP.match(body):
        return _plan_drop(sql, body, session, temporary, snap, only_temporary=False)
    m = _OTHER_DDL.match(body)
    if m:
        key = _key(m.group(1), m.group(2), session)
        if key in temporary:
            if body[:6].lower() == "rename":
                raise unsupported("RENAME TABLE of a temporary table (use ALTER TABLE ... RENAME TO)")
            return TempTable(sql, temporary[key], epoch=snap.epoch)
    return None
