"""A read across tables that share no region.

Tables are placed independently, so a join of three tables can find no
region holding all of them (with three regions and two copies each, three
tables created one after another usually cover all three pairs).  Such a
read runs on the live region holding the most of its tables (planner.py,
`_plan_cross_region_read`); each table that region lacks is brought there for the one statement, as a session temporary
table of the same name, filled from a copy elsewhere:

1. for each missing table: `SHOW CREATE TABLE` on a region that has it (made
   TEMPORARY, without FOREIGN KEYs, which temporary tables cannot have), and
   its rows (generated columns left to be recomputed), read on the session's
   connection there -- inside a transaction, from the transaction's snapshot;
2. on the chosen region: CREATE TEMPORARY TABLE, INSERT the rows, run the
   client's statement unchanged (a temporary table hides any table of its
   name, MariaDB's rule), then DROP TEMPORARY TABLE, also when it failed.

The answer is MariaDB's own, over the same rows: no merging in the proxy.

Limits, stated plainly (error handling): the copied tables hold at most
`--max-shipped-bytes` of rows together (16 MiB) (beyond: 1235 before anything is
created); the statement's result is held whole in the proxy before it is
sent (the temporary tables are dropped after it is read); the client needs
the CREATE TEMPORARY TABLES privilege on the missing tables' databases and
SELECT on every column of a copied table, which a plain join on one MariaDB
would not (MariaDB's 1044 / 1143 otherwise); a
partitioned table cannot be copied this way (MariaDB refuses a partitioned
temporary table).  Locking reads (FOR UPDATE, LOCK IN SHARE MODE) keep 1235:
a copy cannot lock the rows of the original.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from minisql.errors import SqlError, unsupported

from .engine import FanOutWrite, Reply, VCursor
from .insertselect import LIMIT, chunks, read_rendered_rows
from .planner import Shipment
from .protocol import text_row
from .routines import quote_ident
from .txn import Event

log = logging.getLogger(__name__)


_COLUMN = re.compile(r"^\s*`((?:[^`]|``)+)`\s")
_FOREIGN_KEY = re.compile(r"^\s*(?:constraint\s+`(?:[^`]|``)+`\s+)?foreign\s+key\b", re.I)
_GENERATED = re.compile(r"\sGENERATED ALWAYS AS\s|\sAS \(.*\) (?:VIRTUAL|STORED|PERSISTENT)\b")


def temporary_definition(create_table: str, database: str, name: str, temporary: bool = True) -> tuple[str, list[str]]:
    """(CREATE [TEMPORARY] TABLE `database`.`name` ..., the stored columns to copy)
    from SHOW CREATE TABLE's text, without its FOREIGN KEYs (a temporary table
    cannot have them; CREATE TABLE ... LIKE does not copy them)."""
    lines = create_table.split("\n")
    first, body, tail = lines[0], lines[1:-1], lines[-1]
    if not first.upper().startswith(("CREATE TABLE", "CREATE TEMPORARY TABLE")) or not tail.startswith(")"):
        raise unsupported(f"copying {database}.{name} for a query across regions (unexpected SHOW CREATE TABLE)")
    kept, columns = [], []
    for line in body:
        element = line.rstrip().rstrip(",")
        if _FOREIGN_KEY.match(element):
            continue
        column = _COLUMN.match(element)
        if column is not None and not _GENERATED.search(element):
            columns.append(column.group(1).replace("``", "`"))
        kept.append(element)
    head = f"CREATE {'TEMPORARY ' if temporary else ''}TABLE {quote_ident(database)}.{quote_ident(name)} ("
    return head + "\n" + ",\n".join(kept) + "\n" + tail, columns


async def show_definition(vc: VCursor, region: str, table: str, database: str, name: str,
                          temporary: bool = True) -> tuple[str, list[str]]:
    """`SHOW CREATE TABLE table` on `region`, as temporary_definition names it."""
    shown = await vc.run(region, f"SHOW CREATE TABLE {table}", join=False)
    # Decoded as the SQL text is encoded again: the definition reaches the region byte for byte.
    text = (text_row(shown.rows[0])[1] or b"").decode(vc.text_codec(), "surrogateescape")
    if len(text_row(shown.rows[0])) == 4:  # a view (View, Create View, character_set_client, collation_connection)
        text = await _view_shape(vc, region, table, database)
    return temporary_definition(text, database, name, temporary)


async def _view_shape(vc: VCursor, region: str, view: str, database: str) -> str:
    """A table definition with a view's columns (MariaDB types them): a view
    shipped for a statement across regions travels as its rows."""
    scratch = f"{quote_ident(database)}.`__minisql_view_shape`"
    await vc.run(region, f"CREATE TEMPORARY TABLE {scratch} AS SELECT * FROM {view} LIMIT 0", join=False)
    try:
        shown = await vc.run(region, f"SHOW CREATE TABLE {scratch}", join=False)
    finally:
        await vc.run(region, f"DROP TEMPORARY TABLE IF EXISTS {scratch}", join=False)
    return (text_row(shown.rows[0])[1] or b"").decode(vc.text_codec(), "surrogateescape")


@dataclass(frozen=True, slots=True)
class TableCopy:
    """One shipped table, read and ready to create (`rows` as VALUES tuples)."""

    shipment: Shipment
    create: str
    columns: list[str]
    rows: list[str]

    @property
    def table(self) -> str:
        return f"{quote_ident(self.shipment.database)}.{quote_ident(self.shipment.name)}"


async def read_copies(vc: VCursor, shipments: tuple[Shipment, ...]) -> list[TableCopy]:
    """Each shipped table's definition and rows, LIMIT.max_bytes in all."""
    copies: list[TableCopy] = []
    budget = LIMIT.max_bytes
    for shipment in shipments:
        copy = await _read_copy(vc, shipment, budget)
        budget -= sum(len(r) + 1 for r in copy.rows)
        copies.append(copy)
    return copies


async def _read_copy(vc: VCursor, shipment: Shipment, budget: int) -> TableCopy:
    database, name = shipment.database, shipment.name
    table = f"{quote_ident(database)}.{quote_ident(name)}"
    create, columns = await show_definition(vc, shipment.source, table, database, name)
    stream = await vc.stream(shipment.source, f"SELECT {', '.join(quote_ident(c) for c in columns)} FROM {table}")
    rows = await read_rendered_rows(stream, budget, f"a statement across regions that needs more than {LIMIT.max_bytes} "
                                    f"bytes of rows copied ({database}.{name} has no copy where the statement runs)")
    return TableCopy(shipment, create, columns, rows)


async def create_copies(vc: VCursor, region: str, copies: list[TableCopy], created: list[str]) -> None:
    """The temporary tables on `region`, filled; each name is added to `created`
    as soon as it exists (the caller drops them, also after an error)."""
    for copy in copies:
        await vc.run(region, copy.create, join=False)
        created.append(copy.table)
        head = f"INSERT INTO {copy.table} ({', '.join(quote_ident(c) for c in copy.columns)}) VALUES "
        for chunk in chunks(copy.rows):
            await vc.run(region, head + ",".join(chunk), join=False)


async def drop_copies(vc: VCursor, region: str, created: list[str]) -> None:
    for table in created:
        try:
            await vc.run(region, f"DROP TEMPORARY TABLE IF EXISTS {table}", join=False)
        except SqlError as e:  # the connection is gone: so is the table
            log.warning("could not drop the temporary copy %s on %s: %s", table, region, e)


@dataclass(frozen=True, slots=True)
class MaterializedRead:
    """The client's read on `region`, after copying `shipments` there (module docstring)."""

    sql: str
    region: str
    shipments: tuple[Shipment, ...]
    label: str = "cross_read"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        vc.state.on(Event.STATEMENT)
        copies = await read_copies(vc, self.shipments)
        created: list[str] = []
        try:
            await create_copies(vc, self.region, copies, created)
            return Reply(await vc.run(self.region, self.sql))
        finally:
            await drop_copies(vc, self.region, created)

    def describe(self) -> dict[str, Any]:
        return {"MaterializedRead": self.region, "copies": [f"{s.database}.{s.name} from {s.source}" for s in self.shipments]}


@dataclass(frozen=True, slots=True)
class ShippedWrite:
    """A write (`write`: its FanOutWrite, the client's own text) that reads
    tables some of its regions lack: they are copied to those regions first,
    so every copy runs the statement over the same rows, and MariaDB judges
    it there (ambiguous columns, ON DUPLICATE KEY UPDATE naming the SELECT's
    columns, multi-table UPDATE/DELETE) exactly as on one server."""

    write: FanOutWrite
    shipments: tuple[Shipment, ...]
    label: str = "shipped_write"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        vc.state.on(Event.STATEMENT)
        copies = await read_copies(vc, self.shipments)
        created: dict[str, list[str]] = {}
        try:
            for region in self.write.regions:
                created[region] = []
                await create_copies(vc, region, [c for c in copies if region in c.shipment.to], created[region])
            return await self.write.execute(vc)
        finally:
            for region, tables in created.items():
                await drop_copies(vc, region, tables)

    def describe(self) -> dict[str, Any]:
        return {"ShippedWrite": [f"{s.database}.{s.name} from {s.source} to {', '.join(s.to)}" for s in self.shipments],
                "then": self.write.describe()}
