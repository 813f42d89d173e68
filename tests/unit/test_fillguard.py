"""Writes while a table has a FILLING copy (proxy/fillguard.py): which run on
every copy, which wait, and that the filling copy is written but never read
or compared."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from proxy.engine import FanOutWrite
from proxy.fillguard import FillInProgress
from proxy.planner import Op, RoutingSnapshot, plan
from proxy.statements import AnalysisCache, classify
from topology import ReplicaState, TablePlacement

from .fakecursor import REGIONS, SNAP, LoggingCursor as FakeCursor, ok_result

FILLING = ReplicaState.FILLING


@dataclass
class Session:
    database: str | None = "shop"
    last_insert_region: str | None = None
    last_insert_id: int = 0


def snapshot(unique: bool = False) -> RoutingSnapshot:
    """`solo` (primary r1) gets a new copy on r2; `users` (r1, r2) one on r3."""
    p = SNAP.placement
    p = p.with_table(TablePlacement("shop", "solo", "r1", {"r2": FILLING}, fill_guard=("id",) + (("email",) if unique else ()),
                                    fill_unique=unique))
    p = p.with_table(TablePlacement("shop", "users", "r1", {"r2": ReplicaState.IN_SYNC, "r3": FILLING}, fill_guard=("id",)))
    return RoutingSnapshot(p, REGIONS)


def run(sql: str, snap: RoutingSnapshot | None = None):
    return plan(sql, classify(sql), snap or snapshot(), Session(), AnalysisCache())


RUN_ON_EVERY_COPY = [
    ("INSERT INTO solo (id, v) VALUES (1, 2)", ("r1", "r2")),
    ("INSERT IGNORE INTO solo (id, v) VALUES (1, 2)", ("r1", "r2")),  # no UNIQUE key but the primary key
    ("INSERT INTO solo (id, v) VALUES (1, 2) ON DUPLICATE KEY UPDATE v = v + 1", ("r1", "r2")),
    ("REPLACE INTO solo (id, v) VALUES (1, 2)", ("r1", "r2")),
    ("UPDATE solo SET v = v + 1 WHERE id = 7", ("r1", "r2")),
    ("DELETE FROM solo WHERE id = 7", ("r1", "r2")),
    ("UPDATE users SET name = 'x' WHERE id = 3", ("r1", "r2", "r3")),  # in-sync first, the filling copy last
]


@pytest.mark.parametrize("sql,regions", RUN_ON_EVERY_COPY)
def test_safe_writes_reach_the_filling_copy(sql, regions):
    p = run(sql)
    assert p.op is Op.WRITE
    assert p.regions == regions
    assert p.filling == frozenset({regions[-1]})


WAIT = [
    "UPDATE solo SET id = id + 1000 WHERE id = 7",  # moves a row between key ranges
    "UPDATE solo SET `ID` = 5",  # (names compare case-insensitively)
    "INSERT INTO solo (id, v) VALUES (1, 2) ON DUPLICATE KEY UPDATE id = 9",
    "INSERT INTO solo SELECT * FROM users",  # reads rows
    "INSERT INTO users SELECT * FROM users",  # reads its own rows
    "UPDATE solo SET v = (SELECT 1) WHERE id = 2",
    "DELETE FROM solo WHERE id = 7 LIMIT 1",
    "UPDATE solo SET v = 1 ORDER BY v LIMIT 2",
    "UPDATE solo, orders SET solo.v = 1 WHERE solo.id = orders.id",
]


@pytest.mark.parametrize("sql", WAIT)
def test_writes_that_could_miss_the_new_copy_wait(sql):
    with pytest.raises(FillInProgress) as info:
        run(sql)
    assert info.value.errno == 1205 and info.value.sqlstate == "HY000"  # a retriable lock wait timeout


@pytest.mark.parametrize("sql", [
    "INSERT IGNORE INTO solo (id, email) VALUES (1, 'a')",
    "INSERT INTO solo (id, email) VALUES (1, 'a') ON DUPLICATE KEY UPDATE v = 1",
])
def test_a_second_unique_key_holds_back_ignore_and_upserts(sql):
    with pytest.raises(FillInProgress):
        run(sql, snapshot(unique=True))
    run(sql)  # without one they run


def test_reads_never_go_to_a_filling_copy():
    for sql in ("SELECT * FROM solo", "SELECT * FROM users WHERE id = 1", "SELECT * FROM solo FOR UPDATE"):
        p = run(sql)
        assert p.op is Op.READ and p.regions == ("r1",)
    no_primary = RoutingSnapshot(snapshot().placement, {k: v for k, v in REGIONS.items() if k != "r1"})
    assert run("SELECT * FROM users", no_primary).regions == ("r2",)  # the in-sync replica, not r3


def test_plain_writes_to_a_table_without_a_fill_are_unchanged():
    assert run("UPDATE orders SET id = id + 1").regions == ("r2", "r1")


def test_filling_copy_affected_rows_are_not_compared():
    """An UPDATE of a row not copied yet changes nothing on the new copy: no divergence."""
    def respond(region: str, sql: str):
        if "UPDATE" in sql:
            return ok_result(affected=0 if region == "r2" else 1)
        return ok_result(affected=0)

    cursor = FakeCursor(respond=respond)
    write = FanOutWrite("UPDATE solo SET v = 1 WHERE id = 7", ("r1", "r2"), filling=frozenset({"r2"}))
    reply = asyncio.run(write.execute(cursor))
    assert reply.result.affected_rows == 1
    updates = [(region, sql) for region, sql in cursor.log if "UPDATE solo" in sql]
    assert [region for region, _ in updates] == ["r1", "r2"]  # the primary first, then the new copy
    assert not any("ROLLBACK" in sql for _, sql in cursor.log)


def test_in_sync_copy_affected_rows_still_are():
    def respond(region: str, sql: str):
        return ok_result(affected=0 if region == "r2" and "UPDATE" in sql else 1)

    cursor = FakeCursor(respond=respond)
    write = FanOutWrite("UPDATE solo SET v = 1 WHERE id = 7", ("r1", "r2"))
    with pytest.raises(Exception, match="disagree"):
        asyncio.run(write.execute(cursor))
