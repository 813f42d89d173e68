"""MariaDB access helpers for the region agent: connections, quoting, errors.

Why a module of its own: the task handlers (tasks.py) and the load sampler
(load.py) share the same needs -- quote identifiers safely, turn every driver
exception into the `SqlError` the cluster speaks, and collect MariaDB's
warnings as data instead of Python `warnings` noise.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiomysql
import pymysql

from minisql.config import BackendCredentials
from minisql.errors import CR_CONN_HOST_ERROR, CR_SERVER_LOST, ER_UNKNOWN, SqlError

log = logging.getLogger(__name__)

SYSTEM_SCHEMAS = frozenset({"mysql", "information_schema", "performance_schema", "sys"})

CONNECT_TIMEOUT = 10.0


def quote_ident(name: str) -> str:
    """Backtick-quote an identifier (doubling embedded backticks), as MariaDB does."""
    return "`" + name.replace("`", "``") + "`"


def qualified(database: str, table: str) -> str:
    return f"{quote_ident(database)}.{quote_ident(table)}"


def sql_error_of(exc: BaseException) -> SqlError:
    """The cluster error for a driver exception, keeping MariaDB's errno and SQLSTATE.

    PyMySQL >= 1.2 keeps the SQLSTATE of the ERR packet; older ones do not,
    and then the catalogue's SQLSTATE for that errno is used.
    """
    if isinstance(exc, SqlError):
        return exc
    if isinstance(exc, pymysql.err.Error):
        args = exc.args
        if args and isinstance(args[0], int) and args[0] >= 1000:
            message = str(args[1]) if len(args) > 1 else str(exc)
            return SqlError(args[0], message, getattr(exc, "sqlstate", None) or None)
        # InterfaceError(0, '') and friends: the connection is gone.
        return SqlError(CR_SERVER_LOST, f"Lost connection to MariaDB server ({exc!r})")
    if isinstance(exc, (OSError, asyncio.TimeoutError, ConnectionError)):
        return SqlError(CR_CONN_HOST_ERROR, f"Can't connect to MariaDB server ({exc})")
    return SqlError(ER_UNKNOWN, f"{type(exc).__name__}: {exc}")


class WarningCursor(aiomysql.Cursor):
    """A cursor that keeps MariaDB's warnings as (level, code, message) tuples.

    aiomysql runs SHOW WARNINGS itself when a statement reports warnings, and
    turns them into Python `warnings`; we override that private hook to keep
    them as data for the caller's result instead.
    """

    collected: list[tuple[str, int, str]]

    async def _show_warnings(self, conn: Any) -> None:  # overrides aiomysql's hook
        self.collected = []
        if self._result and self._result.has_next:
            return
        rows = await conn.show_warnings()
        for row in rows or ():
            level, code, message = (x.decode() if isinstance(x, bytes) else x for x in row)
            self.collected.append((str(level), int(code), str(message)))

    def warnings_as_dicts(self) -> list[dict[str, Any]]:
        return [{"level": lvl, "code": code, "message": msg} for (lvl, code, msg) in getattr(self, "collected", [])]


def escape_binary(value: bytes | bytearray) -> str:
    """SQL literal of a binary value: `_binary X'<hex>'` (what PyMySQL 1.2 itself sends)."""
    return "_binary X'%s'" % bytes(value).hex()


def fix_bytes_escaping(conn: aiomysql.Connection) -> aiomysql.Connection:
    """Make bytes parameters work on this connection.

    Why: aiomysql 0.3.2's `Connection.escape` calls PyMySQL's
    `escape_bytes_prefixed`, which PyMySQL 1.2 replaced by the string
    "DO NOT IMPORT THIS!!!" -- so every bytes parameter (BLOB, BINARY, BIT
    values) raises "TypeError: 'str' object is not callable".  The instance
    attribute shadows the method for this connection only; nothing global is
    patched.
    """
    original = conn.escape

    def escape(obj: Any) -> str:
        if isinstance(obj, (bytes, bytearray)):
            return escape_binary(obj)
        return original(obj)

    conn.escape = escape  # type: ignore[method-assign]
    return conn


async def connect(
    host: str, port: int, creds: BackendCredentials, *, db: str | None = None, autocommit: bool = True
) -> aiomysql.Connection:
    """One dedicated connection (copy streams, session settings that must not leak to the pool).

    Bytes parameters work on it (see `fix_bytes_escaping`).
    """
    conn = await aiomysql.connect(
        host=host,
        port=port,
        user=creds.user,
        password=creds.password,
        db=db,
        charset="utf8mb4",
        autocommit=autocommit,
        connect_timeout=CONNECT_TIMEOUT,
    )
    return fix_bytes_escaping(conn)


async def create_pool(host: str, port: int, creds: BackendCredentials, *, maxsize: int = 4) -> aiomysql.Pool:
    return await aiomysql.create_pool(
        host=host,
        port=port,
        user=creds.user,
        password=creds.password,
        charset="utf8mb4",
        autocommit=True,
        connect_timeout=CONNECT_TIMEOUT,
        minsize=1,
        maxsize=maxsize,
        pool_recycle=3600,
    )


async def wait_for_pool(
    host: str, port: int, creds: BackendCredentials, stop: asyncio.Event, *, max_delay: float = 5.0
) -> tuple[aiomysql.Pool, str] | None:
    """Retry until MariaDB accepts us (it may still be starting): (pool, SELECT VERSION()).

    None if `stop` is set first.

    Access denied (1045) is logged as an error but still retried: the
    account may be created by an operator after the agent starts.
    """
    delay = 0.2
    while not stop.is_set():
        pool: aiomysql.Pool | None = None
        try:
            pool = await create_pool(host, port, creds)
            async with pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute("SELECT VERSION()")
                version = str((await cur.fetchone())[0])
            return pool, version
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            if pool is not None:
                pool.close()
            err = sql_error_of(exc)
            level = logging.ERROR if err.errno == 1045 else logging.WARNING
            log.log(level, "MariaDB at %s:%d not usable yet (%s); retrying in %.1fs", host, port, err, delay)
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except asyncio.TimeoutError:
            pass
        delay = min(delay * 2, max_delay)
    return None
