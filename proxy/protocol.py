"""MySQL protocol encodings shared by the client edge and the backend side.

Pure functions over bytes: length-encoded integers and strings, OK / EOF /
ERR packets, and the few fields the proxy reads out of server packets.  Both
sides relay packets raw wherever they can; these helpers are for the packets
the proxy itself builds or must look into.
"""

from __future__ import annotations

import hashlib

MAX_PAYLOAD = 0xFFFFFF

# Server status flags (OK / EOF packets).
SERVER_STATUS_IN_TRANS = 0x0001
SERVER_STATUS_AUTOCOMMIT = 0x0002
SERVER_MORE_RESULTS_EXISTS = 0x0008
SERVER_STATUS_CURSOR_EXISTS = 0x0040
SERVER_STATUS_LAST_ROW_SENT = 0x0080
SERVER_STATUS_NO_BACKSLASH_ESCAPES = 0x0200

# Capability flags the backend side uses.
CLIENT_LONG_PASSWORD = 0x1
CLIENT_FOUND_ROWS = 0x2
CLIENT_LONG_FLAG = 0x4
CLIENT_CONNECT_WITH_DB = 0x8
CLIENT_LOCAL_FILES = 0x80
CLIENT_PROTOCOL_41 = 0x200
CLIENT_TRANSACTIONS = 0x2000
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_MULTI_STATEMENTS = 0x10000
CLIENT_MULTI_RESULTS = 0x20000
CLIENT_PS_MULTI_RESULTS = 0x40000
CLIENT_PLUGIN_AUTH = 0x80000
CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 0x200000

# Command bytes.
COM_QUIT = 0x01
COM_INIT_DB = 0x02
COM_QUERY = 0x03
COM_FIELD_LIST = 0x04
COM_STATISTICS = 0x09
COM_PING = 0x0E
COM_STMT_PREPARE = 0x16
COM_STMT_EXECUTE = 0x17
COM_STMT_SEND_LONG_DATA = 0x18
COM_STMT_CLOSE = 0x19
COM_STMT_RESET = 0x1A
COM_STMT_FETCH = 0x1C
COM_RESET_CONNECTION = 0x1F


def lenenc_int(n: int) -> bytes:
    if n < 251:
        return bytes((n,))
    if n < 1 << 16:
        return b"\xfc" + n.to_bytes(2, "little")
    if n < 1 << 24:
        return b"\xfd" + n.to_bytes(3, "little")
    return b"\xfe" + n.to_bytes(8, "little")


def lenenc_str(data: bytes) -> bytes:
    return lenenc_int(len(data)) + data


def read_lenenc_int(data: bytes | memoryview, pos: int) -> tuple[int | None, int]:
    """(value, new position); value None for the NULL marker 0xFB."""
    first = data[pos]
    if first < 0xFB:
        return first, pos + 1
    if first == 0xFB:
        return None, pos + 1
    if first == 0xFC:
        return data[pos + 1] | data[pos + 2] << 8, pos + 3
    if first == 0xFD:
        return data[pos + 1] | data[pos + 2] << 8 | data[pos + 3] << 16, pos + 4
    if first == 0xFE:
        return int.from_bytes(data[pos + 1:pos + 9], "little"), pos + 9
    raise ValueError("0xFF is not a length-encoded integer")


def make_ok(*, affected_rows: int, insert_id: int, status: int, warnings: int, info: bytes = b"", eof: bool = False) -> bytes:
    return b"".join(
        (
            b"\xfe" if eof else b"\x00",
            lenenc_int(affected_rows),
            lenenc_int(insert_id),
            status.to_bytes(2, "little"),
            warnings.to_bytes(2, "little"),
            info,
        )
    )


def make_eof(*, status: int, warnings: int) -> bytes:
    return b"\xfe" + warnings.to_bytes(2, "little") + status.to_bytes(2, "little")


def make_error(errno: int, sqlstate: str, message: str) -> bytes:
    return b"\xff" + errno.to_bytes(2, "little") + b"#" + sqlstate.encode("ascii")[:5].ljust(5, b"0") + message.encode("utf-8", "replace")


def is_eof(payload: bytes) -> bool:
    """An EOF packet (0xFE, shorter than 9 bytes: a row can start with 0xFE only
    as an 8-byte length, so it is at least 9 bytes long)."""
    return len(payload) < 9 and payload[:1] == b"\xfe"


def eof_fields(payload: bytes) -> tuple[int, int]:
    """(warnings, status) of an EOF packet."""
    if len(payload) >= 5:
        return payload[1] | payload[2] << 8, payload[3] | payload[4] << 8
    return 0, 0


def parse_error(payload: bytes) -> tuple[int, str, str]:
    """(errno, sqlstate, message) of an ERR packet."""
    errno = payload[1] | payload[2] << 8
    if payload[3:4] == b"#":
        return errno, payload[4:9].decode("ascii", "replace"), payload[9:].decode("utf-8", "replace")
    return errno, "HY000", payload[3:].decode("utf-8", "replace")


def parse_ok(payload: bytes) -> tuple[int, int, int, int, bytes]:
    """(affected_rows, insert_id, status, warnings, info) of an OK packet."""
    affected, pos = read_lenenc_int(payload, 1)
    insert_id, pos = read_lenenc_int(payload, pos)
    status = payload[pos] | payload[pos + 1] << 8
    warnings = payload[pos + 2] | payload[pos + 3] << 8
    return affected or 0, insert_id or 0, status, warnings, payload[pos + 4:]


def native_password_scramble(password: str, nonce: bytes) -> bytes:
    """mysql_native_password: SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password)))."""
    if not password:
        return b""
    stage1 = hashlib.sha1(password.encode()).digest()
    stage2 = hashlib.sha1(stage1).digest()
    mix = hashlib.sha1(nonce[:20] + stage2).digest()
    return bytes(a ^ b for a, b in zip(stage1, mix))


def text_row(payload: bytes) -> list[bytes | None]:
    """The values of one text-protocol row (NULL as None)."""
    out: list[bytes | None] = []
    pos = 0
    while pos < len(payload):
        n, pos = read_lenenc_int(payload, pos)
        if n is None:
            out.append(None)
        else:
            out.append(payload[pos:pos + n])
            pos += n
    return out
