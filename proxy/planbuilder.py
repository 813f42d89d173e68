"""Every statement to one engine primitive (after Vitess vtgate's `planbuilder`).

Pure: (statement, kind, routing snapshot, session state, analysis cache) ->
a primitive from engine.py.  No sockets, no clocks, no mutation of the state
it reads.  Routed statements (SELECT/INSERT/.../SHOW/USE/DDL) go through the
routing rules of planner.py; this module adds the statements that used to be
handled beside the planner -- transaction control, savepoints, SET, FLUSH,
account statements and SQL-level PREPARE/EXECUTE/DEALLOCATE -- so every
statement class has a plan, and the golden plans (tests/unit/golden/) cover
them all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from minisql.errors import ER_PARSE, SqlError, unsupported

from .metrics import PRIMITIVE_MISSES

from .engine import Ddl, EveryRegion, FanOutWrite, Local, Primitive, Reply, Route, ShowWarnings, VCursor
from .appxa import XaStatement, parse_xa
from .sessionprims import (AccountStatement, Kill, NamedDeallocate, NamedPrepare, ProcessList, Savepoint, SetSession,
                           ShowGrants, Transaction, UseDatabase)
from .backend import BackendError, QueryResult
from .clusterplan import (
    do_as_select,
    match_processlist,
    parse_kill,
    require_lock_region,
    set_session_functions,
    substitute_connection_id,
    warnings_result,
)
from .catalogscatter import CatalogMaterialized, CatalogScatter
from .crossread import MaterializedRead, ShippedWrite
from .ctas import plan_create_table
from .insertselect import MaterializedInsert, column_kinds, render_values
from .localinfile import plan_load_data
from .routines import CallRoutine, parse_call, plan_compound, plan_routine_ddl
from .planextra import SHOW_STATUS, SessionStatus, plan_ddl_under_lock, plan_lock_tables, plan_maintenance, plan_set_statement
from .planner import Op, Plan, RoutingSnapshot, SessionView, plan, plan_dml
from .prepared import interpolate, placeholder_positions
from .temptables import plan_ddl_on_temporary, plan_temporary
from .triggers import plan_show_create_trigger, plan_trigger_ddl, show_triggers_query
from .statements import (DML_KINDS, AnalysisCache, Kind, blank_statement, blank_strings, classify,
                         split_insert_select, strip_leading_noise)
from .txn import Event

# -- SET ----------------------------------------------------------------------------------------
# The name and the operator only: the value is the rest of the item (a pattern
# ending in `(.*?)\s*$` is quadratic on long runs of spaces -- a client-controlled stall).
_SET_ITEM = re.compile(
    r"^\s*(?:(global|session|local|persist)\s+|@@(global|session|local)\.|@@)?"
    r"(@?`[^`]+(?:``[^`]*)*`|@?[\w$.]+|@?'[^']*'|@?\"[^\"]*\")\s*(?::=|=)",
    re.I | re.S,
)
_SET_NAMES = re.compile(r"^\s*(names|character\s+set|charset)\b", re.I)
_SET_TRANSACTION = re.compile(r"^\s*(?:(global|session)\s+)?transaction\b", re.I)
_TRUE = {"1", "on", "true", "'on'", "'1'", "yes"}
_FALSE = {"0", "off", "false", "'off'", "'0'", "no"}
_TOP_LEVEL_TOKEN = re.compile(r"""'[^'\\]*(?:\\.[^'\\]*)*'?|"[^"\\]*(?:\\.[^"\\]*)*"?|`[^`]*`?|[(),]|[^'"`(),]+""", re.S)
_FLUSH_LOCKING = re.compile(r"\bwith\s+read\s+lock\b|\bfor\s+export\b", re.I)


def split_top_level(text: str) -> list[str]:
    """Split on ',' outside quotes and parentheses, tokenised by one regex (a
    multi-megabyte SET value costs a few tokens, not a Python loop per character)."""
    parts, depth, start = [], 0, 0
    for m in _TOP_LEVEL_TOKEN.finditer(text):
        tok = m.group()
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
        elif tok == "," and depth == 0:
            parts.append(text[start:m.start()])
            start = m.end()
    parts.append(text[start:])
    return parts


# -- SET @var := (SELECT ... FROM t): the value read where t is --------------------------------
_SET_USER_VAR_FROM_QUERY = re.compile(r"^\s*set\s+(@(?:[\w$.]+|`(?:[^`]|``)+`))\s*:?=\s*(.+?)\s*;?\s*$", re.I | re.S)


def plan_set_from_query(sql: str, plan_read: Callable[[str], Primitive]) -> "SetFromQuery | None":
    """SET @v = <expression reading tables>: a user variable is replayed on every
    connection of the session, which may hold no copy of those tables.  The
    expression is read once, as `SELECT <expression>` where its tables are, and
    @v set to that value everywhere (typed: number, string or NULL as read).
    None for any other SET (several assignments go the usual way)."""
    m = _SET_USER_VAR_FROM_QUERY.match(sql)
    if m is None or not re.search(r"\bselect\b", blank_statement(m.group(2)), re.I):
        return None
    if len(split_top_level(strip_leading_noise(sql).strip().rstrip(";")[3:])) != 1:
        return None  # SET @a = 1, @b = (SELECT ...): several assignments
    read = plan_read(f"SELECT {m.group(2)}")
    if not isinstance(read, Route):
        raise unsupported("SET @variable from a query that does not read from one region")
    return SetFromQuery((m.group(1),), read, epoch=read.epoch)


_INTO_AT = re.compile(r"\binto\s+@", re.I)  # the fast check, before blanking quotes
# SELECT ... INTO @a, @b (before FROM or at the end), outside parentheses
_INTO_VARS = re.compile(r"\binto\s+(@(?:[\w$.]+|`(?:[^`]|``)+`)(?:\s*,\s*@(?:[\w$.]+|`(?:[^`]|``)+`))*)", re.I)


def plan_select_into_vars(sql: str, plan_read: Callable[[str], Primitive]) -> "SetFromQuery | None":
    """SELECT ... INTO @a, @b: run without its INTO where it reads, then the
    variables set on every connection of the session (SetFromQuery), so a
    later statement on another region's connection sees them too."""
    blank = blank_statement(sql)
    m = _INTO_VARS.search(blank)
    if m is None or blank[:m.start()].count("(") != blank[:m.start()].count(")"):
        return None
    names = tuple(v.strip() for v in sql[m.start(1):m.end(1)].split(","))
    read = plan_read(sql[:m.start()] + " " + sql[m.end():])
    if not isinstance(read, Route):
        return None  # (a read across regions keeps INTO on the region that runs it)
    return SetFromQuery(names, read, into=True, epoch=read.epoch)


@dataclass(frozen=True, slots=True)
class SetFromQuery:
    """User variables set from one row read where its tables are, then set on
    every connection of the session as typed literals (`SET @v = ...`).
    `into`: SELECT ... INTO's rules (no row: warning 1329 and the variables
    kept; several: 1172); else SET's (no row: NULL)."""

    vars: tuple[str, ...]
    read: Route
    into: bool = False
    label: str = "set"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        vc.state.on(Event.STATEMENT)
        region = self.read.region or vc.any_region()
        result = await vc.run(region, self.read.sql)
        if result.fields is None:
            raise unsupported("user variables set from a statement without a result")
        if self.into:
            if len(result.fields) != len(self.vars):
                raise SqlError(1222, "The used SELECT statements have a different number of columns", "21000")
            if len(result.rows) > 1:
                raise SqlError(1172, "Result consisted of more than one row", "42000")
            if not result.rows:
                vc.state.warnings = warnings_result([{"level": "Warning", "code": 1329,
                                                      "message": "No data - zero rows fetched, selected, or processed"}])
                return Reply(QueryResult(None, [], 0, 0, 1, 0, b""))
        values = render_values(result.rows[0], column_kinds(result.fields)) if result.rows else ["NULL"]
        assignments = ", ".join(f"{var} = {value}" for var, value in zip(self.vars, values))
        await plan_set(f"SET {assignments}", self.epoch).execute(vc)
        return Reply(QueryResult(None, [], 1 if self.into else 0, 0, 0, 0, b""))

    def describe(self) -> dict[str, Any]:
        return {"SetFromQuery": ",".join(self.vars), "read": self.read.describe()}



_ASSIGNED_VARIABLE = re.compile(r"(@(?:[\w$.]+|`[^`]+`))\s*:=")


@dataclass(frozen=True, slots=True)
class SyncVariables:
    """A statement that assigns user variables (`@c := @c + 1` in a SELECT or an
    UPDATE) changes them only on the connections that run it; the session's
    other connections -- and those it opens later -- must see the same values,
    or the next statement that reads them there (a write replayed on a
    replica) would differ.  After the statement, the values are read where it
    ran and set everywhere else, like a SET.  The result is buffered."""

    inner: Any
    vars: tuple[str, ...]
    label: str = "read"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        reply = await self.inner.execute(vc)
        if reply.stream is not None:
            try:
                reply = Reply(await reply.stream.read_all())
            except BackendError as e:
                raise e.to_sql_error() from None
        region = vc.last_region() or vc.any_region()
        read = await vc.run(region, "SELECT " + ", ".join(self.vars), join=False)
        values = render_values(read.rows[0], column_kinds(read.fields or [])) if read.rows else ["NULL"] * len(self.vars)
        await plan_set("SET " + ", ".join(f"{var} = {value}" for var, value in zip(self.vars, values)), self.epoch).execute(vc)
        return reply

    def describe(self) -> dict[str, Any]:
        return {"SyncVariables": list(self.vars), "inner": self.inner.describe()}


def plan_set(sql: str, epoch: int = -1) -> SetSession | EveryRegion:
    body = strip_leading_noise(sql).strip().rstrip(";")
    keys: list[str] = []
    autocommit: bool | None = None
    one_shot = False
    charset: str | None = None
    scopes: set[str] = set()
    for item in split_top_level(body[3:]):
        names = _SET_NAMES.match(item)
        if names:
            keys.append("names")
            words = item[names.end():].split()
            charset = words[0] if words else ""
            if charset.strip("'\"`").lower() == "default":
                charset = "utf8mb4"
            scopes.add("session")
            continue
        mt = _SET_TRANSACTION.match(item)
        if mt:
            # SET [GLOBAL | SESSION] TRANSACTION characteristic [, characteristic]: the rest
            # of the statement is its list (its commas do not separate variables).
            whole = _SET_TRANSACTION.match(body[3:])
            if whole is None:  # TRANSACTION after a variable: not MariaDB's grammar
                raise SqlError(ER_PARSE, "You have an error in your SQL syntax; check the manual that corresponds to "
                                         f"your MariaDB server version for the right syntax to use near '{item.strip()[:40]}'"
                                         " at line 1", "42000")
            check_transaction_characteristics(body[3:][whole.end():])
            scope = (mt.group(1) or "").lower()
            scopes.add("global" if scope == "global" else "session")
            if scope == "session":
                keys.append("session transaction")
            else:
                one_shot = True
            break
        m = _SET_ITEM.match(item)
        if not m:
            raise unsupported(f"SET {item.strip()[:40]}")
        scope = (m.group(1) or m.group(2) or "").lower()
        name = m.group(3).lower()
        if name[:1] == "@" and name[1:2] in "`'\"":  # @`user variable` (PyMySQL's callproc), @'x', @"x"
            name = "@" + name[2:-1]
        name = name.strip("`")
        if name.startswith("@@"):
            name = name[2:]
        for prefix in ("session.", "local."):
            if name.startswith(prefix):
                name = name[len(prefix):]
        if name.startswith("global."):
            scope = "global"
        scopes.add("global" if scope in ("global", "persist") else "session")
        if name == "autocommit":
            value = item[m.end():].strip().lower()
            if value in _TRUE:
                autocommit = True
            elif value in _FALSE:
                autocommit = False
            else:
                raise SqlError(1231, f"Variable 'autocommit' can't be set to the value of '{value[:64]}'", "42000")
        keys.append(name)
    if "global" in scopes:
        if "session" in scopes:
            raise unsupported("SET mixing GLOBAL and session variables (send them as two statements)")
        return EveryRegion(sql, "SET GLOBAL", epoch=epoch)
    return SetSession(sql, ",".join(keys), autocommit, charset, one_shot, epoch=epoch)


# -- savepoints ---------------------------------------------------------------------------------
def savepoint_name(sql: str) -> str:
    """The name at the end of SAVEPOINT / ROLLBACK TO / RELEASE SAVEPOINT, scanned
    from the end in linear time (a regex search for it was quadratic)."""
    body = strip_leading_noise(sql).rstrip().rstrip(";").rstrip()
    if body.endswith("`"):
        start = body.rfind("`", 0, len(body) - 1)
        while start > 0 and body[start - 1] == "`":  # `` inside a quoted name
            start = body.rfind("`", 0, start - 1)
        if start >= 0 and start < len(body) - 2:
            return body[start + 1:-1].replace("``", "`")
    i = len(body)
    while i > 0 and (body[i - 1].isalnum() or body[i - 1] in "_$"):
        i -= 1
    if i == len(body) or i == 0:
        raise SqlError(ER_PARSE, "You have an error in your SQL syntax near 'SAVEPOINT'", "42000")
    return body[i:]


_SAVEPOINT_EVENTS = {Kind.SAVEPOINT: Event.SAVEPOINT, Kind.ROLLBACK_TO: Event.ROLLBACK_TO, Kind.RELEASE: Event.RELEASE}

# -- SQL-level prepared statements --------------------------------------------------------------
_NAME = r"(`[^`]+`|[\w$]+)"
_PREPARE = re.compile(rf"^prepare\s+{_NAME}\s+from\s+", re.I)
_EXECUTE = re.compile(rf"^execute\s+{_NAME}\s*(?:using\s+(.*?))?\s*;?\s*$", re.I | re.S)
_EXECUTE_IMMEDIATE = re.compile(r"^execute\s+immediate\s+", re.I)
_DEALLOCATE = re.compile(rf"^(?:deallocate|drop)\s+prepare\s+{_NAME}\s*;?\s*$", re.I)
_STRING = re.compile(r"""^('(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")\s*(?:using\s+(.*?))?\s*;?\s*$""", re.S | re.I)
_USER_VARIABLE = re.compile(r"^@[\w$.]+$|^@`[^`]+`$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "b": "\b", "Z": "\x1a"}


def _unquote_name(name: str) -> str:
    return name[1:-1] if name.startswith("`") else name


def _string_value(literal: str) -> str:
    quote, body = literal[0], literal[1:-1]
    body = body.replace(quote * 2, quote)
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body, flags=re.S)


# A literal of any type: numbers (with exponents), strings (with a charset introducer),
# typed temporals (TIME'..'), hex and bit strings, NULL / TRUE / FALSE.
_USING_LITERAL = re.compile(
    r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?"
    r"|(?:_[a-z0-9]+\s*)?'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\""
    r"|(?:date|time|timestamp)\s*'[^']*'|x'[0-9a-f]*'|0x[0-9a-f]+|b'[01]*'|0b[01]+|null|true|false",
    re.I,
)


def bind_user_variables(text: str, using: str | None, what: str) -> str:
    """EXECUTE ... USING @a, @b: each `?` becomes the variable itself, which
    keeps its type (user variables reach every connection: SetSession)."""
    variables = [v.strip() for v in split_top_level(using)] if using else []
    for v in variables:
        if not _USER_VARIABLE.match(v) and not _USING_LITERAL.fullmatch(v):
            raise unsupported(f"EXECUTE ... USING {v[:30]} (user variables and literals only)")
    return interpolate(text, variables, what)


def _plan_prepared_sql(sql: str, snap: RoutingSnapshot, state: SessionView, cache: AnalysisCache, depth: int) -> Primitive:
    body = strip_leading_noise(sql).strip()
    kind = classify(body)
    if kind in (Kind.PREPARE, Kind.EXECUTE, Kind.DEALLOCATE):
        raise SqlError(1295, "This command is not supported in the prepared statement protocol yet", "HY000")
    return plan_statement(body, kind, snap, state, cache, depth + 1)


def _plan_named(sql: str, kind: Kind, snap: RoutingSnapshot, state: SessionView, cache: AnalysisCache, depth: int) -> Primitive:
    body = strip_leading_noise(sql).strip()
    if kind is Kind.DEALLOCATE:
        m = _DEALLOCATE.match(body)
        if not m:
            raise SqlError(ER_PARSE, "You have an error in your SQL syntax near 'PREPARE'", "42000")
        return NamedDeallocate(_unquote_name(m.group(1)), epoch=snap.epoch)
    if kind is Kind.PREPARE:
        m = _PREPARE.match(body)
        rest = body[m.end():] if m else ""
        if m and _USER_VARIABLE.match(rest.strip().rstrip(";").strip()):
            return NamedPrepare(_unquote_name(m.group(1)), "", variable=rest.strip().rstrip(";").strip(), epoch=snap.epoch)
        literal = _STRING.match(rest)
        if not m or not literal or literal.group(2):
            raise unsupported("PREPARE ... FROM anything but a string literal or a user variable")
        text = _string_value(literal.group(1))
        # Planned once now: a wrong statement fails at PREPARE, as in MariaDB.
        dummy = bind_user_variables(text, ", ".join(["NULL"] * len(placeholder_positions(text))) or None, "PREPARE")
        _plan_prepared_sql(dummy, snap, state, cache, depth)
        return NamedPrepare(_unquote_name(m.group(1)), text, epoch=snap.epoch)
    m = _EXECUTE_IMMEDIATE.match(body)
    if m:
        literal = _STRING.match(body[m.end():])
        if not literal:
            raise unsupported("EXECUTE IMMEDIATE with anything but a string literal")
        text = bind_user_variables(_string_value(literal.group(1)), literal.group(2), "EXECUTE IMMEDIATE")
        return _plan_prepared_sql(text, snap, state, cache, depth)
    m = _EXECUTE.match(body)
    if not m:
        raise SqlError(ER_PARSE, "You have an error in your SQL syntax near 'EXECUTE'", "42000")
    name = _unquote_name(m.group(1))
    text = getattr(state, "named", {}).get(name.lower())
    if text is None:
        raise SqlError(1243, f"Unknown prepared statement handler ({name}) given to EXECUTE", "HY000")
    return _plan_prepared_sql(bind_user_variables(text, m.group(2), "EXECUTE"), snap, state, cache, depth)


_BEGIN_OPTIONS = re.compile(r"^\s*start\s+transaction\b(.*)$", re.I | re.S)
_BEGIN_OPTION = re.compile(r"^(?:read\s+only|read\s+write|with\s+consistent\s+snapshot)$", re.I)


_CHARACTERISTIC = re.compile(
    r"^(?:isolation\s+level\s+(?:read\s+uncommitted|read\s+committed|repeatable\s+read|serializable)"
    r"|read\s+only|read\s+write)$", re.I)


def check_transaction_characteristics(text: str) -> None:
    """SET TRANSACTION's list: isolation level and access mode, each once at
    most (else 1064, as MariaDB's grammar)."""
    items = [" ".join(i.split()).lower() for i in text.split(",")]
    kinds = ["isolation" if i.startswith("isolation") else "access" for i in items]
    if not all(_CHARACTERISTIC.match(i) for i in items) or len(set(kinds)) != len(kinds):
        raise SqlError(ER_PARSE, "You have an error in your SQL syntax; check the manual that corresponds to your MariaDB "
                                 f"server version for the right syntax to use near '{text.strip()[:40]}' at line 1", "42000")


def check_begin_options(begin: str) -> None:
    """START TRANSACTION's options as MariaDB's grammar takes them: each once
    at most, READ ONLY and READ WRITE not together (else 1064, as there: the
    statement reaches a region only when the transaction first does)."""
    m = _BEGIN_OPTIONS.match(begin)
    if not m or not m.group(1).strip():
        return
    options = [" ".join(o.split()).lower() for o in m.group(1).split(",")]
    if (not all(_BEGIN_OPTION.match(o) for o in options) or len(set(options)) != len(options)
            or {"read only", "read write"} <= set(options)):
        raise SqlError(ER_PARSE, "You have an error in your SQL syntax; check the manual that corresponds to your MariaDB "
                                 f"server version for the right syntax to use near '{m.group(1).strip()[:40]}' at line 1",
                       "42000")


# -- the entry point ------------------------------------------------------------------------------
def plan_statement(sql: str, kind: Kind, snap: RoutingSnapshot, state: SessionView, cache: AnalysisCache,
                   depth: int = 0, sync_variables: bool = True) -> Primitive:
    """The primitive that runs `sql` (kind from statements.classify)."""
    epoch = snap.epoch
    if sync_variables and kind in DML_KINDS and "@" in sql and ":=" in sql:
        assigned = tuple(dict.fromkeys(m.group(1) for m in _ASSIGNED_VARIABLE.finditer(blank_strings(sql))))
        if assigned:
            inner = plan_statement(sql, kind, snap, state, cache, depth, sync_variables=False)
            return SyncVariables(inner, assigned, epoch=epoch)
    if kind is Kind.BEGIN:
        begin = strip_leading_noise(sql).rstrip().rstrip(";")
        check_begin_options(begin)
        return Transaction(Event.BEGIN, begin, epoch=epoch)
    if kind is Kind.COMMIT:
        return Transaction(Event.COMMIT, epoch=epoch)
    if kind is Kind.ROLLBACK:
        return Transaction(Event.ROLLBACK, epoch=epoch)
    if kind in _SAVEPOINT_EVENTS:
        return Savepoint(_SAVEPOINT_EVENTS[kind], savepoint_name(sql), sql, epoch=epoch)
    if kind is Kind.XA:
        return XaStatement(parse_xa(strip_leading_noise(sql)), epoch=epoch)
    if kind is Kind.SET:
        locks, cid = set_session_functions(sql)
        if locks:
            raise unsupported("GET_LOCK() and the other lock functions in SET (use SELECT ... or DO)")
        from_query = plan_set_from_query(sql, lambda select: plan_statement(select, Kind.SELECT, snap, state, cache, depth + 1))
        if from_query is not None:
            return from_query
        return plan_set(substitute_connection_id(sql, getattr(state, "connection_id", 0)) if cid else sql, epoch)
    if kind is Kind.KILL:
        request = parse_kill(sql, getattr(state, "connection_id", 0))
        return Kill(request.target, request.query, epoch=epoch)
    if kind is Kind.SHOW:
        full = match_processlist(sql)
        if full is not None:
            return ProcessList(full, epoch=epoch)
        status = SHOW_STATUS.match(strip_leading_noise(sql))
        if status is not None:
            return SessionStatus(sql, epoch=epoch, global_scope=(status.group(1) or "").lower() == "global")
        triggers = show_triggers_query(sql, state.database)
        if triggers is not None:
            return plan_statement(triggers, Kind.SELECT, snap, state, cache, depth + 1)
        create_trigger = plan_show_create_trigger(sql, snap)
        if create_trigger is not None:
            return create_trigger
    if kind is Kind.DO:
        return _plan_do(sql, snap, state, cache)
    if kind is Kind.ACCOUNT:
        return AccountStatement(sql, epoch=epoch)
    if kind is Kind.SHOW_GRANTS:
        return ShowGrants(sql, epoch=epoch)
    if kind is Kind.FLUSH:
        if _FLUSH_LOCKING.search(sql):
            raise unsupported("FLUSH TABLES ... WITH READ LOCK / FOR EXPORT through the gateway")
        return EveryRegion(sql, "FLUSH", implicit_commit=True, epoch=epoch)
    if kind in (Kind.MAINTENANCE, Kind.SET_STATEMENT):
        if depth > 2:
            raise unsupported("nested SET STATEMENT / ANALYZE")

        def inner(text: str) -> Primitive:
            return plan_statement(text, classify(text), snap, state, cache, depth + 1)

        if kind is Kind.MAINTENANCE:
            return plan_maintenance(sql, snap, state, inner)
        return plan_set_statement(sql, inner)
    if kind is Kind.TEMPORARY:
        return plan_temporary(sql, kind, snap, state, cache)
    if kind is Kind.SELECT and depth < 2 and _INTO_AT.search(sql):
        into_vars = plan_select_into_vars(sql, lambda text: plan_statement(text, Kind.SELECT, snap, state, cache, depth + 1))
        if into_vars is not None:
            return into_vars
    if kind is Kind.LOCK_TABLES:
        return plan_lock_tables(sql, snap, state)
    if kind is Kind.DDL:
        on_temporary = plan_ddl_on_temporary(sql, snap, state)
        if on_temporary is not None:
            return on_temporary
        composed = plan_create_table(sql, snap, state, cache)  # ... SELECT, ... LIKE, OR REPLACE
        if composed is not None:
            return composed
        locked = plan_ddl_under_lock(sql, snap, state)
        if locked is not None:
            return locked
    if kind is Kind.HELP:
        return Route(sql, None, label="any", epoch=epoch)
    if kind is Kind.ROUTINE:
        return plan_routine_ddl(sql, epoch)
    if kind is Kind.TRIGGER:
        return plan_trigger_ddl(sql, snap, state)
    if kind is Kind.COMPOUND:
        return plan_compound(sql, snap, state.database, getattr(state, "temp_tables", None), epoch)
    if kind is Kind.CALL:
        database, name = parse_call(sql, state.database)
        return CallRoutine(sql, database, name, epoch=epoch)
    if kind is Kind.LOAD_DATA:
        return plan_load_data(sql, snap, state)
    if kind in (Kind.PREPARE, Kind.EXECUTE, Kind.DEALLOCATE):
        if depth > 2:
            raise SqlError(1295, "This command is not supported in the prepared statement protocol yet", "HY000")
        return _plan_named(sql, kind, snap, state, cache, depth)
    p = plan(sql, kind, snap, state, cache)
    analysis = p.analysis
    if analysis is not None and (analysis.uses_lock_functions or analysis.uses_connection_id):
        return _plan_session_functions(p, p.sql, snap, state)
    if p.op is Op.USE:
        return UseDatabase(p.database or "", epoch=epoch)
    if p.op is Op.DDL:
        return Ddl(p.sql, epoch=epoch)
    if p.op is Op.LOCAL:
        assert p.local is not None
        return Local(p.local, epoch=epoch)
    if p.op is Op.WRITE:
        uuids = analysis is not None and analysis.uuid_once and len(p.regions) > 1
        write = FanOutWrite(p.sql, p.regions, p.uses_rand, p.uses_last_insert_id, uuids=uuids, key_order=p.key_order,
                            sequences=p.sequences, filling=p.filling, epoch=epoch)
        if p.select_from is not None:
            parts = split_insert_select(p.sql)
            assert parts is not None  # the planner checked
            head, select, tail = parts
            return MaterializedInsert(head, select, tail, p.select_from, write, epoch=epoch)
        if p.copies:
            return ShippedWrite(write, p.copies, epoch=epoch)
        return write
    if p.op is Op.READ:
        if p.copies:
            return MaterializedRead(p.sql, p.regions[0], p.copies, epoch=epoch)
        return Route(p.sql, p.regions[0], last_insert_id=p.uses_last_insert_id, epoch=epoch)
    if p.op is Op.STICKY:
        return ShowWarnings(p.sql, epoch=epoch)
    if p.op is Op.CATALOG:
        if p.catalog_views:
            return CatalogMaterialized(p.sql, p.catalog_views, bare=(state.database or "").lower() == "information_schema",
                                       schema=p.catalog_schema, region=p.regions[0] if p.regions else None, epoch=epoch)
        assert p.catalog_keys is not None
        return CatalogScatter(p.sql, p.catalog_keys, epoch=epoch)
    return Route(p.sql, None, sticky=p.op is Op.STICKY, last_insert_id=p.uses_last_insert_id,
                 label="any" if p.op is Op.ANY else "sticky", epoch=epoch)


# -- the fast path ---------------------------------------------------------------------------------
STATE_DEPENDENT = re.compile(r"last_insert_id|connection_id|row_count", re.I)


class PrimitiveCache:
    """Planned routes by exact statement text and default database, for one
    routing snapshot (any new snapshot -- placement or live regions -- empties
    it).  Only Route and FanOutWrite are kept: they read the session's
    transaction state when they run, not when planned; statements whose plan
    depends on other session facts (LAST_INSERT_ID()) are never kept.  A hit
    skips classify, the digest and the planner: the proxy's fast path."""

    MAX_ENTRIES = 8192
    MAX_SQL = 4096

    def __init__(self) -> None:
        self._snapshot: RoutingSnapshot | None = None
        self._plans: dict[tuple[str, str | None], Primitive] = {}

    def get(self, sql: str, snapshot: RoutingSnapshot, database: str | None) -> Primitive | None:
        if snapshot is not self._snapshot:
            self._plans.clear()
            self._snapshot = snapshot
        primitive = self._plans.get((sql, database))
        if primitive is None:
            PRIMITIVE_MISSES.inc()  # hits = minisql_proxy_queries_total - misses: not counted on the fast path
        return primitive

    def put(self, sql: str, snapshot: RoutingSnapshot, database: str | None, primitive: Primitive) -> None:
        if snapshot is not self._snapshot or not isinstance(primitive, (Route, FanOutWrite)) or len(sql) > self.MAX_SQL:
            return
        if STATE_DEPENDENT.search(sql):
            return
        if len(self._plans) >= self.MAX_ENTRIES:
            self._plans.clear()
        self._plans[(sql, database)] = primitive


SHARED_PRIMITIVES = PrimitiveCache()


# -- lock functions, CONNECTION_ID(), DO (clusterplan.py) ----------------------------------------
def _plan_session_functions(p: Plan, sql: str, snap: RoutingSnapshot, state: SessionView) -> Primitive:
    """A DML plan whose statement calls lock functions (-> the lock region) or
    CONNECTION_ID() (-> the session's id as a literal)."""
    analysis = p.analysis
    assert analysis is not None
    if p.select_from is not None or p.copies:
        raise unsupported("CONNECTION_ID() or lock functions in a statement across regions")
    cid = analysis.uses_connection_id
    if cid:
        sql = substitute_connection_id(sql, getattr(state, "connection_id", 0))
    if not analysis.uses_lock_functions:
        if p.op is Op.WRITE:
            return FanOutWrite(sql, p.regions, p.uses_rand, p.uses_last_insert_id, uuids=analysis.uuid_once and len(p.regions) > 1,
                               key_order=p.key_order, filling=p.filling, epoch=p.epoch)
        region = p.regions[0] if p.op is Op.READ else None
        return Route(sql, region, last_insert_id=p.uses_last_insert_id, label="read" if region else "any",
                     connection_id=True, epoch=p.epoch)
    region = require_lock_region(snap)
    if p.op is Op.WRITE:
        raise unsupported("GET_LOCK() and the other lock functions in a write (run them in their own SELECT or DO)")
    for t in p.tables:
        if (t.primary != region) if analysis.locking_read else (region not in t.write_regions):
            raise unsupported(f"lock functions with table {t.database}.{t.name}: all lock functions run on the lock region "
                              f"'{region}', which has no {'primary' if analysis.locking_read else 'in-sync'} copy of it")
    return Route(sql, region, last_insert_id=p.uses_last_insert_id, label="lock", epoch=p.epoch, lock=True, connection_id=cid)


def _plan_do(sql: str, snap: RoutingSnapshot, state: SessionView, cache: AnalysisCache) -> Primitive:
    """DO expr, ...: routed like the SELECT of the same expressions, run as written."""
    select = do_as_select(sql)
    p = plan_dml(select, cache.get(select, Kind.SELECT), snap, state)
    if p.op is Op.LOCAL:  # DO DATABASE(): nothing to answer, any region evaluates it
        p = Plan(Op.ANY, select, kind=Kind.SELECT, epoch=snap.epoch)
    analysis = p.analysis
    if analysis is not None and (analysis.uses_lock_functions or analysis.uses_connection_id):
        return _plan_session_functions(p, sql, snap, state)
    if p.copies:
        return MaterializedRead(sql, p.regions[0], p.copies, epoch=snap.epoch)
    region = p.regions[0] if p.op is Op.READ else None
    return Route(sql, region, last_insert_id=p.uses_last_insert_id, label="do", epoch=snap.epoch)
