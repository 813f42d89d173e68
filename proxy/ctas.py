"""CREATE TABLE ... SELECT, CREATE TABLE ... LIKE and CREATE OR REPLACE TABLE
through the gateway: the forms the proxy composes from the master's plain
CREATE / DROP TABLE and MariaDB's own answers.

CREATE TABLE ... LIKE: `SHOW CREATE TABLE` of the source where it is read,
renamed, without its FOREIGN KEYs and AUTO_INCREMENT counter (MariaDB copies
neither), as an ordinary CREATE TABLE through the master.

CREATE OR REPLACE TABLE: MariaDB defines it as DROP TABLE IF EXISTS and then
CREATE TABLE, and so does the proxy (both through the master).  A SELECT or
LIKE naming the table being replaced is refused first, as MariaDB refuses it
(1093 / 1066), never after the drop.

CREATE TABLE ... SELECT:

A new table is placed by the master (its DDL path creates it on a primary
and a replica before publishing it), while the rows come from a SELECT that
may read tables anywhere.  MariaDB decides what the new table looks like --
column types derived from the SELECT, merged with any columns the statement
defines, IGNORE / REPLACE on duplicate keys -- so the proxy lets it:

1. on a region where the SELECT can run (tables it lacks shipped there,
   crossread.py), `CREATE TEMPORARY TABLE <scratch> <the client's text after
   the table name>`: MariaDB's own CREATE ... SELECT, into a session
   temporary table;
2. `SHOW CREATE TABLE <scratch>` gives the definition, and its rows are read
   (at most `--max-shipped-bytes`); the scratch table is dropped;
3. the definition, named as the client named it, goes through the master as
   an ordinary CREATE TABLE, and the rows through the write fan-out to every
   copy (`INSERT ... VALUES` in chunks of about 1 MiB);
4. like any DDL it commits: the open transaction before, the rows after.

If writing the rows fails, the table is dropped again (MariaDB's CREATE ...
SELECT leaves no table behind either).  CREATE TABLE IF NOT EXISTS ... SELECT
on an existing table is MariaDB's note 1050 and inserts nothing.

Limits, stated plainly (error handling): the rows pass through the proxy
(bounded as above; beyond: 1235, nothing created); between steps 3 and 4 the
new table is visible, empty or partly filled, to other sessions (MariaDB
shows no table until the statement ends); the client needs the CREATE
TEMPORARY TABLES privilege in the target database; CREATE TABLE ... LIKE and
CREATE OR REPLACE TABLE ... SELECT keep 1235.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace as _replace
from typing import Any

from minisql.errors import ER_NO_DB, ER_TABLE_EXISTS, SqlError, unsupported

from .backend import QueryResult
from .clusterplan import warnings_result
from .crossread import create_copies, drop_copies, read_copies, show_definition
from .engine import Ddl, FanOutWrite, Reply, VCursor, end_transaction
from .insertselect import LIMIT, chunks, read_rendered_rows
from .planner import QUALIFIED, Op, RoutingSnapshot, SessionView, Shipment, plan_dml, read_region, resolve_table, split_qualified
from .protocol import lenenc_str
from .routines import quote_ident
from .statements import AnalysisCache, Kind, blank_statement, strip_leading_noise, top_level_select
from .txn import Event
from topology.model import TablePlacement

log = logging.getLogger(__name__)

SCRATCH = "__minisql_ctas"  # the session temporary table MariaDB's CREATE ... SELECT fills

_HEAD = re.compile(rf"^\s*create\s+table\s+(if\s+not\s+exists\s+)?{QUALIFIED}", re.I)
_LIKE_WORD = frozenset({"like"})  # CREATE TABLE ... LIKE: not a SELECT
_OR_REPLACE = re.compile(r"^\s*create\s+or\s+replace\s+(?=table\b)", re.I)
_LIKE = re.compile(rf"^\s*create\s+table\s+(if\s+not\s+exists\s+)?{QUALIFIED}\s*"
                   rf"(?:\(\s*like\s+{QUALIFIED}\s*\)|like\s+{QUALIFIED})\s*;?\s*$", re.I)
_AUTO_INCREMENT = re.compile(r" AUTO_INCREMENT=\d+")
ER_NONUNIQ_TABLE = 1066
ER_UPDATE_TABLE_USED = 1093


@dataclass(frozen=True, slots=True)
class CtasParts:
    if_not_exists: bool
    database: str | None
    name: str
    rest: str  # the client's text after the table name: column definitions, options, [IGNORE|REPLACE] [AS] SELECT
    select: str


def split_create_select(sql: str) -> CtasParts | None:
    """The parts of `CREATE TABLE [IF NOT EXISTS] t [(...)] [options] [IGNORE|REPLACE] [AS] SELECT ...`;
    None for any other CREATE TABLE (LIKE, no SELECT)."""
    blank = blank_statement(sql)
    m = _HEAD.match(blank)
    if m is None:
        return None
    start = top_level_select(blank, m.end(), _LIKE_WORD)
    if start is None:
        return None
    real = _HEAD.match(sql)  # the same positions: the blanked text keeps them
    assert real is not None
    ref = split_qualified(real.group(2), real.group(3))
    rest = sql[m.end():].strip().rstrip(";").rstrip()
    return CtasParts(bool(m.group(1)), ref.database, ref.name, rest, sql[start:].strip().rstrip(";").rstrip())


def plan_create_table(sql: str, snap: RoutingSnapshot, session: SessionView, cache: AnalysisCache) -> Any:
    """The primitive of CREATE [OR REPLACE] TABLE ... SELECT / LIKE, and of CREATE
    OR REPLACE TABLE; None for the CREATE TABLE the master runs as it is."""
    sql = strip_leading_noise(sql)
    replace_match = _OR_REPLACE.match(sql)
    if replace_match is None:
        return _plan_like(sql, snap, session) or _plan_select(sql, snap, session, cache)
    inner_sql = "CREATE " + sql[replace_match.end():]
    name = _HEAD.match(blank_statement(inner_sql))
    if name is None or name.group(1):
        raise SqlError(1064, "You have an error in your SQL syntax near 'OR REPLACE ... IF NOT EXISTS'", "42000")
    real = _HEAD.match(inner_sql)
    assert real is not None
    ref = split_qualified(real.group(2), real.group(3))
    database = ref.database or session.database
    if database is None:
        raise SqlError(ER_NO_DB, "No database selected", "3D000")
    target = (database.lower(), ref.name.lower())
    inner = _plan_like(inner_sql, snap, session) or _plan_select(inner_sql, snap, session, cache)
    if isinstance(inner, CreateTableLike) and (inner.source.database.lower(), inner.source.name.lower()) == target:
        raise SqlError(ER_NONUNIQ_TABLE, f"Not unique table/alias: '{ref.name}'", "42000")
    if isinstance(inner, CreateTableSelect):
        if target in inner.reads:
            raise SqlError(ER_UPDATE_TABLE_USED, f"Table '{ref.name}' is specified twice, both as a target for 'CREATE' "
                           "and as a separate source for data", "HY000")
        inner = _replace(inner, exists=False)
    elif isinstance(inner, CreateTableLike):
        inner = _replace(inner, exists=False)
    else:
        inner = Ddl(inner_sql, epoch=snap.epoch)
    return ReplaceTable(f"DROP TABLE IF EXISTS {quote_ident(database)}.{quote_ident(ref.name)}", inner, epoch=snap.epoch)


def _plan_select(sql: str, snap: RoutingSnapshot, session: SessionView, cache: AnalysisCache) -> Any:
    parts = split_create_select(sql)
    if parts is None:
        return None
    database = parts.database or session.database
    if database is None:
        raise SqlError(ER_NO_DB, "No database selected", "3D000")
    select = cache.get(parts.select, Kind.SELECT)
    if select.writes or select.locking_read:
        raise unsupported("CREATE TABLE ... SELECT with a locking or writing SELECT")
    p = plan_dml(parts.select, select, snap, session)
    if p.op not in (Op.READ, Op.ANY):
        raise unsupported("CREATE TABLE ... SELECT of this form")
    return CreateTableSelect(
        database, parts.name, parts.if_not_exists, snap.placement.table(database, parts.name) is not None, parts.rest,
        p.regions[0] if p.op is Op.READ else None, p.copies,
        tuple((t.database.lower(), t.name.lower()) for t in p.tables), epoch=snap.epoch,
    )


def _plan_like(sql: str, snap: RoutingSnapshot, session: SessionView) -> "CreateTableLike | None":
    m = _LIKE.match(sql)
    if m is None:
        return None
    ref = split_qualified(m.group(2), m.group(3))
    database = ref.database or session.database
    if database is None:
        raise SqlError(ER_NO_DB, "No database selected", "3D000")
    first, second = (m.group(4), m.group(5)) if m.group(4) else (m.group(6), m.group(7))
    source = resolve_table(split_qualified(first, second), session, snap)
    return CreateTableLike(database, ref.name, bool(m.group(1)), snap.placement.table(database, ref.name) is not None,
                           source, read_region((source,), snap), epoch=snap.epoch)


async def _exists_answer(vc: VCursor, name: str, if_not_exists: bool) -> Reply:
    """MariaDB's answer to creating a table that exists: 1050, or its note."""
    message = f"Table '{name}' already exists"
    if not if_not_exists:
        raise SqlError(ER_TABLE_EXISTS, message, "42S01")
    vc.state.warnings = warnings_result([{"level": "Note", "code": ER_TABLE_EXISTS, "message": message}])
    return Reply(QueryResult(None, [], 0, 0, 1, 0, b""))


@dataclass(frozen=True, slots=True)
class CreateTableLike:
    database: str
    name: str
    if_not_exists: bool
    exists: bool
    source: TablePlacement
    region: str
    label: str = "ddl"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        await end_transaction(vc, vc.state.on(Event.IMPLICIT_COMMIT))
        if self.exists:
            return await _exists_answer(vc, self.name, self.if_not_exists)
        table = f"{quote_ident(self.source.database)}.{quote_ident(self.source.name)}"
        definition, _ = await show_definition(vc, self.region, table, self.database, self.name, temporary=False)
        head, _, tail = definition.rpartition("\n")
        return await vc.ddl(head + "\n" + _AUTO_INCREMENT.sub("", tail))

    def describe(self) -> dict[str, Any]:
        return {"CreateTableLike": f"{self.source.database}.{self.source.name} from {self.region}"}


@dataclass(frozen=True, slots=True)
class ReplaceTable:
    """CREATE OR REPLACE TABLE: DROP TABLE IF EXISTS, then `create` (MariaDB's definition)."""

    drop: str
    create: Any
    label: str = "ddl"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        await end_transaction(vc, vc.state.on(Event.IMPLICIT_COMMIT))
        await vc.ddl(self.drop)
        return await self.create.execute(vc)

    def describe(self) -> dict[str, Any]:
        return {"ReplaceTable": self.drop, "then": self.create.describe()}


@dataclass(frozen=True, slots=True)
class CreateTableSelect:
    """The module docstring's four steps."""

    database: str
    name: str
    if_not_exists: bool
    exists: bool  # at planning: MariaDB's 1050 (or the IF NOT EXISTS note) without running anything
    rest: str
    region: str | None  # where the SELECT runs; None: any region (it reads no table)
    shipments: tuple[Shipment, ...]
    reads: tuple[tuple[str, str], ...] = ()  # (database, table) lowercased: what the SELECT reads
    statement_vars: str = ""  # SET STATEMENT <these> FOR CREATE TABLE ... SELECT: MariaDB's CREATE and the master's
    label: str = "ddl"
    epoch: int = -1

    @property
    def table(self) -> str:
        return f"{quote_ident(self.database)}.{quote_ident(self.name)}"

    async def execute(self, vc: VCursor) -> Reply:
        await end_transaction(vc, vc.state.on(Event.IMPLICIT_COMMIT))
        if self.exists:
            return await _exists_answer(vc, self.name, self.if_not_exists)
        region = self.region or vc.any_region()
        create, columns, rows, warned = await self._scratch(vc, region)
        await vc.ddl(create, self.statement_vars)
        try:
            placed = vc.current_snapshot().placement.table(self.database, self.name)
            if placed is None:
                raise SqlError(ER_TABLE_EXISTS, f"Table '{self.name}' was created but is not placed yet", "HY000")
            head = f"INSERT INTO {self.table} ({', '.join(quote_ident(c) for c in columns)}) VALUES "
            for chunk in chunks(rows):
                await FanOutWrite(head + ",".join(chunk), placed.write_regions, epoch=self.epoch).execute(vc)
            await end_transaction(vc, vc.state.on(Event.IMPLICIT_COMMIT))
        except SqlError:
            try:
                await end_transaction(vc, vc.state.on(Event.ROLLBACK))
                await vc.ddl(f"DROP TABLE IF EXISTS {self.table}")
            except SqlError as e:
                log.error("CREATE TABLE ... SELECT: could not drop %s after its rows failed: %s", self.table, e)
            raise
        vc.state.row_count = len(rows)
        warnings = len(warned.rows) if warned is not None else 0
        if warned is not None:
            vc.state.warnings = warned  # MariaDB's own, from the CREATE ... SELECT that shaped the table
        info = lenenc_str(f"Records: {len(rows)}  Duplicates: 0  Warnings: {warnings}".encode())  # (length-prefixed, as sent)
        return Reply(QueryResult(None, [], len(rows), 0, warnings, 0, info))

    async def _scratch(self, vc: VCursor, region: str) -> tuple[str, list[str], list[str], Any]:
        """MariaDB's own CREATE ... SELECT into a temporary table on `region`: the
        new table's definition (named as the client named it), stored columns,
        rows, and its SHOW WARNINGS (None without warnings)."""
        scratch = f"{quote_ident(self.database)}.{quote_ident(SCRATCH)}"
        copies = await read_copies(vc, self.shipments)
        created: list[str] = []
        try:
            await create_copies(vc, region, copies, created)
            await vc.run(region, f"DROP TEMPORARY TABLE IF EXISTS {scratch}", join=False)
            prefix = f"SET STATEMENT {self.statement_vars} FOR " if self.statement_vars else ""
            made = await vc.run(region, f"{prefix}CREATE TEMPORARY TABLE {scratch} {self.rest}", join=False)
            created.append(scratch)
            warned = await vc.run(region, "SHOW WARNINGS", join=False) if made.warnings else None
            create, columns = await show_definition(vc, region, scratch, self.database, self.name, temporary=False)
            stream = await vc.stream(region, f"SELECT {', '.join(quote_ident(c) for c in columns)} FROM {scratch}")
            rows = await read_rendered_rows(stream, LIMIT.max_bytes, f"CREATE TABLE ... SELECT of more than {LIMIT.max_bytes} "
                                            "bytes of rows (they pass through the proxy; see --max-shipped-bytes)")
            return create, columns, rows, warned
        finally:
            await drop_copies(vc, region, created)

    def describe(self) -> dict[str, Any]:
        out = {"CreateTableSelect": self.table, "select_on": self.region or "any",
               "copies": [f"{s.database}.{s.name} from {s.source}" for s in self.shipments]}
        if self.statement_vars:
            out["statement_vars"] = self.statement_vars
        return out

