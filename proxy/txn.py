"""Per-connection transaction state as a sans-IO transition table (after h11's _state.py).

The session feeds events (what the client asked for) and gets back the new
state plus the effects the engine must carry out on the backend
connections (sessionstate.py turns them into ordered EndTransaction effects).  No I/O here, so every transition is unit-tested by events alone.

Backends are driven like this:
* autocommit and no transaction: each write runs as its own short backend
  transaction on the primary (engine.FanOutWrite), reads run bare;
* inside a transaction (BEGIN, or autocommit=0 plus any statement) every
  backend connection the session touches gets `begin_sql` lazily on first
  touch, plus the savepoints taken so far, and COMMIT/ROLLBACK go to all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from minisql.errors import SqlError


class Effect(Enum):
    COMMIT_ALL = "commit_all"
    ROLLBACK_ALL = "rollback_all"


class Event(Enum):
    BEGIN = "begin"
    COMMIT = "commit"
    ROLLBACK = "rollback"
    AUTOCOMMIT_ON = "autocommit_on"
    AUTOCOMMIT_OFF = "autocommit_off"
    STATEMENT = "statement"  # any statement that reaches a backend
    IMPLICIT_COMMIT = "implicit_commit"  # DDL, LOCK TABLES...
    ABORT = "abort"  # the proxy had to roll the transaction back (a copy failed)
    SAVEPOINT = "savepoint"
    ROLLBACK_TO = "rollback_to"
    RELEASE = "release"


ER_SP_DOES_NOT_EXIST = 1305


@dataclass(frozen=True, slots=True)
class TxState:
    autocommit: bool = True
    active: bool = False
    begin_sql: str = "START TRANSACTION"
    savepoints: tuple[str, ...] = ()

    @property
    def server_status(self) -> int:
        """SERVER_STATUS_IN_TRANS (1) | SERVER_STATUS_AUTOCOMMIT (2), for OK/EOF packets."""
        return (1 if self.active else 0) | (2 if self.autocommit else 0)


def transition(
    state: TxState, event: Event, *, begin_sql: str = "START TRANSACTION", savepoint: str = ""
) -> tuple[TxState, tuple[Effect, ...]]:
    """Return (new state, effects to run in order)."""
    if event is Event.BEGIN:
        effects = (Effect.COMMIT_ALL,) if state.active else ()
        return replace(state, active=True, begin_sql=begin_sql, savepoints=()), effects
    if event is Event.COMMIT or event is Event.IMPLICIT_COMMIT:
        effects = (Effect.COMMIT_ALL,) if state.active else ()
        return replace(state, active=False, savepoints=()), effects
    if event is Event.ROLLBACK or event is Event.ABORT:
        effects = (Effect.ROLLBACK_ALL,) if state.active else ()
        return replace(state, active=False, savepoints=()), effects
    if event is Event.AUTOCOMMIT_ON:
        effects = (Effect.COMMIT_ALL,) if state.active else ()
        return replace(state, autocommit=True, active=False, savepoints=()), effects
    if event is Event.AUTOCOMMIT_OFF:
        return replace(state, autocommit=False), ()
    if event is Event.STATEMENT:
        if not state.autocommit and not state.active:
            return replace(state, active=True, begin_sql="START TRANSACTION", savepoints=()), ()
        return state, ()
    if event is Event.SAVEPOINT:
        if not state.active:
            if state.autocommit:
                return state, ()  # MariaDB accepts it and does nothing
            # autocommit=0: like any statement, SAVEPOINT opens the transaction
            # (then RELEASE/ROLLBACK TO find it, as on one MariaDB).
            return replace(state, active=True, begin_sql="START TRANSACTION", savepoints=(savepoint,)), ()
        kept = tuple(s for s in state.savepoints if s.lower() != savepoint.lower())
        return replace(state, savepoints=kept + (savepoint,)), ()
    if event in (Event.ROLLBACK_TO, Event.RELEASE):
        names = [s.lower() for s in state.savepoints]
        if savepoint.lower() not in names:
            raise SqlError(ER_SP_DOES_NOT_EXIST, f"SAVEPOINT {savepoint} does not exist", "42000")
        i = names.index(savepoint.lower())
        keep = state.savepoints[: i + 1] if event is Event.ROLLBACK_TO else state.savepoints[:i]
        return replace(state, savepoints=keep), ()
    raise AssertionError(f"unhandled event {event}")
