"""A raw TLS MySQL client that sends its ClientHello in the same segment as the SSLRequest.

Drivers send the ClientHello right after the SSLRequest, so whether both
arrive in one read of the server is luck; this client makes it certain, which
is the case that lost bytes in mysql-mimic (`proxy/tls.py`).  The TLS layer is
an `ssl.SSLObject` over memory BIOs, driven by hand over a blocking socket.
"""

from __future__ import annotations

import socket
import ssl
import struct

from .rawclient import BASIC_CAPS, RawClient, frame, scramble_native

CLIENT_SSL = 0x800


def ssl_request(caps: int = BASIC_CAPS | CLIENT_SSL) -> bytes:
    return struct.pack("<IIB", caps, 1 << 24, 45) + bytes(23)


class TlsRaw:
    """TLS over an already-connected socket, ClientHello glued to `prefix`."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, prefix: bytes, server_hostname: str = "127.0.0.1") -> None:
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_hostname=server_hostname)
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        sock.sendall(prefix + self.outgoing.read())  # one send: SSLRequest + ClientHello
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pending = self.outgoing.read()
                if pending:
                    sock.sendall(pending)
                self._recv()
        pending = self.outgoing.read()
        if pending:
            sock.sendall(pending)
        self._plain = b""

    def _recv(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.incoming.write(data)

    def send(self, payload: bytes, seq: int) -> None:
        self.obj.write(frame(payload, seq))
        self.sock.sendall(self.outgoing.read())

    def _exact(self, n: int) -> bytes:
        while len(self._plain) < n:
            try:
                self._plain += self.obj.read(65536)
            except ssl.SSLWantReadError:
                self._recv()
        out, self._plain = self._plain[:n], self._plain[n:]
        return out

    def read_packet(self) -> tuple[int, bytes]:
        header = self._exact(4)
        length = header[0] | header[1] << 8 | header[2] << 16
        return header[3], self._exact(length)


def tls_login(port: int, context: ssl.SSLContext, user: str, password: str, timeout: float = 10.0) -> tuple[TlsRaw, bytes]:
    """Handshake, SSLRequest glued to the ClientHello, login over TLS; returns (conn, OK/ERR packet)."""
    raw = RawClient(port, timeout=timeout)
    raw.read_handshake()
    tls = TlsRaw(raw.sock, context, frame(ssl_request(), 1))
    body = struct.pack("<IIB", BASIC_CAPS | CLIENT_SSL, 1 << 24, 45) + bytes(23)
    auth = scramble_native(password, raw.nonce)
    body += user.encode() + b"\0" + bytes((len(auth),)) + auth + b"mysql_native_password\0"
    tls.send(body, 2)
    return tls, tls.read_packet()[1]
