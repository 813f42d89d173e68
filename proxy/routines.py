"""Stored procedures and functions through the gateway.

Routines belong to a database, and every region holds every database, so
CREATE / ALTER / DROP PROCEDURE / FUNCTION run on every live region as the
client (`EveryRegion`): the DEFINER and the privilege checks are MariaDB's,
and a routine can be called wherever its tables are.

CALL is routed by what the body touches, as a statement naming those tables
would be: `CallRoutine` reads the definition (SHOW CREATE PROCEDURE, as the
client, on any region; nested CALLs followed a few levels deep), names the
tables it mentions, and then runs as a read on a region holding all of them,
or -- when the body writes -- as a write on the primary and then every
in-sync copy (FanOutWrite: NOW() and RAND() pinned, affected rows compared),
which is what keeps the copies identical.

Limits (documented in docs/architecture.md): tables reached only through
dynamic SQL (PREPARE inside the body) or through stored functions the body
calls are not seen; a body that writes tables placed on different sets of
regions is refused (1235), as the same statements sent one by one would be;
a client that may CALL a routine but not read its definition (no SHOW CREATE
ROUTINE privilege, not the definer) gets 1235 instead of a guessed route.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from minisql.errors import SqlError, unsupported

from .engine import EveryRegion, FanOutWrite, Primitive, Reply, Route, VCursor
from .fillguard import refuse_while_filling
from .planner import RoutingSnapshot, read_region
from .protocol import text_row
from .statements import STRINGS_AND_COMMENTS, strip_leading_noise
from topology.model import TablePlacement

MAX_NESTING = 4  # CALLs followed inside bodies

_IDENT = r"(?:`(?:[^`]|``)+`|[\w$]+)"
_CALL = re.compile(rf"^call\s+({_IDENT})(?:\s*\.\s*({_IDENT}))?\s*(?:\(|;|$)", re.I)
_ROUTINE_WORD = re.compile(r"\b(procedure|function)\b", re.I)
_TABLE_AFTER = re.compile(
    rf"\b(?:from|join|into|update|table|insert(?:\s+(?:low_priority|delayed|high_priority|ignore))*(?:\s+into)?|"
    rf"replace(?:\s+(?:low_priority|delayed))*(?:\s+into)?)\s+({_IDENT})(?:\s*\.\s*({_IDENT}))?",
    re.I,
)
_WRITES = re.compile(r"\b(?:insert|update|delete|replace|truncate|alter|create|drop|rename|load)\b", re.I)
_NESTED_CALL = re.compile(rf"\bcall\s+({_IDENT})(?:\s*\.\s*({_IDENT}))?", re.I)
_NOT_TABLES = frozenset({"select", "dual", "outfile", "dumpfile", "set", "where", "values", "value", "ignore", "into",
                         "low_priority", "delayed", "high_priority", "quick", "if", "exists"})


def _unquote(ident: str) -> str:
    return ident[1:-1].replace("``", "`") if ident.startswith("`") else ident


def quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def plan_routine_ddl(sql: str, epoch: int) -> Primitive:
    """CREATE / ALTER / DROP PROCEDURE / FUNCTION: on every live region."""
    m = _ROUTINE_WORD.search(strip_leading_noise(sql)[:400])
    word = m.group(1).upper() if m else "ROUTINE"
    verb = strip_leading_noise(sql).split(None, 1)[0].upper()
    return EveryRegion(sql, f"{verb} {word}", implicit_commit=True, epoch=epoch)


def parse_call(sql: str, database: str | None) -> tuple[str, str]:
    """(database, procedure) a CALL names (1046 without either)."""
    m = _CALL.match(strip_leading_noise(sql).strip())
    if not m:
        raise SqlError(1064, "You have an error in your SQL syntax near 'CALL'", "42000")
    if m.group(2) is not None:
        return _unquote(m.group(1)), _unquote(m.group(2))
    if database is None:
        raise SqlError(1046, "No database selected", "3D000")
    return database, _unquote(m.group(1))


@dataclass(frozen=True, slots=True)
class BodyFacts:
    """What a routine body touches, as far as its text tells."""

    tables: frozenset[tuple[str, str]]  # (database, name); the routine's database where unqualified
    writes: bool
    calls: frozenset[tuple[str, str]]


_HEADER = re.compile(r"^\s*create\b.*?\b(?:procedure|function)\b", re.I | re.S)


def body_facts(body: str, database: str) -> BodyFacts:
    """`body`: the routine's text, with or without its CREATE ... PROCEDURE head."""
    text = STRINGS_AND_COMMENTS.sub(" ", body)
    text = _HEADER.sub(" ", text, count=1)
    tables: set[tuple[str, str]] = set()
    for m in _TABLE_AFTER.finditer(text):
        first, second = _unquote(m.group(1)), m.group(2)
        if second is None:
            if first.lower() in _NOT_TABLES:
                continue
            tables.add((database, first))
        else:
            tables.add((first, _unquote(second)))
    calls = set()
    for m in _NESTED_CALL.finditer(text):
        calls.add((database, _unquote(m.group(1))) if m.group(2) is None else (_unquote(m.group(1)), _unquote(m.group(2))))
    return BodyFacts(frozenset(tables), bool(_WRITES.search(text)), frozenset(calls))


def plan_call(sql: str, facts: list[BodyFacts], snap: RoutingSnapshot, temp_tables: dict[tuple[str, str], str] | None,
              epoch: int) -> Primitive:
    """Pure: the route of a CALL whose body (and nested bodies) say `facts`."""
    placed: list[TablePlacement] = []
    temp_regions: set[str] = set()
    for db, name in sorted({t for f in facts for t in f.tables}):
        region = (temp_tables or {}).get((db.lower(), name.lower()))
        if region is not None:
            temp_regions.add(region)
            continue
        table = snap.placement.table(db, name)
        if table is not None:  # other names: local variables, cursors, CTEs, tables that do not exist
            placed.append(table)
    writes = any(f.writes for f in facts)
    if temp_regions:
        if len(temp_regions) > 1 or any(temp_regions - {r} for t in placed for r in t.write_regions):
            raise unsupported("CALL of a routine that uses temporary tables and tables placed elsewhere")
    if not placed:
        if writes and not temp_regions:
            # Safer refused than run on one region: a write whose tables the
            # scan missed would change one copy only.
            raise unsupported("CALL of a routine that writes, when the gateway cannot name the tables it writes")
        region = next(iter(temp_regions)) if temp_regions else None
        return Route(sql, region, label="call" if region else "any", epoch=epoch)
    if not writes:
        return Route(sql, read_region(tuple(placed), snap), label="call", epoch=epoch)
    refuse_while_filling(tuple(placed), "is a CALL")
    regions = placed[0].write_regions
    for t in placed[1:]:
        if set(t.write_regions) != set(regions):
            where = "; ".join(f"{t.database}.{t.name} on {', '.join(t.write_regions)}" for t in placed)
            raise unsupported(f"CALL of a routine that writes tables placed on different regions ({where})")
    for region in regions:
        if region not in snap.regions:
            raise SqlError(2003, f"Region '{region}' is not available (failover may be in progress); try again")
    # Not as XA: a body may COMMIT, ROLLBACK or run DDL, which an XA branch refuses (1399).
    return FanOutWrite(sql, regions, uses_rand=True, atomic=False, label="call", epoch=epoch)


def plan_compound(sql: str, snap: RoutingSnapshot, database: str | None, temp_tables: dict[tuple[str, str], str] | None,
                  epoch: int) -> Primitive:
    """A compound statement run outside a stored program (BEGIN NOT ATOMIC ...
    END, FOR ... END FOR, WHILE, LOOP, REPEAT, IF, CASE): routed as a CALL of a
    routine with this body would be -- a read where its tables are, a write to
    every copy of the tables it writes (they must share their regions)."""
    facts = body_facts(sql, database or "")
    if facts.calls:
        raise unsupported("a compound statement that CALLs a routine")
    return plan_call(sql, [facts], snap, temp_tables, epoch)


@dataclass(frozen=True, slots=True)
class CallRoutine:
    """CALL: the body is read when the statement runs, then routed (plan_call)."""

    sql: str
    database: str
    name: str
    label: str = "call"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        facts: list[BodyFacts] = []
        seen: set[tuple[str, str]] = set()
        todo = [(self.database, self.name)]
        region = vc.any_region()
        for _ in range(MAX_NESTING + 1):
            nested: list[tuple[str, str]] = []
            for db, name in todo:
                if (db.lower(), name.lower()) in seen:
                    continue
                seen.add((db.lower(), name.lower()))
                body = await _definition(vc, region, db, name)
                if body is None:
                    continue
                f = body_facts(body, db)
                facts.append(f)
                nested.extend(f.calls)
            if not nested:
                break
            todo = nested
        primitive = plan_call(self.sql, facts, vc.snapshot, vc.state.temp_tables, self.epoch)
        return await primitive.execute(vc)

    def describe(self) -> dict[str, Any]:
        return {"CallRoutine": f"{self.database}.{self.name}"}


async def _definition(vc: VCursor, region: str, database: str, name: str) -> str | None:
    """The routine's CREATE text as the client may read it (None: it does not
    exist -- the CALL then goes to any region, for MariaDB's own 1305)."""
    try:
        result = await vc.run(region, f"SHOW CREATE PROCEDURE {quote_ident(database)}.{quote_ident(name)}", join=False)
    except SqlError as e:
        if e.errno != 1305:
            raise
        return None
    if not result.rows:
        return None
    values = text_row(result.rows[0])
    text = values[2] if len(values) > 2 else None
    if text is None:
        raise unsupported(f"CALL {database}.{name} for a client that may not read its definition "
                          "(the gateway routes a CALL by the tables its body names: grant SHOW CREATE ROUTINE)")
    return text.decode("utf8", "surrogateescape")
