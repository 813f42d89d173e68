"""The pure parts of cluster-wide sessions (issue 6): ids, KILL, PROCESSLIST,
CONNECTION_ID() and the lock region.  No sockets, no ZooKeeper -- cluster.py
does the I/O; planbuilder.py calls the planning helpers here.

* Connection ids: `proxy number << 22 | local counter` (32 bits, never 0), so
  every proxy issues ids no other proxy issues, and the owner of any id is its
  top bits -- KILL needs no lookup to find where a session lives.
* CONNECTION_ID() is replaced by the session's id before the statement leaves
  the proxy (each region would answer with its own thread id otherwise), as
  LAST_INSERT_ID() is; a whole select item keeps its column name with an alias.
* GET_LOCK() and the other user-level lock functions run on one *lock
  region* every proxy agrees on -- the smallest live region id -- on the
  session's own connection there, so MariaDB itself gives the contention,
  timeouts and release on disconnect.  When the lock region changes (it died,
  or a smaller id came back) the locks held on the old one are lost, as on a
  server crash (cluster.py drops those connections).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Container, Iterable, Sequence

from mysql_mimic.charset import CharacterSet
from mysql_mimic.packets import make_column_definition_41
from mysql_mimic.types import ColumnDefinition, ColumnType

from minisql.errors import CR_CONN_HOST_ERROR, ER_PARSE, SqlError, unsupported

from .backend import QueryResult
from .planner import RoutingSnapshot
from .protocol import lenenc_str
from .statements import strip_leading_noise

# -- connection ids ----------------------------------------------------------------------------
LOCAL_BITS = 22
LOCAL_MASK = (1 << LOCAL_BITS) - 1
MAX_PROXY_NUMBER = (1 << (32 - LOCAL_BITS)) - 1


def owner_of(connection_id: int) -> int:
    """The number of the proxy that issued `connection_id`."""
    return connection_id >> LOCAL_BITS


class ConnectionIds:
    """Issues the connection ids of one proxy: `number << 22 | counter`, the
    counter wrapping within 22 bits and skipping 0 and ids still in use."""

    def __init__(self, number: int) -> None:
        if not 0 <= number <= MAX_PROXY_NUMBER:
            raise ValueError(f"proxy number {number} does not fit in a 32-bit connection id")
        self.number = number
        self._counter = 0

    def renumber(self, number: int) -> None:
        if not 0 <= number <= MAX_PROXY_NUMBER:
            raise ValueError(f"proxy number {number} does not fit in a 32-bit connection id")
        self.number = number

    def next(self, in_use: Container[int]) -> int:
        prefix = self.number << LOCAL_BITS
        for _ in range(LOCAL_MASK + 1):
            self._counter = (self._counter + 1) & LOCAL_MASK
            candidate = prefix | self._counter
            if candidate != 0 and candidate not in in_use:
                return candidate
        raise SqlError(1040, "Too many connections", "08004")


# -- KILL ----------------------------------------------------------------------------------------
_KILL = re.compile(
    r"^kill(?:\s+(?:hard|soft))?(?:\s+(connection|query))?(?:\s+(id))?\s+(.*?)\s*;?\s*$", re.I | re.S)
_CONNECTION_ID_CALL = re.compile(r"^connection_id\s*\(\s*\)$", re.I)


@dataclass(frozen=True, slots=True)
class KillRequest:
    target: int
    query: bool  # KILL QUERY: the statement only; else the connection


def parse_kill(sql: str, connection_id: int) -> KillRequest:
    """`KILL [HARD|SOFT] [CONNECTION|QUERY] id` (id: a number or CONNECTION_ID())."""
    body = strip_leading_noise(sql).strip()
    m = _KILL.match(body)
    if not m or not m.group(3):
        raise SqlError(ER_PARSE, "You have an error in your SQL syntax; check the manual for the right syntax to use near 'KILL'", "42000")
    arg = m.group(3)
    if arg.lower() in ("connection", "query", "id", "hard", "soft", "user"):
        raise SqlError(ER_PARSE, f"You have an error in your SQL syntax; check the manual for the right syntax to use near '{arg}'", "42000")
    if m.group(2):
        raise unsupported("KILL QUERY ID (query ids); use KILL QUERY <connection id>")
    if re.match(r"user\b", arg, re.I):
        raise unsupported("KILL USER")
    if _CONNECTION_ID_CALL.match(arg):
        target = connection_id
    elif re.fullmatch(r"\d+", arg):
        target = int(arg)
    else:
        raise unsupported("KILL with an expression other than a number or CONNECTION_ID()")
    return KillRequest(target, (m.group(1) or "").lower() == "query")


def unknown_thread(target: int) -> SqlError:
    return SqlError(1094, f"Unknown thread id: {target}", "HY000")


def not_owner(target: int) -> SqlError:
    return SqlError(1095, f"You are not owner of thread {target}", "HY000")


# -- SHOW PROCESSLIST ------------------------------------------------------------------------
_PROCESSLIST = re.compile(r"^show\s+(full\s+)?processlist\s*;?\s*$", re.I)


def match_processlist(sql: str) -> bool | None:
    """None: not SHOW [FULL] PROCESSLIST; else whether FULL."""
    m = _PROCESSLIST.match(strip_leading_noise(sql).strip())
    return None if m is None else bool(m.group(1))


PROCESSLIST_COLUMNS = ("Id", "User", "Host", "db", "Command", "Time", "State", "Info", "Progress")
INFO_SHORT = 100  # SHOW PROCESSLIST without FULL, as MariaDB
INFO_FULL_CAP = 16 * 1024  # a row travels through ZooKeeper (1 MB per node): FULL text is capped here

_NUM = ColumnDefinition.NOT_NULL_FLAG | ColumnDefinition.BINARY_FLAG | ColumnDefinition.NUM_FLAG
_COLUMN_TYPES: tuple[tuple[ColumnType, int, ColumnDefinition, int], ...] = (
    (ColumnType.LONGLONG, 21, _NUM | ColumnDefinition.UNSIGNED_FLAG, 0),  # Id
    (ColumnType.VAR_STRING, 128 * 4, ColumnDefinition.NOT_NULL_FLAG, 0),  # User
    (ColumnType.VAR_STRING, 64 * 4, ColumnDefinition.NOT_NULL_FLAG, 0),  # Host
    (ColumnType.VAR_STRING, 64 * 4, ColumnDefinition(0), 0),  # db
    (ColumnType.VAR_STRING, 16 * 4, ColumnDefinition.NOT_NULL_FLAG, 0),  # Command
    (ColumnType.LONG, 7, _NUM, 0),  # Time
    (ColumnType.VAR_STRING, 64 * 4, ColumnDefinition(0), 0),  # State
    (ColumnType.VAR_STRING, 65535, ColumnDefinition(0), 0),  # Info
    (ColumnType.NEWDECIMAL, 9, _NUM, 3),  # Progress
)


def processlist_result(rows: Iterable[Sequence[Any]]) -> QueryResult:
    """MariaDB's SHOW PROCESSLIST result (columns and types), rows ordered by Id."""
    fields = []
    for name, (ctype, length, flags, decimals) in zip(PROCESSLIST_COLUMNS, _COLUMN_TYPES):
        charset = CharacterSet.binary if flags & ColumnDefinition.NUM_FLAG else CharacterSet.utf8mb4
        fields.append(make_column_definition_41(
            server_charset=CharacterSet.utf8mb4, table="PROCESSLIST", org_table="PROCESSLIST", schema="information_schema",
            name=name, character_set=charset, column_length=length, column_type=ctype, flags=flags, decimals=decimals))
    out = []
    for row in sorted(rows, key=lambda r: int(r[0])):
        values = list(row)
        values[8] = f"{float(values[8] or 0):.3f}"
        out.append(b"".join(b"\xfb" if v is None else lenenc_str(str(v).encode("utf8", "surrogateescape")) for v in values))
    return QueryResult(fields, out, len(out), 0, 0, 0, b"")


def warnings_result(warnings: Iterable[dict[str, Any]]) -> QueryResult:
    """SHOW WARNINGS' result (Level, Code, Message) for warnings the proxy holds
    (a DDL's, reported by the master)."""
    columns = (("Level", ColumnType.VAR_STRING, 7 * 4, ColumnDefinition(0)),
               ("Code", ColumnType.LONG, 4, ColumnDefinition.NOT_NULL_FLAG | ColumnDefinition.UNSIGNED_FLAG | _NUM),
               ("Message", ColumnType.VAR_STRING, 512 * 4, ColumnDefinition(0)))
    fields = [make_column_definition_41(server_charset=CharacterSet.utf8mb4, name=name, column_type=ctype, column_length=length,
                                        flags=flags, character_set=CharacterSet.binary if flags & _NUM else CharacterSet.utf8mb4)
              for name, ctype, length, flags in columns]
    rows = [b"".join(lenenc_str(str(w.get(k, "")).encode("utf8", "surrogateescape")) for k in ("level", "code", "message"))
            for w in warnings]
    return QueryResult(fields, rows, len(rows), 0, 0, 0, b"")


def trim_info(info: str | None, full: bool) -> str | None:
    if info is None:
        return None
    return info[:INFO_FULL_CAP] if full else info[:INFO_SHORT]


# -- privileges ------------------------------------------------------------------------------
_GLOBAL_GRANT = re.compile(r"^GRANT\s+(.*?)\s+ON\s+\*\.\*\s+TO\s", re.I | re.S)


def global_privileges(grants: Iterable[str]) -> frozenset[str]:
    """The privileges granted ON *.* by `SHOW GRANTS` lines ("ALL" for ALL PRIVILEGES)."""
    out: set[str] = set()
    for line in grants:
        m = _GLOBAL_GRANT.match(line.strip())
        if m:
            for priv in m.group(1).split(","):
                name = " ".join(priv.split()).upper()
                out.add("ALL" if name in ("ALL", "ALL PRIVILEGES") else name)
    return frozenset(out)


def may_see_all(privileges: frozenset[str]) -> bool:
    """PROCESS: SHOW PROCESSLIST lists every user's sessions."""
    return bool(privileges & {"ALL", "PROCESS"})


def may_kill_any(privileges: frozenset[str]) -> bool:
    """CONNECTION ADMIN or SUPER: KILL reaches other users' sessions."""
    return bool(privileges & {"ALL", "CONNECTION ADMIN", "SUPER"})


# -- CONNECTION_ID() -------------------------------------------------------------------------------
_CID_TOKENS = re.compile(
    r"""`[^`]*(?:``[^`]*)*`|'[^'\\]*(?:(?:\\.|'')[^'\\]*)*'|"[^"\\]*(?:(?:\\.|"")[^"\\]*)*"|/\*.*?\*/"""
    r"""|(?P<fn>\bconnection_id\s*\(\s*\))|(?P<open>\()|(?P<close>\))|(?P<comma>,)"""
    r"""|(?P<kw>\b(?:select|from|where|group|having|order|limit|into|union|window|for|distinct|all)\b)""",
    re.I | re.S)
_ITEM_END = re.compile(r"\s*(?:,|;|$|(?:from|where|group|having|order|limit|into|union|window|for)\b)", re.I)


def substitute_connection_id(sql: str, value: int) -> str:
    """CONNECTION_ID() (outside literals, identifiers and comments) -> the id.
    A whole item of the outer select list gets an alias with the text the
    client wrote, so the column keeps MariaDB's name (`SELECT CONNECTION_ID()`)."""
    out: list[str] = []
    last = 0
    depth = 0
    in_list = False  # inside the select list of the outer SELECT
    item_start = False  # the next token starts a select item
    for m in _CID_TOKENS.finditer(sql):
        if m.group("open"):
            depth += 1
            item_start = False
        elif m.group("close"):
            depth -= 1
        elif m.group("comma"):
            item_start = depth == 0 and in_list
        elif m.group("kw"):
            if depth == 0:
                word = m.group("kw").lower()
                if word == "select":
                    in_list = item_start = True
                elif word in ("distinct", "all"):
                    pass
                else:
                    in_list = item_start = False
        elif m.group("fn"):
            text = m.group("fn")
            whole = depth == 0 and in_list and item_start and _ITEM_END.match(sql, m.end()) is not None
            out.append(sql[last:m.start()])
            out.append(f"{value} AS `{text.replace('`', '``')}`" if whole else str(value))
            last = m.end()
            item_start = False
        else:
            item_start = False
    out.append(sql[last:])
    return "".join(out)


_SET_SESSION_FUNCTIONS = re.compile(
    r"\b(?:(get_lock|release_lock|is_free_lock|is_used_lock|release_all_locks)|(connection_id))\s*\(", re.I)


def set_session_functions(sql: str) -> tuple[bool, bool]:
    """(uses lock functions, uses CONNECTION_ID()) of a SET statement (SETs are not analysed)."""
    locks = cid = False
    for m in _SET_SESSION_FUNCTIONS.finditer(sql):
        locks = locks or bool(m.group(1))
        cid = cid or bool(m.group(2))
    return locks, cid


# -- the lock region ------------------------------------------------------------------------
def lock_region(snap: RoutingSnapshot) -> str | None:
    """The region every proxy sends lock functions to: the smallest live id."""
    return min(snap.regions) if snap.regions else None


def require_lock_region(snap: RoutingSnapshot) -> str:
    region = lock_region(snap)
    if region is None:
        raise SqlError(CR_CONN_HOST_ERROR, "No region is available for GET_LOCK() and the other lock functions")
    return region


# -- DO ------------------------------------------------------------------------------------------
_DO = re.compile(r"^do\s+", re.I)


def do_as_select(sql: str) -> str:
    """`DO expr, ...` as the SELECT that reads the same tables (for analysis and routing)."""
    body = strip_leading_noise(sql)
    m = _DO.match(body)
    if not m:
        raise SqlError(ER_PARSE, "You have an error in your SQL syntax; check the manual for the right syntax to use near 'DO'", "42000")
    return "SELECT " + body[m.end():]
