"""Just enough of the MySQL client protocol, written by hand, to fuzz the proxy.

Drivers (PyMySQL, mysql-connector) always send well-formed packets, so they
cannot reach the code paths a hostile client reaches.  This module gives the
fuzzer full control over every byte: it frames packets with any length and
sequence id, can split a header across TCP segments, builds handshake
responses field by field (so a generator can drop a NUL terminator or lie
about a length) and computes the mysql_native_password scramble itself so a
client can log in properly before it misbehaves.

Plain blocking sockets with short timeouts: the fuzzer is sequential and a
read that times out is itself an observation (the proxy did not answer).
"""

from __future__ import annotations

import hashlib
import socket
import struct
import time
from dataclasses import dataclass, field

# Capability flags (only the ones the fuzzer sets or mutates).
CLIENT_LONG_PASSWORD = 0x00000001
CLIENT_FOUND_ROWS = 0x00000002
CLIENT_CONNECT_WITH_DB = 0x00000008
CLIENT_PROTOCOL_41 = 0x00000200
CLIENT_SSL = 0x00000800
CLIENT_TRANSACTIONS = 0x00002000
CLIENT_SECURE_CONNECTION = 0x00008000
CLIENT_MULTI_STATEMENTS = 0x00010000
CLIENT_PLUGIN_AUTH = 0x00080000
CLIENT_CONNECT_ATTRS = 0x00100000
CLIENT_PLUGIN_AUTH_LENENC = 0x00200000
CLIENT_DEPRECATE_EOF = 0x01000000
CLIENT_QUERY_ATTRIBUTES = 0x08000000

DEFAULT_CAPS = (
    CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_TRANSACTIONS | CLIENT_SECURE_CONNECTION
    | CLIENT_PLUGIN_AUTH | CLIENT_PLUGIN_AUTH_LENENC | CLIENT_CONNECT_WITH_DB
)

COM_QUIT = 0x01
COM_INIT_DB = 0x02
COM_QUERY = 0x03
COM_FIELD_LIST = 0x04
COM_PING = 0x0E
COM_CHANGE_USER = 0x11
COM_STMT_PREPARE = 0x16
COM_STMT_EXECUTE = 0x17
COM_STMT_SEND_LONG_DATA = 0x18
COM_STMT_CLOSE = 0x19
COM_STMT_RESET = 0x1A
COM_STMT_FETCH = 0x1C

MAX_PAYLOAD = 0xFFFFFF


def header(length: int, seq: int) -> bytes:
    """A packet header with any length (masked to 24 bits) and sequence id."""
    return struct.pack("<I", (length & MAX_PAYLOAD) | ((seq & 0xFF) << 24))


def packet(payload: bytes, seq: int = 0) -> bytes:
    """One framed packet (payload must be shorter than 16 MiB)."""
    return header(len(payload), seq) + payload


def packets(payload: bytes, seq: int = 0) -> bytes:
    """A payload of any size framed as MySQL does: 0xFFFFFF chunks, then a shorter one."""
    out = bytearray()
    while True:
        chunk, payload = payload[:MAX_PAYLOAD], payload[MAX_PAYLOAD:]
        out += header(len(chunk), seq) + chunk
        seq = (seq + 1) & 0xFF
        if len(chunk) < MAX_PAYLOAD:
            return bytes(out)


def lenenc_int(n: int) -> bytes:
    if n < 251:
        return bytes((n,))
    if n < 1 << 16:
        return b"\xfc" + n.to_bytes(2, "little")
    if n < 1 << 24:
        return b"\xfd" + n.to_bytes(3, "little")
    return b"\xfe" + n.to_bytes(8, "little")


def scramble_native(password: str, nonce: bytes) -> bytes:
    """mysql_native_password: SHA1(pw) XOR SHA1(nonce + SHA1(SHA1(pw)))."""
    if not password:
        return b""
    h1 = hashlib.sha1(password.encode()).digest()
    h2 = hashlib.sha1(h1).digest()
    h3 = hashlib.sha1(nonce + h2).digest()
    return bytes(a ^ b for a, b in zip(h1, h3))


@dataclass
class Handshake:
    """The fields of the server's HandshakeV10 the fuzzer needs."""

    protocol: int
    version: bytes
    connection_id: int
    nonce: bytes
    capabilities: int
    plugin: bytes


def parse_handshake(payload: bytes) -> Handshake:
    protocol = payload[0]
    end = payload.index(b"\x00", 1)
    version = payload[1:end]
    pos = end + 1
    connection_id = struct.unpack_from("<I", payload, pos)[0]
    pos += 4
    part1 = payload[pos:pos + 8]
    pos += 9  # + filler
    caps = struct.unpack_from("<H", payload, pos)[0]
    pos += 2 + 1 + 2  # capabilities low, charset, status
    caps |= struct.unpack_from("<H", payload, pos)[0] << 16
    pos += 2
    auth_len = payload[pos]
    pos += 1 + 10
    part2_len = max(13, auth_len - 8)
    part2 = payload[pos:pos + part2_len]
    pos += part2_len
    plugin = payload[pos:].split(b"\x00", 1)[0]
    return Handshake(protocol, version, connection_id, (part1 + part2).rstrip(b"\x00"), caps, plugin)


def handshake_response(
    user: bytes,
    auth: bytes,
    *,
    caps: int = DEFAULT_CAPS,
    max_packet: int = 1 << 24,
    charset: int = 33,
    database: bytes | None = None,
    plugin: bytes | None = b"mysql_native_password",
    attrs: bytes | None = None,
    consistent: bool = True,
) -> bytes:
    """A HandshakeResponse41 payload built from its fields, honouring `caps` for the layout.

    `consistent` clears the flags of the optional fields that are None, so the packet is
    well-formed; with False a flag may promise a field that is not there (a fuzz input)."""
    if consistent:
        for flag, value in ((CLIENT_CONNECT_WITH_DB, database), (CLIENT_PLUGIN_AUTH, plugin), (CLIENT_CONNECT_ATTRS, attrs)):
            if value is None:
                caps &= ~flag
    out = bytearray(struct.pack("<IIB", caps & 0xFFFFFFFF, max_packet & 0xFFFFFFFF, charset & 0xFF))
    out += b"\x00" * 23
    out += user + b"\x00"
    if caps & CLIENT_PLUGIN_AUTH_LENENC:
        out += lenenc_int(len(auth)) + auth
    elif caps & CLIENT_SECURE_CONNECTION:
        out += bytes((len(auth) & 0xFF,)) + auth
    else:
        out += auth + b"\x00"
    if caps & CLIENT_CONNECT_WITH_DB and database is not None:
        out += database + b"\x00"
    if caps & CLIENT_PLUGIN_AUTH and plugin is not None:
        out += plugin + b"\x00"
    if caps & CLIENT_CONNECT_ATTRS and attrs is not None:
        out += lenenc_int(len(attrs)) + attrs
    return bytes(out)


def killer_handshake() -> bytes:
    """The known 33-byte pre-auth input: PROTOCOL_41|SECURE_CONNECTION, max packet 0,
    charset 33, 23 zero bytes, then a user name `x` with no NUL terminator."""
    return struct.pack("<IIB", CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION, 0, 33) + b"\x00" * 23 + b"x"


@dataclass
class Reply:
    """What one connection received: packets (seq, payload), and how it ended."""

    packets: list[tuple[int, bytes]] = field(default_factory=list)
    closed: bool = False  # the server closed the connection (EOF or reset)
    timed_out: bool = False  # nothing (more) arrived within the wait
    send_failed: bool = False  # the server stopped reading before we finished sending


class RawClient:
    """One TCP connection to the proxy with exact control over what is written."""

    def __init__(self, host: str, port: int, timeout: float = 2.0, source: str | None = None) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()
        self.handshake: Handshake | None = None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ----------------------------------------------------------------
    def send(self, data: bytes, pause: float = 0.0) -> bool:
        """Write bytes as their own TCP segment(s); False if the server is gone."""
        if pause:
            time.sleep(pause)
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
            return False

    # -- reading ----------------------------------------------------------------
    def _fill(self, n: int, deadline: float) -> bool:
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self._buf += chunk
        return True

    def read_packet(self, timeout: float) -> tuple[int, bytes] | None:
        """(seq, payload) of the next packet; None on EOF; socket.timeout if none arrives."""
        deadline = time.monotonic() + timeout
        try:
            if not self._fill(4, deadline):
                return None
            length = int.from_bytes(self._buf[:3], "little")
            seq = self._buf[3]
            if not self._fill(4 + length, deadline):
                return None
        except ConnectionResetError:
            return None
        payload = bytes(self._buf[4:4 + length])
        del self._buf[:4 + length]
        return seq, payload

    def collect(self, reply: Reply, timeout: float, max_packets: int = 64) -> Reply:
        """Read packets into `reply` until EOF, a quiet `timeout`, or `max_packets`."""
        for _ in range(max_packets):
            try:
                pkt = self.read_packet(timeout)
            except (socket.timeout, TimeoutError):
                reply.timed_out = True
                return reply
            except OSError:
                reply.closed = True
                return reply
            if pkt is None:
                reply.closed = True
                return reply
            reply.packets.append(pkt)
            if _ends_reply(pkt[1]):
                return reply
        return reply

    def read_handshake(self, timeout: float) -> Handshake:
        pkt = self.read_packet(timeout)
        if pkt is None:
            raise ConnectionError("proxy closed the connection before its handshake")
        if pkt[1][:1] == b"\xff":
            raise ConnectionError(f"proxy refused the connection: {pkt[1][:200]!r}")
        self.handshake = parse_handshake(pkt[1])
        return self.handshake

    def login(self, user: str, password: str, database: str | None = None, timeout: float = 2.0,
              caps: int = DEFAULT_CAPS) -> None:
        """A proper mysql_native_password login; raises unless the server says OK."""
        hs = self.handshake or self.read_handshake(timeout)
        resp = handshake_response(user.encode(), scramble_native(password, hs.nonce), caps=caps,
                                  database=database.encode() if database else None)
        self.send(packet(resp, 1))
        pkt = self.read_packet(timeout)
        if pkt is None or pkt[1][:1] != b"\x00":
            raise ConnectionError(f"login as {user} failed: {pkt!r}")


def _ends_reply(payload: bytes) -> bool:
    """True for a packet after which a well-behaved server waits for the client:
    OK, ERR, or an EOF/OK-with-0xFE that is short (not a row that starts with 0xFE)."""
    if not payload:
        return False
    first = payload[0]
    if first == 0xFF:
        return True
    if first == 0x00 and len(payload) < 0xFFFFFF:
        return True  # OK (a text row starting with 0x00 is a 0-length string column; rare and harmless)
    if first == 0xFE and len(payload) < 0xFFFFFF:
        return True  # EOF / OK-as-EOF / auth switch: the next move is the client's
    return False


def is_answer(payload: bytes) -> bool:
    """An OK packet (0x00) or the column-count packet of a result set.

    ERR (0xFF) and auth-switch (0xFE) are not answers.  A column count is a
    length-encoded integer, so a packet of exactly that length; an
    auth-more-data packet (0x01 + data: caching_sha2_password's fast-auth or
    full-auth status, an RSA key) also starts with 0x01 but is longer, and is
    part of authentication, not an answer."""
    if not payload:
        return False
    first = payload[0]
    if first == 0x00:
        return True
    if first <= 0xFA:
        return len(payload) == 1
    return (first, len(payload)) in ((0xFC, 3), (0xFD, 4))
