"""Connections from the proxy to the regions' MariaDB servers: our own client side
of the MySQL protocol, over asyncio streams.

Why our own: the proxy relays what MariaDB sends, packet by packet, and a
driver decodes it.  Here results stay raw -- column definitions as the server
sent them, text or binary rows as their bytes -- so types, UNSIGNED, DECIMAL
scale and charsets survive, and nothing is decoded and re-encoded.  Results are
*streamed*: `query_stream` returns the result's head and reads rows in batches
as the client drains them, so a 1M-row SELECT never sits in proxy memory.
Errors keep their SQLSTATE (1062 reaches the client as 23000).
Multi-statements are never enabled on a backend connection: a client could
otherwise hide a write behind a read that goes to one copy only.

Reads take whatever the socket has (up to 256 KiB) and cut every complete
packet out of it, so a batch of rows costs one await, not two per row.

Error handling -- where state can be lost: a connection whose command was
interrupted (cancelled, a socket error, a protocol surprise, a result not read
to its end) is *broken*: `closed` turns true, and it is never reused or
returned to the pool; whatever transaction it held is rolled back by MariaDB
when the socket closes.  `BackendError` is an ERR packet (the connection is
fine); `BackendLost` is everything else (the connection is gone).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

from minisql.errors import SqlError

from .protocol import (
    CLIENT_FOUND_ROWS,
    CLIENT_LOCAL_FILES,
    CLIENT_LONG_FLAG,
    CLIENT_LONG_PASSWORD,
    CLIENT_MULTI_RESULTS,
    CLIENT_PLUGIN_AUTH,
    CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA,
    CLIENT_PROTOCOL_41,
    CLIENT_PS_MULTI_RESULTS,
    CLIENT_SECURE_CONNECTION,
    CLIENT_TRANSACTIONS,
    COM_FIELD_LIST,
    COM_INIT_DB,
    COM_QUERY,
    COM_QUIT,
    COM_RESET_CONNECTION,
    COM_STATISTICS,
    COM_STMT_CLOSE,
    COM_STMT_EXECUTE,
    COM_STMT_FETCH,
    COM_STMT_PREPARE,
    COM_STMT_RESET,
    COM_STMT_SEND_LONG_DATA,
    MAX_PAYLOAD,
    SERVER_MORE_RESULTS_EXISTS,
    SERVER_STATUS_CURSOR_EXISTS,
    eof_fields,
    is_eof,
    lenenc_str,
    native_password_scramble,
    parse_error,
    parse_ok,
    read_lenenc_int,
)

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 18  # bytes asked of the socket per read
BATCH_BYTES = 1 << 18  # row bytes handed to the client writer per batch
INFILE_PACKET = (1 << 16) - 1  # LOAD DATA LOCAL data packets sent to a region
UTF8MB4_GENERAL_CI = 45


class BackendError(Exception):
    """An ERR packet from MariaDB, with its SQLSTATE kept; the connection is fine."""

    def __init__(self, errno: int, message: str, sqlstate: str) -> None:
        super().__init__(errno, message)
        self.errno = errno
        self.message = message
        self.sqlstate = sqlstate

    def to_sql_error(self) -> SqlError:
        return SqlError(self.errno, self.message, self.sqlstate)


class BackendLost(Exception):
    """The connection broke (socket error, cancelled mid-command, protocol error)."""


@dataclass(slots=True)
class QueryResult:
    """One statement's whole result, ready to relay (writes, SET, internal use)."""

    fields: list[bytes] | None  # raw column definitions; None for an OK result
    rows: list[bytes]
    affected_rows: int
    insert_id: int
    warnings: int
    server_status: int
    info: bytes  # the OK packet's trailing bytes as MariaDB sends them: a length-encoded string (or nothing)
    more: "QueryResult | None" = None  # the next result of a CALL


@dataclass(slots=True)
class PreparedOnBackend:
    """COM_STMT_PREPARE's answer: the backend's id and the raw definitions."""

    stmt_id: int
    params: list[bytes]
    columns: list[bytes]
    warnings: int


class ResultStream:
    """A result being read from a backend: its head now, its rows in batches.

    `fields is None`: an OK result (`affected_rows`... are set).  Otherwise
    call `next_batch()` until it returns None; then `warnings` and `server_status` are the
    final EOF's.  `more_results` tells whether another result follows (a CALL);
    `next_result()` reads its head.  A stream not read to its end must be
    `abort()`ed: the connection is then closed.
    """

    __slots__ = ("conn", "fields", "affected_rows", "insert_id", "warnings", "server_status", "info", "done", "cursor", "_error")

    def __init__(self, conn: "BackendConnection") -> None:
        self.conn = conn
        self.fields: list[bytes] | None = None
        self.affected_rows = 0
        self.insert_id = 0
        self.warnings = 0
        self.server_status = 0
        self.info = b""
        self.done = True
        self.cursor = False  # a COM_STMT_EXECUTE that opened a cursor: rows come by COM_STMT_FETCH
        self._error: BackendError | None = None  # an ERR after rows, raised by the next next_batch()

    @property
    def more_results(self) -> bool:
        return self.done and bool(self.server_status & SERVER_MORE_RESULTS_EXISTS)

    async def _read_head(self) -> None:
        conn = self.conn
        first = conn._take()  # (buffered packets are taken without a coroutine call each)
        if first is None:
            first = await conn._read()
        kind = first[0] if first else 0
        if kind == 0x00:
            self.fields = None
            self.affected_rows, self.insert_id, self.server_status, self.warnings, self.info = parse_ok(first)
            self.done = True
            conn._settle(self.server_status)
            return
        if kind == 0xFF:
            conn._busy = False
            raise BackendError(*_error_args(first))
        if kind == 0xFB:  # LOCAL INFILE request: only answered for our own LOAD DATA LOCAL
            await conn._send_local_file(first[1:])
            await self._read_head()
            return
        count, _ = read_lenenc_int(first, 0)
        fields = []
        for _ in range(count or 0):
            field = conn._take()
            fields.append(field if field is not None else await conn._read())
        eof = conn._take()
        if eof is None:
            eof = await conn._read()
        if not is_eof(eof):
            conn._broken("expected EOF after column definitions")
        self.fields = fields
        self.warnings, self.server_status = eof_fields(eof)
        if self.server_status & SERVER_STATUS_CURSOR_EXISTS:
            self.cursor = True
            self.done = True
            conn._settle(self.server_status)
        else:
            self.done = False

    async def next_batch(self) -> list[bytes] | None:
        """The next row payloads (about BATCH_BYTES, never empty), or None after
        the final EOF.  An ERR packet in place of the EOF (e.g. the query was
        killed) raises BackendError once the rows before it were returned.
        A coroutine, not an async generator: the event loop tracks every
        async generator in a WeakSet, a cost the fast path pays per result."""
        error = self._error
        if error is not None:
            self._error = None
            raise error
        conn = self.conn
        while not self.done:
            batch = await conn._read_batch()
            last = batch[-1]
            if is_eof(last):
                batch.pop()
                self.warnings, self.server_status = eof_fields(last)
                self.done = True
                conn._settle(self.server_status)
            elif last[:1] == b"\xff":
                batch.pop()
                self.done = True
                conn._settle(0)
                error = BackendError(*_error_args(last))
                if batch:
                    self._error = error
                    return batch
                raise error
            if batch:
                return batch
        return None

    async def read_all(self) -> QueryResult:
        rows: list[bytes] = []
        if self.fields is not None:
            while (batch := await self.next_batch()) is not None:
                rows.extend(batch)
        result = QueryResult(self.fields, rows, self.affected_rows if self.fields is None else len(rows), self.insert_id,
                             self.warnings, self.server_status, self.info)
        if self.more_results:
            nxt = await self.next_result()
            result.more = await nxt.read_all()
        return result

    async def next_result(self) -> "ResultStream":
        nxt = ResultStream(self.conn)
        self.conn._busy = True
        await nxt._read_head()
        return nxt

    def abort(self) -> None:
        if not self.done or self.more_results:
            self.conn.close()


def _error_args(payload: bytes) -> tuple[int, str, str]:
    errno, sqlstate, message = parse_error(payload)
    return errno, message, sqlstate


class BackendConnection:
    """One connection to one region's MariaDB; see the module docstring."""

    def __init__(self, region_id: str, host: str, port: int, *, found_rows: bool = False) -> None:
        self.region_id = region_id
        self.host = host
        self.port = port
        self.found_rows = found_rows
        self.login: object = None  # the pool's BackendLogin
        self.thread_id = 0
        self.server_version = ""
        self.server_status = 0
        self.current_db: str | None = None
        # The client's character set: its SQL goes out in the bytes it arrived
        # in, and the backend answers in it (ProxySession.set_charset).
        self.sql_encoding = "utf8"
        self.prepared: dict[object, int] = {}  # client statement -> backend statement id
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._buf = bytearray()
        self._pos = 0
        self._seq = 0
        self._busy = False
        self._infile: Any = None  # the LOAD DATA LOCAL file of the statement being sent
        self._closed = True

    # -- life ------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """Unusable for a new command: closed (by us or, as far as the transport
        has noticed, by the server), broken, or mid-result."""
        return self._closed or self._busy or self._writer is None or self._writer.is_closing()

    @property
    def in_flight(self) -> bool:
        """A command was sent and its answer is not all read (KILL QUERY targets these)."""
        return self._busy and not self._closed

    @property
    def is_open(self) -> bool:
        """The socket is open (a command may be running on it)."""
        return not self._closed

    async def connect(self, user: str, password: str, timeout: float) -> None:
        """Open the socket and log in (mysql_native_password, with auth switch)."""
        async with asyncio.timeout(timeout):
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=READ_CHUNK)
            self._closed = False
            self._busy = True
            try:
                await self._login(user, password)
            except BaseException:
                self.close()
                raise
            self._busy = False

    async def _login(self, user: str, password: str) -> None:
        greeting = await self._read()
        if greeting[:1] == b"\xff":
            raise BackendError(*_error_args(greeting))
        if greeting[0] != 10:
            self._broken(f"unsupported protocol version {greeting[0]}")
        end = greeting.index(b"\0", 1)
        self.server_version = greeting[1:end].decode("ascii", "replace")
        pos = end + 1
        self.thread_id = int.from_bytes(greeting[pos:pos + 4], "little")
        nonce = greeting[pos + 4:pos + 12]
        pos += 13
        pos += 2 + 1 + 2 + 2  # capabilities (low), charset, status, capabilities (high)
        auth_len = greeting[pos]
        pos += 11
        nonce += greeting[pos:pos + max(13, auth_len - 8)].rstrip(b"\0")
        flags = (CLIENT_LONG_PASSWORD | CLIENT_LONG_FLAG | CLIENT_PROTOCOL_41 | CLIENT_TRANSACTIONS
                 | CLIENT_SECURE_CONNECTION | CLIENT_MULTI_RESULTS | CLIENT_PS_MULTI_RESULTS | CLIENT_PLUGIN_AUTH
                 | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA | CLIENT_LOCAL_FILES | (CLIENT_FOUND_ROWS if self.found_rows else 0))
        scramble = native_password_scramble(password, nonce)
        response = b"".join((
            flags.to_bytes(4, "little"), MAX_PAYLOAD.to_bytes(4, "little"), bytes((UTF8MB4_GENERAL_CI,)), bytes(23),
            user.encode() + b"\0", lenenc_str(scramble), b"mysql_native_password\0",
        ))
        self._send(response, seq=self._seq)
        answer = await self._read()
        if answer[:1] == b"\xfe":  # auth switch
            end = answer.index(b"\0", 1)
            plugin = answer[1:end].decode("ascii", "replace")
            if plugin != "mysql_native_password":
                raise BackendError(1251, f"region asked for auth plugin {plugin}, which the proxy does not speak", "08004")
            self._send(native_password_scramble(password, answer[end + 1:].rstrip(b"\0")), seq=self._seq)
            answer = await self._read()
        if answer[:1] == b"\xff":
            raise BackendError(*_error_args(answer))
        if answer[:1] != b"\x00":
            self._broken("unexpected answer to the login")
        self.server_status = parse_ok(answer)[2]

    def close(self) -> None:
        """Close the socket (MariaDB rolls back what it held)."""
        if self._writer is not None and not self._closed:
            try:
                if not self._busy:
                    self._writer.write(b"\x01\x00\x00\x00" + bytes((COM_QUIT,)))
                self._writer.close()
            except (OSError, RuntimeError):
                pass
        self._closed = True

    def _broken(self, why: str) -> None:
        self.close()
        raise BackendLost(f"protocol error from region '{self.region_id}': {why}")

    def _settle(self, status: int) -> None:
        """A response was read to its end: the connection is usable again."""
        self.server_status = status
        self._busy = status & SERVER_MORE_RESULTS_EXISTS != 0

    # -- framing -------------------------------------------------------------------------
    def _send(self, payload: bytes, seq: int = 0, parts: tuple[bytes, ...] = ()) -> None:
        writer = self._writer
        if writer is None or self._closed or writer.is_closing():
            self.close()
            raise BackendLost(f"connection to region '{self.region_id}' is closed")
        try:
            self._write(writer, payload, seq, parts)
        except (RuntimeError, OSError) as e:  # uvloop raises RuntimeError on a transport closed under us
            self.close()
            raise BackendLost(f"lost connection to region '{self.region_id}': {e}") from None

    def _write(self, writer: asyncio.StreamWriter, payload: bytes, seq: int, parts: tuple[bytes, ...] = ()) -> None:
        """Frame `payload` + `parts` (one logical payload) into packets.  Small
        payloads go out in one write; big ones are written piece by piece from
        memoryviews, never concatenated (a 16 MB statement is not copied again)."""
        total = len(payload) + sum(len(p) for p in parts)
        if total < 1 << 16:
            data = payload + b"".join(parts) if parts else payload
            writer.write(bytes((total & 0xFF, (total >> 8) & 0xFF, total >> 16, seq)) + data)
            self._seq = (seq + 1) & 0xFF
            return
        pieces = [memoryview(payload)] + [memoryview(p) for p in parts]
        while True:
            n = min(total, MAX_PAYLOAD)
            writer.write(bytes((n & 0xFF, (n >> 8) & 0xFF, n >> 16, seq)))
            seq = (seq + 1) & 0xFF
            left = n
            while left:
                piece = pieces[0]
                take = piece[:left]
                writer.write(take)
                left -= len(take)
                if len(take) == len(piece):
                    pieces.pop(0)
                else:
                    pieces[0] = piece[len(take):]
            total -= n
            if n < MAX_PAYLOAD:
                break
        self._seq = seq

    def _command(self, command: int, body: bytes, *more: bytes) -> None:
        """Send a command whose body is `body` followed by `more` (not joined)."""
        if self._closed:
            raise BackendLost(f"connection to region '{self.region_id}' is closed")
        if self._busy:
            self.close()
            raise BackendLost(f"connection to region '{self.region_id}' was left mid-result")
        self._busy = True
        if len(body) < 1 << 16 and not more:
            self._send(bytes((command,)) + body)
        else:
            self._send(bytes((command,)), 0, (body, *more))

    async def _fill(self) -> None:
        reader = self._reader
        assert reader is not None
        try:
            data = await reader.read(READ_CHUNK)
        except asyncio.CancelledError:  # mid-response: the connection cannot be reused
            self.close()
            raise
        except OSError as e:
            self.close()
            raise BackendLost(f"lost connection to region '{self.region_id}': {e}") from None
        if not data:
            self.close()
            raise BackendLost(f"region '{self.region_id}' closed the connection")
        if self._pos:
            del self._buf[:self._pos]
            self._pos = 0
        self._buf += data

    def _take(self) -> bytes | None:
        """Cut one complete packet's payload out of the buffer (multi-packet
        payloads joined), or None when more bytes are needed."""
        buf, pos = self._buf, self._pos
        have = len(buf) - pos
        if have < 4:
            return None
        n = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
        if n == MAX_PAYLOAD:
            return self._take_long()
        if have < 4 + n:
            return None
        self._seq = (buf[pos + 3] + 1) & 0xFF
        self._pos = pos + 4 + n
        return bytes(buf[pos + 4:pos + 4 + n])

    def _take_long(self) -> bytes | None:
        buf, pos = self._buf, self._pos
        parts = []
        while True:
            if len(buf) - pos < 4:
                return None
            n = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
            if len(buf) - pos - 4 < n:
                return None
            parts.append((pos + 4, n))
            seq = buf[pos + 3]
            pos += 4 + n
            if n < MAX_PAYLOAD:
                break
        self._seq = (seq + 1) & 0xFF
        self._pos = pos
        return b"".join(bytes(buf[p:p + n]) for p, n in parts)

    async def _read(self) -> bytes:
        while True:
            packet = self._take()
            if packet is not None:
                return packet
            await self._fill()

    async def _read_batch(self) -> list[bytes]:
        """Every complete packet buffered (at least one, at most ~BATCH_BYTES),
        stopping after an EOF or ERR packet."""
        out: list[bytes] = []
        size = 0
        while True:
            packet = self._take()
            if packet is None:
                if out:
                    return out
                await self._fill()
                continue
            out.append(packet)
            size += len(packet)
            first = packet[:1]
            if (first == b"\xfe" and len(packet) < 9) or first == b"\xff" or size >= BATCH_BYTES:
                return out

    # -- commands ----------------------------------------------------------------------------
    async def query_stream(self, sql: bytes, prefix: bytes = b"", infile: Any = None) -> ResultStream:
        """Send COM_QUERY (`prefix` + `sql`, not joined); return the result with
        its head read, rows still to come.  `infile` (localinfile.ClientFile)
        answers the server's request for a LOAD DATA LOCAL file."""
        self._infile = infile
        if prefix:
            self._command(COM_QUERY, prefix, sql)
        else:
            self._command(COM_QUERY, sql)
        stream = ResultStream(self)
        await stream._read_head()
        return stream

    async def run(self, sql: str | bytes, prefix: str = "", infile: Any = None) -> QueryResult:
        """Execute one statement and return its whole raw result (raises BackendError).
        `sql` may be already encoded in the connection's charset (a write sent
        to several regions is encoded once)."""
        encoding = self.sql_encoding
        body = sql if isinstance(sql, bytes) else sql.encode(encoding, "surrogateescape")
        stream = await self.query_stream(body, prefix.encode(encoding) if prefix else b"", infile)
        return await stream.read_all()

    async def pipeline(self, statements: Sequence[str]) -> list[QueryResult | BackendError]:
        """Several small statements in one write (the protocol lets a client
        send the next command before the reply: MariaDB answers each in
        turn): one round trip for `XA END` + `XA PREPARE`.  Each result in
        order, a BackendError in place of a failed one -- the later ones ran
        anyway, so only statements that are harmless after a failed one may
        share a pipeline."""
        if self._closed:
            raise BackendLost(f"connection to region '{self.region_id}' is closed")
        if self._busy:
            self.close()
            raise BackendLost(f"connection to region '{self.region_id}' was left mid-result")
        payloads = [bytes((COM_QUERY,)) + sql.encode(self.sql_encoding, "surrogateescape") for sql in statements]
        if any(len(p) >= MAX_PAYLOAD for p in payloads):
            raise ValueError("pipeline() is for small statements")
        writer = self._writer
        if writer is None or writer.is_closing():
            self.close()
            raise BackendLost(f"connection to region '{self.region_id}' is closed")
        self._busy = True
        try:  # one write: every packet has sequence number 0 (each is a new command)
            writer.write(b"".join(len(p).to_bytes(3, "little") + b"\x00" + p for p in payloads))
        except (RuntimeError, OSError) as e:
            self.close()
            raise BackendLost(f"lost connection to region '{self.region_id}': {e}") from None
        out: list[QueryResult | BackendError] = []
        for _ in statements:
            self._busy = True
            stream = ResultStream(self)
            try:
                await stream._read_head()
                out.append(await stream.read_all())
            except BackendError as e:
                out.append(e)
        return out

    async def _send_local_file(self, filename: bytes) -> None:
        """Answer the server's LOCAL INFILE request with `self._infile`'s data,
        then the empty packet that ends it.  Anything going wrong midway
        closes the connection: MariaDB then aborts the statement."""
        source, self._infile = self._infile, None
        if source is None:
            self._broken("the server asked for a local file nobody offered")
        writer = self._writer
        assert writer is not None
        try:
            async for chunk in source.chunks(filename):
                view = memoryview(chunk)
                for start in range(0, len(view), INFILE_PACKET):  # small packets: any max_allowed_packet takes them
                    self._send(view[start:start + INFILE_PACKET], seq=self._seq)  # type: ignore[arg-type]
                await writer.drain()
        except BaseException:
            self.close()
            await source.discard_rest()
            raise
        self._send(b"", seq=self._seq)

    async def use(self, database: str | None) -> None:
        if database is None or database == self.current_db:
            return
        self._command(COM_INIT_DB, database.encode(self.sql_encoding, "surrogateescape"))
        await (await self._head()).read_all()
        self.current_db = database

    async def _head(self) -> ResultStream:
        stream = ResultStream(self)
        await stream._read_head()
        return stream

    async def field_list(self, table: str, wildcard: str = "") -> list[bytes]:
        """COM_FIELD_LIST (the mariadb CLI's auto-rehash): the raw column packets."""
        self._command(COM_FIELD_LIST, table.encode(self.sql_encoding, "surrogateescape") + b"\0" + wildcard.encode())
        out: list[bytes] = []
        while True:
            packet = await self._read()
            if packet[:1] == b"\xff":
                self._busy = False
                raise BackendError(*_error_args(packet))
            if is_eof(packet):
                self._settle(eof_fields(packet)[1])
                return out
            out.append(packet)

    async def prepare(self, sql: bytes) -> PreparedOnBackend:
        self._command(COM_STMT_PREPARE, sql)
        first = await self._read()
        if first[:1] == b"\xff":
            self._busy = False
            raise BackendError(*_error_args(first))
        if first[:1] != b"\x00" or len(first) < 12:
            self._broken("bad COM_STMT_PREPARE answer")
        stmt_id = int.from_bytes(first[1:5], "little")
        columns = first[5] | first[6] << 8
        params = first[7] | first[8] << 8
        warnings = first[10] | first[11] << 8
        param_defs = [await self._read() for _ in range(params)]
        if params:
            await self._read()  # EOF
        column_defs = [await self._read() for _ in range(columns)]
        if columns:
            await self._read()  # EOF
        self._busy = False
        return PreparedOnBackend(stmt_id, param_defs, column_defs, warnings)

    async def execute_stream(self, payload: bytes) -> ResultStream:
        """COM_STMT_EXECUTE with a complete payload (statement id first)."""
        self._command(COM_STMT_EXECUTE, payload)
        stream = ResultStream(self)
        await stream._read_head()
        return stream

    async def fetch_stream(self, stmt_id: int, rows: int) -> ResultStream:
        """COM_STMT_FETCH on an open cursor: rows until an EOF."""
        self._command(COM_STMT_FETCH, stmt_id.to_bytes(4, "little") + rows.to_bytes(4, "little"))
        stream = ResultStream(self)
        stream.fields = []
        stream.done = False
        return stream

    def send_long_data(self, stmt_id: int, param: int, data: bytes) -> None:
        """COM_STMT_SEND_LONG_DATA (no answer)."""
        self._command(COM_STMT_SEND_LONG_DATA, stmt_id.to_bytes(4, "little") + param.to_bytes(2, "little") + data)
        self._busy = False

    async def statistics(self) -> bytes:
        """COM_STATISTICS: MariaDB's one-line status string (not an OK packet)."""
        self._command(COM_STATISTICS, b"")
        answer = await self._read()
        self._busy = False
        if answer[:1] == b"\xff":
            raise BackendError(*_error_args(answer))
        return answer

    async def reset_session(self) -> None:
        """COM_RESET_CONNECTION: MariaDB rolls back and drops the session's
        variables, user variables, temporary tables, prepared statements,
        table locks and GET_LOCK locks -- a clean connection for the pool."""
        self._command(COM_RESET_CONNECTION, b"")
        await (await self._head()).read_all()
        self.prepared.clear()
        self.current_db = None
        self.sql_encoding = "utf8"

    async def reset_statement(self, stmt_id: int) -> None:
        self._command(COM_STMT_RESET, stmt_id.to_bytes(4, "little"))
        await (await self._head()).read_all()

    def close_statement(self, stmt_id: int) -> None:
        """COM_STMT_CLOSE (no answer)."""
        if self.closed:
            return
        self._command(COM_STMT_CLOSE, stmt_id.to_bytes(4, "little"))
        self._busy = False


@dataclass(frozen=True, slots=True)
class BackendLogin:
    """Who a backend connection logs in as; the password never leaves the proxy."""

    user: str
    password: str = field(repr=False)

