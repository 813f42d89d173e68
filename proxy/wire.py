"""The MySQL wire edge: mysql-mimic's Connection, extended where it falls short.

mimic handles the handshake, authentication and packet framing.  What it
does not do, and this module does:

* OK packets with the real affected-rows count, last insert id, warnings,
  status flags (SERVER_STATUS_IN_TRANS / AUTOCOMMIT) and info text -- mimic
  always sends zeros, and drivers and ORMs read these;
* ERR packets with the error's own SQLSTATE (mimic knows ~10 and sends HY000
  for the rest, so 1062 would not be 23000);
* result sets relayed as MariaDB sent them: raw column definitions (types,
  UNSIGNED, DECIMAL scale, charset) and raw text rows, no decode/re-encode;
* COM_INIT_DB and COM_FIELD_LIST routed like USE and SHOW COLUMNS;
* COM_STMT_PREPARE refused with a clear error instead of mimic's emulation,
  which pastes parameters into the SQL unescaped.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any

from mysql_mimic import packets
from mysql_mimic.connection import Connection
from mysql_mimic.control import TooManyConnections
from mysql_mimic.errors import ErrorCode
from mysql_mimic.server import MysqlServer
from mysql_mimic.stream import MysqlStream
from mysql_mimic.types import Capabilities, ColumnType

from minisql.errors import ER_NOT_SUPPORTED_YET, ER_UNKNOWN, SqlError

from . import metrics
from .backend import BackendError, field_list
from .executor import Reply
from .planner import LocalResult, read_region, resolve_table
from .statements import TableRef

log = logging.getLogger(__name__)

_MAX_PAYLOAD = 0xFFFFFF


def _lenenc_int(n: int) -> bytes:
    if n < 251:
        return bytes((n,))
    if n < 1 << 16:
        return b"\xfc" + n.to_bytes(2, "little")
    if n < 1 << 24:
        return b"\xfd" + n.to_bytes(3, "little")
    return b"\xfe" + n.to_bytes(8, "little")


def _lenenc_str(data: bytes) -> bytes:
    return _lenenc_int(len(data)) + data


def make_ok(*, affected_rows: int, insert_id: int, status: int, warnings: int, info: bytes = b"", eof: bool = False) -> bytes:
    return b"".join(
        (
            b"\xfe" if eof else b"\x00",
            _lenenc_int(affected_rows),
            _lenenc_int(insert_id),
            status.to_bytes(2, "little"),
            warnings.to_bytes(2, "little"),
            info,
        )
    )


def make_eof(*, status: int, warnings: int) -> bytes:
    return b"\xfe" + warnings.to_bytes(2, "little") + status.to_bytes(2, "little")


def make_error(errno: int, sqlstate: str, message: str) -> bytes:
    return b"\xff" + errno.to_bytes(2, "little") + b"#" + sqlstate.encode("ascii")[:5].ljust(5, b"0") + message.encode("utf-8", "replace")


def encode_local_row(row: tuple[str | None, ...], codec: str = "utf8") -> bytes:
    return b"".join(b"\xfb" if v is None else _lenenc_str(v.encode(codec, "replace")) for v in row)


class ProxyConnection(Connection):
    """A client connection whose statements go to `ProxySession.execute`."""

    session: Any

    def _status(self) -> int:
        return self.session.tx.server_status

    async def write_error(self, e: SqlError) -> None:
        metrics.ERRORS.labels(str(e.errno)).inc()
        await self.stream.write(make_error(e.errno, e.sqlstate, e.message))

    def _end_packet(self, warnings: int) -> bytes:
        if self.deprecate_eof():
            return make_ok(affected_rows=0, insert_id=0, status=self._status(), warnings=warnings, eof=True)
        return make_eof(status=self._status(), warnings=warnings)

    async def write_reply(self, reply: Reply) -> None:
        if reply.local is not None:
            await self._write_local(reply.local)
            return
        result = reply.result
        assert result is not None
        if result.fields is None:
            await self.stream.write(
                make_ok(
                    affected_rows=result.affected_rows, insert_id=result.insert_id, status=self._status(),
                    warnings=result.warnings, info=result.info,
                )
            )
            return
        stream = self.stream
        head = [packets.make_column_count(capabilities=self.capabilities, column_count=len(result.fields))]
        head.extend(result.fields)
        if not self.deprecate_eof():
            head.append(make_eof(status=self._status(), warnings=0))
        stream.write_many(head)
        rows = result.rows
        for i in range(0, len(rows), 1000):
            batch = rows[i:i + 1000]
            if any(len(r) >= _MAX_PAYLOAD for r in batch):
                for r in batch:
                    await stream.write(r, drain=False)
            else:
                stream.write_many(batch)
            if len(rows) > 1000:
                await stream.drain()
        await stream.write(self._end_packet(result.warnings))

    async def _write_local(self, local: LocalResult) -> None:
        head = [packets.make_column_count(capabilities=self.capabilities, column_count=len(local.columns))]
        for name in local.columns:
            head.append(
                packets.make_column_definition_41(
                    server_charset=self.server_charset, name=name, column_type=ColumnType.VAR_STRING, column_length=256
                )
            )
        if not self.deprecate_eof():
            head.append(make_eof(status=self._status(), warnings=0))
        self.stream.write_many(head)
        codec = self.server_charset.codec
        self.stream.write_many([encode_local_row(r, codec) for r in local.rows])
        await self.stream.write(self._end_packet(0))

    # -- commands ----------------------------------------------------------------
    async def handle_query(self, data: bytes) -> None:
        com_query = packets.parse_com_query(capabilities=self.capabilities, client_charset=self.client_charset, data=data)
        started = time.perf_counter()
        try:
            reply = await self.session.execute(com_query.sql)
        except SqlError as e:
            await self.write_error(e)
            return
        except BackendError as e:
            await self.write_error(e.to_sql_error())
            return
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - a bug must not kill the client's connection
            log.exception("internal error on %r", com_query.sql[:200])
            await self.write_error(SqlError(ER_UNKNOWN, f"Internal proxy error: {type(e).__name__}: {e}"))
            return
        metrics.LATENCY.labels("query").observe(time.perf_counter() - started)
        await self.write_reply(reply)

    async def handle_init_db(self, data: bytes) -> None:
        database = packets.parse_com_init_db(self.client_charset, data)
        try:
            await self.session.use(database)
        except SqlError as e:
            await self.write_error(e)
            return
        await self.stream.write(make_ok(affected_rows=0, insert_id=0, status=self._status(), warnings=0))

    async def handle_field_list(self, data: bytes) -> None:
        com = packets.parse_com_field_list(self.client_charset, data)
        session = self.session
        try:
            snap = session.routing.snapshot
            table = resolve_table(TableRef(None, com.table), session, snap)
            region = read_region((table,), snap)
            conn = await session.backends.get(region, snap, session.database, session.tx)
            columns = await field_list(conn, com.table, com.wildcard or "")
        except BackendError as e:
            await self.write_error(e.to_sql_error())
            return
        except SqlError as e:
            await self.write_error(e)
            return
        self.stream.write_many(columns)
        await self.stream.write(self._end_packet(0))

    async def handle_stmt_prepare(self, data: bytes) -> None:
        await self.write_error(
            SqlError(ER_NOT_SUPPORTED_YET, "MiniSQL Cluster does not support server-side prepared statements (COM_STMT_PREPARE) yet; use client-side parameters")
        )

    async def handle_reset_connection(self, data: bytes) -> None:
        await self.session.reset()
        await self.stream.write(make_ok(affected_rows=0, insert_id=0, status=self._status(), warnings=0))

    async def handle_ping(self, data: bytes) -> None:
        await self.stream.write(make_ok(affected_rows=0, insert_id=0, status=self._status(), warnings=0))


class ProxyServer(MysqlServer):
    """mimic's server, building ProxyConnection instead of Connection."""

    async def _client_connected_cb(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream = MysqlStream(reader, writer)
        try:
            session = self.session_factory()
            if inspect.isawaitable(session):
                session = await session
            connection = ProxyConnection(
                stream=stream, session=session, control=self.control, server_capabilities=self.capabilities,
                identity_provider=self.identity_provider, ssl=self.ssl,
            )
        except Exception:  # noqa: BLE001
            log.exception("failed to create a session")
            await stream.write(packets.make_error(capabilities=self.capabilities, msg="Proxy cannot accept connections now"))
            writer.close()
            return
        try:
            connection_id = await self.control.add(connection)
            connection.connection_id = connection_id
        except TooManyConnections:
            await stream.write(connection.error(msg="Too many connections", code=ErrorCode.CON_COUNT_ERROR))
            writer.close()
            return
        try:
            await connection.start()
        except Exception:  # noqa: BLE001 - one client's failure must not reach the server
            log.debug("connection %s ended with an error", connection_id, exc_info=True)
        finally:
            writer.close()
            await self.control.remove(connection_id)


CAPABILITIES = (
    Capabilities.CLIENT_PROTOCOL_41
    | Capabilities.CLIENT_DEPRECATE_EOF
    | Capabilities.CLIENT_CONNECT_WITH_DB
    | Capabilities.CLIENT_CONNECT_ATTRS
    | Capabilities.CLIENT_PLUGIN_AUTH
    | Capabilities.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | Capabilities.CLIENT_SECURE_CONNECTION
    | Capabilities.CLIENT_LONG_PASSWORD
    | Capabilities.CLIENT_TRANSACTIONS
    | Capabilities.CLIENT_INTERACTIVE
    | Capabilities.CLIENT_FOUND_ROWS
)
