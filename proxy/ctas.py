"""CREATE TABLE ... SELECT through the gateway.

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
from dataclasses import dataclass
from typing import Any

from minisql.errors import ER_NO_DB, ER_TABLE_EXISTS, SqlError, unsupported

from .backend import QueryResult
from .clusterplan import warnings_result
from .crossread import INSERT_CHUNK, create_copies, drop_copies, read_copies, temporary_definition
from .engine import FanOutWrite, Reply, VCursor, end_transaction
from .insertselect import LIMIT, column_kinds, render_row
from .planner import QUALIFIED, Op, RoutingSnapshot, SessionView, Shipment, plan_dml, split_qualified
from .protocol import lenenc_str, text_row
from .routines import quote_ident
from .statements import AnalysisCache, Kind, blank_statement
from .txn import Event

log = logging.getLogger(__name__)

SCRATCH = "__minisql_ctas"  # the session temporary table MariaDB's CREATE ... SELECT fills

_HEAD = re.compile(rf"^\s*create\s+table\s+(if\s+not\s+exists\s+)?{QUALIFIED}", re.I)
_TOKENS = re.compile(r"[()]|\b(?:select|with|like)\b", re.I)
_SELECT_AFTER_PAREN = re.compile(r"\(\s*(?:select|with)\b", re.I)


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
    depth, start = 0, None
    for token in _TOKENS.finditer(blank, m.end()):
        word = token.group().lower()
        if word == "(":
            if depth == 0 and _SELECT_AFTER_PAREN.match(blank, token.start()):
                start = token.start()
                break
            depth += 1
        elif word == ")":
            depth -= 1
        elif depth == 0:
            if word == "like":
                return None
            start = token.start()
            break
    if start is None:
        return None
    real = _HEAD.match(sql)  # the same positions: the blanked text keeps them
    assert real is not None
    ref = split_qualified(real.group(2), real.group(3))
    rest = sql[m.end():].strip().rstrip(";").rstrip()
    return CtasParts(bool(m.group(1)), ref.database, ref.name, rest, sql[start:].strip().rstrip(";").rstrip())


def plan_create_select(sql: str, snap: RoutingSnapshot, session: SessionView, cache: AnalysisCache) -> Any:
    """A CreateTableSelect, or None when `sql` is not CREATE TABLE ... SELECT."""
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
        p.regions[0] if p.op is Op.READ else None, p.copies, epoch=snap.epoch,
    )


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
    label: str = "ddl"
    epoch: int = -1

    @property
    def table(self) -> str:
        return f"{quote_ident(self.database)}.{quote_ident(self.name)}"

    async def execute(self, vc: VCursor) -> Reply:
        await end_transaction(vc, vc.state.on(Event.IMPLICIT_COMMIT))
        if self.exists:
            message = f"Table '{self.name}' already exists"
            if not self.if_not_exists:
                raise SqlError(ER_TABLE_EXISTS, message, "42S01")
            vc.state.warnings = warnings_result([{"level": "Note", "code": ER_TABLE_EXISTS, "message": message}])
            return Reply(QueryResult(None, [], 0, 0, 1, 0, b""))
        region = self.region or vc.any_region()
        create, columns, rows = await self._scratch(vc, region)
        await vc.ddl(create)
        try:
            placed = vc.current_snapshot().placement.table(self.database, self.name)
            if placed is None:
                raise SqlError(ER_TABLE_EXISTS, f"Table '{self.name}' was created but is not placed yet", "HY000")
            head = f"INSERT INTO {self.table} ({', '.join(quote_ident(c) for c in columns)}) VALUES "
            for chunk in _chunks(rows):
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
        info = lenenc_str(f"Records: {len(rows)}  Duplicates: 0  Warnings: 0".encode())  # (as on the wire: length-prefixed)
        return Reply(QueryResult(None, [], len(rows), 0, 0, 0, info))

    async def _scratch(self, vc: VCursor, region: str) -> tuple[str, list[str], list[str]]:
        """MariaDB's own CREATE ... SELECT into a temporary table on `region`: the
        new table's definition (named as the client named it), stored columns, rows."""
        scratch = f"{quote_ident(self.database)}.{quote_ident(SCRATCH)}"
        copies = await read_copies(vc, self.shipments)
        created: list[str] = []
        try:
            await create_copies(vc, region, copies, created)
            await vc.run(region, f"DROP TEMPORARY TABLE IF EXISTS {scratch}", join=False)
            await vc.run(region, f"CREATE TEMPORARY TABLE {scratch} {self.rest}", join=False)
            created.append(scratch)
            shown = await vc.run(region, f"SHOW CREATE TABLE {scratch}", join=False)
            text = (text_row(shown.rows[0])[1] or b"").decode(vc.text_codec(), "surrogateescape")
            definition, columns = temporary_definition(text, self.database, self.name)
            create = "CREATE TABLE" + definition[len("CREATE TEMPORARY TABLE"):]
            stream = await vc.stream(region, f"SELECT {', '.join(quote_ident(c) for c in columns)} FROM {scratch}")
            assert stream.fields is not None
            kinds = column_kinds(stream.fields)
            rows: list[str] = []
            size = 0
            while (batch := await stream.next_batch()) is not None:
                for raw in batch:
                    rows.append(render_row(raw, kinds))
                    size += len(rows[-1]) + 1
                if size > LIMIT.max_bytes:
                    while await stream.next_batch() is not None:
                        pass
                    raise unsupported(f"CREATE TABLE ... SELECT of more than {LIMIT.max_bytes} bytes of rows "
                                      "(they pass through the proxy; see --max-shipped-bytes)")
            return create, columns, rows
        finally:
            await drop_copies(vc, region, created)

    def describe(self) -> dict[str, Any]:
        return {"CreateTableSelect": self.table, "select_on": self.region or "any",
                "copies": [f"{s.database}.{s.name} from {s.source}" for s in self.shipments]}


def _chunks(rows: list[str]) -> list[list[str]]:
    out: list[list[str]] = []
    chunk: list[str] = []
    size = 0
    for row in rows:
        chunk.append(row)
        size += len(row) + 1
        if size >= INSERT_CHUNK:
            out.append(chunk)
            chunk, size = [], 0
    if chunk:
        out.append(chunk)
    return out
