"""The vocabulary of DDL analysis (master/ddl.py, master/ddl_views.py): statement
kinds, table names as written, the analysed statement, a token reader for the
heads sqlglot cannot parse, and MariaDB's 1064 message."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from sqlglot.dialects.dialect import Dialect
from sqlglot.tokens import TokenType

from minisql.errors import ER_NO_DB, ER_PARSE, SqlError

SYSTEM_SCHEMAS = frozenset({"mysql", "information_schema", "performance_schema", "sys"})


class DdlKind(str, Enum):
    CREATE_DATABASE = "create_database"
    DROP_DATABASE = "drop_database"
    CREATE_TABLE = "create_table"
    DROP_TABLE = "drop_table"
    ALTER_TABLE = "alter_table"
    CREATE_INDEX = "create_index"
    DROP_INDEX = "drop_index"
    TRUNCATE_TABLE = "truncate_table"
    RENAME_TABLE = "rename_table"
    CREATE_VIEW = "create_view"
    ALTER_VIEW = "alter_view"
    DROP_VIEW = "drop_view"
    CREATE_SEQUENCE = "create_sequence"
    ALTER_SEQUENCE = "alter_sequence"
    DROP_SEQUENCE = "drop_sequence"


# Statements that change an existing table in place (primary first, then replicas).
TABLE_CHANGES = frozenset({
    DdlKind.ALTER_TABLE, DdlKind.CREATE_INDEX, DdlKind.DROP_INDEX, DdlKind.TRUNCATE_TABLE, DdlKind.ALTER_SEQUENCE,
})


@dataclass(frozen=True)
class TableRef:
    """A table name as written: `database` is None when unqualified."""

    database: str | None
    name: str

    def resolve(self, session_database: str | None) -> tuple[str, str]:
        """(database, table), using the session's database for an unqualified name.

        Raises 1046 "No database selected" like MariaDB when there is none.
        """
        database = self.database or session_database
        if not database:
            raise SqlError(ER_NO_DB, "No database selected")
        return database, self.name


@dataclass(frozen=True)
class DdlStatement:
    kind: DdlKind
    database: str | None = None  # CREATE/DROP DATABASE only
    tables: tuple[TableRef, ...] = ()
    if_exists: bool = False
    if_not_exists: bool = False
    references: tuple[TableRef, ...] = ()  # FOREIGN KEY parents named (CREATE / ALTER TABLE)
    renames: tuple[tuple[TableRef, TableRef], ...] = ()  # RENAME TABLE a TO b, ...; ALTER TABLE a RENAME TO b
    or_replace: bool = False  # CREATE OR REPLACE VIEW


_MYSQL = Dialect.get_or_raise("mysql")


_NAME_TYPES_EXCLUDED = {
    TokenType.DOT,
    TokenType.L_PAREN,
    TokenType.R_PAREN,
    TokenType.COMMA,
    TokenType.SEMICOLON,
    TokenType.STRING,
    TokenType.NUMBER,
}


class Tokens:
    def __init__(self, sql: str) -> None:
        self.tokens = [t for t in _MYSQL.tokenize(sql)]
        self.pos = 0

    def word(self) -> str:
        if self.pos >= len(self.tokens):
            return ""
        t = self.tokens[self.pos]
        return "" if t.token_type == TokenType.IDENTIFIER else t.text.upper()

    def accept(self, *words: str) -> bool:
        """Consume the words if they come next (a token may hold several, e.g. 'PARTITION BY')."""
        save = self.pos
        for w in words:
            if self.word() != w:
                self.pos = save
                return False
            self.pos += 1
        return True

    def name(self) -> str | None:
        if self.pos >= len(self.tokens) or self.tokens[self.pos].token_type in _NAME_TYPES_EXCLUDED:
            return None
        self.pos += 1
        return self.tokens[self.pos - 1].text

    def table(self) -> TableRef | None:
        first = self.name()
        if first is None:
            return None
        if self.pos < len(self.tokens) and self.tokens[self.pos].token_type == TokenType.DOT:
            self.pos += 1
            second = self.name()
            return TableRef(first, second) if second else None
        return TableRef(None, first)

    def rest_words_at_depth0(self) -> list[str]:
        depth, words = 0, []
        for t in self.tokens[self.pos :]:
            if t.token_type == TokenType.L_PAREN:
                depth += 1
            elif t.token_type == TokenType.R_PAREN:
                depth -= 1
            elif depth == 0 and t.token_type not in (TokenType.IDENTIFIER, TokenType.STRING):
                words.append(t.text.upper())
        return words


def syntax_error(sql: str, exc: Exception | None) -> SqlError:
    near = sql.strip()[:80]
    errors = getattr(exc, "errors", None) or []
    if errors and isinstance(errors[0], dict):
        col = errors[0].get("col") or 0
        line = errors[0].get("line") or 1
        lines = sql.splitlines() or [""]
        if 1 <= line <= len(lines):
            start = max(0, col - len(errors[0].get("highlight") or "") - 1)
            near = lines[line - 1][start : start + 80]
        return SqlError(
            ER_PARSE,
            "You have an error in your SQL syntax; check the manual that corresponds to your "
            f"MariaDB server version for the right syntax to use near '{near}' at line {line}",
        )
    return SqlError(
        ER_PARSE,
        "You have an error in your SQL syntax; check the manual that corresponds to your "
        f"MariaDB server version for the right syntax to use near '{near}' at line 1",
    )
