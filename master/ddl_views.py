"""Reading CREATE / ALTER / DROP VIEW: the view's name and the tables it reads.

A view is placed like a table, on the regions of the tables (and views) it
reads -- its `references` in the placement, edges of the colocation graph --
so MariaDB on each of those regions can create and evaluate it.  All the
master needs from the text is therefore the head (`CREATE [OR REPLACE]
[ALGORITHM = ..] [DEFINER = ..] [SQL SECURITY ..] VIEW [IF NOT EXISTS] name`)
and the names after FROM / JOIN in its SELECT; the regions always get the
client's original text.

Unqualified names in the SELECT are the session's database, as MariaDB
resolves them when it stores the view; names of the SELECT's own CTEs and
of system schemas are not tables to colocate with.
"""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from minisql.errors import SqlError

from .ddl_base import DdlKind, DdlStatement, TableRef, Tokens, syntax_error

_CHECK_OPTION = re.compile(r"\s+WITH\s+(?:CASCADED\s+|LOCAL\s+)?CHECK\s+OPTION\s*;?\s*$", re.I)
ER_WRONG_USAGE = 1221
_SYSTEM = frozenset({"mysql", "information_schema", "performance_schema", "sys"})


def analyze_sequence(sql: str) -> DdlStatement | None:
    """CREATE [OR REPLACE] SEQUENCE [IF NOT EXISTS] s ..., ALTER SEQUENCE
    [IF EXISTS] s ..., DROP SEQUENCE [IF EXISTS] s, ...; None otherwise.  A
    sequence is placed like a table (its one row is copied like any row)."""
    try:
        tk = Tokens(sql)
    except TokenError:
        return None
    first = tk.word()
    tk.pos += 1
    or_replace = first == "CREATE" and tk.accept("OR", "REPLACE")
    if first not in ("CREATE", "ALTER", "DROP") or not tk.accept("SEQUENCE"):
        return None
    if first == "DROP":
        dropped = _drop_view(sql, tk)
        return DdlStatement(DdlKind.DROP_SEQUENCE, tables=dropped.tables, if_exists=dropped.if_exists)
    if_not_exists = first == "CREATE" and tk.accept("IF", "NOT", "EXISTS")
    if or_replace and if_not_exists:
        raise SqlError(ER_WRONG_USAGE, "Incorrect usage of OR REPLACE and IF NOT EXISTS", "HY000")
    if_exists = first == "ALTER" and tk.accept("IF", "EXISTS")
    name = tk.table()
    if name is None:
        raise syntax_error(sql, None)
    kind = DdlKind.CREATE_SEQUENCE if first == "CREATE" else DdlKind.ALTER_SEQUENCE
    return DdlStatement(kind, tables=(name,), if_not_exists=if_not_exists, if_exists=if_exists, or_replace=or_replace)


def analyze_view(sql: str) -> DdlStatement | None:
    """The DdlStatement of a view statement; None for any other statement."""
    try:
        tk = Tokens(sql)
    except TokenError:
        return None
    first = tk.word()
    if first == "DROP":
        tk.pos += 1
        if not tk.accept("VIEW"):
            return None
        return _drop_view(sql, tk)
    if first not in ("CREATE", "ALTER"):
        return None
    view_at = _view_keyword(tk)
    if view_at is None:
        return None
    head = [t.text.upper() for t in tk.tokens[1:view_at]]
    or_replace = head[:2] == ["OR", "REPLACE"]
    tk.pos = view_at + 1
    if_not_exists = tk.accept("IF", "NOT", "EXISTS")
    if or_replace and if_not_exists:
        raise SqlError(ER_WRONG_USAGE, "Incorrect usage of OR REPLACE and IF NOT EXISTS", "HY000")
    name = tk.table()
    if name is None:
        raise syntax_error(sql, None)
    if tk.pos < len(tk.tokens) and tk.tokens[tk.pos].token_type == TokenType.L_PAREN:  # (column, ...)
        depth = 0
        while tk.pos < len(tk.tokens):
            kind = tk.tokens[tk.pos].token_type
            depth += (kind == TokenType.L_PAREN) - (kind == TokenType.R_PAREN)
            tk.pos += 1
            if depth == 0:
                break
    if not tk.accept("AS") or tk.pos >= len(tk.tokens):
        raise syntax_error(sql, None)
    select = _CHECK_OPTION.sub("", sql[tk.tokens[tk.pos].start:])
    return DdlStatement(
        DdlKind.ALTER_VIEW if first == "ALTER" else DdlKind.CREATE_VIEW,
        tables=(name,),
        if_not_exists=if_not_exists,
        or_replace=or_replace,
        references=tables_read(select),
    )


def _view_keyword(tk: Tokens) -> int | None:
    """Index of the VIEW keyword of a CREATE/ALTER ... VIEW head (only the
    view options may come between), else None."""
    for i, token in enumerate(tk.tokens[1:], start=1):
        if token.token_type == TokenType.VIEW:
            return i
        if token.token_type in (TokenType.TABLE, TokenType.L_PAREN, TokenType.SELECT) or token.text.upper() in (
            "TABLE", "INDEX", "DATABASE", "SCHEMA", "PROCEDURE", "FUNCTION", "TRIGGER", "EVENT", "USER", "SEQUENCE"
        ):
            return None
    return None


def _drop_view(sql: str, tk: Tokens) -> DdlStatement:
    if_exists = tk.accept("IF", "EXISTS")
    names = []
    while True:
        name = tk.table()
        if name is None:
            raise syntax_error(sql, None)
        names.append(name)
        if tk.pos < len(tk.tokens) and tk.tokens[tk.pos].token_type == TokenType.COMMA:
            tk.pos += 1
            continue
        break
    return DdlStatement(DdlKind.DROP_VIEW, tables=tuple(names), if_exists=if_exists)


def tables_read(select: str) -> tuple[TableRef, ...]:
    """Tables and views a SELECT names (CTEs and system schemas left out), in order."""
    try:
        tree = sqlglot.parse_one(select, read="mysql")
    except (ParseError, TokenError, SqlError):
        return _names_after_from(select)
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    found: list[TableRef] = []
    for table in tree.find_all(exp.Table):
        if not table.name or (not table.db and table.name in ctes) or table.db.lower() in _SYSTEM:
            continue
        ref = TableRef(table.db or None, table.name)
        if ref not in found:
            found.append(ref)
    return tuple(found)


def _names_after_from(select: str) -> tuple[TableRef, ...]:
    """Fallback for a SELECT sqlglot cannot parse: the names after FROM, JOIN
    and the commas of a FROM list (enough to place the view; MariaDB judges it)."""
    try:
        tk = Tokens(select)
    except TokenError:
        return ()
    found: list[TableRef] = []
    for i, token in enumerate(tk.tokens):
        if token.token_type in (TokenType.FROM, TokenType.JOIN) or (
            token.token_type == TokenType.COMMA and any(t.token_type == TokenType.FROM for t in tk.tokens[:i])
        ):
            tk.pos = i + 1
            ref = tk.table()
            if ref is not None and (ref.database or "").lower() not in _SYSTEM and ref not in found:
                found.append(ref)
    return tuple(found)
