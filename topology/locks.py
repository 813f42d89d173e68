"""A ZooKeeper mutex (the standard lock recipe), for short critical sections.

Why: some cluster state lives in two places that must change together --
client accounts are in ZooKeeper *and* on every region's MariaDB.  A proxy
applying CREATE USER/GRANT and a region agent syncing from ZooKeeper must
not interleave, or the agent could "repair" a region back to a record the
proxy is about to replace.  Account changes are rare, so one cluster-wide
lock per kind of state is cheap.

Recipe: each contender creates an ephemeral sequential node
`locks/<name>/lock-<seq>`; the lowest sequence holds the lock; every other
contender watches only its predecessor (no herd effect) and re-checks when
it goes.  Release deletes the node.

Error handling: the node is ephemeral, so a holder that dies (or loses its
session) releases the lock; a holder that loses its session mid-section is
no longer exclusive -- acceptable for the idempotent, convergent work done
under these locks, and the reason to keep sections short.  `timeout` bounds
the wait (LockTimeout); the contender's node is removed on every exit path.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, AsyncIterator

from .errors import NoNodeError, TopologyError
from .znodes import sequence_number

if TYPE_CHECKING:
    from .service import Topology


class LockTimeout(TopologyError):
    """The lock was not acquired within the timeout."""


@asynccontextmanager
async def zk_lock(topology: "Topology", name: str, *, timeout: float = 30.0) -> AsyncIterator[None]:
    backend = topology.backend
    directory = topology._path("locks", name)
    path = await backend.create(f"{directory}/lock-", b"", ephemeral=True, sequential=True, makepath=True)
    mine = path.rsplit("/", 1)[1]
    try:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    kids = sorted(await backend.children(directory), key=sequence_number)
                    ahead = [k for k in kids if sequence_number(k) < sequence_number(mine)]
                    if not ahead:
                        break
                    gone = asyncio.Event()
                    cancel = backend.watch_data(f"{directory}/{ahead[-1]}", lambda raw, _v: raw is None and gone.set())
                    try:
                        await gone.wait()
                    finally:
                        cancel()
        except TimeoutError:
            raise LockTimeout(f"lock {name!r} not acquired within {timeout:.0f} s") from None
        yield
    finally:
        try:
            await backend.delete(path)
        except (NoNodeError, TopologyError):
            pass
