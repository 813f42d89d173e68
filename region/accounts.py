"""Keep the local MariaDB's client accounts equal to the cluster's (ZooKeeper).

Why the region does it: a region that joins, restarts or comes back from a
partition must hold every client account with its grants before a proxy
routes a client there, because client statements run on the regions *as the
client* (minisql/accounts.py).  The agent therefore syncs once before it
registers, then on every change of the accounts znode.

Error handling: a pass that fails (MariaDB or ZooKeeper away) is retried
after a short backoff with the newest snapshot; one account's failure does
not stop the others.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from minisql.account_sync import ensure_account
from topology import Topology
from topology.accounts import ACCOUNTS_LOCK, AccountsSnapshot, AccountStore
from topology.locks import zk_lock

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0
LOCK_TIMEOUT = 30.0


class AccountSync:
    def __init__(self, pool: Any, topology: Topology, secret: str) -> None:
        self._pool = pool
        self._topology = topology
        self._store = AccountStore(topology)
        self._secret = secret
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._cancel_watch: Callable[[], None] | None = None

    async def sync(self) -> int:
        """One pass over the newest record; returns how many accounts changed.

        Under the accounts lock, so a proxy's CREATE USER / GRANT (which changes
        the regions first, then the record) is never half-seen and undone.
        Raises if MariaDB or ZooKeeper fails.
        """
        async with zk_lock(self._topology, ACCOUNTS_LOCK, timeout=LOCK_TIMEOUT):
            return await self._sync(await self._store.get())

    async def _sync(self, snapshot: AccountsSnapshot) -> int:
        changed = 0
        async with self._pool.acquire() as conn:
            await conn.ping(reconnect=True)
            for record in snapshot.accounts.values():
                try:
                    if await ensure_account(conn, record, self._secret):
                        changed += 1
                except Exception as exc:  # noqa: BLE001 - see "Error handling"
                    log.warning("account %s@%s not synced: %s", record.user, record.host, exc)
                    if not getattr(exc, "args", None) or not isinstance(exc.args[0], int) or exc.args[0] >= 2000:
                        raise  # the connection itself failed: retry the whole pass
        if changed:
            log.info("synced %d account(s) to ZooKeeper version %d", changed, snapshot.version)
        return changed

    def start(self) -> None:
        def on_snapshot(_snapshot: AccountsSnapshot) -> None:
            self._wake.set()  # sync() re-reads the newest record under the lock

        self._cancel_watch = self._store.watch(on_snapshot)
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("account sync failed, retrying: %s", exc)
                await asyncio.sleep(RETRY_SECONDS)
                self._wake.set()

    async def close(self) -> None:
        if self._cancel_watch is not None:
            self._cancel_watch()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
