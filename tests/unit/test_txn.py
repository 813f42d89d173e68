"""The transaction state machine, driven by events alone."""

import pytest

from minisql.errors import SqlError
from proxy.txn import Effect, Event, TxState, transition

IDLE = TxState()
ACTIVE = TxState(active=True)
MANUAL = TxState(autocommit=False)

TABLE = [
    # given, event, then (active, autocommit), effects
    (IDLE, Event.BEGIN, (True, True), ()),
    (ACTIVE, Event.BEGIN, (True, True), (Effect.COMMIT_ALL,)),  # BEGIN commits the open transaction
    (ACTIVE, Event.COMMIT, (False, True), (Effect.COMMIT_ALL,)),
    (IDLE, Event.COMMIT, (False, True), ()),
    (ACTIVE, Event.ROLLBACK, (False, True), (Effect.ROLLBACK_ALL,)),
    (ACTIVE, Event.IMPLICIT_COMMIT, (False, True), (Effect.COMMIT_ALL,)),
    (ACTIVE, Event.ABORT, (False, True), (Effect.ROLLBACK_ALL,)),
    (IDLE, Event.STATEMENT, (False, True), ()),  # autocommit: no transaction
    (MANUAL, Event.STATEMENT, (True, False), ()),  # autocommit=0: the first statement opens one
    (IDLE, Event.AUTOCOMMIT_OFF, (False, False), ()),
    (TxState(autocommit=False, active=True), Event.AUTOCOMMIT_ON, (False, True), (Effect.COMMIT_ALL,)),
]


@pytest.mark.parametrize("given,event,then,effects", TABLE)
def test_transitions(given, event, then, effects):
    state, out = transition(given, event)
    assert (state.active, state.autocommit) == then
    assert out == effects


def test_begin_remembers_the_clients_begin_text():
    state, _ = transition(IDLE, Event.BEGIN, begin_sql="START TRANSACTION READ ONLY")
    assert state.begin_sql == "START TRANSACTION READ ONLY"


def test_server_status_flags():
    assert IDLE.server_status == 2
    assert ACTIVE.server_status == 3
    assert TxState(autocommit=False, active=True).server_status == 1


def test_savepoints():
    state, _ = transition(ACTIVE, Event.SAVEPOINT, savepoint="a")
    state, _ = transition(state, Event.SAVEPOINT, savepoint="b")
    assert state.savepoints == ("a", "b")
    rolled, _ = transition(state, Event.ROLLBACK_TO, savepoint="a")
    assert rolled.savepoints == ("a",)
    released, _ = transition(state, Event.RELEASE, savepoint="a")
    assert released.savepoints == ()
    with pytest.raises(SqlError) as info:
        transition(released, Event.ROLLBACK_TO, savepoint="zz")
    assert info.value.errno == 1305
    # outside a transaction a savepoint is accepted and forgotten
    assert transition(IDLE, Event.SAVEPOINT, savepoint="x")[0].savepoints == ()


def test_savepoint_with_autocommit_off_opens_the_transaction():
    off = TxState(autocommit=False)
    state, effects = transition(off, Event.SAVEPOINT, savepoint="a")
    assert state.active and state.savepoints == ("a",) and effects == ()
    released, _ = transition(state, Event.RELEASE, savepoint="a")  # was 1305 before
    assert released.active and released.savepoints == ()
