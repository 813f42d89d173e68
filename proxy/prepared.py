"""Server-side prepared statements: the state the proxy keeps per statement and
the binary-protocol codecs it needs.  Pure: no I/O here.

Two ways a prepared statement runs (chosen at COM_STMT_PREPARE by the plan):

* RELAY -- a read routed to one region (SELECT, SHOW...).  It is prepared on
  that region's backend connection on first use, and every COM_STMT_EXECUTE
  is forwarded with the backend's statement id; the binary rows come back
  raw.  The route is planned again at each execute, so a placement change
  moves it (and it is prepared again where it lands).
* TEXT -- everything else: writes (which must reach every in-sync copy with
  the same pinned NOW()/RAND()/AUTO_INCREMENT as text writes), SET, BEGIN,
  DDL...  The parameters are decoded and written into the SQL as literals,
  and the statement runs through the session's text path.  A text result
  with rows is converted to binary rows (`text_row_to_binary`).

Error handling: a malformed COM_STMT_EXECUTE (parameters missing, types never
bound, a value running past the packet) is MariaDB's 1210 and the session
goes on; nothing has been sent to a backend at that point.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from enum import Enum

from minisql.errors import SqlError

from .protocol import lenenc_str, read_lenenc_int

ER_WRONG_ARGUMENTS = 1210
ER_UNKNOWN_STMT_HANDLER = 1243
ER_MAX_PREPARED_STMT_COUNT_REACHED = 1461
MAX_STATEMENTS_PER_SESSION = 16382  # MariaDB's max_prepared_stmt_count default

CURSOR_TYPE_READ_ONLY = 1

# Column / parameter types (MYSQL_TYPE_*).
T_DECIMAL, T_TINY, T_SHORT, T_LONG, T_FLOAT, T_DOUBLE, T_NULL, T_TIMESTAMP = 0, 1, 2, 3, 4, 5, 6, 7
T_LONGLONG, T_INT24, T_DATE, T_TIME, T_DATETIME, T_YEAR = 8, 9, 10, 11, 12, 13
T_NEWDATE, T_VARCHAR, T_BIT, T_TIMESTAMP2, T_DATETIME2, T_TIME2 = 14, 15, 16, 17, 18, 19
T_JSON, T_NEWDECIMAL, T_ENUM, T_SET = 0xF5, 0xF6, 0xF7, 0xF8
T_TINY_BLOB, T_MEDIUM_BLOB, T_LONG_BLOB, T_BLOB, T_VAR_STRING, T_STRING, T_GEOMETRY = 0xF9, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF
_INT_SIZES = {T_TINY: 1, T_SHORT: 2, T_YEAR: 2, T_INT24: 4, T_LONG: 4, T_LONGLONG: 8}
_BLOB_TYPES = frozenset({T_TINY_BLOB, T_MEDIUM_BLOB, T_LONG_BLOB, T_BLOB, T_GEOMETRY, T_BIT})
BINARY_CHARSET = 63
UNSIGNED_FLAG = 0x20


class Route(Enum):
    RELAY = "relay"
    TEXT = "text"


@dataclass(eq=False, slots=True)
class PreparedStatement:
    """One client statement id; hashable by identity (backend connections map
    it to their own statement id)."""

    stmt_id: int
    sql: str
    route: Route
    param_count: int
    params: list[bytes]  # raw parameter definitions, as the client is told
    columns: list[bytes]  # raw column definitions
    types: bytes = b""  # 2 bytes per parameter, from the last execute that bound them
    long_data: dict[int, bytearray] = field(default_factory=dict)
    cursor: object = None  # the backend connection with this statement's open cursor
    plan: tuple[object, str | None, object] | None = None  # (snapshot, database, primitive) of the last execute


@dataclass(frozen=True, slots=True)
class ExecuteRequest:
    """A parsed COM_STMT_EXECUTE (the statement id already looked up)."""

    flags: int
    null_bitmap: bytes
    types: bytes
    values: bytes  # the raw values of the non-NULL parameters without long data


def parse_execute(stmt: PreparedStatement, data: bytes) -> ExecuteRequest:
    """The parameter block of COM_STMT_EXECUTE (after the 4-byte id)."""
    if len(data) < 9:
        raise _wrong("mysqld_stmt_execute")
    flags = data[4]
    n = stmt.param_count
    if n == 0:
        return ExecuteRequest(flags, b"", b"", b"")
    pos = 9
    bitmap_len = (n + 7) // 8
    if len(data) < pos + bitmap_len + 1:
        raise _wrong("mysqld_stmt_execute")
    null_bitmap = data[pos:pos + bitmap_len]
    pos += bitmap_len
    bound = data[pos]
    pos += 1
    if bound:
        if len(data) < pos + 2 * n:
            raise _wrong("mysqld_stmt_execute")
        types = data[pos:pos + 2 * n]
        pos += 2 * n
        stmt.types = types
    elif stmt.types:
        types = stmt.types
    else:
        raise _wrong("mysqld_stmt_execute")
    return ExecuteRequest(flags, null_bitmap, types, data[pos:])


def _wrong(where: str) -> SqlError:
    return SqlError(ER_WRONG_ARGUMENTS, f"Incorrect arguments to {where}", "HY000")


def backend_execute_payload(backend_id: int, stmt: PreparedStatement, req: ExecuteRequest) -> bytes:
    """The COM_STMT_EXECUTE body for a backend: its statement id, types always
    bound (the backend statement may be new), the client's values as sent."""
    head = backend_id.to_bytes(4, "little") + bytes((req.flags,)) + b"\x01\x00\x00\x00"
    if not stmt.param_count:
        return head
    return b"".join((head, req.null_bitmap, b"\x01", req.types, req.values))


# -- parameters as SQL literals (the TEXT route) ------------------------------------------
def param_literals(stmt: PreparedStatement, req: ExecuteRequest, codec: str, no_backslash_escapes: bool) -> list[str]:
    """Each parameter as a MariaDB literal, in order."""
    out: list[str] = []
    data = req.values
    pos = 0
    try:
        for i in range(stmt.param_count):
            if req.null_bitmap[i >> 3] & (1 << (i & 7)):
                out.append("NULL")
                continue
            ptype, pflags = req.types[2 * i], req.types[2 * i + 1]
            if i in stmt.long_data:
                out.append(_string_literal(bytes(stmt.long_data[i]), ptype, codec, no_backslash_escapes))
                continue
            literal, pos = _decode_param(data, pos, ptype, bool(pflags & 0x80), codec, no_backslash_escapes)
            out.append(literal)
    except (IndexError, ValueError, struct.error):
        raise _wrong("mysqld_stmt_execute") from None
    if pos > len(data):
        raise _wrong("mysqld_stmt_execute")
    return out


def _decode_param(data: bytes, pos: int, ptype: int, unsigned: bool, codec: str, nbe: bool) -> tuple[str, int]:
    size = _INT_SIZES.get(ptype)
    if size is not None:
        raw = data[pos:pos + size]
        if len(raw) != size:
            raise ValueError("short integer")
        return str(int.from_bytes(raw, "little", signed=not unsigned)), pos + size
    if ptype == T_DOUBLE:
        return _float_literal(struct.unpack_from("<d", data, pos)[0]), pos + 8
    if ptype == T_FLOAT:
        return _float_literal(struct.unpack_from("<f", data, pos)[0]), pos + 4
    if ptype == T_NULL:
        return "NULL", pos
    if ptype in (T_DATE, T_DATETIME, T_TIMESTAMP, T_NEWDATE):
        n = data[pos]
        b = data[pos + 1:pos + 1 + n]
        if len(b) != n:
            raise ValueError("short date")
        year, month, day = (int.from_bytes(b[0:2], "little"), b[2], b[3]) if n >= 4 else (0, 0, 0)
        text = f"{year:04d}-{month:02d}-{day:02d}"
        if ptype != T_DATE or n > 4:
            hour, minute, second = (b[4], b[5], b[6]) if n >= 7 else (0, 0, 0)
            text += f" {hour:02d}:{minute:02d}:{second:02d}"
            if n >= 11:
                text += f".{int.from_bytes(b[7:11], 'little'):06d}"
        return f"'{text}'", pos + 1 + n
    if ptype == T_TIME:
        n = data[pos]
        b = data[pos + 1:pos + 1 + n]
        if len(b) != n:
            raise ValueError("short time")
        if n == 0:
            return "'00:00:00'", pos + 1
        negative, days = b[0], int.from_bytes(b[1:5], "little")
        hours = days * 24 + b[5]
        text = f"{'-' if negative else ''}{hours:02d}:{b[6]:02d}:{b[7]:02d}"
        if n >= 12:
            text += f".{int.from_bytes(b[8:12], 'little'):06d}"
        return f"'{text}'", pos + 1 + n
    length, pos = read_lenenc_int(data, pos)
    if length is None or pos + length > len(data):
        raise ValueError("bad length")
    raw = data[pos:pos + length]
    if ptype in (T_DECIMAL, T_NEWDECIMAL) and re.fullmatch(rb"[-+]?[0-9]*\.?[0-9]*(?:[eE][-+]?[0-9]+)?", raw) and raw:
        return raw.decode("ascii"), pos + length
    return _string_literal(raw, ptype, codec, nbe), pos + length


def _float_literal(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        return "NULL"  # MariaDB has no literal for them and stores NULL for NaN too
    text = repr(value)
    return text if "e" in text or "." in text else text + ".0"


_ESCAPES = {"\0": "\\0", "'": "\\'", '"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\x1a": "\\Z"}
_NEEDS_ESCAPE = re.compile("[\0'\"\\\\\n\r\x1a]")


def _string_literal(raw: bytes, ptype: int, codec: str, no_backslash_escapes: bool) -> str:
    """A string parameter as a literal in the client's character set; blobs and
    bytes the charset cannot carry as a hex literal (exact bytes, no charset)."""
    if ptype in _BLOB_TYPES:
        return "X'" + raw.hex() + "'" if raw else "''"
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError:
        return "X'" + raw.hex() + "'"
    if no_backslash_escapes:
        return "'" + text.replace("'", "''") + "'"
    return "'" + _NEEDS_ESCAPE.sub(lambda m: _ESCAPES[m.group()], text) + "'"


# Quoted strings, identifiers and comments (each terminator optional, so an
# unterminated one is one token and the scan stays linear), or a `?`.
_PLACEHOLDER_SCAN = re.compile(
    r"""'[^'\\]*(?:(?:\\.|'')[^'\\]*)*'?|"[^"\\]*(?:(?:\\.|"")[^"\\]*)*"?|`[^`]*`?"""
    r"""|/\*[^*]*\*+(?:[^/*][^*]*\*+)*/|/\*.*|--[ \t][^\n]*|#[^\n]*|\?|[^'"`/#?-]+|.""",
    re.S,
)


def placeholder_positions(sql: str) -> list[int]:
    """Offsets of the `?` placeholders outside strings, identifiers and comments."""
    return [m.start() for m in _PLACEHOLDER_SCAN.finditer(sql) if m.group() == "?"]


def interpolate(sql: str, literals: list[str], what: str = "mysqld_stmt_execute") -> str:
    """Each `?` placeholder of `sql` replaced by the next literal (1210 naming
    `what` when the counts differ): COM_STMT_EXECUTE and EXECUTE ... USING."""
    positions = placeholder_positions(sql)
    if len(positions) != len(literals):
        raise _wrong(what)
    parts, last = [], 0
    for pos, literal in zip(positions, literals):
        parts.append(sql[last:pos])
        parts.append(literal)
        last = pos + 1
    parts.append(sql[last:])
    return "".join(parts)


# -- the prepare answer ---------------------------------------------------------------------
def prepare_ok(stmt: PreparedStatement, warnings: int = 0) -> bytes:
    return b"".join((
        b"\x00", stmt.stmt_id.to_bytes(4, "little"), len(stmt.columns).to_bytes(2, "little"),
        stmt.param_count.to_bytes(2, "little"), b"\x00", warnings.to_bytes(2, "little"),
    ))


def param_definition(charset: int = BINARY_CHARSET) -> bytes:
    """The definition MariaDB sends for a `?` it cannot type: VAR_STRING '?'."""
    return b"".join((
        lenenc_str(b"def"), b"\x00", b"\x00", b"\x00", lenenc_str(b"?"), b"\x00", b"\x0c",
        charset.to_bytes(2, "little"), (0).to_bytes(4, "little"), bytes((T_VAR_STRING,)), b"\x80\x00", b"\x00", b"\x00\x00",
    ))


# -- text rows to binary rows -----------------------------------------------------------------
def column_type(definition: bytes) -> tuple[int, bool]:
    """(type, unsigned) of a raw ColumnDefinition41."""
    pos = 0
    for _ in range(6):  # catalog, schema, table, org_table, name, org_name
        length, pos = read_lenenc_int(definition, pos)
        pos += length or 0
    _, pos = read_lenenc_int(definition, pos)  # length of the fixed fields (0x0c)
    ctype = definition[pos + 6]
    flags = definition[pos + 7] | definition[pos + 8] << 8
    return ctype, bool(flags & UNSIGNED_FLAG)


def text_row_to_binary(row: bytes, types: list[tuple[int, bool]]) -> bytes:
    """A text-protocol row re-encoded as a binary-protocol row."""
    n = len(types)
    bitmap = bytearray((n + 7 + 2) // 8)
    values: list[bytes] = []
    pos = 0
    for i, (ctype, unsigned) in enumerate(types):
        length, pos = read_lenenc_int(row, pos)
        if length is None:
            bit = i + 2
            bitmap[bit >> 3] |= 1 << (bit & 7)
            continue
        raw = row[pos:pos + length]
        pos += length
        values.append(_binary_value(raw, ctype, unsigned))
    return b"\x00" + bytes(bitmap) + b"".join(values)


def _binary_value(raw: bytes, ctype: int, unsigned: bool) -> bytes:
    size = _INT_SIZES.get(ctype)
    if size is not None:
        return int(raw).to_bytes(size, "little", signed=not unsigned)
    if ctype == T_DOUBLE:
        return struct.pack("<d", float(raw))
    if ctype == T_FLOAT:
        return struct.pack("<f", float(raw))
    if ctype in (T_DATE, T_DATETIME, T_TIMESTAMP, T_NEWDATE):
        return _binary_datetime(raw.decode("ascii"))
    if ctype == T_TIME:
        return _binary_time(raw.decode("ascii"))
    return lenenc_str(raw)


def _binary_datetime(text: str) -> bytes:
    date, _, clock = text.partition(" ")
    y, m, d = (int(x) for x in date.split("-"))
    body = y.to_bytes(2, "little") + bytes((m, d))
    if clock:
        hms, _, frac = clock.partition(".")
        hh, mm, ss = (int(x) for x in hms.split(":"))
        body += bytes((hh, mm, ss))
        if frac:
            body += int(frac.ljust(6, "0")[:6]).to_bytes(4, "little")
    return bytes((len(body),)) + body


def _binary_time(text: str) -> bytes:
    negative = text.startswith("-")
    hms, _, frac = text.lstrip("-").partition(".")
    hh, mm, ss = (int(x) for x in hms.split(":"))
    body = bytes((1 if negative else 0,)) + (hh // 24).to_bytes(4, "little") + bytes((hh % 24, mm, ss))
    if frac:
        body += int(frac.ljust(6, "0")[:6]).to_bytes(4, "little")
    return bytes((len(body),)) + body

