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
  which pastes parameters into the SQL unescaped;
* the connection's life: our own connection phase (`login.py`: bounded
  parsing, a failed login ends the connection), our own command loop (every
  command byte answered, fatal protocol errors end the connection), and
  COM_CHANGE_USER through the same authentication and guard.

Error handling: a `SqlError` raised while handling one command is written as
an ERR packet and the session goes on; a protocol error (`MalformedPacket`,
`PacketTooLarge`) or a failed COM_CHANGE_USER is answered and then ends the
connection, as in MariaDB; an idle client past its wait_timeout (`ReadTimeout`,
the proxy's --wait-timeout or the client's own SET wait_timeout) is closed
without a word, as MariaDB does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, AsyncIterator, Awaitable, Callable

from mysql_mimic import packets
from mysql_mimic.connection import Connection
from mysql_mimic.constants import KillKind
from mysql_mimic.stream import ConnectionClosed
from mysql_mimic.types import Capabilities, ColumnType, Commands

from minisql.errors import ER_CONNECTION_KILLED, ER_QUERY_INTERRUPTED, ER_UNKNOWN, SqlError

from . import metrics
from .backend import BackendError, BackendLost, QueryResult, ResultStream
from .cmdwatch import WATCH_AFTER, sweeper
from .auth import Account
from .engine import Reply
from .inbound import MalformedPacket, parse_change_user, parse_field_list
from .multistatement import split_statements
from .login import LoginContext, LoginFailed, authenticate, handshake
from .planner import LocalResult, read_region, resolve_table
from .prepared import Route, column_type, parse_execute, prepare_ok, text_row_to_binary
from .protocol import (
    SERVER_MORE_RESULTS_EXISTS,
    SERVER_STATUS_CURSOR_EXISTS,
    SERVER_STATUS_LAST_ROW_SENT,
    lenenc_int,
    lenenc_str,
    make_eof,
    make_error,
    make_ok,
)
from .statements import TableRef
from .stream import BoundedStream, PacketTooLarge, ReadTimeout

log = logging.getLogger(__name__)

def encode_local_row(row: tuple[str | None, ...], codec: str = "utf8") -> bytes:
    return b"".join(b"\xfb" if v is None else lenenc_str(v.encode(codec, "replace")) for v in row)


class ProxyConnection(Connection):
    """A client connection whose statements go to `ProxySession.execute`.

    `edge` (a `server.EdgeConfig`) supplies accounts, the login guard and the
    limits; `admit(account)` is the server's per-user connection check, called
    after a successful login and returning the error to send instead of OK.
    """

    session: Any
    stream: BoundedStream
    command: bytes | None = None  # the command being handled (SHOW PROCESSLIST's Command/Info; cluster.py)
    command_since: float = 0.0  # loop time it started, or the last one ended (SHOW PROCESSLIST's Time)

    def __init__(self, *, stream: BoundedStream, session: Any, control: Any, edge: Any, client_host: str,
                 admit: Callable[[Account], Awaitable[SqlError | None]]) -> None:
        super().__init__(stream=stream, session=session, control=control, identity_provider=None,  # type: ignore[arg-type]
                         server_capabilities=edge.capabilities)
        self.edge = edge
        self.client_host = client_host
        self.admit = admit
        self.account: Account | None = None
        self.nonce = b""
        self.secure = False  # TLS, from the SSLRequest on; COM_CHANGE_USER's REQUIRE SSL check reads it
        self._deprecate_eof = False  # the client's CLIENT_DEPRECATE_EOF, read once at login
        self._multi_statements = False  # CLIENT_MULTI_STATEMENTS, read once at login (an IntFlag test costs ~1 us)
        self._big_packet = b""  # a big COM_QUERY on its way to handle_big_query

    def _status(self) -> int:
        return self.session.state.server_status

    def _login_context(self) -> LoginContext:
        return LoginContext(
            stream=self.stream, capabilities=self.server_capabilities, server_version=str(self.session.variables.get("version")),
            connection_id=self.connection_id, status_flags=self._status(), server_charset=self.server_charset,
            accounts=self.edge.accounts, guard=self.edge.guard, client_host=self.client_host,
            tls=self.edge.tls, secure=self.secure, rsa=self.edge.rsa, verifiers=self.edge.verifiers,
        )

    # -- the connection's life --------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.current_task()
        try:
            if not await self._connection_phase():
                metrics.CLIENT_STATUS.aborted_connects += 1
                return
            try:
                await self._command_phase()
            finally:
                if not self._quit:  # gone, timed out, killed, or failed (as MariaDB counts)
                    metrics.CLIENT_STATUS.aborted_clients += 1
        finally:
            self._task = None
            await self.session.close()

    async def _connection_phase(self) -> bool:
        """Handshake and login within the connect timeout; True when the client may go on."""
        stream = self.stream
        stream.limit = self.edge.preauth_packet_limit
        stream.timeout = None  # the whole phase has one deadline instead
        try:
            async with asyncio.timeout(self.edge.connect_timeout):
                login = await handshake(self._login_context())
                response = login.response
                self.capabilities = response.capabilities
                self._deprecate_eof = Capabilities.CLIENT_DEPRECATE_EOF in response.capabilities
                self._multi_statements = Capabilities.CLIENT_MULTI_STATEMENTS in response.capabilities
                self.max_packet_size = response.max_packet_size
                self.client_connect_attrs = response.connect_attrs
                self.client_plugin_name = response.client_plugin
                self.nonce = login.nonce
                self.secure = login.secure
                self.session.variables.set("character_set_client", response.client_charset.name)
                self.session.variables.set("external_user", response.username, force=True)
                refused = await self.admit(login.account)
                if refused is not None:
                    await self.write_error(refused)
                    return False
                self.account = login.account
                self.session.authenticated(login.account)
                self.session.database = response.database
                await self.session.init(self)
                await stream.write(make_ok(affected_rows=0, insert_id=0, status=self._status(), warnings=0))
                # CLIENT_COMPRESS: everything after the login's OK travels in zlib frames.
                stream.compressed = Capabilities.CLIENT_COMPRESS in response.capabilities
        except TimeoutError:
            metrics.REJECTED_HANDSHAKE_TIMEOUT.inc()
            return False
        except (LoginFailed, ConnectionClosed, ConnectionError):
            return False
        except PacketTooLarge as e:
            metrics.REJECTED_PACKET_TOO_LARGE.inc()
            await self._write_fatal(e)
            return False
        except MalformedPacket as e:
            metrics.REJECTED_BAD_HANDSHAKE.inc()
            await self._write_fatal(e)
            return False
        except SqlError as e:  # e.g. an unknown database named at login
            await self._write_fatal(e)
            return False
        stream.reset_seq()
        stream.limit = self.edge.max_allowed_packet
        stream.timeout = self.edge.wait_timeout
        return True

    async def _write_fatal(self, e: SqlError) -> None:
        try:
            await self.write_error(e)
        except (ConnectionError, RuntimeError):
            pass

    async def _command_phase(self) -> None:
        handlers: dict[int, Callable[[bytes], Awaitable[None]]] = {
            Commands.COM_QUERY: self.handle_query,
            Commands.COM_INIT_DB: self.handle_init_db,
            Commands.COM_FIELD_LIST: self.handle_field_list,
            Commands.COM_PING: self.handle_ping,
            Commands.COM_STATISTICS: self.handle_statistics,
            Commands.COM_CHANGE_USER: self.handle_change_user,
            Commands.COM_RESET_CONNECTION: self.handle_reset_connection,
            Commands.COM_STMT_PREPARE: self.handle_stmt_prepare,
            Commands.COM_STMT_EXECUTE: self.handle_stmt_execute,
            Commands.COM_STMT_FETCH: self.handle_stmt_fetch,
            Commands.COM_STMT_RESET: self.handle_stmt_reset,
            Commands.COM_STMT_CLOSE: self.handle_stmt_close,
            Commands.COM_STMT_SEND_LONG_DATA: self.handle_stmt_send_long_data,
            Commands.COM_PROCESS_KILL: self.handle_process_kill,
        }
        stream = self.stream
        loop = asyncio.get_running_loop()
        watched = sweeper()
        watched.add(self)
        try:
            while True:
                try:
                    data = await stream.read()
                except ConnectionClosed:
                    return
                if not data:
                    return
                if data[0] == Commands.COM_QUIT:
                    self._quit = True
                    return
                handler = handlers.get(data[0])
                try:
                    if handler is None:
                        raise SqlError(1047, "Unknown command", "08S01")
                    self.command, self.command_since = data, loop.time()
                    try:
                        if data[0] == Commands.COM_QUERY and len(data) >= 1 << 16:
                            # A big statement: the handler takes the only reference to
                            # the packet and drops it once decoded (one copy less at peak).
                            self._big_packet, data = data, b""
                            await self.handle_big_query()
                        else:
                            await handler(data[1:])
                    finally:
                        self.command, self.command_since = None, loop.time()
                        if self._disconnect_watch is not None:
                            await self._stop_disconnect_watch()
                except SqlError as e:
                    if isinstance(e, _FATAL):
                        raise
                    await self.write_error(e)
                except (ConnectionError, ConnectionClosed):
                    raise
                except (UnicodeError, ValueError, LookupError) as e:  # a field the client's charset cannot decode
                    await self.write_error(SqlError(1835, f"Malformed communication packet ({type(e).__name__})", "08S01"))
                except asyncio.CancelledError:
                    if self._kill is not KillKind.QUERY:
                        raise
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]
                    self._kill = None
                    await self.write_error(SqlError(ER_QUERY_INTERRUPTED, "Query execution was interrupted", "70100"))
                finally:
                    stream.reset_seq()
                if self.account is None or self._killed_itself:  # a failed COM_CHANGE_USER, KILL CONNECTION_ID()
                    return
        except asyncio.CancelledError:
            if self._kill is not KillKind.CONNECTION:
                raise
            # KILL from another connection: MariaDB closes without a word, whether
            # the connection was idle or mid-result (the client sees 2013).
            return
        except _FATAL as e:
            if isinstance(e, ReadTimeout):
                return  # wait_timeout: MariaDB closes the idle connection without a word; so do we
            if isinstance(e, PacketTooLarge):
                metrics.REJECTED_PACKET_TOO_LARGE.inc()
            elif isinstance(e, MalformedPacket):
                metrics.REJECTED_MALFORMED.inc()
            await self._write_fatal(e)
        except (ConnectionError, ConnectionClosed, RuntimeError):
            pass  # the client went away mid-reply or mid-authentication
        finally:
            watched.discard(self)

    # -- a client that goes away mid-statement --------------------------------------
    _disconnect_watch: asyncio.Task[None] | None = None

    def watch_if_long(self, now: float) -> None:
        """Called by the loop's CommandSweeper (cmdwatch.py): arm the watch once the
        current command has run WATCH_AFTER seconds."""
        if self.command is not None and self._disconnect_watch is None and now - self.command_since >= WATCH_AFTER:
            self._watch_disconnect()

    def _watch_disconnect(self) -> None:
        """If the client closes its connection during a long command, the command
        is cancelled and its statements on the regions are killed, as ProxySQL
        does -- a dropped client must not leave a query running."""
        self._disconnect_watch = asyncio.create_task(self._on_disconnect(self._task))

    async def _stop_disconnect_watch(self) -> None:
        """Cancel the watch and wait until it is gone: its read of the client
        socket must end before the command loop reads the next command."""
        watch, self._disconnect_watch = self._disconnect_watch, None
        if watch is not None and not watch.done():
            watch.cancel()
            try:
                await watch
            except asyncio.CancelledError:
                if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    raise  # we are being cancelled ourselves
            except Exception:  # noqa: BLE001 - the watch's own failure is not the command's
                pass

    async def _on_disconnect(self, command_task: asyncio.Task[Any] | None) -> None:
        if not await self.stream.client_gone():
            return  # the client sent more (pipelining): its bytes wait for the next read
        metrics.CLIENT_GONE_MID_STATEMENT.inc()
        log.info("connection %s: client went away mid-statement; killing its statements", self.connection_id)
        targets = self.session.running_statements()  # before the cancel closes the connections
        if command_task is not None:
            self._kill = KillKind.CONNECTION
            command_task.cancel()
        killing = asyncio.ensure_future(self.session.kill_statements(targets))
        _BACKGROUND.add(killing)  # outlives this connection; keep a reference until done
        killing.add_done_callback(_BACKGROUND.discard)

    async def handle_change_user(self, data: bytes) -> None:
        """Re-authenticate (same guard); success resets the session, failure ends the connection."""
        change = parse_change_user(self.capabilities, self.client_charset, data)
        previous, self.account = self.account, None
        try:
            account = await authenticate(self._login_context(), change.username, change.auth_response, change.client_plugin, self.nonce)
        except LoginFailed:
            return  # self.account stays None: the command loop closes the connection
        if previous is None or (previous.user, previous.host) != (account.user, account.host):
            refused = await self.admit(account)
            if refused is not None:
                await self.write_error(refused)
                return
        self.account = account
        session = self.session
        await session.reset()
        session.authenticated(account)
        session.variables.set("external_user", change.username, force=True)
        if change.client_charset is not None:
            session.variables.set("character_set_client", change.client_charset.name)
            session.set_charset(change.client_charset.name)
        session.database = None
        if change.database:
            await session.use(change.database)
        await self.stream.write(make_ok(affected_rows=0, insert_id=0, status=self._status(), warnings=0))

    # -- LOAD DATA LOCAL INFILE (localinfile.py) ------------------------------------
    @property
    def local_files(self) -> bool:
        """The client offered to send local files (CLIENT_LOCAL_FILES)."""
        return Capabilities.CLIENT_LOCAL_FILES in self.capabilities

    async def read_local_file(self, filename: bytes) -> AsyncIterator[bytes]:
        """Ask the client for `filename` (the 0xFB request MariaDB sends) and
        yield its data packets until the empty one that ends the file.  Each
        packet is bounded by max_allowed_packet like any other."""
        stream = self.stream
        await stream.write(b"\xfb" + filename)
        while True:
            data = await stream.read()
            if not data:
                return
            yield data

    _quit = False  # ended by COM_QUIT (any other end counts in Aborted_clients)
    _killed_itself = False  # answered its own KILL: the command loop closes after this command

    async def write_error(self, e: SqlError) -> None:
        metrics.ERRORS.labels(str(e.errno)).inc()
        if e.errno == ER_CONNECTION_KILLED:
            self._killed_itself = True
        await self.stream.write(make_error(e.errno, e.sqlstate, e.message))

    def _end_packet(self, warnings: int, status: int | None = None) -> bytes:
        """The end of a result: EOF, or with CLIENT_DEPRECATE_EOF an OK packet with
        the 0xFE header (also what MariaDB sends after a cursor's metadata)."""
        status = self._status() if status is None else status
        if self._deprecate_eof:
            return make_ok(affected_rows=0, insert_id=0, status=status, warnings=warnings, eof=True)
        return make_eof(status=status, warnings=warnings)

    async def write_reply(self, reply: Reply, *, more: bool = False) -> None:
        """Write one statement's answer; `more`: another result of the same
        multi-statement query follows (SERVER_MORE_RESULTS_EXISTS)."""
        if reply.stream is not None:
            await self._relay(reply.stream, more)
            return
        status = self._status() | (SERVER_MORE_RESULTS_EXISTS if more else 0)
        if reply.local is not None:
            await self._write_local(reply.local, status)
            return
        result = reply.result
        assert result is not None
        while result.more is not None:  # a CALL's results, relayed in order
            self._write_head(result.fields or [], self._status() | SERVER_MORE_RESULTS_EXISTS)
            self.stream.write_many(result.rows)
            await self.stream.write(self._end_packet(result.warnings, self._status() | SERVER_MORE_RESULTS_EXISTS))
            result = result.more
        if result.fields is None:
            await self.stream.write(
                make_ok(
                    affected_rows=result.affected_rows, insert_id=result.insert_id, status=status,
                    warnings=result.warnings, info=result.info,
                )
            )
            return
        self._write_head(result.fields, status)
        stream = self.stream
        rows = result.rows
        for i in range(0, len(rows), 1000):
            stream.write_many(rows[i:i + 1000])
            await stream.drain()
        await stream.write(self._end_packet(result.warnings, status))

    def _write_head(self, fields: list[bytes], status: int) -> None:
        head = [lenenc_int(len(fields))]  # the column count (CLIENT_OPTIONAL_RESULTSET_METADATA is not offered)
        head.extend(fields)
        if not self._deprecate_eof:
            head.append(make_eof(status=status, warnings=0))
        self.stream.write_many(head)

    async def _relay(self, result: ResultStream, more: bool) -> None:
        """Relay a result as it streams from a backend: rows are written in
        batches and drained, so a client that reads slowly slows the backend
        read instead of filling proxy memory.  A backend error mid-result (the
        query was killed) reaches the client as the ERR packet MariaDB sends
        in place of the final EOF."""
        stream = self.stream
        try:
            while True:
                last = not result.more_results
                status = self._status() | (SERVER_MORE_RESULTS_EXISTS if more or not last else 0)
                if result.fields is None:
                    await stream.write(make_ok(affected_rows=result.affected_rows, insert_id=result.insert_id,
                                               status=status, warnings=result.warnings, info=result.info))
                elif result.cursor:  # rows follow by COM_STMT_FETCH
                    head = [lenenc_int(len(result.fields))]
                    head.extend(result.fields)
                    head.append(self._end_packet(result.warnings, status | SERVER_STATUS_CURSOR_EXISTS))
                    stream.write_many(head)
                    await stream.drain()
                else:
                    self._write_head(result.fields, status)
                    while (batch := await result.next_batch()) is not None:
                        stream.write_many(batch)
                        if stream.pending >= FLUSH_AT:  # one write for a small result, bounded memory for a big one
                            await stream.drain()
                    last = not result.more_results
                    status = self._status() | (SERVER_MORE_RESULTS_EXISTS if more or not last else 0)
                    await stream.write(self._end_packet(result.warnings, status))
                if last:
                    return
                result = await result.next_result()
        except BackendError as e:
            await self.write_error(e.to_sql_error())
        except BackendLost as e:
            self.session.drop_region(result.conn.region_id)
            await self.write_error(SqlError(2013, f"Lost connection to region '{result.conn.region_id}' during query: {e}", "HY000"))
        finally:
            result.abort()

    def _local_fields(self, local: LocalResult) -> list[bytes]:
        return [
            packets.make_column_definition_41(
                server_charset=self.server_charset, name=name, column_type=ColumnType.VAR_STRING, column_length=256
            )
            for name in local.columns
        ]

    async def _write_local(self, local: LocalResult, status: int | None = None) -> None:
        self._write_head(self._local_fields(local), self._status() if status is None else status)
        codec = self.server_charset.codec
        self.stream.write_many([encode_local_row(r, codec) for r in local.rows])
        await self.stream.write(self._end_packet(0, status))

    # -- commands ----------------------------------------------------------------
    async def handle_big_query(self) -> None:
        packet, self._big_packet = self._big_packet, b""
        sql = str(memoryview(packet)[1:], self.client_charset.codec, "surrogateescape")
        del packet
        await self._handle_sql(sql)

    async def handle_query(self, data: bytes) -> None:
        # The SQL text stays the client's bytes: bytes that are not valid in its
        # character set are carried as surrogates and re-encoded unchanged for
        # the regions (backend.py), so MariaDB judges them, as it would directly.
        sql = data.decode(self.client_charset.codec, "surrogateescape")
        if self._multi_statements and ";" in sql:
            await self._handle_sql(sql)
        else:  # one level less on the fast path: every level is re-entered at each wake-up
            await self._run_statement(sql, more=False)

    async def _handle_sql(self, sql: str) -> None:
        statements = split_statements(sql) if self._multi_statements else None
        if statements is None:
            await self._run_statement(sql, more=False)
            return
        for i, statement in enumerate(statements):
            if not await self._run_statement(statement, more=i + 1 < len(statements)):
                return  # an error ends a multi-statement query, as in MariaDB

    async def _run_statement(self, sql: str, *, more: bool) -> bool:
        """Run one statement and write its answer; False when that was an error."""
        started = time.perf_counter()
        try:
            reply = await self.session.execute(sql)
        except SqlError as e:
            await self.write_error(e)
            return False
        except BackendError as e:
            await self.write_error(e.to_sql_error())
            return False
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - a bug must not kill the client's connection
            log.exception("internal error on %r", sql[:200])
            await self.write_error(SqlError(ER_UNKNOWN, f"Internal proxy error: {type(e).__name__}: {e}"))
            return False
        metrics.observe_query(time.perf_counter() - started)
        await self.write_reply(reply, more=more)
        return True

    async def handle_init_db(self, data: bytes) -> None:
        database = packets.parse_com_init_db(self.client_charset, data)
        try:
            await self.session.use(database)
        except SqlError as e:
            await self.write_error(e)
            return
        await self.stream.write(make_ok(affected_rows=0, insert_id=0, status=self._status(), warnings=0))

    async def handle_field_list(self, data: bytes) -> None:
        com = parse_field_list(self.client_charset, data)
        session = self.session
        try:
            snap = session.routing.snapshot
            table = resolve_table(TableRef(None, com.table), session, snap)
            region = read_region((table,), snap)
            conn = await session.backends.get(region, snap, session.state)
            columns = await conn.field_list(com.table, com.wildcard or "")
        except BackendError as e:
            await self.write_error(e.to_sql_error())
            return
        except (BackendLost, OSError) as e:
            session.drop_region(region)
            await self.write_error(SqlError(2013, f"Lost connection to region '{region}': {e}", "HY000"))
            return
        except SqlError as e:
            await self.write_error(e)
            return
        self.stream.write_many(columns)
        await self.stream.write(self._end_packet(0))

    # -- prepared statements (the session owns them; prepared.py has the codecs) -----------
    async def handle_stmt_prepare(self, data: bytes) -> None:
        sql = data.decode(self.client_charset.codec, "surrogateescape")
        stmt, warnings = await self.session.prepare(sql)
        out = [prepare_ok(stmt, warnings)]
        for defs in (stmt.params, stmt.columns):
            if defs:
                out.extend(defs)
                if not self._deprecate_eof:
                    out.append(make_eof(status=self._status(), warnings=0))
        self.stream.write_many(out)
        await self.stream.drain()

    def _statement(self, data: bytes, command: str) -> Any:
        stmt_id = int.from_bytes(data[:4], "little")
        stmt = self.session.statements.get(stmt_id)
        if len(data) < 4 or stmt is None:
            raise SqlError(1243, f"Unknown prepared statement handler ({stmt_id}) given to {command}", "HY000")
        return stmt

    async def handle_stmt_execute(self, data: bytes) -> None:
        stmt = self._statement(data, "mysqld_stmt_execute")
        request = parse_execute(stmt, data)
        started = time.perf_counter()
        reply = await self.session.execute_prepared(stmt, request)
        metrics.observe_query(time.perf_counter() - started)
        if stmt.route is Route.RELAY:
            await self.write_reply(reply)  # binary rows, relayed as they come
        else:
            await self.write_reply(await self._to_binary(reply))

    async def _to_binary(self, reply: Reply) -> Reply:
        """A text-path answer to COM_STMT_EXECUTE with rows re-encoded in the
        binary protocol (rare: writes answer OK; a prepared statement the proxy
        answers itself, or a write with RETURNING, has rows)."""
        if reply.local is not None:
            local = reply.local
            codec = self.server_charset.codec
            types = [(0xFD, False)] * len(local.columns)
            rows = [text_row_to_binary(encode_local_row(r, codec), types) for r in local.rows]
            return Reply(QueryResult(self._local_fields(local), rows, len(rows), 0, 0, 0, b""))
        if reply.stream is not None:
            try:
                result = await reply.stream.read_all()
            except BackendError as e:
                raise e.to_sql_error()
            reply = Reply(result)
        result = reply.result
        while result is not None:
            if result.fields is not None:
                types = [column_type(f) for f in result.fields]
                result.rows = [text_row_to_binary(r, types) for r in result.rows]
            result = result.more
        return reply

    async def handle_stmt_fetch(self, data: bytes) -> None:
        stmt = self._statement(data, "mysqld_stmt_fetch")
        rows = int.from_bytes(data[4:8], "little") if len(data) >= 8 else 1
        reply = await self.session.fetch_prepared(stmt, rows)
        result = reply.stream
        try:
            while (batch := await result.next_batch()) is not None:
                self.stream.write_many(batch)
                await self.stream.drain()
            status = self._status() | (result.server_status & (SERVER_STATUS_CURSOR_EXISTS | SERVER_STATUS_LAST_ROW_SENT))
            await self.stream.write(self._end_packet(result.warnings, status))
        except BackendError as e:
            await self.write_error(e.to_sql_error())
        finally:
            result.abort()

    async def handle_stmt_reset(self, data: bytes) -> None:
        await self.session.reset_prepared(self._statement(data, "mysqld_stmt_reset"))
        await self.stream.write(make_ok(affected_rows=0, insert_id=0, status=self._status(), warnings=0))

    async def handle_stmt_close(self, data: bytes) -> None:
        """No answer, even for an unknown id (as MariaDB)."""
        self.session.close_prepared(int.from_bytes(data[:4], "little"))

    async def handle_stmt_send_long_data(self, data: bytes) -> None:
        """No answer; an unknown statement or too much data is reported by the next execute."""
        if len(data) < 6:
            return
        stmt = self.session.statements.get(int.from_bytes(data[:4], "little"))
        param = int.from_bytes(data[4:6], "little")
        if stmt is None or param >= stmt.param_count:
            return
        if sum(map(len, stmt.long_data.values())) + len(data) - 6 > self.edge.max_allowed_packet:
            raise PacketTooLarge()
        stmt.long_data.setdefault(param, bytearray()).extend(data[6:])

    async def handle_reset_connection(self, data: bytes) -> None:
        await self.session.reset(keep_database=True)
        await self.stream.write(make_ok(affected_rows=0, insert_id=0, status=self._status(), warnings=0))

    async def handle_statistics(self, data: bytes) -> None:
        """COM_STATISTICS (`mariadb-admin status`): one region's status line."""
        session = self.session
        cursor = session.cursor()
        region = cursor.any_region()
        conn = await session.backends.get(region, cursor.snapshot, session.state)
        await self.stream.write(await cursor.call(conn, conn.statistics()))

    async def handle_process_kill(self, data: bytes) -> None:
        """COM_PROCESS_KILL (mysql_kill()): KILL CONNECTION of any proxy's session."""
        if len(data) < 4:
            raise MalformedPacket()
        await self.write_reply(await self.session.execute(f"KILL CONNECTION {int.from_bytes(data[:4], 'little')}"))

    async def handle_ping(self, data: bytes) -> None:
        await self.stream.write(make_ok(affected_rows=0, insert_id=0, status=self._status(), warnings=0))


_FATAL = (MalformedPacket, PacketTooLarge, ReadTimeout)


FLUSH_AT = 1 << 16  # bytes of reply buffered before a write to the client
_BACKGROUND: set[asyncio.Future[None]] = set()

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
    | Capabilities.CLIENT_MULTI_STATEMENTS
    | Capabilities.CLIENT_MULTI_RESULTS
    | Capabilities.CLIENT_LOCAL_FILES
    | Capabilities.CLIENT_COMPRESS
)
