"""Statement classification, digests and the cached sqlglot analysis.

Why this exists: parsing with sqlglot costs 30-130 us per statement (compiled
build) and regenerating SQL costs as much again, while the whole proxy budget
is under ~100 us.  So:

* `classify` looks only at the leading keyword(s) with a regex (~1 us) and
  answers everything that does not need a parse: transaction control, SET,
  USE, SHOW, DESCRIBE, DDL.
* `digest` strips literals the way ProxySQL does (`id = 5` and `id = 7` share
  one digest), so the parse of a statement *shape* happens once.
* `analyze` parses a DML statement and keeps only literal-independent facts
  (tables read and written, a few hazards) in a frozen `Analysis`, cached by
  digest.  The proxy never sends sqlglot's regenerated SQL to MariaDB: it
  forwards the client's own text.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

import sqlglot
from sqlglot import expressions as exp
from sqlglot.errors import ParseError, TokenError

from minisql.errors import ER_EMPTY_QUERY, ER_PARSE, SqlError, unsupported

from .metrics import PLAN_CACHE

# sqlglot warns on every statement it falls back to parsing as a generic Command;
# the planner turns those into clear errors itself, and a client could flood the log.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

PLAN_CACHE_HITS = PLAN_CACHE.labels("hit")
PLAN_CACHE_MISSES = PLAN_CACHE.labels("miss")


class Kind(Enum):
    SELECT = "select"
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
    REPLACE = "replace"
    BEGIN = "begin"
    COMMIT = "commit"
    ROLLBACK = "rollback"
    SAVEPOINT = "savepoint"
    ROLLBACK_TO = "rollback_to"
    RELEASE = "release"
    SET = "set"
    USE = "use"
    SHOW = "show"
    DESCRIBE = "describe"
    DDL = "ddl"
    ACCOUNT = "account"  # CREATE/ALTER/DROP/RENAME USER, GRANT, REVOKE, SET PASSWORD
    SHOW_GRANTS = "show_grants"
    XA = "xa"  # the client's own XA transactions (appxa.py)
    FLUSH = "flush"  # FLUSH TABLES / PRIVILEGES / STATUS ...: every region
    TEMPORARY = "temporary"  # CREATE / DROP TEMPORARY TABLE: one region, this session only
    LOCK_TABLES = "lock_tables"  # LOCK TABLES / UNLOCK TABLES
    MAINTENANCE = "maintenance"  # ANALYZE / OPTIMIZE / REPAIR / CHECK / CHECKSUM TABLE
    HELP = "help"
    SET_STATEMENT = "set_statement"  # SET STATEMENT ... FOR <statement>
    PREPARE = "prepare"  # SQL-level PREPARE name FROM ...
    EXECUTE = "execute"  # EXECUTE name [USING ...], EXECUTE IMMEDIATE ...
    DEALLOCATE = "deallocate"  # DEALLOCATE / DROP PREPARE name
    DO = "do"  # DO expr, ...: planned like a SELECT (clusterplan.py)
    KILL = "kill"  # KILL [CONNECTION | QUERY] id: any proxy's session (cluster.py)
    ROUTINE = "routine"  # CREATE / ALTER / DROP PROCEDURE / FUNCTION: every region (routines.py)
    TRIGGER = "trigger"  # CREATE / DROP TRIGGER: its table's write copies (triggers.py)
    CALL = "call"  # CALL proc(...): routed by the tables its body names (routines.py)
    COMPOUND = "compound"  # BEGIN NOT ATOMIC / FOR / WHILE / LOOP / REPEAT / IF / CASE outside a routine (routines.py)
    LOAD_DATA = "load_data"  # LOAD DATA / XML [LOCAL] INFILE: a write to one table (localinfile.py)
    UNSUPPORTED = "unsupported"


DML_KINDS = frozenset({Kind.SELECT, Kind.INSERT, Kind.UPDATE, Kind.DELETE, Kind.REPLACE})
WRITE_KINDS = frozenset({Kind.INSERT, Kind.UPDATE, Kind.DELETE, Kind.REPLACE})
SYSTEM_SCHEMAS = frozenset({"information_schema", "mysql", "performance_schema", "sys"})

# Leading comments and whitespace: /* ... */ (not /*! executable */), -- ..., # ...
# No `(?:.|\n)*?`: the regex engine keeps state per repetition of a group, so a
# 4 MiB unterminated comment cost 500 MB.  Single-character classes and unrolled
# quoted strings below keep every scan linear in time and constant in memory.
_LEADING_NOISE = re.compile(r"(?:\s+|/\*(?!!).*?\*/|--[ \t][^\n]*(?:\n|$)|#[^\n]*(?:\n|$))*", re.S)
_FIRST_WORDS = re.compile(r"([A-Za-z]+)(?:\s+([A-Za-z]+))?(?:\s+([A-Za-z]+))?")

_SIMPLE = {
    "select": Kind.SELECT,
    "insert": Kind.INSERT,
    "update": Kind.UPDATE,
    "delete": Kind.DELETE,
    "replace": Kind.REPLACE,
    "with": Kind.SELECT,  # refined by analyze(): WITH ... UPDATE/DELETE exists too
    "values": Kind.SELECT,
    "table": Kind.SELECT,
    "set": Kind.SET,
    "use": Kind.USE,
    "show": Kind.SHOW,
    "describe": Kind.DESCRIBE,
    "desc": Kind.DESCRIBE,
    "explain": Kind.DESCRIBE,
    "create": Kind.DDL,
    "alter": Kind.DDL,
    "drop": Kind.DDL,
    "truncate": Kind.DDL,
    "rename": Kind.DDL,
    "begin": Kind.BEGIN,
    "commit": Kind.COMMIT,
    "savepoint": Kind.SAVEPOINT,
    "release": Kind.RELEASE,
    "prepare": Kind.PREPARE,
    "analyze": Kind.MAINTENANCE,
    "optimize": Kind.MAINTENANCE,
    "repair": Kind.MAINTENANCE,
    "check": Kind.MAINTENANCE,
    "checksum": Kind.MAINTENANCE,
    "help": Kind.HELP,
    "execute": Kind.EXECUTE,
    "deallocate": Kind.DEALLOCATE,
    "do": Kind.DO,
    "kill": Kind.KILL,
}


# Real statements the gateway does not route yet (anything else is a syntax error).
_KNOWN_UNSUPPORTED = frozenset(
    "lock unlock handler do kill "
    "install uninstall reset purge change stop shutdown help binlog cache signal resignal "
    "get declare return start".split()
)


DEFINER = (r"definer\s*=\s*(?:'[^']*'|`[^`]*`|[\w.%-]+)(?:\s*@\s*(?:'[^']*'|`[^`]*`|[\w.%-]+))?"
            r"(?:\s*\(\s*\))?")
# CREATE [OR REPLACE] [DEFINER = ...] [AGGREGATE] PROCEDURE|FUNCTION, ALTER/DROP PROCEDURE|FUNCTION
_ROUTINE_DDL = re.compile(rf"(?:create(?:\s+or\s+replace)?(?:\s+{DEFINER})?(?:\s+aggregate)?|alter|drop)\s+(?:procedure|function)\b",
                          re.I)
# CREATE [OR REPLACE] [DEFINER = ...] TRIGGER, DROP TRIGGER
_TRIGGER_DDL = re.compile(rf"(?:create(?:\s+or\s+replace)?(?:\s+{DEFINER})?|drop)\s+trigger\b", re.I)


_COMPOUND_STARTS = frozenset({"for", "while", "loop", "repeat", "if", "case"})


# MariaDB's executable comments: /*!NNNNN text */ runs `text` on servers of version
# NNNNN or later (mysqldump writes them on most lines) -- except MySQL 5.7+ versions,
# which MariaDB skips -- /*M!NNNNNN text */ the same for MariaDB only; without a
# version always.  Strings are skipped, never opened.
_EXECUTABLE_COMMENT = re.compile(
    r"""('[^'\\]*(?:(?:\\.|'')[^'\\]*)*'|"[^"\\]*(?:(?:\\.|"")[^"\\]*)*"|`[^`]*`)|/\*(M?)!(\d{5,6})?(.*?)\*/""",
    re.S,
)
EXECUTABLE_COMMENT_VERSION = 101100  # the regions' MariaDB 10.11


def unwrap_executable_comments(sql: str) -> str:
    """`sql` as MariaDB reads it: each executable comment's text in place of the
    comment when the version allows it, else nothing (a plain comment)."""
    def unwrap(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return m.group(1)
        if m.group(3) is None:
            return " " + m.group(4) + " "
        version = int(m.group(3))
        # MariaDB's rule (sql_lex.cc): MySQL 5.7+ versions (50700-99999) are MySQL's own
        # syntax and skipped, unless the comment is MariaDB's /*M!...*/.
        runs = version <= EXECUTABLE_COMMENT_VERSION and (version < 50700 or version > 99999 or m.group(2) == "M")
        return " " + m.group(4) + " " if runs else " "

    return _EXECUTABLE_COMMENT.sub(unwrap, sql)


def strip_leading_noise(sql: str) -> str:
    """The statement without leading comments and whitespace."""
    m = _LEADING_NOISE.match(sql)
    return sql[m.end():] if m else sql


def classify(sql: str) -> Kind:
    """The statement kind from its leading keywords alone."""
    body = strip_leading_noise(sql).lstrip("(")
    m = _FIRST_WORDS.match(body)
    if not m:
        if not body.strip().rstrip(";").strip():
            raise SqlError(ER_EMPTY_QUERY, "Query was empty")
        raise SqlError(ER_PARSE, f"You have an error in your SQL syntax near '{body[:40]}'")
    first = m.group(1).lower()
    second = (m.group(2) or "").lower()
    if first == "start":
        return Kind.BEGIN if second == "transaction" else Kind.UNSUPPORTED
    if first == "rollback":
        if second == "to" or (second == "work" and (m.group(3) or "").lower() == "to"):
            return Kind.ROLLBACK_TO
        return Kind.ROLLBACK
    if (first == "begin" and second == "not") or first in _COMPOUND_STARTS:  # a compound statement
        return Kind.COMPOUND
    if first == "set" and second == "statement":
        return Kind.SET_STATEMENT
    if second == "temporary" and first in ("create", "drop"):
        return Kind.TEMPORARY
    if first in ("lock", "unlock") and second in ("table", "tables"):
        return Kind.LOCK_TABLES
    third = (m.group(3) or "").lower()
    if first in ("grant", "revoke") or (second == "user" and first in ("create", "alter", "drop", "rename")) \
            or (first, second, third) == ("create", "or", "replace") and body[m.end():].lstrip().lower().startswith("user") \
            or (first, second) == ("set", "password"):
        return Kind.ACCOUNT
    if (first, second) == ("show", "grants"):
        return Kind.SHOW_GRANTS
    if first == "flush":
        return Kind.FLUSH
    if first == "xa":
        return Kind.XA
    if first == "call":
        return Kind.CALL
    if first == "load" and second in ("data", "xml"):
        return Kind.LOAD_DATA
    if first in ("create", "alter", "drop") and _ROUTINE_DDL.match(body):
        return Kind.ROUTINE
    if first in ("create", "drop") and _TRIGGER_DDL.match(body):
        return Kind.TRIGGER
    if (first, second) == ("drop", "prepare"):
        return Kind.DEALLOCATE
    kind = _SIMPLE.get(first)
    if kind is not None:
        return kind
    if first in _KNOWN_UNSUPPORTED:
        return Kind.UNSUPPORTED
    raise SqlError(ER_PARSE, f"You have an error in your SQL syntax; check the manual for the right syntax to use near '{body[:40]}' at line 1")


def _names_in_scope(tree: exp.Expression) -> dict[str, TableRef]:
    """The tables of a multi-table UPDATE/DELETE by the names its clauses may use
    for them: alias, else table name (subqueries' tables excluded)."""
    tables = [t for t in tree.find_all(exp.Table) if t.name and t.find_ancestor(exp.Subquery) is None]
    out: dict[str, TableRef] = {t.alias: _table_ref(t) for t in tables if t.alias}
    for t in tables:
        if not t.alias:
            out.setdefault(t.name, _table_ref(t))
    return out


def _delete_targets(targets: list[exp.Table], names: dict[str, TableRef], refs: list[TableRef],
                    writes: list[TableRef]) -> None:
    """A multi-table DELETE's targets, which may be aliases of its tables: the
    tables behind them join `writes`, and an alias taken for a table leaves `refs`."""
    for t in targets:
        ref = names.get(t.name) if not t.db else None
        if ref is not None and ref != _table_ref(t) and _table_ref(t) in refs:
            refs.remove(_table_ref(t))  # an alias, not a table
        ref = ref or _table_ref(t)
        if ref not in writes:
            writes.append(ref)


def _assigned_tables(tree: exp.Expression, names: dict[str, TableRef]) -> list[TableRef] | None:
    """The tables a multi-table UPDATE's SET assigns, when every assigned column
    is qualified with a table in scope; None when that cannot be told."""
    out: list[TableRef] = []
    for assignment in tree.expressions:
        column = assignment.this if isinstance(assignment, exp.EQ) else None
        if not isinstance(column, exp.Column) or not column.table:
            return None
        if column.db:
            ref = next((r for r in names.values() if (r.database or "").lower() == column.db.lower() and r.name == column.table), None)
        else:
            ref = names.get(column.table)
        if ref is None:
            return None
        if ref not in out:
            out.append(ref)
    return out or None


# -- digests ----------------------------------------------------------------
_LITERALS = re.compile(
    r"""
    (`[^`]*(?:``[^`]*)*`                      # 1: kept: quoted identifier,
    |"[^"\\]*(?:(?:\\.|"")[^"\\]*)*")         #    or "..." (an identifier under ANSI_QUOTES)
    |(/\*.*?\*/)                              # 2: comment, kept
    |'[^'\\]*(?:(?:\\.|'')[^'\\]*)*'          # single-quoted string
    |\b0x[0-9a-fA-F]+\b|\b[xX]'[0-9a-fA-F]*'|\b[bB]'[01]*'
    |(?<![\w.$])\d+(?:\.\d*)?(?:[eE][-+]?\d+)?  # number, not part of an identifier
    |(?<![\w.$])\.\d+(?:[eE][-+]?\d+)?
    """,
    re.X | re.S,
)


def _keep_or_mark(m: re.Match[str]) -> str:
    return m.group(1) or m.group(2) or "?"


def digest(sql: str) -> str:
    """The statement with every literal replaced by `?` (identifiers kept)."""
    return _LITERALS.sub(_keep_or_mark, sql.strip().rstrip(";").rstrip())


# -- analysis -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TableRef:
    database: str | None  # None: resolve against the session's current database
    name: str


@dataclass(frozen=True, slots=True)
class Analysis:
    """Literal-independent facts about one DML statement shape."""

    kind: Kind
    writes: tuple[TableRef, ...]  # tables the statement modifies
    reads: tuple[TableRef, ...]  # tables it only reads
    locking_read: bool = False  # SELECT ... FOR UPDATE / LOCK IN SHARE MODE
    uses_last_insert_id: bool = False  # LAST_INSERT_ID() with no argument
    uses_rand: bool = False  # RAND(): replicas need the primary's seeds
    nondeterministic: str | None = None  # UUID()...: differs on each copy
    uses_sysdate: bool = False  # SYSDATE(): made NOW() (pinned) in writes to replicated tables
    unordered_limit: bool = False  # UPDATE/DELETE ... LIMIT without ORDER BY
    uses_lock_functions: bool = False  # GET_LOCK() & co: runs on the lock region (clusterplan.py)
    uses_connection_id: bool = False  # CONNECTION_ID(): the cluster-wide id substituted
    uuid_once: bool = False  # INSERT ... VALUES whose only nondeterminism is UUID(): each call runs once, so it can be a literal
    scanned: bool = False  # a read sqlglot could not parse: `reads` scanned from the text, names that are no table dropped
    sequences: tuple[TableRef, ...] = ()  # sequences NEXTVAL / SETVAL / NEXT VALUE FOR advance (also in `writes`)
    values_insert: bool = False  # INSERT/REPLACE ... VALUES: each function call in it is evaluated once
    # What an online copy must know (proxy/fillguard.py): the columns UPDATE SET /
    # ON DUPLICATE KEY UPDATE assign (lower case; None: not all plain columns),
    # REPLACE or ON DUPLICATE KEY UPDATE, INSERT IGNORE, UPDATE/DELETE ... LIMIT.
    assigned: tuple[str, ...] | None = ()
    upsert: bool = False
    ignore: bool = False
    limited: bool = False

    @property
    def tables(self) -> tuple[TableRef, ...]:
        return self.writes + self.reads


NONDETERMINISTIC = re.compile(r"\b(uuid|uuid_short|sys_guid)\s*\(", re.I)
_SEQ_NAME = r"((?:`[^`]+`|[\w$]+)(?:\s*\.\s*(?:`[^`]+`|[\w$]+))?)"
# Sequence functions: group 2/4 advance a sequence (a write on it), group 6/8 read the session's last value.
SEQUENCE_CALL = re.compile(
    rf"""('[^'\\]*(?:(?:\\.|'')[^'\\]*)*'?|"[^"\\]*(?:(?:\\.|"")[^"\\]*)*"?|/\*.*?(?:\*/|\Z))"""
    rf"|\b(?:(nextval|setval)\s*\(\s*{_SEQ_NAME}|(next)\s+value\s+for\s+{_SEQ_NAME}"
    rf"|(lastval)\s*\(\s*{_SEQ_NAME}|(previous)\s+value\s+for\s+{_SEQ_NAME})",
    re.I | re.S,
)


def sequence_refs(sql: str) -> tuple[tuple[TableRef, ...], tuple[TableRef, ...]]:
    """(sequences advanced, sequences read) by NEXTVAL(s) / SETVAL(s, ..) /
    NEXT VALUE FOR s and LASTVAL(s) / PREVIOUS VALUE FOR s in `sql`."""
    advanced: list[TableRef] = []
    read: list[TableRef] = []
    if "val" not in sql.lower() and "value" not in sql.lower():
        return (), ()
    for m in SEQUENCE_CALL.finditer(sql):
        if m.group(1) is not None:
            continue
        name = m.group(3) or m.group(5) or m.group(7) or m.group(9)
        parts = [p.strip().strip("`") for p in re.split(r"\s*\.\s*(?=(?:`|[\w$]))", name, maxsplit=1)]
        ref = TableRef(parts[0], parts[1]) if len(parts) == 2 else TableRef(None, parts[0])
        target = advanced if (m.group(2) or m.group(4)) else read
        if ref not in target:
            target.append(ref)
    return tuple(advanced), tuple(r for r in read if r not in advanced)
_SYSDATE = re.compile(r"\bsysdate\s*\(", re.I)
_LAST_INSERT_ID = re.compile(r"\blast_insert_id\s*\(\s*\)", re.I)
_RAND = re.compile(r"\brand\s*\(", re.I)
_LOCK_FUNCTIONS = re.compile(r"\b(?:get_lock|release_lock|is_free_lock|is_used_lock|release_all_locks)\s*\(", re.I)
_CONNECTION_ID = re.compile(r"\bconnection_id\s*\(\s*\)", re.I)
_LOCKING = re.compile(r"\bfor\s+update\b|\block\s+in\s+share\s+mode\b|\bfor\s+share\b", re.I)
_REPLACE_HEAD = re.compile(r"^(\s*(?:/\*.*?\*/\s*)*)replace\b", re.I | re.S)
# UPDATE / DELETE [LOW_PRIORITY] [QUICK] [IGNORE]: modifiers sqlglot does not parse and routing does not need
_MODIFIERS = re.compile(r"^(\s*(?:/\*.*?\*/\s*)*(?:update|delete))(?:\s+(?:low_priority|quick|ignore)\b)+", re.I | re.S)
# VALUES(t.col) in ON DUPLICATE KEY UPDATE: sqlglot parses only VALUES(col) -- the same column of the
# same (target) table, so the analysis reads the unqualified form
_QUALIFIED_VALUES = re.compile(r"\bvalues\s*\(\s*(?:`[^`]+`|[\w$]+)\s*\.\s*((?:`[^`]+`|[\w$]+)\s*\))", re.I)
# INSERT / REPLACE [LOW_PRIORITY | DELAYED | HIGH_PRIORITY]: scheduling words sqlglot does not parse
_INSERT_PRIORITY = re.compile(r"^(\s*(?:/\*.*?\*/\s*)*(?:insert|replace))\s+(?:low_priority|delayed|high_priority)\b", re.I | re.S)


def _table_ref(table: exp.Table) -> TableRef:
    return TableRef(table.db or None, table.name)


def _parse(sql: str) -> exp.Expression:
    try:
        statements = sqlglot.parse(sql, read="mysql")
    except (ParseError, TokenError) as e:
        raise SqlError(ER_PARSE, f"You have an error in your SQL syntax: {str(e).splitlines()[0][:200]}")
    except RecursionError:
        # sqlglot's recursive descent runs out of Python stack (thousands of nested parentheses).
        raise unsupported("statements nested this deeply (the gateway cannot analyse them)") from None
    statements = [s for s in statements if s is not None]
    if len(statements) != 1:
        # Multi-statements are not advertised; refusing them also stops a write
        # hidden behind a read from reaching only the primary.
        raise unsupported("several statements in one query (send them one at a time)")
    return statements[0]


# A read sqlglot cannot parse (valid MariaDB it does not know, e.g. a CTE made of
# VALUES): the tables it names, scanned from the text with strings and comments
# blanked.  Over-approximate on purpose -- a name that is not a table (a CTE, an
# alias) is dropped by the planner (Analysis.scanned) -- and only for reads: a
# read sent to a region that lacks a table it missed gets MariaDB's 1146, never
# a wrong answer; a write must never be guessed.
# Quoted strings and identifiers (unterminated: to the end of the text).
QUOTED = re.compile(r"'[^'\\]*(?:(?:\\.|'')[^'\\]*)*'?|\"[^\"\\]*(?:(?:\\.|\"\")[^\"\\]*)*\"?|`[^`]*`?")


def blank_strings(sql: str) -> str:
    """`sql` with its strings and comments made of x's, same length; quoted
    identifiers kept (a name in backticks can still be matched)."""
    return STRINGS_AND_COMMENTS.sub(lambda m: "x" * len(m.group()), sql)


def blank_quoted(sql: str) -> str:
    """`sql` with every quoted string and identifier made of x's, same length:
    keywords found in it are the statement's, and positions map back."""
    return QUOTED.sub(lambda m: "x" * len(m.group()), sql)


# Each alternative runs to the end of the text when unterminated (`'?`, `\Z`): one
# pass, never a rescan from every later quote or `/*` (a client-controlled stall).
STRINGS_AND_COMMENTS = re.compile(r"'[^'\\]*(?:(?:\\.|'')[^'\\]*)*'?|\"[^\"\\]*(?:(?:\\.|\"\")[^\"\\]*)*\"?|/\*.*?(?:\*/|\Z)|--[ \t][^\n]*|#[^\n]*", re.S)
_SCAN_TABLE = re.compile(r"\b(?:from|join)\s+(`(?:[^`]|``)+`|[\w$]+)(?:\s*\.\s*(`(?:[^`]|``)+`|[\w$]+))?", re.I)
# (INTO @var sets user variables: a read; INTO a table or a file is not)
_SCAN_WRITE = re.compile(r"\b(?:insert|update|delete|replace|into(?!\s+@)|for\s+update|lock\s+in\s+share\s+mode|for\s+share)\b", re.I)


def _scan_unquote(ident: str) -> str:
    return ident[1:-1].replace("``", "`") if ident.startswith("`") else ident


def scan_read(sql: str) -> Analysis | None:
    """The Analysis of a plain read from its text alone (None: it may write or lock)."""
    text = STRINGS_AND_COMMENTS.sub(" ", sql)
    if _SCAN_WRITE.search(text):
        return None
    refs: list[TableRef] = []
    for m in _SCAN_TABLE.finditer(text):
        first, second = _scan_unquote(m.group(1)), m.group(2)
        ref = TableRef(None, first) if second is None else TableRef(first, _scan_unquote(second))
        if ref.name.lower() not in ("select", "dual", "values", "lateral", "json_table") and ref not in refs:
            refs.append(ref)
    return Analysis(
        kind=Kind.SELECT, writes=(), reads=tuple(refs), scanned=True,
        uses_last_insert_id=bool(_LAST_INSERT_ID.search(text)), uses_rand=bool(_RAND.search(text)),
        uses_lock_functions=bool(_LOCK_FUNCTIONS.search(text)), uses_connection_id=bool(_CONNECTION_ID.search(text)),
    )


def _as_functions(sql: str) -> str:
    """NEXT VALUE FOR s / PREVIOUS VALUE FOR s as NEXTVAL(s) / LASTVAL(s), which
    sqlglot parses (for the analysis only; the regions get the client's text)."""
    if "value" not in sql.lower():
        return sql

    def swap(m: re.Match[str]) -> str:
        if m.group(4):
            return f"NEXTVAL({m.group(5)})"
        if m.group(8):
            return f"LASTVAL({m.group(9)})"
        return m.group(0)

    return SEQUENCE_CALL.sub(swap, sql)


def analyze(sql: str, kind: Kind, shape: str) -> Analysis:
    """Parse one DML statement and extract what routing needs."""
    text = _REPLACE_HEAD.sub(r"\1INSERT", sql, count=1) if kind is Kind.REPLACE else sql
    text = _as_functions(text)
    if kind in (Kind.UPDATE, Kind.DELETE):
        text = _MODIFIERS.sub(r"\1", text, count=1)  # (analysed without them; the region runs them)
    elif kind in (Kind.INSERT, Kind.REPLACE):
        text = _INSERT_PRIORITY.sub(r"\1", text, count=1)
        if "." in text:
            text = _QUALIFIED_VALUES.sub(r"VALUES(\1", text)
    try:
        tree = _parse(text)
    except SqlError as e:
        if e.errno != ER_PARSE or kind is not Kind.SELECT:
            raise
        scanned = scan_read(sql)
        if scanned is None:
            raise
        advanced, seq_read = sequence_refs(sql)  # (sqlglot does not parse NEXT VALUE FOR)
        if advanced or seq_read:
            scanned = replace(scanned, writes=advanced, sequences=advanced,
                              reads=tuple(r for r in scanned.reads + seq_read if r not in advanced))
        return scanned
    if isinstance(tree, exp.Command):
        raise unsupported(f"this form of {kind.value.upper()} statement")

    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    refs: list[TableRef] = []
    for table in tree.find_all(exp.Table):
        if not table.name or (not table.db and table.name in ctes):
            continue
        if table.find_ancestor(exp.Into) is not None:  # SELECT ... INTO @var / OUTFILE: not a table
            continue
        if not table.db and table.name.upper() == "DUAL":
            continue
        ref = _table_ref(table)
        if ref not in refs:
            refs.append(ref)

    writes: list[TableRef] = []
    real_kind = kind
    if isinstance(tree, exp.Insert):
        real_kind = Kind.REPLACE if kind is Kind.REPLACE else Kind.INSERT
        target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        if isinstance(target, exp.Table):
            writes.append(_table_ref(target))
    elif isinstance(tree, (exp.Update, exp.Delete)):
        real_kind = Kind.UPDATE if isinstance(tree, exp.Update) else Kind.DELETE
        names = _names_in_scope(tree)
        if isinstance(tree, exp.Delete) and tree.args.get("tables"):
            # DELETE t1, a2 FROM t1 JOIN t2 AS a2 ...: the targets may be aliases
            _delete_targets([t for t in tree.args["tables"] if isinstance(t, exp.Table)], names, refs, writes)
        elif isinstance(tree, exp.Delete) and tree.args.get("using") and isinstance(tree.this, exp.Table):
            # DELETE FROM m1[, m2] USING t1 AS m1 JOIN t2 AS m2 ...: the same, MariaDB's other spelling
            joined = [j.this for j in tree.this.args.get("joins") or () if isinstance(j.this, exp.Table)]
            _delete_targets([tree.this, *joined], names, refs, writes)
        else:
            target = tree.this
            for t in ([target] if isinstance(target, exp.Table) else list(target.find_all(exp.Table)) if target else []):
                ref = _table_ref(t)
                if ref not in writes and not (not ref.database and ref.name in ctes):
                    writes.append(ref)
            if real_kind is Kind.UPDATE and (tree.args.get("joins") or list(tree.this.find_all(exp.Join))):
                assigned = _assigned_tables(tree, names)
                if assigned is not None:
                    writes = assigned
                else:
                    # An unqualified SET column may belong to any joined table: treat
                    # every table outside subqueries as written (each its own fan-out).
                    for t in tree.find_all(exp.Table):
                        ref = _table_ref(t)
                        if ref not in writes and t.find_ancestor(exp.Subquery) is None and ref in refs:
                            writes.append(ref)
    elif isinstance(tree, (exp.Select, exp.Union, exp.Values)) or isinstance(tree, exp.Query):
        real_kind = Kind.SELECT
    else:
        raise unsupported(f"statements of type {type(tree).__name__}")

    advanced, seq_read = sequence_refs(sql)
    for ref in advanced:
        if ref not in writes:
            writes.append(ref)
    refs.extend(r for r in seq_read if r not in refs)
    reads = tuple(r for r in refs if r not in writes)
    unordered_limit = False
    if real_kind in (Kind.UPDATE, Kind.DELETE):
        # (A multi-table UPDATE/DELETE takes no LIMIT: MariaDB answers 1221 itself.)
        unordered_limit = bool(tree.args.get("limit")) and not tree.args.get("order") and len(refs) == 1
    nondet = NONDETERMINISTIC.search(shape)
    # In INSERT ... VALUES each UUID() in the text is evaluated exactly once, so
    # the proxy can evaluate it instead (engine.FanOutWrite) and every copy gets
    # the same value; per row (SELECT, UPDATE, ON DUPLICATE KEY UPDATE) it cannot.
    uuid_once = (
        nondet is not None and real_kind in (Kind.INSERT, Kind.REPLACE) and isinstance(tree.expression, exp.Values)
        and not tree.args.get("conflict") and not refs[1:] and {m.lower() for m in NONDETERMINISTIC.findall(shape)} == {"uuid"}
    )
    return Analysis(
        kind=real_kind,
        writes=tuple(writes),
        reads=reads,
        locking_read=real_kind is Kind.SELECT and bool(_LOCKING.search(shape)),
        uses_last_insert_id=bool(_LAST_INSERT_ID.search(shape)),
        uses_rand=bool(_RAND.search(shape)),
        nondeterministic=nondet.group(1).upper() + "()" if nondet else None,
        uses_sysdate=bool(_SYSDATE.search(shape)),
        unordered_limit=unordered_limit,
        uses_lock_functions=bool(_LOCK_FUNCTIONS.search(shape)),
        uses_connection_id=bool(_CONNECTION_ID.search(shape)),
        uuid_once=uuid_once,
        sequences=advanced,
        values_insert=real_kind in (Kind.INSERT, Kind.REPLACE) and isinstance(tree.expression, exp.Values),
        assigned=_assigned_columns(tree),
        upsert=real_kind is Kind.REPLACE or bool(tree.args.get("conflict")),
        ignore=bool(tree.args.get("ignore")) or bool(_IGNORE.match(sql)),
        limited=real_kind in (Kind.UPDATE, Kind.DELETE) and bool(tree.args.get("limit")),
    )


_IGNORE = re.compile(r"\s*(?:insert|update|delete)\s+(?:(?:low_priority|delayed|high_priority|quick)\s+)*ignore\b", re.I)


def _assigned_columns(tree: exp.Expression) -> tuple[str, ...] | None:
    """Columns UPDATE ... SET or ON DUPLICATE KEY UPDATE assign, lower case
    (None when an assignment's target is not a plain column)."""
    conflict = tree.args.get("conflict")
    pairs = list(tree.expressions) if isinstance(tree, exp.Update) else []
    if conflict is not None:
        pairs += list(conflict.expressions or ())
    out: list[str] = []
    for pair in pairs:
        target = pair.this if isinstance(pair, exp.EQ) else None
        if not isinstance(target, exp.Column):
            return None
        out.append(target.name.lower())
    return tuple(out)


BIG_STATEMENT = 256 * 1024  # analysed off the event loop (proxy/offload.py)
MAX_CACHED_DIGEST = 16 * 1024  # longer shapes are analysed every time (ProxySQL caps digests too)


class AnalysisCache:
    """A bounded LRU of `Analysis` by digest (errors are cached too: a shape that
    fails to parse fails again, and re-parsing it on every retry is waste).

    Bounded in entries *and* in key size: a digest is as long as its statement's
    structure, and ten thousand client-chosen 200 kB shapes would be 2 GB.
    Errors are kept as data and raised anew each time -- re-raising one stored
    exception object grows its traceback (and keeps every caller's frame, SQL
    text included) forever."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, Analysis | SqlError] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self._primed: tuple[str, Kind, Analysis] | None = None
        self._offloader: Any = None

    async def prepare(self, sql: str, kind: Kind) -> None:
        """Analyse a big statement off the event loop (proxy/offload.py), so the
        `get` that follows (with no await in between) returns it at once."""
        from .offload import Offloader  # lazily: offload imports this module

        if self._offloader is None:
            self._offloader = Offloader()
        analysis = await self._offloader.analyze(sql, kind)
        self._primed = (sql, kind, analysis)

    def close(self) -> None:
        if self._offloader is not None:
            self._offloader.close()

    def get(self, sql: str, kind: Kind) -> Analysis:
        primed = self._primed
        if primed is not None and primed[0] is sql and primed[1] is kind:
            self._primed = None
            return primed[2]
        shape = digest(sql)
        key = f"{kind.value}:{shape}"
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            PLAN_CACHE_MISSES.inc()
            try:
                entry = analyze(sql, kind, shape)
            except SqlError as e:
                entry = SqlError(e.errno, e.message, e.sqlstate)  # no traceback kept
            if len(key) <= MAX_CACHED_DIGEST:
                self._entries[key] = entry
                if len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
        else:
            self.hits += 1
            PLAN_CACHE_HITS.inc()
            self._entries.move_to_end(key)
        if isinstance(entry, SqlError):
            raise SqlError(entry.errno, entry.message, entry.sqlstate)
        return entry


def substitute_last_insert_id(sql: str, value: int) -> str:
    """Replace LAST_INSERT_ID() (outside string literals) with the session's value.

    Needed because the statement may run on another region than the INSERT
    that produced the id, and that region's connection knows nothing of it.
    """

    def repl(m: re.Match[str]) -> str:
        text = m.group(0)
        return str(value) if _LAST_INSERT_ID.fullmatch(text) else text

    return re.sub(r"`[^`]*(?:``[^`]*)*`|'[^'\\]*(?:(?:\\.|'')[^'\\]*)*'|\"[^\"\\]*(?:(?:\\.|\"\")[^\"\\]*)*\"|\blast_insert_id\s*\(\s*\)", repl, sql, flags=re.I | re.S)


_QUOTED = r"`[^`]*(?:``[^`]*)*`|'[^'\\]*(?:(?:\\.|'')[^'\\]*)*'|\"[^\"\\]*(?:(?:\\.|\"\")[^\"\\]*)*\""
_ROW_COUNT_CALL = re.compile(_QUOTED + r"|\b(row_count\s*\(\s*\))", re.I | re.S)
_SYSDATE_NAME = re.compile(_QUOTED + r"|\b(sysdate)(?=\s*\()", re.I | re.S)
ROW_COUNT = re.compile(r"\brow_count\s*\(\s*\)", re.I)


def substitute_row_count(sql: str, value: int) -> str:
    """ROW_COUNT() (outside literals) replaced by the value the session saw: the
    connection that runs this statement may not be the one that ran the last."""
    return _ROW_COUNT_CALL.sub(lambda m: f"({value})" if m.group(1) else m.group(0), sql)


def sysdate_as_now(sql: str) -> str:
    """SYSDATE( -> NOW( outside literals: with the write's pinned timestamp every
    copy gets the same value (MariaDB's --sysdate-is-now semantics)."""
    return _SYSDATE_NAME.sub(lambda m: "NOW" if m.group(1) else m.group(0), sql)


# -- INSERT ... SELECT: where the SELECT starts and ends (insertselect.py) --------------------
_INSERT_HEAD = re.compile(r"^\s*(?:insert|replace)\b", re.I)
_SELECT_TOKENS = re.compile(r"[()]|\b(?:select|with|values?|set|like)\b", re.I)
_INSERT_NOT_SELECT = frozenset({"values", "value", "set"})
_SELECT_AFTER_PAREN = re.compile(r"\(\s*(?:select|with)\b", re.I)
_INSERT_TAIL = re.compile(r"[()]|\bon\s+duplicate\s+key\s+update\b|\breturning\b", re.I)
_QUOTED_OR_COMMENT = re.compile(QUOTED.pattern + r"|/\*.*?(?:\*/|\Z)|--[ \t][^\n]*|#[^\n]*", re.S)


def blank_statement(sql: str) -> str:
    """Quoted text and comments as x's, same length: keywords found are the statement's."""
    return _QUOTED_OR_COMMENT.sub(lambda m: "x" * len(m.group()), sql)


def top_level_select(blank: str, pos: int, stop: frozenset[str]) -> int | None:
    """Where the SELECT of an INSERT ... SELECT or CREATE TABLE ... SELECT starts
    (`SELECT`, `WITH` or `(SELECT`), scanning `blank` (blank_statement's text)
    from `pos` outside parentheses; None when a word of `stop` comes first."""
    depth = 0
    for m in _SELECT_TOKENS.finditer(blank, pos):
        token = m.group().lower()
        if token == "(":
            if depth == 0 and _SELECT_AFTER_PAREN.match(blank, m.start()):
                return m.start()
            depth += 1
        elif token == ")":
            depth -= 1
        elif depth == 0:
            if token in ("select", "with"):
                return m.start()
            if token in stop:
                return None
    return None


def split_insert_select(sql: str) -> tuple[str, str, str] | None:
    """(head, select, tail) of `INSERT|REPLACE ... [(cols)] SELECT ... [ON DUPLICATE
    KEY UPDATE ...]`; None for any other shape (VALUES, SET, RETURNING)."""
    blank = blank_statement(sql)
    if not _INSERT_HEAD.match(blank):
        return None
    start = top_level_select(blank, 0, _INSERT_NOT_SELECT)
    if start is None:
        return None
    end = len(sql)
    depth = 0
    for m in _INSERT_TAIL.finditer(blank, start):
        token = m.group()
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif depth == 0:
            if token.lower().startswith("returning"):
                return None
            end = m.start()
            break
    select = sql[start:end].strip().rstrip(";").strip()
    return sql[:start].rstrip() + " ", select, sql[end:].strip().rstrip(";").strip()
