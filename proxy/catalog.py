"""information_schema through the gateway: one region's answer where every
region would give the same, the owning region's rows where they differ.

Every region holds every database, routine, account and variable, so the
views about those (ROUTINES, SCHEMATA, PLUGINS, *_VARIABLES...) are answered
by any region, like the `mysql` schema.  The views about tables (TABLES,
COLUMNS, STATISTICS, constraints, ...) differ: each region lists the copies
it holds.  Such a query is planned in one of two ways:

* it names one table (`TABLE_SCHEMA = 'db' AND TABLE_NAME = 't'`, the form
  ORMs reflect with): the region holding that table's primary answers;
* otherwise `CatalogScatter` (catalogscatter.py) asks every live region and keeps each row from
  the region that serves its table's reads (its primary), so each table
  appears once, with its primary's statistics; ORDER BY and LIMIT are then
  applied by the proxy.  This needs a plain shape: one information_schema
  table, no aggregates, GROUP BY, DISTINCT, UNION or subqueries;
* any other shape (joins of several views, aggregates, subqueries):
  `CatalogMaterialized` reads each view about tables merged the same way and
  puts its rows into the client's query as a derived table of literals, which
  one region runs -- so MariaDB evaluates it over every table exactly once.

Limits: rows about tables the placement does not know (made on a region
directly) come from the lowest-numbered live region only; a column sorted by
the proxy compares numbers as numbers and everything else as bytes (not the
column's collation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from minisql.errors import unsupported

from .statements import SYSTEM_SCHEMAS, Analysis, blank_quoted

INFORMATION_SCHEMA = "information_schema"

# The same on every region (databases, routines, accounts and settings are everywhere).
REGION_INDEPENDENT = frozenset({
    "all_plugins", "applicable_roles", "character_sets", "collations", "collation_character_set_applicability",
    "enabled_roles", "engines", "global_variables", "session_variables", "system_variables", "keywords",
    "sql_functions", "parameters", "plugins", "routines", "schemata", "schema_privileges", "user_privileges",
    "files",  # tablespaces: empty on MariaDB's InnoDB; mysqldump reads it
})
# About tables: (schema column, table column) of each row.
TABLE_KEYED = {
    "tables": ("table_schema", "table_name"),
    "columns": ("table_schema", "table_name"),
    "statistics": ("table_schema", "table_name"),
    "key_column_usage": ("table_schema", "table_name"),
    "table_constraints": ("table_schema", "table_name"),
    "partitions": ("table_schema", "table_name"),
    "views": ("table_schema", "table_name"),
    "table_privileges": ("table_schema", "table_name"),
    "column_privileges": ("table_schema", "table_name"),
    "referential_constraints": ("constraint_schema", "table_name"),
    "check_constraints": ("constraint_schema", "table_name"),
    "triggers": ("event_object_schema", "event_object_table"),
}

_NOT_PLAIN = re.compile(
    r"\b(?:group\s+by|distinct|distinctrow|union|having|intersect|except|join|into)\b"
    r"|\b(?:count|sum|min|max|avg|group_concat|std|stddev|variance|bit_and|bit_or|bit_xor|json_arrayagg|json_objectagg)\s*\("
    r"|\(\s*select\b|\bover\s*\(",
    re.I,
)
def _eq(column: str) -> re.Pattern[str]:
    return re.compile(rf"(?:\b[\w$]+\.|`[^`]+`\.)?`?\b{column}\b`?\s*=\s*('(?:[^'\\]|\\.|'')*'|database\s*\(\s*\)|schema\s*\(\s*\))", re.I)


_PINS = {column: _eq(column) for pair in TABLE_KEYED.values() for column in pair}
_OR = re.compile(r"\bor\b|\|\|", re.I)


def catalog_refs(analysis: Analysis, database: str | None) -> list[tuple[str, str]] | None:
    """(schema, table) lowercased of each table a SELECT reads, when it reads
    information_schema; None when it does not."""
    refs = [((r.database or database or "").lower(), r.name.lower()) for r in analysis.reads]
    return refs if any(db == INFORMATION_SCHEMA for db, _ in refs) else None


@dataclass(frozen=True, slots=True)
class CatalogRoute:
    """How planner.plan_dml routes an information_schema read."""

    any_region: bool = False
    table: tuple[str, str] | None = None  # the one table the query is about
    keys: tuple[str, str] | None = None  # scatter: the row's schema and table columns
    materialize: tuple[str, ...] = ()  # any other shape: these views merged into derived tables
    schema: str | None = None  # ... only this schema's rows of them (the query pins it: one view, no OR)
    with_tables: bool = False  # the query reads the cluster's tables too: it runs where they are


def route_catalog(sql: str, analysis: Analysis, refs: list[tuple[str, str]], database: str | None) -> CatalogRoute:
    if analysis.writes:
        raise unsupported("writes to information_schema")
    views = [name for db, name in refs if db == INFORMATION_SCHEMA]
    if any(db not in SYSTEM_SCHEMAS for db, _ in refs):
        # Joined with the cluster's tables: every region has the views that are the
        # same everywhere; the views about tables are merged first.  Then it runs
        # where those tables are (planner._plan_catalog).
        if any(v not in REGION_INDEPENDENT and v not in TABLE_KEYED for v in views) or any(
                db in ("performance_schema", "sys") for db, _ in refs):
            raise unsupported("a query joining per-server information_schema views with the cluster's tables")
        return CatalogRoute(materialize=tuple(dict.fromkeys(v for v in views if v in TABLE_KEYED)), with_tables=True)
    if all(v in REGION_INDEPENDENT for v in views) and all(db != "performance_schema" for db, _ in refs):
        return CatalogRoute(any_region=True)
    unknown = [v for v in views if v not in REGION_INDEPENDENT and v not in TABLE_KEYED]
    if unknown or any(db == "performance_schema" for db, _ in refs):
        raise unsupported(f"information_schema.{(unknown or ['performance_schema'])[0].upper()} together with other "
                          "views (each region reports only itself)")
    keyed = tuple(dict.fromkeys(v for v in views if v in TABLE_KEYED))
    if len(refs) != 1:  # several views (or the mysql schema too): the views about tables merged first
        return CatalogRoute(materialize=keyed)
    keys = TABLE_KEYED[views[0]]
    pinned = _pinned(sql, keys, database)
    if pinned is not None:
        schema, table = pinned
        if schema.lower() in SYSTEM_SCHEMAS:
            return CatalogRoute(any_region=True)
        if table is not None:
            return CatalogRoute(table=(schema, table))
    if _NOT_PLAIN.search(blank_quoted(sql)):  # aggregates, subqueries...: catalogscatter.CatalogMaterialized
        return CatalogRoute(materialize=keyed, schema=pinned[0] if pinned is not None and "(" not in _after_from(sql) else None)
    return CatalogRoute(keys=keys)


def _after_from(sql: str) -> str:
    """The text after the first FROM (outside strings): a subquery there may
    compare the schema column of another scope, so no pin is pushed down."""
    blanked = blank_quoted(sql)
    m = re.search(r"\bfrom\b", blanked, re.I)
    return blanked[m.end():] if m else blanked


def _pinned(sql: str, keys: tuple[str, str], database: str | None) -> tuple[str, str | None] | None:
    """(schema, table or None) fixed by `schema_col = '...' [AND table_col = '...']`."""
    if _OR.search(blank_quoted(sql)):
        return None
    m = _PINS[keys[0]].search(sql)
    if m is None:
        return None
    value = m.group(1)
    schema = database if value[:1] != "'" else _literal(value)
    if schema is None:
        return None
    t = _PINS[keys[1]].search(sql)
    return schema, (_literal(t.group(1)) if t is not None and t.group(1)[:1] == "'" else None)


def _literal(quoted: str) -> str:
    body = quoted[1:-1].replace("''", "'")
    return re.sub(r"\\(.)", r"\1", body)
