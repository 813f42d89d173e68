"""The binary-protocol codecs of server-side prepared statements (proxy/prepared.py)."""

from __future__ import annotations

import struct

import pytest

from minisql.errors import SqlError
from proxy.prepared import (
    PreparedStatement,
    Route,
    backend_execute_payload,
    column_type,
    interpolate,
    param_definition,
    param_literals,
    parse_execute,
    placeholder_positions,
    text_row_to_binary,
)
from proxy.protocol import lenenc_str


def _stmt(n: int, sql: str = "") -> PreparedStatement:
    return PreparedStatement(7, sql or ", ".join("?" * n), Route.TEXT, n, [param_definition()] * n, [])


def _execute(types: list[tuple[int, int]], values: bytes, nulls: int = 0, bound: bool = True, flags: int = 0) -> bytes:
    n = len(types)
    bitmap = nulls.to_bytes((n + 7) // 8, "little") if n else b""
    body = (7).to_bytes(4, "little") + bytes((flags,)) + b"\x01\x00\x00\x00"
    if n:
        body += bitmap + (b"\x01" + b"".join(bytes(t) for t in types) if bound else b"\x00")
    return body + values


def _literals(types, values, nulls=0, codec="utf8", nbe=False):
    stmt = _stmt(len(types))
    req = parse_execute(stmt, _execute(types, values, nulls))
    return param_literals(stmt, req, codec, nbe)


def test_integers_signed_and_unsigned():
    values = b"\xff" + struct.pack("<h", -2) + struct.pack("<i", -3) + struct.pack("<q", -4) + b"\xff" * 8
    types = [(1, 0), (2, 0), (3, 0), (8, 0), (8, 0x80)]
    assert _literals(types, values) == ["-1", "-2", "-3", "-4", "18446744073709551615"]


def test_floats_and_decimals():
    values = struct.pack("<d", 1.5) + struct.pack("<f", 2.0) + lenenc_str(b"-12.340") + struct.pack("<d", 1e300)
    assert _literals([(5, 0), (4, 0), (0xF6, 0), (5, 0)], values) == ["1.5", "2.0", "-12.340", "1e+300"]


def test_a_decimal_that_is_not_a_number_is_quoted():
    assert _literals([(0xF6, 0)], lenenc_str(b"1; DROP TABLE t")) == ["'1; DROP TABLE t'"]


def test_dates_times_and_nulls():
    dt = bytes((11,)) + (2024).to_bytes(2, "little") + bytes((1, 2, 3, 4, 5)) + (123456).to_bytes(4, "little")
    date = bytes((4,)) + (2020).to_bytes(2, "little") + bytes((2, 29))
    zero = b"\x00"
    time_neg = bytes((8, 1)) + (1).to_bytes(4, "little") + bytes((5, 55, 0))
    types = [(12, 0), (10, 0), (12, 0), (11, 0), (3, 0)]
    out = _literals(types, dt + date + zero + time_neg, nulls=0b10000)
    assert out == ["'2024-01-02 03:04:05.123456'", "'2020-02-29'", "'0000-00-00 00:00:00'", "'-29:55:00'", "NULL"]


def test_strings_are_escaped_and_blobs_are_hex():
    hostile = "o'ne\\il\"\n\0".encode()
    assert _literals([(0xFD, 0)], lenenc_str(hostile)) == ["'o\\'ne\\\\il\\\"\\n\\0'"]
    assert _literals([(0xFD, 0)], lenenc_str(b"it's"), nbe=True) == ["'it''s'"]
    assert _literals([(0xFC, 0)], lenenc_str(b"\x00\xff'")) == ["X'00ff27'"]
    # Bytes the client's charset cannot carry go as exact bytes.
    assert _literals([(0xFD, 0)], lenenc_str(b"\xff\xfe")) == ["X'fffe'"]
    assert _literals([(0xFD, 0)], lenenc_str("é".encode("latin1")), codec="latin1") == ["'é'"]


def test_long_data_replaces_the_value():
    stmt = _stmt(2)
    stmt.long_data[0] = bytearray(b"chunk1chunk2")
    req = parse_execute(stmt, _execute([(0xFC, 0), (3, 0)], struct.pack("<i", 5)))
    assert param_literals(stmt, req, "utf8", False) == ["X'6368756e6b316368756e6b32'", "5"]


def test_types_are_remembered_between_executes():
    stmt = _stmt(1)
    parse_execute(stmt, _execute([(3, 0)], struct.pack("<i", 1)))
    req = parse_execute(stmt, _execute([(3, 0)], struct.pack("<i", 9), bound=False))
    assert param_literals(stmt, req, "utf8", False) == ["9"]


@pytest.mark.parametrize("payload", [
    b"\x07\x00\x00\x00",  # no flags / iteration count
    _execute([(3, 0)], b"", bound=False),  # types never bound
    _execute([(3, 0)], b"\x01\x00"),  # value runs past the packet
    _execute([(0xFD, 0)], b"\x05ab"),  # string shorter than its length
])
def test_malformed_executes_are_1210(payload):
    stmt = _stmt(1)
    with pytest.raises(SqlError) as info:
        req = parse_execute(stmt, payload)
        param_literals(stmt, req, "utf8", False)
    assert info.value.errno == 1210


def test_backend_payload_always_binds_types():
    stmt = _stmt(1)
    parse_execute(stmt, _execute([(3, 0)], struct.pack("<i", 1)))
    req = parse_execute(stmt, _execute([(3, 0)], struct.pack("<i", 2), bound=False, flags=1))
    payload = backend_execute_payload(99, stmt, req)
    assert payload == (99).to_bytes(4, "little") + b"\x01" + b"\x01\x00\x00\x00" + b"\x00" + b"\x01" + b"\x03\x00" + struct.pack("<i", 2)


def test_placeholders_outside_strings_identifiers_and_comments():
    sql = "SELECT '?', \"?\", `?`, ? /* ? */, ? -- ?\n, ? # ?\n, 'it''s ?', '\\'?', ?"
    positions = placeholder_positions(sql)
    assert [sql[p] for p in positions] == ["?"] * 4
    assert interpolate(sql, ["1", "2", "3", "4"]).startswith("SELECT '?', \"?\", `?`, 1 /* ? */, 2 -- ?\n, 3 # ?")
    with pytest.raises(SqlError):
        interpolate("SELECT ?", [])


def test_placeholder_scan_is_linear_on_hostile_text():
    # Unterminated quotes and comments: each is one token, not a rescan.
    for sql in ("'" * 200_000, "/*" * 100_000, "\"a" * 100_000, "?" * 100_000):
        placeholder_positions(sql)


def _column(ctype: int, flags: int = 0) -> bytes:
    return b"".join((lenenc_str(b"def"), lenenc_str(b"db"), lenenc_str(b"t"), lenenc_str(b"t"), lenenc_str(b"c"),
                     lenenc_str(b"c"), b"\x0c", (63).to_bytes(2, "little"), (11).to_bytes(4, "little"), bytes((ctype,)),
                     flags.to_bytes(2, "little"), b"\x00", b"\x00\x00"))


def test_text_rows_become_binary_rows():
    types = [column_type(_column(3)), column_type(_column(8, 0x20)), column_type(_column(0xFD)),
             column_type(_column(12)), column_type(_column(11)), column_type(_column(5))]
    assert types[1] == (8, True)
    row = b"".join((lenenc_str(b"-5"), lenenc_str(b"18446744073709551615"), b"\xfb", lenenc_str(b"2024-01-02 03:04:05.5"),
                    lenenc_str(b"-30:00:01"), lenenc_str(b"0.25")))
    binary = text_row_to_binary(row, types)
    assert binary[0] == 0
    assert binary[1:2] == bytes((0b10000,))  # 6 columns + offset 2 = one byte; the third is NULL
    body = binary[2:]
    assert body[:4] == struct.pack("<i", -5)
    assert body[4:12] == b"\xff" * 8
    assert body[12:24] == bytes((11,)) + (2024).to_bytes(2, "little") + bytes((1, 2, 3, 4, 5)) + (500000).to_bytes(4, "little")
    assert body[24:33] == bytes((8, 1)) + (1).to_bytes(4, "little") + bytes((6, 0, 1))
    assert body[33:] == struct.pack("<d", 0.25)
