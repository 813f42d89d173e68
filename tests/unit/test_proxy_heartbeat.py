"""proxy/heartbeat.py's rules, against a fake pool: a beat per live region,
none without the write lease, and never a second beat to a region whose last
one has not answered (a frozen region costs one connection, not one a second).
The real path (proxy -> MariaDB -> load report -> master) is tested in
tests/integration/test_heartbeat.py."""

from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace

from proxy.heartbeat import HeartbeatWriter


class FakeConn:
    def __init__(self, pool: "FakePool", region: str) -> None:
        self.pool, self.region = pool, region

    async def run(self, sql: str) -> None:
        self.pool.sent.append((self.region, sql))
        if self.region in self.pool.frozen:
            await asyncio.Event().wait()  # never answers


class FakePool:
    def __init__(self, frozen: set[str] = frozenset()) -> None:
        self.sent: list[tuple[str, str]] = []
        self.frozen = set(frozen)
        self.released = 0

    async def acquire_internal(self, region: str, host: str, port: int) -> FakeConn:
        return FakeConn(self, region)

    def release_internal(self, conn: FakeConn) -> None:
        self.released += 1


def routing(*regions: str, lease: bool = True) -> SimpleNamespace:
    infos = {r: SimpleNamespace(host="127.0.0.1", mysql_port=3306) for r in regions}
    return SimpleNamespace(holds_lease=lease, snapshot=SimpleNamespace(regions=infos))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_one_beat_to_every_live_region_with_a_rising_sequence():
    async def go() -> list[tuple[str, str]]:
        pool = FakePool()
        writer = HeartbeatWriter(pool, routing("r1", "r2"), lambda: "proxy4")
        writer.beat_once()
        await settle()
        writer.beat_once()
        await settle()
        await writer.close()
        return pool.sent

    sent = asyncio.run(go())
    assert sorted(r for r, _ in sent) == ["r1", "r1", "r2", "r2"]
    assert all("'proxy4'" in sql for _, sql in sent)
    assert [re.search(r"VALUES \('proxy4', (\d+),", sql).group(1) for r, sql in sent if r == "r1"] == ["1", "2"]


def test_no_beats_without_the_write_lease():
    async def go() -> list[tuple[str, str]]:
        pool = FakePool()
        writer = HeartbeatWriter(pool, routing("r1", lease=False), lambda: "proxy1")
        writer.beat_once()
        await settle()
        await writer.close()
        return pool.sent

    assert asyncio.run(go()) == []


def test_a_region_that_does_not_answer_gets_no_second_beat():
    async def go() -> list[tuple[str, str]]:
        pool = FakePool(frozen={"r2"})
        writer = HeartbeatWriter(pool, routing("r1", "r2"), lambda: "proxy1")
        for _ in range(3):
            writer.beat_once()
            await settle()
        await writer.close()
        return pool.sent

    sent = asyncio.run(go())
    assert [r for r, _ in sent].count("r1") == 3
    assert [r for r, _ in sent].count("r2") == 1
