"""Server-side prepared statements through the proxy (COM_STMT_*), against a real
3-region cluster: mysql-connector-python's prepared cursor in its default mode
(autocommit off), and the raw protocol for what drivers rarely send (cursors,
long data, reset, malformed packets)."""

from __future__ import annotations

import datetime
import decimal
import hashlib
import io
import struct

import mysql.connector
import pytest

from .cluster import fresh_database, running_cluster
from .rawclient import RawClient, error_code


@pytest.fixture(scope="module")
def cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory):
    yield from running_cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory, "ps", users={"root": ""})


@pytest.fixture()
def db(cluster):
    return fresh_database(cluster, "p")


def _connector(cluster, db):
    # Defaults as an application gets them: autocommit off.
    return mysql.connector.connect(host="127.0.0.1", port=cluster.proxy_port, user="root", password="", database=db)


def test_every_parameter_type_round_trips_and_writes_reach_both_copies(cluster, db):
    conn = _connector(cluster, db)
    cur = conn.cursor()
    cur.execute(
        "CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(50), price DECIMAL(10,2), ts DATETIME(6), d DATE,"
        " f DOUBLE, b BLOB, u BIGINT UNSIGNED, tm TIME(6), small TINYINT, made DATETIME(6))"
    )
    ps = conn.cursor(prepared=True)
    values = ("o'neil \\ \"x\"\n", decimal.Decimal("-12.34"), datetime.datetime(2024, 1, 2, 3, 4, 5, 123456),
              datetime.date(2020, 2, 29), 1.5e-7, b"\x00\xff'\\", 18446744073709551615,
              datetime.timedelta(hours=-30, minutes=5, microseconds=7), -128)
    ps.execute("INSERT INTO t (name, price, ts, d, f, b, u, tm, small, made) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NOW(6))", values)
    assert ps.lastrowid == 1 and ps.rowcount == 1
    ps.execute("INSERT INTO t (name, price, ts, d, f, b, u, tm, small, made) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NOW(6))",
               (None,) * 9)
    assert ps.lastrowid == 2
    conn.commit()

    ps.execute("SELECT name, price, ts, d, f, b, u, tm, small FROM t WHERE id = ?", (1,))
    row = ps.fetchall()[0]
    assert tuple(row[:5]) == values[:5]
    assert bytes(row[5]) == values[5]
    assert tuple(row[6:]) == values[6:]
    ps.execute("SELECT COUNT(*) FROM t WHERE name = ? AND b = ?", (values[0], values[5]))
    assert ps.fetchall() == [(1,)]
    ps.execute("SELECT * FROM t WHERE id = ?", (2,))
    row = ps.fetchall()[0]
    assert row[1:10] == (None,) * 9 and row[10] is not None
    conn.close()

    copies = cluster.rows_on_regions(db, "t", "id")
    assert len(copies) == 2
    first, second = copies.values()
    assert first == second  # NOW(6) pinned to the primary's value on the replica too
    assert first[0][10] is not None


def test_prepared_writes_follow_the_transaction(cluster, db):
    conn = _connector(cluster, db)
    cur = conn.cursor()
    cur.execute("CREATE TABLE acct (id INT PRIMARY KEY, balance INT)")
    conn.commit()
    ps = conn.cursor(prepared=True)
    ps.execute("INSERT INTO acct VALUES (?, ?)", (1, 100))
    ps.execute("UPDATE acct SET balance = balance - ? WHERE id = ?", (30, 1))
    ps.execute("SELECT balance FROM acct WHERE id = ?", (1,))
    assert ps.fetchall() == [(70,)]  # the transaction sees its own writes
    conn.rollback()
    assert all(rows == [] for rows in cluster.rows_on_regions(db, "acct").values())
    ps.execute("INSERT INTO acct VALUES (?, ?)", (2, 5))
    conn.commit()
    copies = cluster.rows_on_regions(db, "acct")
    assert len(copies) == 2 and all(rows == [(2, 5)] for rows in copies.values())

    with pytest.raises(mysql.connector.errors.IntegrityError) as info:
        ps.execute("INSERT INTO acct VALUES (?, ?)", (2, 6))
    assert info.value.errno == 1062 and info.value.sqlstate == "23000"
    with pytest.raises(mysql.connector.errors.ProgrammingError) as info:
        ps.execute("SELECT * FROM missing WHERE id = ?", (1,))
    assert info.value.errno == 1146
    ps.execute("SELECT COUNT(*) FROM acct WHERE id > ?", (0,))
    assert ps.fetchall() == [(1,)]
    conn.close()


def test_long_data_parameters(cluster, db):
    conn = _connector(cluster, db)
    conn.cursor().execute("CREATE TABLE docs (id INT PRIMARY KEY, body LONGBLOB)")
    ps = conn.cursor(prepared=True)
    body = bytes(range(256)) * 4096  # 1 MiB, sent with COM_STMT_SEND_LONG_DATA
    ps.execute("INSERT INTO docs VALUES (?, ?)", (1, io.BytesIO(body)))
    conn.commit()
    ps.execute("SELECT LENGTH(body), MD5(body) FROM docs WHERE id = ?", (1,))
    assert ps.fetchall() == [(len(body), hashlib.md5(body).hexdigest())]
    copies = cluster.rows_on_regions(db, "docs")
    assert len(copies) == 2 and all(rows == [(1, body)] for rows in copies.values())
    conn.close()


# -- the raw protocol --------------------------------------------------------------------
def _prepare(raw: RawClient, sql: str) -> tuple[int, int, int]:
    raw.send(b"\x16" + sql.encode(), 0)
    first = raw.read_packet()[1]
    assert first[0] == 0, first
    stmt_id, columns, params = struct.unpack("<IHH", first[1:9])
    for _ in range(columns + params):  # DEPRECATE_EOF: no EOF packets
        raw.read_packet()
    return stmt_id, columns, params


def _execute(stmt_id: int, flags: int = 0, params: bytes = b"") -> bytes:
    return b"\x17" + struct.pack("<IBI", stmt_id, flags, 1) + params


def _read_until_end(raw: RawClient) -> tuple[list[bytes], bytes]:
    packets = []
    while True:
        packet = raw.read_packet()[1]
        if packet[:1] == b"\xff" or (packet[:1] == b"\xfe" and len(packet) < 9):
            return packets, packet
        packets.append(packet)


def _status(end: bytes) -> int:
    # OK packet with 0xFE header: affected rows, insert id (1 byte each here), status.
    return struct.unpack("<H", end[3:5])[0]


def test_cursor_fetch_reset_close_and_bad_packets(cluster, db):
    conn = cluster.connect(database=db)
    conn.cursor().execute("CREATE TABLE n (id INT PRIMARY KEY)")
    conn.cursor().execute("INSERT INTO n VALUES (1), (2), (3), (4), (5)")
    conn.close()

    raw = RawClient(cluster.proxy_port)
    raw.login("root", "", database=db)
    stmt_id, columns, params = _prepare(raw, "SELECT id FROM n WHERE id > ? ORDER BY id")
    assert (columns, params) == (1, 1)
    # Open a read-only cursor: metadata, then an end packet with CURSOR_EXISTS.
    raw.send(_execute(stmt_id, 1, b"\x00\x01\x03\x00" + struct.pack("<i", 1)), 0)
    head, end = _read_until_end(raw)
    assert len(head) == 2 and _status(end) & 0x40
    raw.send(b"\x1c" + struct.pack("<II", stmt_id, 2), 0)
    rows, end = _read_until_end(raw)
    assert [r[-4:] for r in rows] == [struct.pack("<i", 2), struct.pack("<i", 3)] and _status(end) & 0x40
    raw.send(b"\x1c" + struct.pack("<II", stmt_id, 10), 0)
    rows, end = _read_until_end(raw)
    assert len(rows) == 2 and _status(end) & 0x80  # LAST_ROW_SENT
    assert raw.command(b"\x1a" + struct.pack("<I", stmt_id))[0] == 0  # COM_STMT_RESET: OK

    # Long data for a parameter of a read, and types remembered between executes.
    long_id, _, _ = _prepare(raw, "SELECT CONCAT(?, '!')")
    raw.send(b"\x18" + struct.pack("<IH", long_id, 0) + b"hello ", 0)
    raw.send(b"\x18" + struct.pack("<IH", long_id, 0) + b"world", 0)
    raw.send(_execute(long_id, 0, b"\x00\x01\xfc\x00"), 0)
    rows, _ = _read_until_end(raw)
    assert rows[-1].endswith(b"hello world!")

    # A malformed execute is 1210; an unknown id is 1243; the connection goes on.
    assert error_code(raw.command(_execute(stmt_id, 0, b"\x00\x01\x03\x00\x01"))) == 1210
    raw.send(b"\x19" + struct.pack("<I", stmt_id), 0)  # COM_STMT_CLOSE: no answer
    assert error_code(raw.command(_execute(stmt_id))) == 1243
    assert error_code(raw.command(b"\x1c" + struct.pack("<II", 999, 1))) == 1243
    assert raw.query("SELECT 1")[0] == 1  # a result set: column count 1
    raw.close()
