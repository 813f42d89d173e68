"""DDL statement analysis: what kind of statement, on which database and tables.

The master needs very little from a DDL statement: its kind, the names it
touches and its IF [NOT] EXISTS flags.  Everything else (column types, engine,
partitioning...) is MariaDB's business, so the regions always receive the
client's ORIGINAL text: sqlglot's regenerated SQL is not always valid MariaDB
(see docs in shared notes), and MariaDB's own error messages are the ones a
client expects.

This module is pure: text in, a `DdlStatement` (or a `SqlError`) out, so it is
tested with plain tables of SQL strings (tests/unit/test_ddl_parse.py).

sqlglot is asked first.  Where it gives up (it parses `CREATE TABLE ...
PARTITION BY`, `CREATE FULLTEXT INDEX` only as a generic Command, and fails on
`ALTER TABLE ... ADD PARTITION`) a small token-level reader recognises just the
statement head (`CREATE [TEMPORARY] TABLE [IF NOT EXISTS] [db.]t`, `ALTER
TABLE [IF EXISTS] [db.]t`, `CREATE [UNIQUE|FULLTEXT|SPATIAL] INDEX i ON
[db.]t`): routing only needs the head, and a statement that is really invalid
then fails on MariaDB with MariaDB's own 1064 message.
"""

from __future__ import annotations

import re
from dataclasses import replace

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from minisql.errors import ER_EMPTY_QUERY, SqlError, unsupported

from .ddl_base import SYSTEM_SCHEMAS, TABLE_CHANGES, DdlKind, DdlStatement, TableRef, Tokens, syntax_error
from .ddl_views import analyze_sequence, analyze_view

__all__ = ["SYSTEM_SCHEMAS", "TABLE_CHANGES", "DdlKind", "DdlStatement", "TableRef", "analyze_ddl", "referenced_tables"]


_DROP_TABLES = re.compile(r"^(\s*(?:/\*.*?\*/\s*)*DROP\s+)TABLES\b", re.I | re.S)


def analyze_ddl(sql: str) -> DdlStatement:
    """Classify one DDL statement; raise SqlError 1064/1065/1235 otherwise."""
    stmt = _analyze(_DROP_TABLES.sub(r"\1TABLE", sql, count=1))  # (DROP TABLES: MariaDB's synonym)
    if stmt.kind in (DdlKind.CREATE_TABLE, DdlKind.ALTER_TABLE):
        stmt = replace(stmt, references=referenced_tables(sql))
    return stmt


def referenced_tables(sql: str) -> tuple[TableRef, ...]:
    """The tables named after REFERENCES (FOREIGN KEY clauses and column-level
    REFERENCES) and the sequences of NEXTVAL(s) / NEXT VALUE FOR s (column
    defaults), in order, without repeats.  Token-level, so it works on every
    statement form sqlglot cannot parse; strings and comments never match."""
    try:
        tk = Tokens(sql)
    except TokenError:
        return ()
    found: list[TableRef] = []
    for i, token in enumerate(tk.tokens):
        if token.token_type == TokenType.REFERENCES:
            tk.pos = i + 1
        elif token.text.upper() == "NEXTVAL" and i + 1 < len(tk.tokens) and tk.tokens[i + 1].token_type == TokenType.L_PAREN:
            tk.pos = i + 2  # DEFAULT NEXTVAL(s): the table lives with its sequence
        elif token.text.upper() == "NEXT" and [t.text.upper() for t in tk.tokens[i + 1:i + 3]] == ["VALUE", "FOR"]:
            tk.pos = i + 3
        else:
            continue
        ref = tk.table()
        if ref is not None and ref not in found:
            found.append(ref)
    return tuple(found)


def _analyze(sql: str) -> DdlStatement:
    renamed = _rename_table(sql)
    if renamed is not None:
        return renamed
    view = analyze_view(sql) or analyze_sequence(sql)
    if view is not None:
        return view
    try:
        statements = [s for s in sqlglot.parse(sql, dialect="mysql") if s is not None]
    except (ParseError, TokenError) as exc:
        head = _analyze_head(sql)
        if head is not None:
            return head
        raise syntax_error(sql, exc) from None
    if not statements:
        raise SqlError(ER_EMPTY_QUERY, "Query was empty")
    if len(statements) > 1:
        raise unsupported("several statements in one DDL request")
    stmt = statements[0]
    if isinstance(stmt, exp.Create):
        return _create(sql, stmt)
    if isinstance(stmt, exp.Drop):
        return _drop(stmt)
    if isinstance(stmt, exp.Alter):
        return _alter(stmt)
    if isinstance(stmt, exp.TruncateTable):
        return _truncate(stmt)
    if isinstance(stmt, exp.Command):
        head = _analyze_head(sql)
        if head is not None:
            return head
        words = f"{stmt.this} {stmt.expression or ''}".upper().split()
        shown = words[:2] if words and words[0] in ("CREATE", "DROP", "ALTER") else words[:1]
        raise unsupported(" ".join(shown) or "this statement")
    if isinstance(stmt, _NOT_DDL):
        raise unsupported(f"{stmt.key.upper()} as a DDL statement")
    raise syntax_error(sql, None)


_NOT_DDL = (exp.Query, exp.Insert, exp.Update, exp.Delete, exp.Set, exp.Use, exp.Show, exp.Describe, exp.Transaction, exp.Commit, exp.Rollback)


# -- sqlglot trees -------------------------------------------------------------


def _table_ref(table: exp.Expression | None) -> TableRef:
    if not isinstance(table, exp.Table) or not table.name:
        raise unsupported("this DDL statement form")
    return TableRef(table.db or None, table.name)


def _schema_name(node: exp.Expression | None) -> str:
    """CREATE DATABASE d parses as Table(this=d); CREATE SCHEMA d as Table(db=d)."""
    if isinstance(node, exp.Table):
        name = node.name or node.db
        if name:
            return name
    raise unsupported("this DATABASE statement form")


def _create(sql: str, stmt: exp.Create) -> DdlStatement:
    kind = str(stmt.args.get("kind") or "").upper()
    exists = bool(stmt.args.get("exists"))
    if kind in ("DATABASE", "SCHEMA"):
        if stmt.args.get("replace") and exists:
            raise SqlError(1221, "Incorrect usage of OR REPLACE and IF NOT EXISTS", "HY000")
        return DdlStatement(DdlKind.CREATE_DATABASE, database=_schema_name(stmt.this), if_not_exists=exists,
                            or_replace=bool(stmt.args.get("replace")))
    if kind == "TABLE":
        props = stmt.args.get("properties")
        prop_list = props.expressions if props else []
        if any(isinstance(p, exp.TemporaryProperty) for p in prop_list):
            raise unsupported("CREATE TEMPORARY TABLE")
        if stmt.args.get("replace"):
            raise unsupported("CREATE OR REPLACE TABLE")
        if stmt.expression is not None:
            raise unsupported("CREATE TABLE ... SELECT")
        if any(isinstance(p, exp.LikeProperty) for p in prop_list) or (
            isinstance(stmt.this, exp.Schema) and any(isinstance(e, exp.LikeProperty) for e in stmt.this.expressions)
        ):
            raise unsupported("CREATE TABLE ... LIKE")
        target = stmt.this.this if isinstance(stmt.this, exp.Schema) else stmt.this
        return DdlStatement(DdlKind.CREATE_TABLE, tables=(_table_ref(target),), if_not_exists=exists)
    if kind == "INDEX":
        if stmt.args.get("replace") and exists:
            raise SqlError(1221, "Incorrect usage of OR REPLACE and IF NOT EXISTS", "HY000")
        index = stmt.this
        table = index.args.get("table") if isinstance(index, exp.Index) else None
        return DdlStatement(DdlKind.CREATE_INDEX, tables=(_table_ref(table),), if_not_exists=exists)
    raise unsupported(f"CREATE {kind or 'of this kind'}")


def _drop(stmt: exp.Drop) -> DdlStatement:
    kind = str(stmt.args.get("kind") or "").upper()
    exists = bool(stmt.args.get("exists"))
    targets = stmt.args.get("tables") or []
    if kind in ("DATABASE", "SCHEMA"):
        if len(targets) != 1:
            raise unsupported("DROP DATABASE of several databases")
        return DdlStatement(DdlKind.DROP_DATABASE, database=_schema_name(targets[0]), if_exists=exists)
    if kind == "TABLE":
        if stmt.args.get("temporary"):
            raise unsupported("DROP TEMPORARY TABLE")
        return DdlStatement(DdlKind.DROP_TABLE, tables=tuple(_table_ref(t) for t in targets), if_exists=exists)
    if kind == "INDEX":
        on = stmt.args.get("cluster")
        table = on.this if isinstance(on, exp.OnProperty) else None
        return DdlStatement(DdlKind.DROP_INDEX, tables=(_table_ref(table),), if_exists=exists)
    raise unsupported(f"DROP {kind or 'of this kind'}")


def _alter(stmt: exp.Alter) -> DdlStatement:
    kind = str(stmt.args.get("kind") or "").upper()
    if kind != "TABLE":
        raise unsupported(f"ALTER {kind or 'of this kind'}")
    table = _table_ref(stmt.this)
    renames = tuple((table, _table_ref(a.this)) for a in stmt.args.get("actions") or [] if isinstance(a, exp.AlterRename))
    return DdlStatement(DdlKind.ALTER_TABLE, tables=(table,), if_exists=bool(stmt.args.get("exists")), renames=renames[-1:])


def _truncate(stmt: exp.TruncateTable) -> DdlStatement:
    if stmt.args.get("is_database"):
        raise unsupported("TRUNCATE DATABASE")
    targets = stmt.expressions
    if len(targets) != 1:
        raise unsupported("TRUNCATE of several tables")
    return DdlStatement(DdlKind.TRUNCATE_TABLE, tables=(_table_ref(targets[0]),))


# -- token-level fallback for the heads sqlglot cannot parse --------------------

def _analyze_head(sql: str) -> DdlStatement | None:
    """Recognise CREATE TABLE / CREATE INDEX / ALTER TABLE heads from tokens alone."""
    try:
        tk = Tokens(sql)
    except TokenError:
        return None
    if tk.accept("CREATE"):
        if tk.accept("OR", "REPLACE"):
            raise unsupported("CREATE OR REPLACE")
        if tk.accept("TEMPORARY"):
            raise unsupported("CREATE TEMPORARY TABLE")
        if tk.accept("TABLE"):
            if_not_exists = tk.accept("IF", "NOT", "EXISTS")
            ref = tk.table()
            if ref is None:
                return None
            rest = tk.rest_words_at_depth0()
            if "LIKE" in rest:
                raise unsupported("CREATE TABLE ... LIKE")
            if "SELECT" in rest or "AS" in rest:
                raise unsupported("CREATE TABLE ... SELECT")
            return DdlStatement(DdlKind.CREATE_TABLE, tables=(ref,), if_not_exists=if_not_exists)
        tk.accept("UNIQUE") or tk.accept("FULLTEXT") or tk.accept("SPATIAL")
        if tk.accept("INDEX"):
            if_not_exists = tk.accept("IF", "NOT", "EXISTS")
            if tk.name() is None or not tk.accept("ON"):
                return None
            ref = tk.table()
            return DdlStatement(DdlKind.CREATE_INDEX, tables=(ref,), if_not_exists=if_not_exists) if ref else None
        return None
    if tk.accept("ALTER"):
        tk.accept("ONLINE") or tk.accept("IGNORE")
        if not tk.accept("TABLE"):
            return None
        if_exists = tk.accept("IF", "EXISTS")
        ref = tk.table()
        if ref is None:
            return None
        renames: tuple[tuple[TableRef, TableRef], ...] = ()
        depth = 0
        for i in range(tk.pos, len(tk.tokens)):  # RENAME [TO | AS] new, at the top level
            t = tk.tokens[i]
            depth += (t.token_type == TokenType.L_PAREN) - (t.token_type == TokenType.R_PAREN)
            if depth or t.token_type == TokenType.IDENTIFIER or t.text.upper() != "RENAME":
                continue
            tk.pos = i + 1
            if tk.word() in ("COLUMN", "INDEX", "KEY"):
                continue
            tk.accept("TO") or tk.accept("AS")
            new = tk.table()
            if new is not None:
                renames = ((ref, new),)
        return DdlStatement(DdlKind.ALTER_TABLE, tables=(ref,), if_exists=if_exists, renames=renames)
    return None


_RENAME = re.compile(r"\s*(?:/\*.*?\*/\s*)*RENAME\b", re.I | re.S)


def _rename_table(sql: str) -> DdlStatement | None:
    """RENAME TABLE[S] [IF EXISTS] a [WAIT n | NOWAIT] TO b [, c TO d ...]; None
    for any other statement."""
    head = _RENAME.match(sql)
    if head is None:
        return None
    try:
        tk = Tokens(sql[head.end():])  # (sqlglot's tokenizer makes the rest of a RENAME one string)
    except TokenError:
        return None
    if not (tk.accept("TABLE") or tk.accept("TABLES")):
        return None
    if_exists = tk.accept("IF", "EXISTS")
    renames: list[tuple[TableRef, TableRef]] = []
    while True:
        old = tk.table()
        if not tk.accept("NOWAIT") and tk.accept("WAIT"):
            tk.pos += 1  # the timeout
        new = tk.table() if tk.accept("TO") else None
        if old is None or new is None:
            raise syntax_error(sql, None)
        renames.append((old, new))
        if tk.pos >= len(tk.tokens) or tk.tokens[tk.pos].token_type == TokenType.SEMICOLON:
            break
        if tk.tokens[tk.pos].token_type != TokenType.COMMA:
            raise syntax_error(sql, None)
        tk.pos += 1
    return DdlStatement(DdlKind.RENAME_TABLE, tables=tuple(old for old, _ in renames), if_exists=if_exists, renames=tuple(renames))
