"""All per-session state in one sans-IO object (after h11's `_state.py`).

Everything that a statement can change about a client session lives here and
only here: the transaction (autocommit, open, savepoints -- the transition
table is txn.py's), the backend connections that joined the open transaction
and which of them were written as a primary (and joined as XA branches,
with the transaction's gtrid), the default database, the SET
statements to replay on a connection opened later, LAST_INSERT_ID() and the
region that produced it, NO_BACKSLASH_ESCAPES, and the prepared statements
(COM_STMT_* ids and SQL-level names).  No I/O: engine primitives read it,
feed it events and carry out the effects it returns; unit tests drive it by
events alone.

Illegal events raise (ROLLBACK TO an unknown savepoint is 1305, a prepared
statement beyond max_prepared_stmt_count is 1461) before anything is sent to
a backend.
"""

from __future__ import annotations

import re

from dataclasses import dataclass, field, replace
from typing import Any

from minisql.errors import SqlError
from minisql.xa import Xid, can_decide, make_gtrid

from .prepared import ER_MAX_PREPARED_STMT_COUNT_REACHED, MAX_STATEMENTS_PER_SESSION, PreparedStatement
from .protocol import SERVER_STATUS_NO_BACKSLASH_ESCAPES
from .txn import Effect, Event, TxState, transition

# What would end the client's own XA transaction: refused inside it (1399), as by MariaDB.
_ENDS_XA = frozenset({Event.BEGIN, Event.COMMIT, Event.ROLLBACK, Event.AUTOCOMMIT_ON, Event.IMPLICIT_COMMIT})


def _rmfail(state: str) -> SqlError:
    return SqlError(1399, f"XAER_RMFAIL: The command cannot be executed when global transaction is in the  {state} state",
                    "XAE07")


# Transactions XA can carry: BEGIN [WORK], START TRANSACTION [READ WRITE] (not READ ONLY,
# not WITH CONSISTENT SNAPSHOT: XA START takes neither).
_XA_BEGIN = re.compile(r"^\s*(?:begin(?:\s+work)?|start\s+transaction(?:\s+read\s+write)?)\s*;?\s*$", re.I)
_TIMESTAMP_RESET = re.compile(r"timestamp\s*:?=\s*(?:default|0+(?:\.0*)?)\s*(?:,|;|$)", re.I)
_NOT_FOR_DDL = frozenset({
    "names", "autocommit", "session transaction", "character_set_client", "character_set_connection",
    "character_set_results", "collation_connection", "transaction_isolation", "tx_isolation", "transaction_read_only",
    "tx_read_only", "wait_timeout", "interactive_timeout",
})


@dataclass(frozen=True, slots=True)
class EndTransaction:
    """Effect: COMMIT (or ROLLBACK) each region, in `order` -- replica-only
    participants first, regions written as a primary last (a primary's COMMIT
    is what makes the write durable for the client)."""

    commit: bool
    order: tuple[str, ...]
    lost: bool = False  # a participant's connection broke: everything is rolled back, COMMIT fails
    gtrid: str | None = None  # the transaction's XA gtrid (minisql/xa.py), if its branches are XA
    xa: frozenset[str] = frozenset()  # participants joined with XA START (the others with begin_sql)
    app: Any = None  # the client's own XA transaction (appxa.AppXid) these branches belong to: rolled back


@dataclass(slots=True)
class SessionState:
    tx: TxState = field(default_factory=TxState)
    database: str | None = None
    replay: dict[str, str] = field(default_factory=dict)  # variable key -> SET statement, in order
    last_insert_id: int = 0
    last_insert_region: str | None = None
    row_count: int = -1  # ROW_COUNT() of the previous statement, as the client saw it
    warnings: Any = None  # SHOW WARNINGS of the previous statement when the proxy had to save it
    temp_tables: dict[tuple[str, str], str] = field(default_factory=dict)  # (db, name) lowercased -> region
    locked_regions: tuple[str, ...] = ()  # regions holding this session's LOCK TABLES
    no_backslash_escapes: bool = False
    participants: list[str] = field(default_factory=list)  # regions in the open transaction, join order
    primaries: set[str] = field(default_factory=set)  # participants written as a primary
    broken: set[str] = field(default_factory=set)  # participants whose connection broke
    statements: dict[int, PreparedStatement] = field(default_factory=dict)  # COM_STMT_PREPARE ids
    named: dict[str, str] = field(default_factory=dict)  # SQL-level PREPARE name (lower) -> text
    next_stmt_id: int = 1
    connection_id: int = 0  # the cluster-wide id of the client connection (kept across resets)
    lock_region: str | None = None  # where this session last ran a lock function (GET_LOCK...)
    xa_token: str = ""  # this proxy process's part of every gtrid (minisql/xa.py); "": no XA
    xa_count: int = 0  # transactions this session started as XA
    xa_gtrid: str | None = None  # the open transaction's gtrid, from its first XA participant
    xa_branches: set[str] = field(default_factory=set)  # participants joined with XA START
    app_xid: Any = None  # the client's own XA transaction (appxa.AppXid), from XA START to its end
    app_xa: str = ""  # its state: "ACTIVE", "IDLE" (after XA END), "PREPARED"; "" when none

    # -- derived ----------------------------------------------------------------------
    @property
    def server_status(self) -> int:
        """Status flags of OK/EOF packets: transaction state and NO_BACKSLASH_ESCAPES."""
        tx = self.tx  # TxState.server_status inlined: read twice per statement
        return (1 if tx.active else 0) | (2 if tx.autocommit else 0) | (SERVER_STATUS_NO_BACKSLASH_ESCAPES if self.no_backslash_escapes else 0)

    # -- transaction events --------------------------------------------------------------
    def statement(self) -> None:
        """Event.STATEMENT, with the transition table's answer for the common
        case (autocommit, or a transaction already open: nothing changes) taken
        without building the event's result."""
        tx = self.tx
        if tx.autocommit or tx.active:
            return
        self.on(Event.STATEMENT)

    def on(self, event: Event, *, begin_sql: str = "START TRANSACTION", savepoint: str = "") -> tuple[EndTransaction, ...]:
        """Feed one transaction event; returns the backend work to do, in order.
        Inside the client's own XA transaction, what would end it (BEGIN, COMMIT,
        ROLLBACK, DDL, SET autocommit=1) is refused with MariaDB's 1399."""
        if self.app_xa and event in _ENDS_XA:
            raise _rmfail(self.app_xa)
        self.tx, effects = transition(self.tx, event, begin_sql=begin_sql, savepoint=savepoint)
        out = []
        for effect in effects:
            out.append(self._end(commit=effect is Effect.COMMIT_ALL))
        return tuple(out)

    def _end(self, commit: bool) -> EndTransaction:
        alive = [r for r in self.participants if r not in self.broken]
        order = tuple(r for r in alive if r not in self.primaries) + tuple(r for r in alive if r in self.primaries)
        lost = bool(self.broken)
        xa = frozenset(r for r in self.xa_branches if r in alive)
        if self.app_xid is not None:  # only ABORT gets here: the client's XA branches are rolled back
            end = EndTransaction(False, order, lost and commit, None, xa, app=self.app_xid)
            self.app_xid, self.app_xa = None, ""
        else:
            end = EndTransaction(commit and not lost, order, lost and commit, self.xa_gtrid if xa else None, xa)
        self.participants = []
        self.primaries = set()
        self.broken = set()
        self.xa_gtrid = None
        self.xa_branches = set()
        return end

    def needs_join(self, region: str) -> bool:
        """A statement is about to run on `region`: must it first BEGIN there?"""
        return self.tx.active and region not in self.participants

    def joined(self, region: str, xa: bool = False) -> None:
        self.participants.append(region)
        if xa:
            self.xa_branches.add(region)

    def xa_branch(self, region: str) -> Any:
        """The XA branch `region` joins the open transaction with, or None when
        it joins with the plain begin statement: XA off (no token), a
        READ ONLY or WITH CONSISTENT SNAPSHOT transaction (XA START has no
        such options), LOCK TABLES held (MariaDB refuses XA under it).  In the
        client's own XA transaction: that xid's branch (appxa.py), and 1399
        once it is no longer ACTIVE (MariaDB takes no more statements then)."""
        if self.app_xid is not None:
            if self.app_xa != "ACTIVE":
                raise _rmfail(self.app_xa)
            return self.app_xid.branch(region)
        if not self.xa_token or self.locked_regions or not can_decide(region) or not _XA_BEGIN.match(self.tx.begin_sql):
            return None
        if self.xa_gtrid is None:
            self.xa_gtrid = self.new_gtrid(region)
        return Xid(self.xa_gtrid, region)

    def new_gtrid(self, decider: str) -> str:
        """A fresh gtrid whose decision lives on `decider`."""
        self.xa_count += 1
        return make_gtrid(decider, f"{self.xa_token}.{self.connection_id}", self.xa_count)

    def xa_start(self, xid: Any) -> None:
        """XA START: the client's own XA transaction begins (appxa.py)."""
        if self.app_xa:
            raise _rmfail(self.app_xa)
        if self.tx.active:
            raise SqlError(1400, "XAER_OUTSIDE: Some work is done outside global transaction", "XAE09")
        self.tx = replace(self.tx, active=True, begin_sql="XA START", savepoints=())
        self.app_xid, self.app_xa = xid, "ACTIVE"

    def xa_finish(self) -> None:
        """The client's XA transaction ended (committed or rolled back on every branch)."""
        self.tx = replace(self.tx, active=False, savepoints=())
        self.app_xid, self.app_xa = None, ""
        self.participants = []
        self.primaries = set()
        self.broken = set()
        self.xa_branches = set()

    def wrote_as_primary(self, region: str) -> None:
        self.primaries.add(region)

    def lost(self, region: str) -> None:
        """A connection broke; if it held part of the open transaction, that
        transaction can no longer commit."""
        if region in self.participants:
            self.broken.add(region)
        if self.temp_tables:  # they lived on that connection, as in MariaDB
            self.temp_tables = {k: r for k, r in self.temp_tables.items() if r != region}

    # -- other session facts ------------------------------------------------------------------
    def use(self, database: str | None) -> None:
        self.database = database

    def record_set(self, key: str, sql: str) -> None:
        """A SET to replay on connections opened later (the latest per key, in order)."""
        self.replay.pop(key, None)
        self.replay[key] = sql

    def fixed_timestamp(self) -> bool:
        """The session SET @@timestamp to a fixed time (not DEFAULT / 0): NOW()
        is then that time on every connection, and writes keep it."""
        for key, sql in self.replay.items():
            if "timestamp" in key.split(","):
                return _TIMESTAMP_RESET.search(sql) is None
        return False

    def ddl_settings(self) -> list[str]:
        """The session's SETs a DDL must run under on the regions (sql_mode,
        foreign_key_checks, check_constraint_checks, time_zone, ...).  Not the
        character sets: the DDL request carries character_set_client apart
        (the region sends the text in it, region/tasks.py); not autocommit or
        the transaction mode."""
        return [sql for key, sql in self.replay.items() if not _NOT_FOR_DDL.intersection(key.split(","))]

    def inserted(self, insert_id: int, region: str) -> None:
        if insert_id:
            self.last_insert_id = insert_id
            self.last_insert_region = region

    def add_statement(self, **fields: object) -> PreparedStatement:
        """Allocate a COM_STMT id (1461 past MariaDB's max_prepared_stmt_count)."""
        if len(self.statements) >= MAX_STATEMENTS_PER_SESSION:
            raise SqlError(ER_MAX_PREPARED_STMT_COUNT_REACHED,
                           f"Can't create more than max_prepared_stmt_count statements (current value: {MAX_STATEMENTS_PER_SESSION})",
                           "42000")
        stmt_id = self.next_stmt_id
        self.next_stmt_id = stmt_id % 0xFFFFFFFF + 1
        stmt = PreparedStatement(stmt_id=stmt_id, **fields)  # type: ignore[arg-type]
        self.statements[stmt_id] = stmt
        return stmt

    def reset(self) -> None:
        """COM_RESET_CONNECTION / COM_CHANGE_USER: a fresh session (the caller
        rolls back and closes the backends first)."""
        fresh = SessionState(connection_id=self.connection_id, xa_token=self.xa_token, xa_count=self.xa_count)
        for name in self.__slots__:  # type: ignore[attr-defined]
            setattr(self, name, getattr(fresh, name))
