"""CatalogScatter: an information_schema query about tables, asked of every
live region and merged (catalog.py says when and why)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from minisql.errors import SqlError, unsupported

from .backend import QueryResult
from .catalog import TABLE_KEYED
from .engine import Reply, VCursor
from .insertselect import LIMIT, column_kinds, render_values
from .planner import read_region
from .protocol import lenenc_str, read_lenenc_int, text_row
from .statements import blank_quoted, blank_strings

_ORDER_LIMIT = re.compile(
    r"\border\s+by\s+((?:[\w$`.]+(?:\s+(?:asc|desc))?\s*,\s*)*[\w$`.]+(?:\s+(?:asc|desc))?)"
    r"(?:\s+limit\s+(\d+)(?:\s*(,|offset)\s*(\d+))?)?\s*;?\s*$"
    r"|\blimit\s+(\d+)(?:\s*(,|offset)\s*(\d+))?\s*;?\s*$",
    re.I,
)


def _sort_key(value: bytes | None) -> tuple[int, Any]:
    if value is None:
        return (0, b"")
    try:
        return (1, float(value))
    except ValueError:
        return (2, value)


_FROM = re.compile(r"\bfrom\b", re.I)
HIDDEN = "__minisql_"


def with_hidden_columns(sql: str, columns: list[str]) -> str:
    """`sql` selecting `columns` too, after its own (plain shape: the first
    FROM outside strings is the query's)."""
    m = _FROM.search(blank_quoted(sql))
    if m is None:
        raise unsupported("a query on information_schema without FROM")
    extra = "".join(f", `{c}` AS `{HIDDEN}{i}`" for i, c in enumerate(columns))
    return sql[:m.start()].rstrip() + extra + " " + sql[m.start():]


def encode_row(values: list[bytes | None]) -> bytes:
    return b"".join(b"\xfb" if v is None else lenenc_str(v) for v in values)


def owned_rows(snap: Any, results: dict[str, QueryResult], visible: int) -> list[list[bytes | None]]:
    """The rows of every region's answer (`results`, by region, sorted) that
    come from the region serving their table -- each table once; a table the
    placement does not know (the system schemas') from the first region.  The
    row's schema and table are its columns `visible` and `visible + 1`."""
    regions = sorted(results)
    owners: dict[tuple[bytes, bytes], str] = {}
    rows: list[list[bytes | None]] = []
    for region in regions:
        for raw in results[region].rows:
            values = text_row(raw)
            key = (values[visible] or b"", values[visible + 1] or b"")
            owner = owners.get(key)
            if owner is None:
                table = snap.placement.table(key[0].decode("utf8", "replace"), key[1].decode("utf8", "replace"))
                owner = owners[key] = read_region((table,), snap) if table is not None else regions[0]
            if owner == region:
                rows.append(values)
    return rows


@dataclass(frozen=True, slots=True)
class CatalogScatter:
    """Every live region answers; each row is kept from the region serving its
    table.  The row's schema and table (and the ORDER BY columns) are selected
    as hidden trailing columns, used to merge, then cut off."""

    sql: str
    keys: tuple[str, str]
    label: str = "catalog"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        snap = vc.snapshot
        regions = sorted(snap.regions)
        if not regions:
            raise unsupported("information_schema with no live region")
        anchor = regions[0]
        sql, order, limit = _split_order_limit(self.sql)
        by_name = [c for c, _ in order if not c.isdigit()]
        hidden = [self.keys[0], self.keys[1], *by_name]
        sql = with_hidden_columns(sql, hidden)
        results = {region: await vc.run(region, sql, join=False) for region in regions}
        first = results[anchor]
        fields = first.fields or []
        visible = len(fields) - len(hidden)
        sort_index: list[tuple[int, bool]] = []
        for column, descending in order:
            if column.isdigit():
                if not 1 <= int(column) <= visible:
                    raise SqlError(1054, f"Unknown column '{column}' in 'order clause'", "42S22")
                sort_index.append((int(column) - 1, descending))
            else:
                sort_index.append((visible + 2 + by_name.index(column), descending))
        rows = owned_rows(snap, results, visible)
        for i, descending in reversed(sort_index):
            rows.sort(key=lambda r: _sort_key(r[i]), reverse=descending)
        if limit is not None:
            count, offset = limit
            rows = rows[offset:offset + count]
        out = [encode_row(values[:visible]) for values in rows]
        warnings = sum(r.warnings for r in results.values())
        return Reply(QueryResult(fields[:visible], out, len(out), 0, warnings, first.server_status, b""))

    def describe(self) -> dict[str, Any]:
        return {"CatalogScatter": "every live region", "keys": list(self.keys)}


def _split_order_limit(sql: str) -> tuple[str, list[tuple[str, bool]], tuple[int, int] | None]:
    """The statement to send (no LIMIT: it applies after the merge), the ORDER
    BY columns and the LIMIT (count, offset)."""
    blanked = blank_quoted(sql)
    m = _ORDER_LIMIT.search(blanked)
    if m is None:
        return sql, [], None
    order: list[tuple[str, bool]] = []
    if m.group(1):
        for item in sql[m.start(1):m.end(1)].split(","):  # (the names as written: blanked has x's)
            words = item.split()
            order.append((words[0].split(".")[-1].strip("`").lower(), len(words) > 1 and words[1].lower() == "desc"))
        count, sep, second = m.group(2), m.group(3), m.group(4)
        cut = blanked.lower().rindex("limit", 0, m.start(2)) if count else len(sql)
    else:
        count, sep, second = m.group(5), m.group(6), m.group(7)
        cut = m.start()
    limit = None
    if count:
        if sep == ",":  # LIMIT offset, count
            limit = (int(second), int(count))
        else:
            limit = (int(count), int(second or 0))
    return sql[:cut], order, limit


# -- any other shape: the views about tables materialized as derived tables ------------------
_VIEW_REF = "(?:`information_schema`|\\binformation_schema\\b)\\s*\\.\\s*(?:`{0}`|\\b{0}\\b)"
_BARE_REF = "\\b(from|join)(\\s+)(?:`{0}`|\\b{0}\\b)"
_ALIAS_FOLLOWS = re.compile(r"\s*(?:as\b|`|(?!(?:where|join|inner|left|right|cross|straight_join|natural|on|using|group|"
                            r"order|limit|having|union|window|for|lock|into|procedure|except|intersect)\b)[a-z_$][\w$]*)",
                            re.I)


def column_name(definition: bytes) -> str:
    """The name (alias) of a result column, from its column definition packet."""
    pos = 0
    for _ in range(4):  # catalog, schema, table, org_table
        length, pos = read_lenenc_int(definition, pos)
        pos += length or 0
    length, pos = read_lenenc_int(definition, pos)
    return bytes(definition[pos:pos + (length or 0)]).decode("utf8", "surrogateescape")


def replace_view(sql: str, view: str, derived: str, bare: bool) -> str:
    """Every `information_schema.<view>` of `sql` (outside strings) as `derived`,
    aliased as the view unless the client gave an alias; `bare`: the session's
    database is information_schema, so `FROM <view>` is one too."""
    blanked = blank_strings(sql)  # (identifiers in backticks kept)
    spans = [(m.start(), m.end(), "") for m in re.finditer(_VIEW_REF.format(re.escape(view)), blanked, re.I)]
    if bare:
        spans += [(m.end(2), m.end(), "") for m in re.finditer(_BARE_REF.format(re.escape(view)), blanked, re.I)]
    out, last = [], 0
    for start, end, _ in sorted(spans):
        if start < last:
            continue
        aliased = _ALIAS_FOLLOWS.match(blanked, end) is not None
        out.append(sql[last:start])
        out.append(derived if aliased else f"{derived} AS `{view.upper()}`")
        last = end
    out.append(sql[last:])
    return "".join(out)


@dataclass(frozen=True, slots=True)
class CatalogMaterialized:
    """An information_schema query of any shape (joins, aggregates, subqueries)
    over the views about tables: each such view is read from every live region
    and merged -- each table's rows from the region serving it, the system
    schemas' from one region -- then put into the client's own query as a
    derived table of literal rows, which one region runs.  MariaDB therefore
    evaluates the whole query as one server holding every table would.  Cost:
    the views' rows travel through the proxy, at most `--max-shipped-bytes`."""

    sql: str
    views: tuple[str, ...]  # lowercase names of information_schema views about tables
    bare: bool = False  # the session's database is information_schema
    schema: str | None = None  # only this schema's rows are read (the query pins it)
    region: str | None = None  # where the query runs (its other tables' region), else the first live one
    label: str = "catalog"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        snap = vc.snapshot
        regions = sorted(snap.regions)
        if not regions:
            raise unsupported("information_schema with no live region")
        anchor = regions[0]
        sql, budget = self.sql, LIMIT.max_bytes
        for view in self.views:
            keys = TABLE_KEYED[view]
            query = with_hidden_columns(f"SELECT * FROM information_schema.`{view.upper()}`", list(keys))
            if self.schema is not None:
                query += f" WHERE `{keys[0]}` = '" + self.schema.replace("\\", "\\\\").replace("'", "''") + "'"
            results = {region: await vc.run(region, query, join=False) for region in regions}
            fields = results[anchor].fields or []
            visible = len(fields) - 2
            kinds, names = column_kinds(fields[:visible]), [column_name(f) for f in fields[:visible]]
            rows: list[list[str]] = []
            for values in owned_rows(snap, results, visible):
                rendered = render_values(encode_row(values[:visible]), kinds)
                budget -= sum(len(v) + 2 for v in rendered)
                if budget < 0:
                    raise unsupported(f"information_schema queries that need more than {LIMIT.max_bytes} bytes of "
                                      "catalog rows merged (name the schema or table they are about)")
                rows.append(rendered)
            head = ", ".join(f"{v} AS `{n.replace('`', '``')}`" for v, n in zip(rows[0] if rows else ["NULL"] * visible, names))
            if not rows:
                derived = f"(SELECT {head} FROM DUAL WHERE 0)"
            elif len(rows) == 1:
                derived = f"(SELECT {head})"
            else:
                derived = f"(SELECT {head} UNION ALL VALUES " + ", ".join("(" + ", ".join(r) + ")" for r in rows[1:]) + ")"
            sql = replace_view(sql, view, derived, self.bare)
        if self.region is not None:  # with the cluster's tables: in the session's transaction, where they are
            return Reply(await vc.run(self.region, sql))
        return Reply(await vc.run(anchor, sql, join=False))

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"CatalogMaterialized": list(self.views)}
        if self.schema is not None:
            out["schema"] = self.schema
        if self.region is not None:
            out["region"] = self.region
        return out
