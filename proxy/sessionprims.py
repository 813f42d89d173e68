"""The statement engine's session primitives: transaction control, savepoints,
SET, USE, SQL-level PREPARE / DEALLOCATE, KILL and SHOW PROCESSLIST, account
statements and SHOW GRANTS.

They change the session more than they read tables: each feeds the session
state machine (sessionstate.py) its event and carries out the effects it
returns, through the same `VCursor` as every primitive (engine.py, whose
module docstring describes the engine).  Apart from engine.py only to keep
each module small.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from minisql.errors import ER_PARSE, SqlError

from . import metrics
from .engine import Reply, VCursor, end_transaction, ok
from .protocol import text_row
from .txn import Event

_CONSISTENT_SNAPSHOT = re.compile(r"\bconsistent\s+snapshot\b", re.I)


@dataclass(frozen=True, slots=True)
class Transaction:
    """BEGIN / START TRANSACTION ..., COMMIT, ROLLBACK."""

    event: Event
    begin_sql: str = "START TRANSACTION"
    label: str = "transaction"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        was_active = vc.state.tx.active
        warnings = await end_transaction(vc, vc.state.on(self.event, begin_sql=self.begin_sql))
        if self.event is Event.BEGIN and _CONSISTENT_SNAPSHOT.search(self.begin_sql):
            # The snapshot is taken now, as on one server: on every live region, not when a
            # statement first reaches one (another session's commit in between would show).
            for region in sorted(vc.snapshot.regions):
                await vc.join(region)
        if self.event is not Event.BEGIN and was_active:
            metrics.TRANSACTIONS.labels("commit" if self.event is Event.COMMIT else "rollback").inc()
        return ok(warnings=warnings)

    def describe(self) -> dict[str, Any]:
        return {"Transaction": self.event.value, **({"begin": self.begin_sql} if self.event is Event.BEGIN else {})}


@dataclass(frozen=True, slots=True)
class Savepoint:
    """SAVEPOINT / ROLLBACK TO / RELEASE: on every participant; regions that join
    later replay the savepoints still open."""

    event: Event
    name: str
    sql: str
    label: str = "transaction"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        state = vc.state
        state.on(self.event, savepoint=self.name)
        if state.tx.active:
            for region in list(state.participants):
                await vc.run(region, self.sql, join=False)
        return ok()

    def describe(self) -> dict[str, Any]:
        return {"Savepoint": self.event.value, "name": self.name}


@dataclass(frozen=True, slots=True)
class SetSession:
    """Session SETs: checked on one backend (a wrong value gets MariaDB's own
    error), then on every other open connection, and recorded for replay on
    connections opened later -- so @@sql_mode, user variables and SHOW
    VARIABLES tell the truth wherever the next statement runs."""

    sql: str
    key: str  # replay key: the variables it sets
    autocommit: bool | None = None
    charset: str | None = None
    one_shot: bool = False  # SET TRANSACTION ...: the next transaction only
    label: str = "set"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        state = vc.state
        if self.one_shot and state.tx.active:  # MariaDB's rule, whichever connection would be asked
            raise SqlError(1568, "Transaction characteristics can't be changed while a transaction is in progress", "25001")
        if self.charset is not None:
            vc.set_charset(self.charset)  # before running it: refuses a charset we cannot carry
        if self.autocommit is not None and state.tx.active and state.xa_branches:
            # An XA branch refuses SET autocommit (1399).  Turning it on commits the
            # open transaction (MariaDB's rule): done first.  Turning it off leaves the
            # transaction open: the branches' connections keep their setting until it ends.
            if self.autocommit:
                await end_transaction(vc, state.on(Event.AUTOCOMMIT_ON))
            else:
                state.on(Event.AUTOCOMMIT_OFF)
                state.record_set(self.key, self.sql)
                return ok()
        first = vc.last_region() or vc.any_region()
        result = await vc.run(first, self.sql, join=False)
        warnings = result.warnings  # (1292 for a value MariaDB adjusted; SHOW WARNINGS asks the last region, alike)
        # MariaDB tells, in the status flags, whether sql_mode now has
        # NO_BACKSLASH_ESCAPES; drivers read it to escape strings right.
        state.no_backslash_escapes = bool(result.server_status & 0x0200)
        for region in vc.open_regions():
            if region != first:
                await vc.run(region, self.sql, join=False)
        if "wait_timeout" in self.key:
            # MariaDB ends a session idle for its wait_timeout: the proxy does it on the
            # client's connection (the backends reconnecting behind it would hide it).
            answer = await vc.run(first, "SELECT @@session.wait_timeout", join=False)
            if answer.rows:
                row = answer.rows[0]
                vc.set_idle_timeout(float(row[1:1 + row[0]]))
        if not self.one_shot:
            state.record_set(self.key, self.sql)
        if self.autocommit is not None:
            # The backends already committed (SET autocommit=1 commits); keep our state in step.
            await end_transaction(vc, state.on(Event.AUTOCOMMIT_ON if self.autocommit else Event.AUTOCOMMIT_OFF))
        return ok(warnings=warnings)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"SetSession": self.key}
        if self.autocommit is not None:
            out["autocommit"] = self.autocommit
        if self.charset is not None:
            out["charset"] = self.charset
        if self.one_shot:
            out["one_shot"] = True
        return out


@dataclass(frozen=True, slots=True)
class UseDatabase:
    database: str
    label: str = "use"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        vc.state.use(self.database)
        return ok()

    def describe(self) -> dict[str, Any]:
        return {"UseDatabase": self.database}


@dataclass(frozen=True, slots=True)
class AccountStatement:
    """CREATE/ALTER/DROP/RENAME USER, GRANT, REVOKE, SET PASSWORD (accounts.py)."""

    sql: str
    label: str = "account"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        await end_transaction(vc, vc.state.on(Event.IMPLICIT_COMMIT))
        return await vc.account_statement(self.sql)

    def describe(self) -> dict[str, Any]:
        return {"AccountStatement": "every region"}


@dataclass(frozen=True, slots=True)
class ShowGrants:
    sql: str
    label: str = "show_grants"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        return await vc.show_grants(self.sql)

    def describe(self) -> dict[str, Any]:
        return {"ShowGrants": True}


@dataclass(frozen=True, slots=True)
class NamedPrepare:
    """SQL-level PREPARE name FROM '...': the text is kept (after planning it
    once, so a wrong statement fails here as in MariaDB); EXECUTE plans it."""

    name: str
    text: str
    variable: str = ""  # PREPARE name FROM @variable: the text is that user variable's value
    label: str = "prepare"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        text = self.text
        if self.variable:
            # User variables reach every connection of the session (SetSession): any one
            # knows the value.  Checked when EXECUTE plans it, not here.
            region = vc.last_region() or vc.any_region()
            row = (await vc.run(region, f"SELECT {self.variable}", join=False)).rows
            value = text_row(row[0])[0] if row else None
            if value is None:
                raise SqlError(ER_PARSE, "You have an error in your SQL syntax; check the manual that corresponds to your "
                                         "MariaDB server version for the right syntax to use near 'NULL' at line 1", "42000")
            text = value.decode(vc.text_codec(), "surrogateescape")
        vc.state.named[self.name.lower()] = text
        return ok()

    def describe(self) -> dict[str, Any]:
        return {"NamedPrepare": self.name, **({"from": self.variable} if self.variable else {})}


@dataclass(frozen=True, slots=True)
class NamedDeallocate:
    name: str
    label: str = "prepare"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        if vc.state.named.pop(self.name.lower(), None) is None:
            raise SqlError(1243, f"Unknown prepared statement handler ({self.name}) given to DEALLOCATE PREPARE", "HY000")
        return ok()

    def describe(self) -> dict[str, Any]:
        return {"NamedDeallocate": self.name}


@dataclass(frozen=True, slots=True)
class Kill:
    """KILL [CONNECTION | QUERY] id: the proxy that owns the id does it (cluster.py)."""

    target: int
    query: bool
    label: str = "kill"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        return await vc.kill(self.target, self.query)

    def describe(self) -> dict[str, Any]:
        return {"Kill": "query" if self.query else "connection", "id": self.target}


@dataclass(frozen=True, slots=True)
class ProcessList:
    """SHOW [FULL] PROCESSLIST: every live proxy's sessions (cluster.py)."""

    full: bool
    label: str = "processlist"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        return await vc.processlist(self.full)

    def describe(self) -> dict[str, Any]:
        return {"ProcessList": "every proxy", **({"full": True} if self.full else {})}


