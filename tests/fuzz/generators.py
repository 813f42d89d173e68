"""Seeded generators of protocol fuzz inputs, grouped in families.

Every family draws from its own `random.Random` seeded from (run seed, family
name), so a case is reproducible from the seed and its family/index alone, and
turning one family off does not change the inputs of the others.  `stream()`
interleaves the families round-robin (a family may yield several cases per
round) so that even a short budget touches every family; the first round
starts with the fixed corpus of inputs known to have broken the proxy.

A `Case` is data, not code: the chunks it writes (each with the pause before
it, so a header can be split across TCP segments), the phase it runs in
(`pre`: straight after the server handshake, never authenticated; `post`:
after a proper login), and what a correct proxy must do (`expect`).
"""

from __future__ import annotations

import random
import struct
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterator

from . import mysqlproto as mp
from .sqlgen import SqlGen

Chunk = tuple[bytes, float]  # (bytes to write, seconds to sleep before writing them)

# Expectations a correct proxy must meet for a case.
EXPECT_NONE = "none"  # anything but a hang/crash/unauthenticated answer is fine
EXPECT_ANSWER = "answer"  # a valid input: the proxy must answer it (OK / result set)
EXPECT_BOUNDED = "bounded"  # oversized: the proxy must not swallow it all (RSS bound)


@dataclass
class Case:
    family: str
    phase: str  # "pre" | "post" | "sql" | "idle"
    chunks: list[Chunk] = field(default_factory=list)
    expect: str = EXPECT_NONE
    wait: float = 0.0  # extra quiet time to wait for a reply (0 = the runner's default)
    note: str = ""
    # Built when the handshake nonce is known (inputs that must log in validly).
    build: Callable[[bytes], list[Chunk]] | None = None
    # For huge inputs: total size and a generator of chunks, so 64 MiB are never held twice.
    stream: Callable[[], Iterator[bytes]] | None = None
    stream_size: int = 0
    index: int = 0  # position in the run, set by the runner

    def data(self) -> bytes:
        return b"".join(c for c, _ in self.chunks)

    def describe(self, limit: int = 160) -> dict:
        """The reproducer: family, note, and the exact bytes written (hex, capped)."""
        data = self.data()
        out = {"index": self.index, "family": self.family, "phase": self.phase, "note": self.note,
               "bytes": len(data) or self.stream_size, "hex": data[:limit].hex()}
        if len(self.chunks) > 1:
            out["writes"] = [{"pause": p, "hex": c[:limit].hex()} for c, p in self.chunks]
        return out


def _rng(seed: int, family: str) -> random.Random:
    return random.Random(seed * 1_000_003 + zlib.crc32(family.encode()))


def _bytes(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def _mutate(rng: random.Random, data: bytes, rounds: int | None = None) -> bytes:
    """Byte-level mutations: flip, set to an edge value, insert, delete, drop NULs, truncate."""
    buf = bytearray(data)
    for _ in range(rounds if rounds is not None else rng.randint(1, 4)):
        op = rng.randrange(7)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[min(pos, len(buf) - 1)] = rng.choice((0x00, 0xFF, 0xFE, 0xFB, 0xFC, 0xFD, 0x7F, 0x80))
        elif op == 2:
            buf[pos:pos] = _bytes(rng, rng.randint(1, 8))
        elif op == 3 and buf:
            del buf[pos:pos + rng.randint(1, 8)]
        elif op == 4:
            buf = bytearray(b for b in buf if b != 0)  # every NUL terminator gone
        elif op == 5:
            del buf[pos:]
        else:
            buf[pos:pos] = b"\xff" * rng.randint(1, 4)
    return bytes(buf)


# -- pre-auth ---------------------------------------------------------------------
# No pre-auth input below can authenticate: the accounts have passwords and every
# scramble is made with a wrong password (or is random), so any OK or result set
# the proxy sends on these connections is an answer to an unauthenticated client.

WRONG_PASSWORD = "not-the-password"
USERS = (b"fuzz", b"root", b"nobody", b"", b"x" * 300, "ü\u202e".encode(), b"fu\xffzz")


def _wrong_response(rng: random.Random, user: bytes | None = None, caps: int | None = None) -> bytes:
    user = rng.choice(USERS) if user is None else user
    auth = rng.choice((mp.scramble_native(WRONG_PASSWORD, _bytes(rng, 20)), _bytes(rng, rng.randint(0, 40)), b""))
    return mp.handshake_response(
        user, auth, caps=mp.DEFAULT_CAPS if caps is None else caps, consistent=caps is None,
        database=rng.choice((None, b"fuzzdb", b"", b"no_such_db")),
        plugin=rng.choice((b"mysql_native_password", b"mysql_clear_password", b"caching_sha2_password", b"", b"x" * 100)),
    )


def fixed(seed: int) -> Iterator[Case]:
    """The inputs known to have broken the proxy, first, once each."""
    yield Case("pre.killer", "pre", [(mp.packet(mp.killer_handshake(), 1), 0.0)],
               note="33-byte handshake response: user name with no NUL terminator")
    resp = mp.handshake_response(b"fuzz", mp.scramble_native(WRONG_PASSWORD, b"\x01" * 20))
    yield Case("pre.wrong_password", "pre", [(mp.packet(resp, 1), 0.0)], note="well-formed, wrong password")
    yield Case("pre.wrong_password", "pre", [(mp.packet(mp.handshake_response(b"nobody", b""), 1), 0.0)],
               note="unknown user, empty password")
    yield Case("pre.silent", "idle", note="connections that never send anything, kept open")
    yield Case("post.field_list", "post", [(mp.packet(b"\x04fz", 0), 0.0)], note="COM_FIELD_LIST, table name with no NUL")
    yield Case("post.change_user", "post", [(mp.packet(b"\x11fuzz", 0), 0.0)], note="COM_CHANGE_USER, user name with no NUL")
    yield Case("post.split", "post", [(b"\x09\x00", 0.0), (b"\x00\x00\x03SELECT 1", 0.05)], expect=EXPECT_ANSWER,
               note="SELECT 1, header split after 2 bytes, 0.05s apart")


def pre_wrong_password(seed: int) -> Iterator[Case]:
    rng = _rng(seed, "pre.wrong_password")
    while True:
        yield Case("pre.wrong_password", "pre", [(mp.packet(_wrong_response(rng), 1), 0.0)], note="well-formed, not a valid login")


def pre_mutated(seed: int) -> Iterator[Case]:
    rng = _rng(seed, "pre.mutated")
    while True:
        data = _mutate(rng, _wrong_response(rng))
        yield Case("pre.mutated", "pre", [(mp.packet(data, 1), 0.0)], note="mutated handshake response")


def pre_truncated(seed: int) -> Iterator[Case]:
    """Handshake responses cut anywhere, including inside the 32-byte fixed part and
    inside the user name (no NUL), framed with the true (short) length."""
    rng = _rng(seed, "pre.truncated")
    while True:
        data = _wrong_response(rng)
        cut = rng.choice((rng.randrange(0, 33), rng.randrange(32, len(data) + 1)))
        yield Case("pre.truncated", "pre", [(mp.packet(data[:cut], 1), 0.0)], note=f"cut at {cut}/{len(data)}")


def pre_random(seed: int) -> Iterator[Case]:
    rng = _rng(seed, "pre.random")
    while True:
        n = rng.choice((0, 1, 4, 31, 32, 33, rng.randint(0, 600)))
        yield Case("pre.random", "pre", [(mp.packet(_bytes(rng, n), 1), 0.0)], note=f"{n} random bytes")


def pre_caps(seed: int) -> Iterator[Case]:
    """Odd capability flags, max packet sizes and charsets, including SSL requests the
    proxy did not offer and 4.0-style (no PROTOCOL_41) layouts."""
    rng = _rng(seed, "pre.caps")
    while True:
        caps = rng.choice((rng.getrandbits(32), 0, 0xFFFFFFFF, mp.CLIENT_SSL | mp.CLIENT_PROTOCOL_41,
                           mp.DEFAULT_CAPS ^ (1 << rng.randrange(32)), mp.CLIENT_PROTOCOL_41 | mp.CLIENT_SECURE_CONNECTION))
        resp = bytearray(_wrong_response(rng, caps=caps))
        struct.pack_into("<IB", resp, 4, rng.choice((0, 1, 0xFFFFFFFF, rng.getrandbits(32))),
                         rng.choice((0, 1, 8, 33, 45, 63, 255, rng.randrange(256))))
        if rng.random() < 0.3:
            resp = resp[:32]  # an SSLRequest-shaped packet
        yield Case("pre.caps", "pre", [(mp.packet(bytes(resp), 1), 0.0)], note=f"caps={caps:#x}")


def pre_lengths(seed: int) -> Iterator[Case]:
    """Length fields that lie: lenenc auth length up to 2^64-1, 1-byte lengths past the
    end, connect-attribute blocks claiming gigabytes."""
    rng = _rng(seed, "pre.lengths")
    while True:
        fixed = struct.pack("<IIB", mp.DEFAULT_CAPS | mp.CLIENT_CONNECT_ATTRS, 1 << 24, 33) + b"\x00" * 23 + b"fuzz\x00"
        kind = rng.randrange(3)
        if kind == 0:
            tail = rng.choice((b"\xfe" + b"\xff" * 8, b"\xfd\xff\xff\xff", b"\xfc\xff\xff", b"\xfb", b"\xff")) + _bytes(rng, rng.randint(0, 30))
        elif kind == 1:
            fixed = bytearray(fixed)
            struct.pack_into("<I", fixed, 0, mp.CLIENT_PROTOCOL_41 | mp.CLIENT_SECURE_CONNECTION)
            tail = bytes((rng.randint(21, 255),)) + _bytes(rng, 20)
        else:
            tail = b"\x00" + b"fuzzdb\x00mysql_native_password\x00" + rng.choice((b"\xfe" + b"\xff" * 8, b"\xfd\xff\xff\x7f", b"\x10\x05ab"))
        yield Case("pre.lengths", "pre", [(mp.packet(bytes(fixed) + tail, 1), 0.0)], note=f"lying length kind {kind}")


def pre_framing(seed: int) -> Iterator[Case]:
    """Bad sequence ids, headers claiming more than is sent, empty packets, and a
    wrong-password response whose 4-byte header arrives in two TCP segments."""
    rng = _rng(seed, "pre.framing")
    while True:
        resp = _wrong_response(rng)
        kind = rng.randrange(5)
        if kind == 0:
            seq = rng.choice((0, 2, 3, 255, rng.randrange(256)))
            yield Case("pre.framing", "pre", [(mp.packet(resp, seq), 0.0)], note=f"sequence id {seq}")
        elif kind == 1:
            claim = rng.choice((len(resp) + 1, len(resp) + 1000, 0xFFFFFF, 0xFFFFFE))
            yield Case("pre.framing", "pre", [(mp.header(claim, 1) + resp, 0.0)], note=f"header claims {claim}, {len(resp)} sent")
        elif kind == 2:
            yield Case("pre.framing", "pre", [(mp.header(0, 1), 0.0)], note="empty handshake response")
        elif kind == 3:
            pkt = mp.packet(resp, 1)
            cut = rng.randint(1, 3)
            yield Case("pre.framing", "pre", [(pkt[:cut], 0.0), (pkt[cut:], 0.05)], note=f"header split after {cut} bytes")
        else:
            yield Case("pre.framing", "pre", [(mp.header(len(resp), 1)[:rng.randint(1, 3)], 0.0)], note="partial header, then silence")


def pre_split_login(seed: int) -> Iterator[Case]:
    """A *valid* login whose header is split across TCP segments: it must succeed."""
    rng = _rng(seed, "pre.split_login")
    while True:
        cut = rng.randint(1, 3)
        pause = rng.choice((0.02, 0.05))

        def build(nonce: bytes, cut: int = cut, pause: float = pause) -> list[Chunk]:
            pkt = mp.packet(mp.handshake_response(b"fuzz", mp.scramble_native(FUZZ_PASSWORD, nonce), database=b"fuzzdb"), 1)
            return [(pkt[:cut], 0.0), (pkt[cut:], pause)]

        yield Case("pre.split_login", "pre", expect=EXPECT_ANSWER, build=build,
                   note=f"valid login, header split after {cut} bytes, {pause}s apart")


def _framed(total: int, parts: Iterator[bytes], seq: int) -> Iterator[bytes]:
    """Frame a payload of `total` bytes, given as an iterator of pieces, the MySQL way
    (0xFFFFFF-byte packets, then a shorter one), without ever joining it in memory."""
    buf = b""
    remaining = total
    while True:
        n = min(mp.MAX_PAYLOAD, remaining)
        yield mp.header(n, seq)
        seq = (seq + 1) & 0xFF
        need = n
        while need > 0:
            if not buf:
                buf = next(parts)
            piece, buf = buf[:need], buf[need:]
            need -= len(piece)
            yield piece
        remaining -= n
        if n < mp.MAX_PAYLOAD:
            return


def _fill(n: int, byte: bytes = b"A") -> Iterator[bytes]:
    while n > 0:
        step = min(n, 1 << 20)
        n -= step
        yield byte * step


def _stream_preauth(size: int) -> Callable[[], Iterator[bytes]]:
    """A well-formed handshake response whose user name is ~`size` bytes of 'A'."""
    head = struct.pack("<IIB", mp.DEFAULT_CAPS, 0xFFFFFFFF, 33) + b"\x00" * 23
    tail = b"\x00\x14" + b"\x5a" * 20 + b"fuzzdb\x00mysql_native_password\x00"

    def gen() -> Iterator[bytes]:
        def parts() -> Iterator[bytes]:
            yield head
            yield from _fill(size - len(head) - len(tail))
            yield tail
        return _framed(size, parts(), 1)
    return gen


def pre_oversized(seed: int, size_mb: int) -> Iterator[Case]:
    yield Case("pre.oversized", "pre", expect=EXPECT_BOUNDED, stream=_stream_preauth(size_mb << 20),
               stream_size=size_mb << 20, note=f"{size_mb} MiB handshake response in 16 MiB packets")


# -- post-auth ---------------------------------------------------------------------
FUZZ_USER = "fuzz"
FUZZ_PASSWORD = "fuzz-Pa55"


def post_commands(seed: int) -> Iterator[Case]:
    """Every command byte 0x00..0xFF, in a seeded order, each round with new random or
    truncated payloads; COM_QUERY gets random bytes (the SQL fuzzer does real SQL)."""
    rng = _rng(seed, "post.cmd")
    while True:
        order = list(range(256))
        rng.shuffle(order)
        for cmd in order:
            n = rng.choice((0, 0, 1, 2, 4, 9, rng.randint(0, 200)))
            payload = bytes((cmd,)) + _bytes(rng, n)
            yield Case("post.cmd", "post", [(mp.packet(payload, 0), 0.0)], note=f"command {cmd:#04x} + {n} random bytes")


def post_field_list(seed: int) -> Iterator[Case]:
    rng = _rng(seed, "post.field_list")
    while True:
        table = rng.choice((b"fz", b"canary", b"nope", b"", b"x" * rng.randint(1, 300), _bytes(rng, 8).replace(b"\x00", b"")))
        kind = rng.randrange(3)
        if kind == 0:
            payload = table  # no NUL: the table name never ends
        elif kind == 1:
            payload = table + b"\x00" + rng.choice((b"", b"%", b"a%", _bytes(rng, 5)))
        else:
            payload = _mutate(rng, table + b"\x00%")
        yield Case("post.field_list", "post", [(mp.packet(bytes((mp.COM_FIELD_LIST,)) + payload, 0), 0.0)],
                   note=("no NUL terminator" if kind == 0 else f"kind {kind}"))


def post_change_user(seed: int) -> Iterator[Case]:
    rng = _rng(seed, "post.change_user")
    while True:
        kind = rng.randrange(4)
        if kind == 0:
            payload = rng.choice((b"fuzz", b"nobody", b"x" * 50))  # user name without NUL
        elif kind == 1:
            payload = b"fuzz\x00" + bytes((rng.randint(0, 255),)) + _bytes(rng, rng.randint(0, 40))
        elif kind == 2:
            payload = (b"nobody\x00\x14" + mp.scramble_native(WRONG_PASSWORD, _bytes(rng, 20)) + b"fuzzdb\x00"
                       + struct.pack("<H", rng.randrange(1 << 16)) + b"mysql_native_password")  # plugin without NUL
        else:
            payload = _mutate(rng, b"fuzz\x00\x14" + _bytes(rng, 20) + b"fuzzdb\x00\x21\x00mysql_native_password\x00")
        yield Case("post.change_user", "post", [(mp.packet(bytes((mp.COM_CHANGE_USER,)) + payload, 0), 0.0)],
                   note=f"COM_CHANGE_USER kind {kind}")


def post_stmt(seed: int) -> Iterator[Case]:
    """Malformed COM_STMT_*: unknown statement ids, parameter blocks that lie, long data
    for statements that do not exist."""
    rng = _rng(seed, "post.stmt")
    cmds = (mp.COM_STMT_PREPARE, mp.COM_STMT_EXECUTE, mp.COM_STMT_SEND_LONG_DATA, mp.COM_STMT_CLOSE,
            mp.COM_STMT_RESET, mp.COM_STMT_FETCH)
    while True:
        cmd = rng.choice(cmds)
        stmt_id = rng.choice((0, 1, 2, 0xFFFFFFFF, rng.getrandbits(32)))
        if cmd == mp.COM_STMT_PREPARE:
            body = rng.choice((b"SELECT ?", b"", b"\xff\xfe", b"SELECT " + b"?," * 70000 + b"?"))
        elif cmd == mp.COM_STMT_EXECUTE:
            body = struct.pack("<IBI", stmt_id, rng.choice((0, 1, 2, 4, 0xFF)), 1) + _bytes(rng, rng.randint(0, 40))
        elif cmd == mp.COM_STMT_SEND_LONG_DATA:
            body = struct.pack("<IH", stmt_id, rng.randrange(1 << 16)) + _bytes(rng, rng.randint(0, 100))
        elif cmd == mp.COM_STMT_FETCH:
            body = struct.pack("<II", stmt_id, rng.choice((0, 1, 0xFFFFFFFF)))
        else:
            body = struct.pack("<I", stmt_id)
        body = body[:rng.randint(0, len(body))] if rng.random() < 0.3 else body
        yield Case("post.stmt", "post", [(mp.packet(bytes((cmd,)) + body, 0), 0.0)], note=f"COM_STMT {cmd:#04x}, {len(body)} bytes")


def post_framing(seed: int) -> Iterator[Case]:
    rng = _rng(seed, "post.framing")
    while True:
        sql = b"\x03SELECT 1"
        kind = rng.randrange(4)
        if kind == 0:
            seq = rng.choice((1, 2, 255, rng.randrange(1, 256)))
            yield Case("post.framing", "post", [(mp.packet(sql, seq), 0.0)], note=f"COM_QUERY with sequence id {seq}")
        elif kind == 1:
            claim = rng.choice((len(sql) + 1, 4096, 0xFFFFFF))
            yield Case("post.framing", "post", [(mp.header(claim, 0) + sql, 0.0)], note=f"header claims {claim}, {len(sql)} sent")
        elif kind == 2:
            yield Case("post.framing", "post", [(mp.header(0, 0), 0.0)], note="empty command packet")
        else:
            yield Case("post.framing", "post", [(mp.header(len(sql), 0)[:rng.randint(1, 3)], 0.0)], note="partial header, then silence")


def post_split(seed: int) -> Iterator[Case]:
    """`SELECT 1` whose header (or payload) arrives in several TCP segments: must be answered."""
    rng = _rng(seed, "post.split")
    while True:
        pkt = mp.packet(b"\x03SELECT 1", 0)
        cut = rng.choice((1, 2, 3, 4, 6))
        pause = rng.choice((0.02, 0.05))
        yield Case("post.split", "post", [(pkt[:cut], 0.0), (pkt[cut:], pause)], expect=EXPECT_ANSWER,
                   note=f"SELECT 1 split after {cut} bytes, {pause}s apart")


def _stream_query(size: int) -> Callable[[], Iterator[bytes]]:
    """COM_QUERY `SELECT '<~size bytes of A>'`."""
    def gen() -> Iterator[bytes]:
        def parts() -> Iterator[bytes]:
            yield b"\x03SELECT '"
            yield from _fill(size - 10)
            yield b"'"
        return _framed(size, parts(), 0)
    return gen


def post_oversized(seed: int, size_mb: int) -> Iterator[Case]:
    yield Case("post.oversized", "post", expect=EXPECT_BOUNDED, stream=_stream_query(size_mb << 20),
               stream_size=size_mb << 20, note=f"{size_mb} MiB COM_QUERY in 16 MiB packets")


def sql_cases(seed: int) -> Iterator[Case]:
    gen = SqlGen(_rng(seed, "sql"))
    while True:
        sql, note = gen.next()
        yield Case("sql", "sql", [(mp.packets(b"\x03" + sql, 0), 0.0)], note=note)


def sql_huge_cases(seed: int) -> Iterator[Case]:
    gen = SqlGen(_rng(seed, "sql.huge"))
    while True:
        sql, note = gen.huge()
        yield Case("sql.huge", "sql", [(mp.packets(b"\x03" + sql, 0), 0.0)], note=note)


# -- the stream -----------------------------------------------------------------------
# family name -> (factory(seed, cfg), cases per round)
FAMILIES: dict[str, tuple[Callable[..., Iterator[Case]], int]] = {
    "fixed": (lambda seed, cfg: fixed(seed), 7),
    "pre.wrong_password": (lambda seed, cfg: pre_wrong_password(seed), 1),
    "pre.mutated": (lambda seed, cfg: pre_mutated(seed), 2),
    "pre.truncated": (lambda seed, cfg: pre_truncated(seed), 1),
    "pre.random": (lambda seed, cfg: pre_random(seed), 1),
    "pre.caps": (lambda seed, cfg: pre_caps(seed), 1),
    "pre.lengths": (lambda seed, cfg: pre_lengths(seed), 1),
    "pre.framing": (lambda seed, cfg: pre_framing(seed), 1),
    "pre.split_login": (lambda seed, cfg: pre_split_login(seed), 1),
    "pre.oversized": (lambda seed, cfg: pre_oversized(seed, cfg.oversized_mb), 1),
    "post.cmd": (lambda seed, cfg: post_commands(seed), 8),
    "post.field_list": (lambda seed, cfg: post_field_list(seed), 1),
    "post.change_user": (lambda seed, cfg: post_change_user(seed), 1),
    "post.stmt": (lambda seed, cfg: post_stmt(seed), 1),
    "post.framing": (lambda seed, cfg: post_framing(seed), 1),
    "post.split": (lambda seed, cfg: post_split(seed), 1),
    "post.oversized": (lambda seed, cfg: post_oversized(seed, cfg.oversized_mb), 1),
    "sql": (lambda seed, cfg: sql_cases(seed), 6),
    "sql.huge": (lambda seed, cfg: sql_huge_cases(seed), 1),
}


def stream(seed: int, families: list[str], cfg: object, exclude: frozenset[str] = frozenset()) -> Iterator[Case]:
    """Round-robin over the chosen families (in FAMILIES order), until all are exhausted.
    A case whose own family is in `exclude` (the fixed corpus mixes families) is skipped."""
    live = [(name, FAMILIES[name][0](seed, cfg), FAMILIES[name][1]) for name in FAMILIES if name in families]
    while live:
        for entry in list(live):
            name, gen, per_round = entry
            for _ in range(per_round):
                case = next(gen, None)
                if case is None:
                    live.remove(entry)
                    break
                if case.family not in exclude:
                    yield case
