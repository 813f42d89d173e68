"""Idle backend connections, reused by new client sessions.

Client statements run as the client's own account (`login_for`), never as
the proxy's internal account: MariaDB then checks every statement with the
client's rights.  Only clean connections come back (no session variables
changed, no prepared statement, no open transaction, no result half read);
everything else is closed.  A region's address can change when it
re-registers, so the pool is keyed by (region, host, port, login).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque

from minisql.accounts import region_password
from minisql.errors import SqlError

from .backend import BackendConnection, BackendError, BackendLogin, BackendLost
from .planner import RegionUnavailable

log = logging.getLogger(__name__)


class BackendPool:
    def __init__(self, user: str, password: str, *, max_idle_per_region: int = 64, connect_timeout: float = 5.0) -> None:
        self.internal = BackendLogin(user, password)
        self._secret = password
        self.max_idle = max_idle_per_region
        self.connect_timeout = connect_timeout
        self._idle: dict[tuple[str, str, int, bool, str, str], deque[BackendConnection]] = defaultdict(deque)
        self.opened = 0
        self._resets: set[asyncio.Task[None]] = set()
        self._internal: dict[tuple[str, str, int], deque[BackendConnection]] = defaultdict(deque)
        # Regions that refused a new connection, and when: a statement that may run on any
        # region avoids them for a while (SessionBackends.any_region), so a client's
        # SET NAMES at connect does not fail on a region that died a moment ago.
        self.refused: dict[str, float] = {}

    def recently_refused(self, region_id: str, within: float = 10.0) -> bool:
        at = self.refused.get(region_id)
        return at is not None and time.monotonic() - at < within

    def login_for(self, user: str, host: str) -> BackendLogin:
        """The region account of client account 'user'@'host' (minisql/accounts.py)."""
        return BackendLogin(user, region_password(self._secret, user, host))

    async def acquire(self, region_id: str, host: str, port: int, login: BackendLogin, *, found_rows: bool = False) -> BackendConnection:
        """A connection to one region as `login`; `found_rows` mirrors the client's
        CLIENT_FOUND_ROWS (UPDATE then reports matched rows, which ORMs rely on)."""
        idle = self._idle[(region_id, host, port, found_rows, login.user, login.password)]
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        conn = BackendConnection(region_id, host, port, found_rows=found_rows)
        try:
            await conn.connect(login.user, login.password, self.connect_timeout)
        except BackendError as e:
            if e.errno in (1045, 4151, 1226, 1040):  # the client's own account was refused by the region
                raise SqlError(e.errno, e.message, e.sqlstate)
            self.refused[region_id] = time.monotonic()
            raise RegionUnavailable(region_id, f"Can't connect to region '{region_id}' ({host}:{port}): {e.message}")
        except (OSError, asyncio.TimeoutError, BackendLost) as e:
            self.refused[region_id] = time.monotonic()
            raise RegionUnavailable(region_id, f"Can't connect to region '{region_id}' ({host}:{port}): {e or type(e).__name__}")
        self.refused.pop(region_id, None)
        conn.login = login
        self.opened += 1
        return conn

    async def acquire_internal(self, region_id: str, host: str, port: int) -> BackendConnection:
        """A connection as the proxy's internal account, for the commit
        decisions only (commit.py): kept apart and given back without a
        reset, since nothing on it changes session state."""
        idle = self._internal[(region_id, host, port)]
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return await self.acquire(region_id, host, port, self.internal)

    def release_internal(self, conn: BackendConnection) -> None:
        idle = self._internal[(conn.region_id, conn.host, conn.port)]
        if conn.closed or conn.in_flight or len(idle) >= self.max_idle:
            conn.close()
        else:
            idle.append(conn)

    def release(self, conn: BackendConnection) -> None:
        if conn.closed:
            conn.close()
            return
        login = conn.login
        assert isinstance(login, BackendLogin)
        key = (conn.region_id, conn.host, conn.port, conn.found_rows, login.user, login.password)
        if len(self._idle[key]) >= self.max_idle:
            conn.close()
            return
        try:
            task = asyncio.get_running_loop().create_task(self._reset(conn, key))
        except RuntimeError:  # no loop: shutting down
            conn.close()
            return
        self._resets.add(task)
        task.add_done_callback(self._resets.discard)

    async def _reset(self, conn: BackendConnection, key: tuple[str, str, int, bool, str, str]) -> None:
        try:
            async with asyncio.timeout(self.connect_timeout):
                await conn.reset_session()
        except (BackendError, BackendLost, OSError, asyncio.TimeoutError) as e:
            log.debug("not pooling a connection to %s: reset failed: %s", conn.region_id, e)
            conn.close()
            return
        idle = self._idle[key]
        if len(idle) >= self.max_idle:
            conn.close()
        else:
            idle.append(conn)

    def close(self) -> None:
        for task in self._resets:
            task.cancel()
        for idle in (*self._idle.values(), *self._internal.values()):
            while idle:
                idle.pop().close()
