"""Load sampling: what the master's assignor reads about this region.

Every few seconds the agent publishes a `RegionLoad`:

* tables / rows / data_bytes -- base tables of non-system schemas from
  information_schema.TABLES (rows is InnoDB's estimate: good enough to rank
  regions, not an exact count);
* qps -- the delta of SHOW GLOBAL STATUS 'Questions' over the elapsed time
  (the sampler's own three statements per period are included; negligible);
* cpu_percent -- CPU time of the local mariadbd, from /proc/<pid>/stat, with
  the pid read from @@pid_file.  Only when MariaDB runs on this host (the
  mysql host is a loopback address) and the pid file names a mariadbd/mysqld;
  otherwise 0.
* delay -- seconds since the freshest proxy heartbeat in this MariaDB
  (minisql/heartbeat.py; None until a proxy has written one).  Heartbeat rows
  of proxies silent for an hour are deleted here.

The first sample reports qps and cpu 0: a rate needs two samples.  A sample
that takes longer than `timeout` (MariaDB hangs) fails: the agent counts it
like an error, and unregisters after a few in a row.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import aiomysql

from minisql.heartbeat import FORGET_AFTER, FORGET_SILENT, READ_BEATS, delay_of
from topology import RegionLoad

log = logging.getLogger(__name__)

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

_SIZE_SQL = (
    "SELECT COUNT(*), COALESCE(SUM(TABLE_ROWS), 0), COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) "
    "FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' "
    "AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')"
)


def read_cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process in clock ticks, or None if it is gone/unreadable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after it are plain.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    except (IndexError, ValueError):
        return None


def find_mariadb_pid(pid_file: str) -> int | None:
    """The pid in MariaDB's pid file, if that process is a mariadbd/mysqld on this host."""
    try:
        with open(pid_file, encoding="ascii") as fh:
            pid = int(fh.read().strip())
        with open(f"/proc/{pid}/comm", encoding="ascii") as fh:
            comm = fh.read().strip()
    except (OSError, ValueError):
        return None
    return pid if comm in ("mariadbd", "mysqld") else None


@dataclass
class _Previous:
    at: float
    questions: int
    cpu_ticks: int | None


class LoadSampler:
    def __init__(self, region_id: str, pool: aiomysql.Pool, mysql_host: str, timeout: float = 10.0) -> None:
        self._region_id = region_id
        self._pool = pool
        self._local = mysql_host in LOCAL_HOSTS
        self._pid: int | None = None
        self._pid_checked = False
        self._prev: _Previous | None = None
        self._ticks_per_second = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.timeout = timeout

    async def _read(self, conn: Any) -> tuple[int, int, int, int, float | None, float]:
        await conn.ping(reconnect=True)
        async with conn.cursor() as cur:
            await cur.execute(_SIZE_SQL)
            tables, rows, data_bytes = await cur.fetchone()
            await cur.execute("SHOW GLOBAL STATUS LIKE 'Questions'")
            questions = int((await cur.fetchone())[1])
            await cur.execute(READ_BEATS)
            newest_beat, oldest_beat = await cur.fetchone()
            wall = time.time()
            if oldest_beat is not None and oldest_beat < wall - FORGET_AFTER:  # a proxy long gone
                await cur.execute(FORGET_SILENT, (wall - FORGET_AFTER,))
            if self._local and not self._pid_checked:
                await cur.execute("SELECT @@pid_file")
                pid_file = (await cur.fetchone())[0]
                self._pid = await asyncio.to_thread(find_mariadb_pid, pid_file) if pid_file else None
                self._pid_checked = True
                log.debug("mariadbd pid for CPU sampling: %s", self._pid)
        return int(tables), int(rows), int(data_bytes), questions, delay_of(newest_beat, wall), wall

    async def sample(self) -> RegionLoad:
        async with self._pool.acquire() as conn:
            try:
                async with asyncio.timeout(self.timeout):
                    tables, rows, data_bytes, questions, delay, wall = await self._read(conn)
            except TimeoutError:
                conn.close()  # cut off mid-read: never reused (MariaDB hangs; the caller counts a failure)
                raise
        now = time.monotonic()
        ticks = await asyncio.to_thread(read_cpu_ticks, self._pid) if self._pid else None
        if ticks is None and self._pid is not None:
            self._pid_checked = False  # MariaDB restarted: look the pid up again next time
        qps = cpu = 0.0
        prev = self._prev
        if prev is not None and now > prev.at:
            elapsed = now - prev.at
            qps = max(questions - prev.questions, 0) / elapsed
            if ticks is not None and prev.cpu_ticks is not None:
                cpu = max(ticks - prev.cpu_ticks, 0) / self._ticks_per_second / elapsed * 100.0
        self._prev = _Previous(now, questions, ticks)
        return RegionLoad(
            region_id=self._region_id,
            tables=int(tables),
            rows=int(rows),
            data_bytes=int(data_bytes),
            qps=round(qps, 2),
            cpu_percent=round(cpu, 1),
            reported_at=wall,
            delay=delay,
        )
