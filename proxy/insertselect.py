"""INSERT / REPLACE ... SELECT whose SELECT calls UUID() (and the like).

A write goes to its table's primary and every in-sync replica, and each copy
runs the statement itself -- over tables shipped there when it lacks them
(crossread.py).  A SELECT calling UUID() would give each copy different
rows, so this one form runs its SELECT once, on a region holding all the
tables it reads, and writes the rows it returned as `INSERT ... VALUES`
through the ordinary write fan-out (FanOutWrite): every copy gets the same
literal rows, the affected-row check compares them, and IGNORE, column lists
and LAST_INSERT_ID() behave as for any multi-row INSERT (MariaDB reports
`Records: N  Duplicates: D`, as for INSERT ... SELECT).  The literal
rendering here also serves the shipped tables of crossread.py.

The SELECT runs on the session's connection to that region, so inside a
transaction it reads the transaction's snapshot and the region becomes a
participant.  Values are written as typed literals from the result's column
definitions: numbers as their digits, temporal values quoted, strings as
hex with their character set's introducer (byte-exact in any charset and
sql_mode), binary strings and BIT as hex, NULL as NULL.

Limits, stated plainly (error handling): the source rows are read, not
locked -- unlike MariaDB's INSERT ... SELECT, which holds shared locks on
them until commit, a concurrent write to the source between the read and
the write is not blocked (issue 8's cross-region work is where that
belongs).  The rows are held in the proxy, at most LIMIT.max_bytes bytes of
SQL; a larger source gets 1235 (nothing was written).  RETURNING, a
SELECT the text does not clearly delimit, and an ON DUPLICATE KEY UPDATE
beside other tables read (only MariaDB over both tables can judge what it
names) keep 1235.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from minisql.errors import unsupported
from mysql_mimic.charset import Collation

from .engine import FanOutWrite, Reply, VCursor, ok
from .prepared import column_type
from .protocol import read_lenenc_int
from .txn import Event

class MaterializeLimit:
    """Bytes of rows (as VALUES text) the proxy holds for one statement across
    regions: `minisql proxy --max-shipped-bytes` (default 16 MiB)."""

    max_bytes = 16 << 20


LIMIT = MaterializeLimit()
INSERT_CHUNK = 1 << 20  # bytes of VALUES per INSERT the proxy composes from held rows

_NUMERIC = frozenset({0, 1, 2, 3, 4, 5, 8, 9, 13, 246})  # DECIMAL, TINY..LONGLONG, INT24, YEAR, NEWDECIMAL
_TEMPORAL = frozenset({7, 10, 11, 12, 14})  # TIMESTAMP, DATE, TIME, DATETIME, NEWDATE
_BIT = 16
_NUMBER = re.compile(rb"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")
_TEMPORAL_TEXT = re.compile(rb"^[-\d:. ]*$")


def column_kinds(fields: list[bytes]) -> list[tuple[int, str | None]]:
    """(type, charset introducer or None for binary) of each result column."""
    out = []
    for definition in fields:
        ctype, _ = column_type(definition)
        out.append((ctype, _introducer(_charset_id(definition))))
    return out


def _charset_id(definition: bytes) -> int:
    pos = 0
    for _ in range(6):  # catalog, schema, table, org_table, name, org_name
        length, pos = read_lenenc_int(definition, pos)
        pos += length or 0
    _, pos = read_lenenc_int(definition, pos)
    return definition[pos] | definition[pos + 1] << 8


def _introducer(charset_id: int) -> str | None:
    if charset_id == 63:
        return None
    try:
        name = Collation(charset_id).charset.name
    except ValueError:
        raise unsupported(f"INSERT ... SELECT across regions of a column in collation {charset_id}") from None
    return "_" + name


async def read_rendered_rows(stream: Any, budget: int, too_many: str) -> list[str]:
    """Every row of `stream` (a result with columns) as `(literal, ...)`, at
    most `budget` bytes of them; past it the rest is drained -- not closed:
    the connection may carry the session's transaction -- and 1235 says
    `too_many`.  Shared by every statement that holds rows in the proxy
    (here, crossread.py, ctas.py)."""
    kinds = column_kinds(stream.fields)
    rows: list[str] = []
    size = 0
    while (batch := await stream.next_batch()) is not None:
        for raw in batch:
            rendered = render_row(raw, kinds)
            size += len(rendered) + 1
            rows.append(rendered)
        if size > budget:
            while await stream.next_batch() is not None:
                pass
            raise unsupported(too_many)
    return rows


def chunks(rows: list[str], limit: int = INSERT_CHUNK) -> list[list[str]]:
    """`rows` cut into runs of about `limit` bytes: one multi-row INSERT each."""
    out: list[list[str]] = []
    chunk: list[str] = []
    size = 0
    for row in rows:
        chunk.append(row)
        size += len(row) + 1
        if size >= limit:
            out.append(chunk)
            chunk, size = [], 0
    if chunk:
        out.append(chunk)
    return out


def render_row(row: bytes, kinds: list[tuple[int, str | None]]) -> str:
    """One text-protocol row as `(literal, ...)`."""
    return "(" + ", ".join(render_values(row, kinds)) + ")"


def render_values(row: bytes, kinds: list[tuple[int, str | None]]) -> list[str]:
    """Each value of one text-protocol row as a MariaDB literal."""
    values = []
    pos = 0
    for ctype, introducer in kinds:
        length, pos = read_lenenc_int(row, pos)
        if length is None:
            values.append("NULL")
            continue
        raw = row[pos:pos + length]
        pos += length
        if ctype in _NUMERIC and _NUMBER.match(raw):
            values.append(raw.decode("ascii"))
        elif ctype in _TEMPORAL and _TEMPORAL_TEXT.match(raw):
            values.append("'" + raw.decode("ascii") + "'")
        elif ctype == _BIT or introducer is None:
            values.append(f"X'{raw.hex()}'")
        else:
            values.append(f"{introducer} X'{raw.hex()}'")
    return values


@dataclass(frozen=True, slots=True)
class MaterializedInsert:
    """The SELECT on `source`, then its rows as VALUES through `write` (a
    FanOutWrite whose sql is filled in per execution)."""

    head: str
    select: str
    tail: str
    source: str
    write: FanOutWrite
    label: str = "insert_select"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        vc.state.on(Event.STATEMENT)
        stream = await vc.stream(self.source, self.select)
        if stream.fields is None:
            raise unsupported("INSERT ... SELECT across regions whose SELECT returns no result set")
        rows = await read_rendered_rows(stream, LIMIT.max_bytes, f"INSERT ... SELECT ... UUID() of more than {LIMIT.max_bytes} "
                                        "bytes of rows (the proxy holds them between the read and the write)")
        if not rows:
            return ok()
        sql = self.head + "VALUES " + ",".join(rows) + (" " + self.tail if self.tail else "")
        return await replace(self.write, sql=sql).execute(vc)

    def describe(self) -> dict[str, Any]:
        return {"MaterializedInsert": {"select_on": self.source, "then": self.write.describe()}}
