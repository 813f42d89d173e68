"""The client-side packet reader: every read bounded in length and in time.

mysql-mimic's `MysqlStream.read()` has three flaws a hostile or merely
unlucky client hits (library-findings.md):

* it reads the 4-byte header with `read(4)`, which may return fewer bytes
  when the header is split across TCP segments ("unpack requires a buffer
  of 4 bytes" dropped legitimate clients);
* it buffers a multi-packet message whole before anything checks its size
  (one 64 MB query took the proxy to 7.9 GB RSS);
* it waits forever.

mimic's stream is compiled (mypyc) and cannot be subclassed, so
`BoundedStream` is a small stream of our own with the same writer API
(`write`, `write_many`, `drain`, `reset_seq`): writes are framed into one
buffer and flushed in one `transport.write` per reply.  Reads: headers are
read exactly, a message's total length is checked against
`max_allowed_packet` *before* its payload is read (MariaDB's 1153, then the
connection is closed: its remaining bytes are never read), and a read that
does not complete within `timeout` seconds ends the connection.
"""

from __future__ import annotations

import asyncio
import zlib

from typing import Awaitable, Callable, Sequence

from mysql_mimic.stream import ConnectionClosed

from minisql.errors import SqlError

from .inbound import MalformedPacket

MIN_COMPRESS = 50  # MariaDB's MIN_COMPRESS_LENGTH: smaller frames go uncompressed
ER_NET_PACKET_TOO_LARGE = 1153
ER_NET_READ_INTERRUPTED = 1159
_MAX_PAYLOAD = 0xFFFFFF


class PacketTooLarge(SqlError):
    def __init__(self) -> None:
        super().__init__(ER_NET_PACKET_TOO_LARGE, "Got a packet bigger than 'max_allowed_packet' bytes", "08S01")


class ReadTimeout(SqlError):
    def __init__(self, what: str) -> None:
        super().__init__(ER_NET_READ_INTERRUPTED, f"Got timeout reading communication packets ({what})", "08S01")


class BoundedStream:
    """MySQL packet framing over asyncio streams, reads bounded; see the module docstring.

    `limit` and `timeout` are attributes so the edge can tighten them before
    login (small packets, the handshake deadline) and relax them after.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, limit: int, timeout: float | None,
                 flush_at: int = 1 << 15) -> None:
        self.reader = reader
        self.writer = writer
        self.limit = limit
        self._watchdog: asyncio.TimerHandle | None = None
        self._timeout = timeout
        self.timeout_reason = "wait_timeout"
        self.seq = 0
        self._pushback = b""  # bytes read by `client_gone` that belong to the next packet
        self._buffer = bytearray()
        self._flush_at = flush_at
        self._reading_since: float | None = None
        self._timed_out = False
        # CLIENT_COMPRESS (both directions, from the login's OK on): packets travel
        # inside zlib frames with a sequence number of their own.
        self.compressed = False
        self.cseq = 0
        self._plain = bytearray()  # inflated bytes not yet read as packets
        self._plain_pos = 0

    @property
    def timeout(self) -> float | None:
        return self._timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        """A new idle limit (after login; the client's SET wait_timeout) takes
        effect at the next read: the watchdog armed for the old one is dropped."""
        self._timeout = value
        self.close_watchdog()

    def reset_seq(self) -> None:
        self.seq = 0
        self.cseq = 0

    async def client_gone(self) -> bool:
        """Wait until the client sends something (False: kept for the next read)
        or closes the connection (True).  Used while a statement runs, to notice
        a client that went away and stop its work on the regions."""
        data = await self.reader.read(1)
        if data:
            self._pushback += data
            return False
        return True

    def _frame(self, data: bytes) -> None:
        buf = self._buffer
        while True:
            chunk = data[:_MAX_PAYLOAD]
            n = len(chunk)
            buf += bytes((n & 0xFF, (n >> 8) & 0xFF, n >> 16, self.seq))
            buf += chunk
            self.seq = (self.seq + 1) & 0xFF
            if n < _MAX_PAYLOAD:
                return
            data = data[_MAX_PAYLOAD:]

    @property
    def pending(self) -> int:
        """Bytes framed but not yet written."""
        return len(self._buffer)

    def write_many(self, packets: Sequence[bytes]) -> None:
        """Frame packets into the buffer without sending (the next drain sends).
        `_frame` inlined for packets under 16 MiB: rows come through here."""
        buf = self._buffer
        seq = self.seq
        for data in packets:
            n = len(data)
            if n >= _MAX_PAYLOAD:
                self.seq = seq
                self._frame(data)
                seq = self.seq
                continue
            buf += bytes((n & 0xFF, (n >> 8) & 0xFF, n >> 16, seq))
            buf += data
            seq = (seq + 1) & 0xFF
        self.seq = seq

    async def write(self, data: bytes, drain: bool = True) -> None:
        self._frame(data)
        if drain or len(self._buffer) >= self._flush_at:
            await self.drain()

    async def drain(self) -> None:
        if self._buffer:
            self.writer.write(self._deflate(self._buffer) if self.compressed else self._buffer)
            self._buffer = bytearray()
        await self.writer.drain()

    # -- the compressed protocol -----------------------------------------------------
    def _deflate(self, data: bytearray) -> bytes:
        """Packets as compressed frames: 3-byte compressed length, sequence,
        3-byte original length (0: sent as is -- under MIN_COMPRESS or when
        zlib does not make it smaller, as MariaDB does)."""
        out = bytearray()
        view = memoryview(data)
        for start in range(0, len(view), _MAX_PAYLOAD):
            chunk = view[start:start + _MAX_PAYLOAD]
            body: bytes | memoryview = chunk
            original = 0
            if len(chunk) >= MIN_COMPRESS:
                packed = zlib.compress(chunk)
                if len(packed) < len(chunk):
                    body, original = packed, len(chunk)
            n = len(body)
            out += bytes((n & 0xFF, (n >> 8) & 0xFF, n >> 16, self.cseq,
                          original & 0xFF, (original >> 8) & 0xFF, original >> 16))
            out += body
            self.cseq = (self.cseq + 1) & 0xFF
        return bytes(out)

    async def _inflate_frame(self) -> None:
        """Read one compressed frame and keep its packets' bytes.  Bounded: a
        frame may not claim more than max_allowed_packet (plus headers), and
        zlib is stopped at the length the frame claims."""
        header = await self._raw_exact(7)
        length = header[0] | header[1] << 8 | header[2] << 16
        original = header[4] | header[5] << 8 | header[6] << 16
        if header[3] != self.cseq:
            raise MalformedPacket(message=f"Got compressed packets out of order (expected {self.cseq}, got {header[3]})")
        self.cseq = (self.cseq + 1) & 0xFF
        bound = self.limit + 1024
        if length > bound or original > bound:
            raise PacketTooLarge()
        body = await self._raw_exact(length) if length else b""
        if original:
            inflater = zlib.decompressobj()
            try:
                body = inflater.decompress(body, original)
            except zlib.error:
                raise MalformedPacket(message="Bad compressed packet") from None
            if len(body) != original or inflater.unconsumed_tail:
                raise MalformedPacket(message="Compressed packet of the wrong length")
        if self._plain_pos:
            del self._plain[:self._plain_pos]
            self._plain_pos = 0
        self._plain += body

    async def _exact(self, n: int) -> bytes:
        if not self.compressed:
            return await self._raw_exact(n)
        while len(self._plain) - self._plain_pos < n:
            await self._inflate_frame()
        start = self._plain_pos
        self._plain_pos = start + n
        return bytes(self._plain[start:start + n])

    async def _raw_exact(self, n: int) -> bytes:
        try:
            if self._pushback:
                head, self._pushback = self._pushback, b""
                return head + await self.reader.readexactly(n - len(head)) if n > len(head) else head
            return await self.reader.readexactly(n)
        except asyncio.IncompleteReadError:
            raise ConnectionClosed() from None

    async def read(self) -> bytes:
        """The next client message.  With `timeout`, a read that waits longer
        ends the connection (ReadTimeout).  One watchdog timer per connection,
        re-armed only when it fires, instead of a timeout scope per read: the
        statement fast path pays for an attribute store, not a timer."""
        if self.timeout is None:
            return await self._read()
        loop = asyncio.get_running_loop()
        self._reading_since = loop.time()
        if self._watchdog is None:
            self._watchdog = loop.call_at(self._reading_since + self.timeout, self._check_idle)
        try:
            return await self._read()
        except ConnectionClosed:
            if self._timed_out:
                raise ReadTimeout(self.timeout_reason) from None
            raise
        finally:
            self._reading_since = None

    def _check_idle(self) -> None:
        self._watchdog = None
        since, timeout = self._reading_since, self.timeout
        if since is None or timeout is None:
            return  # not waiting for the client now; the next read re-arms
        loop = asyncio.get_running_loop()
        if loop.time() - since >= timeout - 0.001:
            self._timed_out = True
            self.reader.feed_eof()  # the pending read ends; `read` reports the timeout
        else:
            self._watchdog = loop.call_at(since + timeout, self._check_idle)

    def close_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    async def _read(self) -> bytes:
        if self.compressed or self._pushback:
            return await self._read_via(self._exact)
        reader = self.reader
        chunks: list[bytes] = []
        total = 0
        while True:
            try:
                header = await reader.readexactly(4)
            except asyncio.IncompleteReadError:
                raise ConnectionClosed() from None
            length = header[0] | header[1] << 8 | header[2] << 16
            sequence_id = header[3]
            expected = self.seq
            self.seq = (expected + 1) & 0xFF
            if sequence_id != expected:
                raise MalformedPacket(message=f"Got packets out of order (expected {expected}, got {sequence_id})")
            total += length
            if total > self.limit:
                raise PacketTooLarge()
            if length:
                try:
                    chunks.append(await reader.readexactly(length))
                except asyncio.IncompleteReadError:
                    raise ConnectionClosed() from None
            if length < _MAX_PAYLOAD:
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _read_via(self, exact: "Callable[[int], Awaitable[bytes]]") -> bytes:
        """`_read` over `exact` (compressed frames, or bytes pushed back)."""
        chunks: list[bytes] = []
        total = 0
        while True:
            header = await exact(4)
            length = header[0] | header[1] << 8 | header[2] << 16
            expected = self.seq
            self.seq = (expected + 1) & 0xFF
            if header[3] != expected:
                raise MalformedPacket(message=f"Got packets out of order (expected {expected}, got {header[3]})")
            total += length
            if total > self.limit:
                raise PacketTooLarge()
            if length:
                chunks.append(await exact(length))
            if length < _MAX_PAYLOAD:
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
