"""A raw MySQL-protocol client for tests that must send what no driver sends.

Just enough of the protocol: read the server's handshake, build a
HandshakeResponse41 (or any bytes), frame packets with chosen sequence ids,
and read packets back with a deadline.  Drivers cannot send a truncated
handshake, a command after a failed login, or a header split over two TCP
segments; this can.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import time

PROTOCOL_41 = 0x200
SECURE_CONNECTION = 0x8000
PLUGIN_AUTH = 0x80000
CONNECT_WITH_DB = 0x8
DEPRECATE_EOF = 0x1000000
BASIC_CAPS = PROTOCOL_41 | SECURE_CONNECTION | PLUGIN_AUTH | DEPRECATE_EOF


def scramble_native(password: str, nonce: bytes) -> bytes:
    if not password:
        return b""
    stage1 = hashlib.sha1(password.encode()).digest()
    mask = hashlib.sha1(nonce + hashlib.sha1(stage1).digest()).digest()
    return bytes(a ^ b for a, b in zip(stage1, mask))


def frame(payload: bytes, seq: int) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes((seq,)) + payload


class Closed(Exception):
    """The server closed the connection."""


class RawClient:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.nonce = b""
        self.handshake = b""

    def close(self) -> None:
        self.sock.close()

    def _recv_exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise Closed()
            out += chunk
        return out

    def read_packet(self) -> tuple[int, bytes]:
        header = self._recv_exact(4)
        length = header[0] | header[1] << 8 | header[2] << 16
        return header[3], self._recv_exact(length)

    def send(self, payload: bytes, seq: int) -> None:
        self.sock.sendall(frame(payload, seq))

    def read_handshake(self) -> bytes:
        _, data = self.read_packet()
        assert data[0] == 10, data[:20]
        self.handshake = data
        version_end = data.index(b"\0", 1)
        pos = version_end + 1 + 4
        part1 = data[pos:pos + 8]
        pos += 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10
        part2 = data[pos:pos + 12]
        self.nonce = part1 + part2
        return data

    def status_flags(self) -> int:
        version_end = self.handshake.index(b"\0", 1)
        pos = version_end + 1 + 4 + 8 + 1 + 2 + 1
        return struct.unpack("<H", self.handshake[pos:pos + 2])[0]

    def login_packet(self, user: str, password: str, database: str | None = None, extra_caps: int = 0) -> bytes:
        caps = BASIC_CAPS | (CONNECT_WITH_DB if database else 0) | extra_caps
        auth = scramble_native(password, self.nonce)
        body = struct.pack("<IIB", caps, 1 << 24, 45) + bytes(23)
        body += user.encode() + b"\0" + bytes((len(auth),)) + auth
        if database:
            body += database.encode() + b"\0"
        body += b"mysql_native_password\0"
        return body

    def login(self, user: str, password: str, database: str | None = None) -> bytes:
        """Handshake and login; returns the server's answer packet (OK or ERR)."""
        self.read_handshake()
        self.send(self.login_packet(user, password, database), 1)
        return self.read_packet()[1]

    def command(self, payload: bytes) -> bytes:
        """Send one command (sequence 0) and return the first answer packet."""
        self.send(payload, 0)
        return self.read_packet()[1]

    def query(self, sql: str) -> bytes:
        return self.command(b"\x03" + sql.encode())

    def is_closed(self, wait: float = 3.0) -> bool:
        """True when the server closed the connection within `wait` seconds (any
        bytes still in flight are read and discarded)."""
        deadline = time.monotonic() + wait
        self.sock.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionError:
                return True
            if not chunk:
                return True
        return False


def error_code(packet: bytes) -> int | None:
    """The errno of an ERR packet, None for anything else."""
    if packet[:1] == b"\xff":
        return struct.unpack("<H", packet[1:3])[0]
    return None
