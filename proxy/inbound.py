"""Bounded parsers for the packets a client sends before and around login.

Why our own: mysql-mimic's parsers read strings with `read_str_null`, which
loops forever on `read(1) == b""` when a string has no NUL terminator; one
33-byte handshake response (or a COM_FIELD_LIST / COM_CHANGE_USER without
NULs) spun the proxy's only event loop at 100% CPU.  Every read here is
bounded by the packet's own length and by a per-field limit, and anything
that does not fit raises `MalformedPacket`, which the edge answers with
MariaDB's error and a closed connection.

The parsers are pure (bytes in, dataclass out) so they are unit-tested and
fuzzed without sockets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mysql_mimic.charset import CharacterSet, Collation
from mysql_mimic.types import Capabilities

from minisql.errors import SqlError

ER_HANDSHAKE_ERROR = 1043
ER_MALFORMED_PACKET = 1835

# MariaDB's own limits: user names are at most 128 characters (USERNAME_CHAR_LENGTH),
# database names 64 (NAME_CHAR_LEN); connect attributes are capped at 64 KiB by MySQL.
MAX_USER_BYTES = 128 * 4
MAX_DB_BYTES = 64 * 4
MAX_PLUGIN_BYTES = 64
MAX_AUTH_RESPONSE = 4096
MAX_ATTRS_BYTES = 65536
MAX_ATTRS = 256


class MalformedPacket(SqlError):
    """A packet that does not parse; the connection is answered and closed."""

    def __init__(self, errno: int = ER_MALFORMED_PACKET, message: str = "Malformed communication packet") -> None:
        super().__init__(errno, message, "08S01")


class Cursor:
    """Reads fields from one packet's payload; never reads past its end."""

    __slots__ = ("data", "pos", "errno", "message")

    def __init__(self, data: bytes, *, errno: int = ER_MALFORMED_PACKET, message: str = "Malformed communication packet") -> None:
        self.data = data
        self.pos = 0
        self.errno = errno
        self.message = message

    def fail(self) -> MalformedPacket:
        return MalformedPacket(self.errno, self.message)

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def fixed(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail()
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.fixed(n), "little")

    def lenenc_int(self) -> int:
        first = self.uint(1)
        if first < 0xFB:
            return first
        if first == 0xFC:
            return self.uint(2)
        if first == 0xFD:
            return self.uint(3)
        if first == 0xFE:
            return self.uint(8)
        raise self.fail()  # 0xFB (NULL) and 0xFF are not lengths

    def lenenc_str(self, limit: int) -> bytes:
        n = self.lenenc_int()
        if n > limit:
            raise self.fail()
        return self.fixed(n)

    def null_str(self, limit: int, *, allow_eof: bool = False) -> bytes:
        """Bytes up to the next NUL (consumed).  With `allow_eof`, the end of the
        packet also ends the string (what MariaDB does for trailing fields)."""
        end = self.data.find(b"\0", self.pos, self.pos + limit + 1)
        if end < 0:
            if allow_eof and self.remaining <= limit:
                out = self.data[self.pos:]
                self.pos = len(self.data)
                return out
            raise self.fail()
        out = self.data[self.pos:end]
        self.pos = end + 1
        return out

    def rest(self) -> bytes:
        out = self.data[self.pos:]
        self.pos = len(self.data)
        return out


def _charset(collation_id: int, cursor: Cursor) -> CharacterSet:
    try:
        return Collation(collation_id).charset
    except ValueError:
        # MariaDB falls back to the server's default for an unknown collation.
        return CharacterSet.utf8mb4


def _decode(raw: bytes, charset: CharacterSet, cursor: Cursor) -> str:
    try:
        return charset.decode(raw)
    except (UnicodeDecodeError, LookupError):
        raise cursor.fail()


@dataclass
class SslRequest:
    capabilities: Capabilities
    client_charset: CharacterSet


@dataclass
class HandshakeResponse:
    capabilities: Capabilities  # what both sides support
    client_capabilities: Capabilities  # what the client announced
    max_packet_size: int
    client_charset: CharacterSet
    username: str
    auth_response: bytes
    database: str | None = None
    client_plugin: str | None = None
    connect_attrs: dict[str, str] = field(default_factory=dict)


def _connect_attrs(c: Cursor, charset: CharacterSet) -> dict[str, str]:
    total = c.lenenc_int()
    if total > MAX_ATTRS_BYTES or total > c.remaining:
        raise c.fail()
    sub = Cursor(c.fixed(total), errno=c.errno, message=c.message)
    attrs: dict[str, str] = {}
    while sub.remaining:
        if len(attrs) >= MAX_ATTRS:
            raise c.fail()
        key = sub.lenenc_str(MAX_ATTRS_BYTES)
        value = sub.lenenc_str(MAX_ATTRS_BYTES)
        attrs[_decode(key, charset, c)] = _decode(value, charset, c)
    return attrs


def _plugin_and_attrs(c: Cursor, caps: Capabilities, charset: CharacterSet) -> tuple[str | None, dict[str, str]]:
    """The optional tail of a handshake response or COM_CHANGE_USER."""
    plugin = None
    if Capabilities.CLIENT_PLUGIN_AUTH in caps and c.remaining:
        plugin = _decode(c.null_str(MAX_PLUGIN_BYTES, allow_eof=True), charset, c) or None
    attrs = _connect_attrs(c, charset) if Capabilities.CLIENT_CONNECT_ATTRS in caps and c.remaining else {}
    return plugin, attrs


def parse_handshake_response(server_capabilities: Capabilities, data: bytes) -> HandshakeResponse | SslRequest:
    """HandshakeResponse41 (or the 32-byte SSLRequest); 1043 "Bad handshake" otherwise."""
    c = Cursor(data, errno=ER_HANDSHAKE_ERROR, message="Bad handshake")
    client_caps = Capabilities(c.uint(4))
    if Capabilities.CLIENT_PROTOCOL_41 not in client_caps:
        raise c.fail()  # pre-4.1 clients: MariaDB refuses them too
    caps = server_capabilities & client_caps
    max_packet = c.uint(4)
    charset = _charset(c.uint(1), c)
    c.fixed(23)
    if not c.remaining:
        if Capabilities.CLIENT_SSL in caps:
            return SslRequest(caps, charset)
        raise c.fail()
    username = _decode(c.null_str(MAX_USER_BYTES), charset, c)
    if Capabilities.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA in caps:
        auth_response = c.lenenc_str(MAX_AUTH_RESPONSE)
    elif Capabilities.CLIENT_SECURE_CONNECTION in caps:
        auth_response = c.fixed(c.uint(1))
    else:
        auth_response = c.null_str(MAX_AUTH_RESPONSE, allow_eof=True)
    response = HandshakeResponse(caps, client_caps, max_packet, charset, username, auth_response)
    if Capabilities.CLIENT_CONNECT_WITH_DB in caps and c.remaining:
        # mysql-connector-python sends an empty name when no database is given.
        response.database = _decode(c.null_str(MAX_DB_BYTES, allow_eof=True), charset, c) or None
    response.client_plugin, response.connect_attrs = _plugin_and_attrs(c, caps, charset)
    return response


@dataclass
class ChangeUser:
    username: str
    auth_response: bytes
    database: str | None
    client_charset: CharacterSet | None = None
    client_plugin: str | None = None
    connect_attrs: dict[str, str] = field(default_factory=dict)


def parse_change_user(capabilities: Capabilities, charset: CharacterSet, data: bytes) -> ChangeUser:
    """COM_CHANGE_USER's payload (after the command byte)."""
    c = Cursor(data)
    username = _decode(c.null_str(MAX_USER_BYTES), charset, c)
    if Capabilities.CLIENT_SECURE_CONNECTION in capabilities:
        auth_response = c.fixed(c.uint(1))
    else:
        auth_response = c.null_str(MAX_AUTH_RESPONSE)
    database = _decode(c.null_str(MAX_DB_BYTES, allow_eof=True), charset, c) or None
    change = ChangeUser(username, auth_response, database)
    if c.remaining >= 2:
        change.client_charset = _charset(c.uint(2), c)
        charset = change.client_charset
    change.client_plugin, change.connect_attrs = _plugin_and_attrs(c, capabilities, charset)
    return change


@dataclass
class FieldList:
    table: str
    wildcard: str


def parse_field_list(charset: CharacterSet, data: bytes) -> FieldList:
    """COM_FIELD_LIST: table name (NUL-terminated, or to the end as MariaDB
    accepts), then an optional wildcard to the end of the packet."""
    c = Cursor(data)
    table = _decode(c.null_str(MAX_DB_BYTES, allow_eof=True), charset, c)
    if not table:
        raise c.fail()
    return FieldList(table, _decode(c.rest().rstrip(b"\0"), charset, c))
