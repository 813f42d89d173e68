"""LOAD DATA [LOCAL] INFILE: a write to one table, on every copy.

LOAD DATA names one table, so it is planned as a write to that table
(FanOutWrite: the primary first, then each in-sync replica, in one
transaction per copy, affected rows compared, NOW()/insert ids pinned).

LOCAL: the file is the client's.  The proxy asks the client for it only
when the primary asks the proxy (so a statement MariaDB rejects -- a missing
table, no privilege -- never makes the client send its file), relays it to the
primary as it arrives, and keeps a copy (`ClientFile`: memory up to
SPOOL_IN_MEMORY, then a temporary file written off the event loop) that is
replayed to each replica.  The client must have offered CLIENT_LOCAL_FILES
(else 4166, as MariaDB answers).  Without LOCAL, each region's MariaDB reads
the named file on its own host with the client's FILE privilege.

Error handling: a failure while a file is being sent to a region (the client
went away, the disk is full) closes that backend connection, so MariaDB
aborts the statement there; the copies' transactions are rolled back and the
client gets the error.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from typing import IO, AsyncIterator, Callable

from minisql.errors import SqlError

from .engine import FanOutWrite, Primitive
from .fillguard import refuse_while_filling
from .planner import RoutingSnapshot, SessionView, QUALIFIED, require_live, split_qualified, resolve_table
from .statements import strip_leading_noise

SPOOL_IN_MEMORY = 16 << 20
CHUNK = 1 << 20  # replayed packets (MariaDB reads LOCAL data in packets of any size)

_LOAD = re.compile(
    r"^load\s+(?:data|xml)\s+(?:(?:low_priority|concurrent)\s+)?(local\s+)?infile\s+"
    r"(?:'[^'\\]*(?:(?:\\.|'')[^'\\]*)*'|\"[^\"\\]*(?:(?:\\.|\"\")[^\"\\]*)*\")\s+"
    rf"(?:(?:replace|ignore)\s+)?into\s+table\s+{QUALIFIED}",
    re.I,
)


def plan_load_data(sql: str, snap: RoutingSnapshot, state: SessionView) -> Primitive:
    m = _LOAD.match(strip_leading_noise(sql))
    if not m:
        raise SqlError(1064, "You have an error in your SQL syntax near 'LOAD DATA'", "42000")
    table = resolve_table(split_qualified(m.group(2), m.group(3)), state, snap)
    refuse_while_filling((table,), "is LOAD DATA")
    regions = table.write_regions
    for region in regions:
        require_live(region, snap)
    return FanOutWrite(sql, regions, local_infile=m.group(1) is not None, label="load_data", epoch=snap.epoch)


def capability_disabled() -> SqlError:
    return SqlError(4166, "The used command is not allowed because the MariaDB server or client has disabled the local infile capability")


class ClientFile:
    """The client's file for one LOAD DATA LOCAL: read from the client the
    first time a region asks, kept, and replayed to every other region."""

    def __init__(self, ask_client: Callable[[bytes], AsyncIterator[bytes]], keep: bool = True) -> None:
        self._ask_client = ask_client
        self._keep = keep  # False: one copy only, nothing to replay
        self._memory: list[bytes] = []
        self._in_memory = 0
        self._disk: IO[bytes] | None = None
        self._client: AsyncIterator[bytes] | None = None
        self._complete = False

    async def chunks(self, filename: bytes) -> AsyncIterator[bytes]:
        if self._client is None:
            self._client = self._ask_client(filename)
            async for chunk in self._client:
                if self._keep:
                    await self._spool(chunk)
                yield chunk
            self._complete = True
            return
        if not self._complete:
            raise SqlError(1105, "the client's file for LOAD DATA LOCAL was not read to its end")
        for chunk in self._memory:
            yield chunk
        if self._disk is not None:
            disk = self._disk
            await asyncio.to_thread(disk.seek, 0)
            while True:
                chunk = await asyncio.to_thread(disk.read, CHUNK)
                if not chunk:
                    break
                yield chunk

    async def _spool(self, chunk: bytes) -> None:
        if self._disk is None and self._in_memory + len(chunk) <= SPOOL_IN_MEMORY:
            self._memory.append(chunk)
            self._in_memory += len(chunk)
            return
        if self._disk is None:
            self._disk = await asyncio.to_thread(tempfile.TemporaryFile, prefix="minisql-load-")
        await asyncio.to_thread(self._disk.write, chunk)

    async def discard_rest(self) -> None:
        """After a failure midway: read the rest of the client's file, so its
        packets are not taken for commands (MariaDB reads it all too)."""
        if self._client is None or self._complete:
            return
        self._complete = True
        self._keep = False
        try:
            async for _ in self._client:
                pass
        except Exception:  # noqa: BLE001 - the client is gone or broken; the edge notices on its next read
            pass

    def close(self) -> None:
        self._memory.clear()
        if self._disk is not None:
            self._disk.close()
            self._disk = None

    def __del__(self) -> None:
        self.close()

