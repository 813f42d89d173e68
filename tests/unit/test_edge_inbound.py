"""Pure tests of the bounded packet parsers and the login guard."""

from __future__ import annotations

import random
import struct
import time

import pytest
from mysql_mimic.charset import CharacterSet
from mysql_mimic.types import Capabilities

from proxy.auth import LoginGuard, verify_native
from proxy.inbound import (
    ER_HANDSHAKE_ERROR,
    HandshakeResponse,
    MalformedPacket,
    SslRequest,
    parse_change_user,
    parse_field_list,
    parse_handshake_response,
)
from proxy.wire import CAPABILITIES
from tests.integration.rawclient import BASIC_CAPS, scramble_native

C = Capabilities


def handshake(user: bytes = b"app", auth: bytes = b"", tail: bytes = b"mysql_native_password\0", caps: int = BASIC_CAPS) -> bytes:
    return struct.pack("<IIB", caps, 1 << 24, 45) + bytes(23) + user + b"\0" + bytes((len(auth),)) + auth + tail


def test_a_good_handshake_parses():
    r = parse_handshake_response(CAPABILITIES, handshake(auth=b"x" * 20))
    assert isinstance(r, HandshakeResponse)
    assert (r.username, r.auth_response, r.client_plugin, r.database) == ("app", b"x" * 20, "mysql_native_password", None)


def test_the_33_byte_killer_is_a_bad_handshake():
    data = struct.pack("<IIB", 0x200 | 0x8000, 0, 33) + bytes(23) + b"x"
    assert len(data) == 33
    with pytest.raises(MalformedPacket) as e:
        parse_handshake_response(CAPABILITIES, data)
    assert e.value.errno == ER_HANDSHAKE_ERROR


def test_empty_database_name_means_no_database():
    caps = BASIC_CAPS | int(C.CLIENT_CONNECT_WITH_DB)
    r = parse_handshake_response(CAPABILITIES, handshake(tail=b"\0mysql_native_password\0", caps=caps))
    assert isinstance(r, HandshakeResponse) and r.database is None


def test_ssl_request_only_when_both_sides_offer_ssl():
    data = struct.pack("<IIB", BASIC_CAPS | int(C.CLIENT_SSL), 0, 45) + bytes(23)
    with pytest.raises(MalformedPacket):
        parse_handshake_response(CAPABILITIES, data)
    assert isinstance(parse_handshake_response(CAPABILITIES | C.CLIENT_SSL, data), SslRequest)


def test_overlong_user_name_is_refused():
    with pytest.raises(MalformedPacket):
        parse_handshake_response(CAPABILITIES, handshake(user=b"u" * 5000))


def test_field_list_and_change_user_without_nul():
    assert parse_field_list(CharacterSet.utf8mb4, b"t").table == "t"
    with pytest.raises(MalformedPacket):
        parse_change_user(CAPABILITIES, CharacterSet.utf8mb4, b"root")
    change = parse_change_user(CAPABILITIES, CharacterSet.utf8mb4, b"root\0\x00db")
    assert (change.username, change.auth_response, change.database) == ("root", b"", "db")


@pytest.mark.parametrize("seed", range(5))
def test_random_and_mutated_packets_never_escape_or_hang(seed):
    """Seeded fuzzing of the three parsers: only MalformedPacket may come out, fast."""
    rng = random.Random(seed)
    base = [handshake(auth=b"a" * 20), handshake(caps=BASIC_CAPS | 0x100000 | 0x8, tail=b"db\0p\0\x05\x01a\x01b")]
    started = time.perf_counter()
    for _ in range(3000):
        if rng.random() < 0.5:
            data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 80)))
        else:
            data = bytearray(rng.choice(base))
            for _ in range(rng.randrange(1, 6)):
                op = rng.randrange(3)
                if op == 0 and data:
                    data[rng.randrange(len(data))] = rng.getrandbits(8)
                elif op == 1:
                    del data[rng.randrange(len(data) + 1):]
                else:
                    data[rng.randrange(len(data) + 1):0] = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 9)))
            data = bytes(data)
        for parse in (
            lambda d: parse_handshake_response(CAPABILITIES, d),
            lambda d: parse_change_user(CAPABILITIES, CharacterSet.utf8mb4, d),
            lambda d: parse_field_list(CharacterSet.utf8mb4, d),
        ):
            try:
                parse(data)
            except MalformedPacket:
                pass
    assert time.perf_counter() - started < 20


def test_verify_native():
    from minisql.config import native_password_hash

    nonce = b"n" * 20
    stored = native_password_hash("pw")
    assert verify_native(stored, scramble_native("pw", nonce), nonce)
    assert not verify_native(stored, scramble_native("other", nonce), nonce)
    assert not verify_native(stored, b"", nonce)
    assert verify_native("", b"", nonce)
    assert not verify_native("", b"x" * 20, nonce)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_login_guard_delays_then_blocks_then_forgets():
    clock = Clock()
    g = LoginGuard(free_failures=3, base_delay=0.1, max_delay=1.0, block_after=6, block_seconds=60, clock=clock)
    delays = []
    for _ in range(5):
        delays.append(g.delay("h", "u"))
        g.failed("h", "u")
    assert delays == [0, 0, 0, 0.1, 0.2]
    assert not g.blocked("h", "u")
    g.failed("h", "u")
    assert g.blocked("h", "u")
    assert not g.blocked("h", "other") and not g.blocked("h2", "u")
    clock.now += 61
    assert not g.blocked("h", "u")


def test_login_guard_success_resets_the_pair_and_memory_is_bounded():
    g = LoginGuard(free_failures=1, base_delay=0.1, max_entries=100, clock=Clock())
    g.failed("h", "u")
    g.failed("h", "u")
    assert g.delay("h", "u") > 0
    g.succeeded("h", "u")
    assert g.delay("h", "u") == 0
    for i in range(1000):
        g.failed(f"10.0.{i // 256}.{i % 256}", f"user{i}")
    assert len(g._records) <= 100


def test_a_recent_good_login_is_not_slowed_by_its_hosts_failures():
    clock = Clock()
    g = LoginGuard(free_failures=1, base_delay=0.1, host_factor=2, clock=clock)
    g.succeeded("h", "alice")
    for i in range(10):
        g.failed("h", f"spray{i}")
    assert g.delay("h", "mallory") > 0  # the host is slowed for everyone else ...
    assert g.delay("h", "alice") == 0  # ... but not for the user who logged in from it
    clock.now += 601
    assert g.delay("h", "alice") == 0 or g._get(("h", None)) is None
