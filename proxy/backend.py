"""Connections from the proxy to the regions' MariaDB servers.

Built on aiomysql, extended in three ways the proxy needs:

* results stay raw: column definitions are kept as the server sent them and
  rows as their text-protocol bytes, so the proxy relays them to the client
  without decoding and re-encoding values (types, UNSIGNED, DECIMAL scale and
  charsets all survive; that is also the cheapest path);
* errors keep their SQLSTATE: pymysql drops it, we read it from the ERR
  packet so 1062 reaches the client as 23000, not HY000;
* multi-statements are switched off: aiomysql enables them by default, and a
  client could otherwise hide a write behind a read that goes to one copy only.

Error handling: a connection that raised anything but a server error (ERR
packet) is broken -- the caller must close it and never return it to the pool.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import defaultdict, deque
from dataclasses import dataclass, field

import aiomysql
from aiomysql.connection import MySQLResult
from pymysql.connections import MysqlPacket
from pymysql.constants import CLIENT
from pymysql.err import MySQLError

from minisql.accounts import region_password
from minisql.errors import CR_CONN_HOST_ERROR, CR_SERVER_LOST, SqlError

log = logging.getLogger(__name__)


class BackendError(MySQLError):
    """An ERR packet from MariaDB, with its SQLSTATE kept."""

    def __init__(self, errno: int, message: str, sqlstate: str) -> None:
        super().__init__(errno, message)
        self.errno = errno
        self.message = message
        self.sqlstate = sqlstate

    def to_sql_error(self) -> SqlError:
        return SqlError(self.errno, self.message, self.sqlstate)


class _ErrPacket(MysqlPacket):
    def raise_for_error(self) -> None:
        data = self._data
        errno = struct.unpack("<H", data[1:3])[0]
        if data[3:4] == b"#":
            sqlstate = data[4:9].decode("ascii", "replace")
            message = data[9:].decode("utf-8", "replace")
        else:
            sqlstate, message = "HY000", data[3:].decode("utf-8", "replace")
        raise BackendError(errno, message, sqlstate)


class RawResult(MySQLResult):
    """A buffered result that keeps raw column-definition payloads and row bytes."""

    raw_fields: list[bytes]
    raw_rows: list[bytes]

    async def _get_descriptions(self) -> None:
        self.raw_fields = []
        for _ in range(self.field_count):
            packet = await self.connection._read_packet()
            self.raw_fields.append(packet._data)
        eof = await self.connection._read_packet()
        if not eof.is_eof_packet():
            raise SqlError(CR_SERVER_LOST, "Protocol error from region: expected EOF after column definitions")

    async def _read_rowdata_packet(self) -> None:
        rows: list[bytes] = []
        conn = self.connection
        while True:
            packet = await conn._read_packet()
            if self._check_packet_is_eof(packet):
                self.server_status = _eof_status(packet)
                self.connection = None
                break
            rows.append(packet._data)
        self.raw_rows = rows
        self.affected_rows = len(rows)


def _eof_status(packet: MysqlPacket) -> int:
    data = packet._data
    return struct.unpack("<H", data[3:5])[0] if len(data) >= 5 else 0


@dataclass(slots=True)
class QueryResult:
    """What one statement returned, ready to relay."""

    fields: list[bytes] | None  # raw column definitions; None for an OK result
    rows: list[bytes]
    affected_rows: int
    insert_id: int
    warnings: int
    server_status: int
    info: bytes


class BackendConnection(aiomysql.Connection):
    """One connection to one region's MariaDB."""

    def __init__(self, *, region_id: str, **kwargs: object) -> None:
        super().__init__(use_unicode=False, conv={}, charset="utf8mb4", autocommit=True, **kwargs)  # type: ignore[arg-type]
        self.client_flag &= ~CLIENT.MULTI_STATEMENTS
        self.region_id = region_id
        self.login: BackendLogin | None = None
        self.current_db: str | None = None
        self.dirty = False  # session state changed: never back to the pool
        # The client's character set: its SQL is sent in the same bytes it
        # arrived in, and the backend answers in it (see ProxySession.set_charset).
        self.sql_encoding = "utf8"

    async def _read_packet(self, packet_type: type = _ErrPacket) -> MysqlPacket:  # type: ignore[override]
        return await super()._read_packet(packet_type)

    async def _read_query_result(self, unbuffered: bool = False) -> None:  # type: ignore[override]
        self._result = None
        result = RawResult(self)
        await result.read()
        self._result = result
        self._affected_rows = result.affected_rows
        if result.server_status is not None:
            self.server_status = result.server_status

    async def run(self, sql: str) -> QueryResult:
        """Execute one statement and return its raw result (raises BackendError)."""
        await self.query(sql.encode(self.sql_encoding, "surrogateescape"))
        r: RawResult = self._result  # type: ignore[assignment]
        if r.field_count:
            return QueryResult(r.raw_fields, r.raw_rows, len(r.raw_rows), 0, r.warning_count, r.server_status or 0, b"")
        message = r.message or b""
        return QueryResult(
            None, [], r.affected_rows or 0, r.insert_id or 0, r.warning_count, r.server_status or 0,
            message if isinstance(message, bytes) else str(message).encode(),
        )

    async def use(self, database: str | None) -> None:
        if database is None or database == self.current_db:
            return
        await self.select_db(database)
        self.current_db = database


@dataclass(frozen=True, slots=True)
class BackendLogin:
    """Who a backend connection logs in as; the password never leaves the proxy."""

    user: str
    password: str = field(repr=False)


class BackendPool:
    """Idle connections per (region address, login), reused by new client sessions.

    Client statements run as the client's own account (`login_for`), never
    as the proxy's internal account: MariaDB then checks every statement with
    the client's rights.  Only clean connections come back (no session
    variables changed, no open transaction); everything else is closed.  A
    region's address can change when it re-registers, so the pool is keyed by
    (region, host, port, login).
    """

    def __init__(self, user: str, password: str, *, max_idle_per_region: int = 64, connect_timeout: float = 5.0) -> None:
        self.internal = BackendLogin(user, password)
        self._secret = password
        self.max_idle = max_idle_per_region
        self.connect_timeout = connect_timeout
        self._idle: dict[tuple[str, str, int, bool, str, str], deque[BackendConnection]] = defaultdict(deque)
        self.opened = 0

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
        conn = BackendConnection(
            region_id=region_id, host=host, port=port, user=login.user, password=login.password,
            connect_timeout=self.connect_timeout, client_flag=CLIENT.FOUND_ROWS if found_rows else 0,
        )
        try:
            await conn._connect()
        except BackendError as e:
            if e.errno in (1045, 4151, 1226):  # the client's own account was refused by the region
                raise SqlError(e.errno, e.message, e.sqlstate)
            raise SqlError(CR_CONN_HOST_ERROR, f"Can't connect to region '{region_id}' ({host}:{port}): {e.message}")
        except (OSError, asyncio.TimeoutError, MySQLError) as e:
            raise SqlError(CR_CONN_HOST_ERROR, f"Can't connect to region '{region_id}' ({host}:{port}): {e}")
        conn.login = login
        self.opened += 1
        return conn

    def release(self, conn: BackendConnection) -> None:
        if conn.closed:
            return
        login = conn.login
        key = (conn.region_id, conn._host, conn._port, bool(conn.client_flag & CLIENT.FOUND_ROWS), login.user, login.password)
        idle = self._idle[key]
        if conn.dirty or len(idle) >= self.max_idle:
            conn.close()
            return
        idle.append(conn)

    def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()


async def field_list(conn: BackendConnection, table: str, wildcard: str = "") -> list[bytes]:
    """Forward COM_FIELD_LIST (the mariadb CLI's auto-rehash) and return the raw packets."""
    from pymysql.constants import COMMAND

    await conn._execute_command(COMMAND.COM_FIELD_LIST, table.encode() + b"\0" + wildcard.encode())
    packets: list[bytes] = []
    while True:
        packet = await conn._read_packet()
        if packet.is_eof_packet():
            return packets
        packets.append(packet._data)
