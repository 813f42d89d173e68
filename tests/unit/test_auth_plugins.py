"""Pure tests of the authentication plugins: crypto, cache, and the login exchanges.

The exchanges run `proxy.login.authenticate` against a scripted client over a
fake stream, so every branch (switch, fast path, full authentication over TLS
and with RSA, refusals) is checked without sockets; tests/integration/
test_edge_tls.py checks the same with real drivers.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Callable

import pymysql._auth as pymysql_auth
import pytest
from mysql.connector.plugins.caching_sha2_password import MySQLCachingSHA2PasswordAuthPlugin

from minisql.config import native_password_hash
from proxy.auth import Account, LoginGuard
from proxy.login import LoginContext, LoginFailed, authenticate
from proxy.plugins import (
    RsaKeyPair,
    VerifierCache,
    account_plugin,
    ed25519_public_key,
    native_verifier,
    scramble_sha2,
    sha2_verifier,
    sign_ed25519,
    verify_clear,
    verify_ed25519,
    verify_sha2,
)
from tests.integration.rawclient import scramble_native

NONCE = bytes(range(1, 21))
RSA = RsaKeyPair.generate()


# -- crypto ----------------------------------------------------------------------
def test_sha2_scramble_matches_both_drivers_and_verifies():
    pw = b"s3cret \xc3\xa9"
    ours = scramble_sha2(pw, NONCE)
    assert ours == pymysql_auth.scramble_caching_sha2(pw, NONCE)
    connector = MySQLCachingSHA2PasswordAuthPlugin("u", pw.decode())._scramble(NONCE)
    assert ours == connector
    verifier = sha2_verifier(pw)
    assert verifier == hashlib.sha256(hashlib.sha256(pw).digest()).hexdigest()
    assert verify_sha2(verifier, ours, NONCE)


@pytest.mark.parametrize(
    "verifier, scramble",
    [
        (sha2_verifier(b"other"), scramble_sha2(b"pw", NONCE)),  # wrong password
        (sha2_verifier(b"pw"), scramble_sha2(b"pw", bytes(20))),  # another connection's nonce
        (sha2_verifier(b"pw"), scramble_sha2(b"pw", NONCE)[:31]),  # truncated
        ("", scramble_sha2(b"pw", NONCE)),  # no verifier
        ("zz" * 32, scramble_sha2(b"pw", NONCE)),  # not hex
        (sha2_verifier(b"pw"), b""),
    ],
)
def test_sha2_fast_path_refuses(verifier, scramble):
    assert not verify_sha2(verifier, scramble, NONCE)


def test_native_verifier_is_the_users_file_hash():
    assert native_verifier(b"pw") == native_password_hash("pw")
    assert native_verifier(b"") == ""


def test_rsa_round_trip_with_pymysqls_encryption():
    cipher = pymysql_auth.sha2_rsa_encrypt(b"pa55", NONCE, RSA.public_pem)
    assert len(cipher) == RSA.size_bytes == 256
    assert RSA.decrypt_password(cipher, NONCE) == b"pa55"
    assert RSA.decrypt_password(RSA.encrypt_password(b"", NONCE), NONCE) == b""


def test_rsa_refuses_garbage_short_and_other_nonce():
    cipher = RSA.encrypt_password(b"pa55", NONCE)
    assert RSA.decrypt_password(cipher[:-1], NONCE) is None
    assert RSA.decrypt_password(b"pa55\0", NONCE) is None  # a clear password is not a ciphertext
    assert RSA.decrypt_password(os.urandom(256), NONCE) is None
    assert RSA.decrypt_password(cipher, bytes(20)) != b"pa55"


def test_rsa_key_loads_from_pem(tmp_path):
    path = tmp_path / "k.pem"
    path.write_bytes(RSA.private_pem())
    loaded = RsaKeyPair.load(path)
    assert loaded.public_pem == RSA.public_pem
    path.write_bytes(b"not a key")
    with pytest.raises(ValueError):
        RsaKeyPair.load(path)


def test_ed25519_matches_rfc8032_and_mariadb():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    # MariaDB's key derivation is RFC 8032's with SHA512(password) in place of SHA512(seed).
    seed = os.urandom(32)
    key = Ed25519PrivateKey.from_private_bytes(seed)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    import base64

    assert ed25519_public_key(seed) == base64.b64encode(raw).decode().rstrip("=")
    assert sign_ed25519(seed, b"m" * 32) == key.sign(b"m" * 32)
    # MariaDB's documented example: SELECT ED25519_PASSWORD("secret")
    assert ed25519_public_key(b"secret") == "ZIgUREUg5PVgQ6LskhXmO+eZLS0nC8be6HPjYWR4YJY"
    challenge = os.urandom(32)
    assert verify_ed25519(ed25519_public_key(b"pw"), sign_ed25519(b"pw", challenge), challenge)
    assert not verify_ed25519(ed25519_public_key(b"pw"), sign_ed25519(b"wrong", challenge), challenge)
    assert not verify_ed25519(ed25519_public_key(b"pw"), sign_ed25519(b"pw", challenge), os.urandom(32))
    assert not verify_ed25519("!!", b"x" * 64, challenge)


def test_verify_clear_and_plugins():
    native = Account("a", "%", native_password_hash("pw"))
    sha2_only = Account("b", "%", "", sha2_hash=sha2_verifier(b"pw"))
    empty = Account("c", "%", "")
    assert verify_clear(native, b"pw") and not verify_clear(native, b"px") and not verify_clear(native, b"")
    assert verify_clear(sha2_only, b"pw") and not verify_clear(sha2_only, b"")
    assert verify_clear(empty, b"") and not verify_clear(empty, b"x")
    assert account_plugin(native) == "mysql_native_password"
    assert account_plugin(sha2_only) == "caching_sha2_password"
    assert account_plugin(Account("d", "%", native.native_hash, plugin="caching_sha2_password")) == "caching_sha2_password"
    assert account_plugin(Account("e", "%", "", plugin="ed25519", ed25519_key="k")) == "client_ed25519"


def test_cache_forgets_a_changed_password_and_is_bounded():
    cache = VerifierCache(max_entries=2)
    old = Account("a", "%", native_password_hash("old"))
    cache.put(old, b"old")
    assert cache.get(old) == sha2_verifier(b"old")
    new = Account("a", "%", native_password_hash("new"))
    assert cache.get(new) == ""  # the old password's verifier never serves the new account
    stored = Account("s", "%", "", sha2_hash=sha2_verifier(b"x"))
    assert cache.get(stored) == stored.sha2_hash
    for i in range(5):
        cache.put(Account(f"u{i}", "%", native_password_hash("p")), b"p")
    assert len(cache) == 2


# -- the exchanges, with a scripted client ---------------------------------------
class FakeStream:
    """BoundedStream's interface; `client(packet) -> reply` answers what the server writes."""

    def __init__(self, client: Callable[[bytes], bytes | None]) -> None:
        self.client = client
        self.sent: list[bytes] = []
        self._pending: list[bytes] = []

    async def write(self, data: bytes, drain: bool = True) -> None:
        self.sent.append(data)
        reply = self.client(data)
        if reply is not None:
            self._pending.append(reply)

    async def read(self) -> bytes:
        assert self._pending, f"server waits for a reply the client does not send; sent {self.sent!r}"
        return self._pending.pop(0)


class Accounts:
    def __init__(self, *accounts: Account) -> None:
        self.by_user = {a.user: a for a in accounts}

    def lookup(self, user: str, client_host: str) -> Account | None:
        return self.by_user.get(user)


APP = Account("app", "%", native_password_hash("pw"))
SHA2 = Account("sha", "%", native_password_hash("pw"), plugin="caching_sha2_password")
SHA2_STORED = Account("stored", "%", "", sha2_hash=sha2_verifier(b"pw"))
TLS_ONLY = Account("tlsonly", "%", native_password_hash("pw"), require_ssl=True)
ED = Account("ed", "%", "", plugin="ed25519", ed25519_key=ed25519_public_key(b"pw"))
EMPTY = Account("root", "%", "")


def login(user: str, first: bytes, plugin: str, client: Callable[[bytes], bytes | None], *, secure: bool = False,
          cache: VerifierCache | None = None) -> tuple[Account | None, FakeStream]:
    stream = FakeStream(client)
    ctx = LoginContext(
        stream=stream, capabilities=0, server_version="x", connection_id=1, status_flags=2,  # type: ignore[arg-type]
        server_charset=None, accounts=Accounts(APP, SHA2, SHA2_STORED, TLS_ONLY, ED, EMPTY),  # type: ignore[arg-type]
        guard=LoginGuard(), client_host="127.0.0.1", secure=secure, rsa=RSA, verifiers=cache if cache is not None else VerifierCache(),
    )

    async def run() -> Account | None:
        try:
            return await authenticate(ctx, user, first, plugin, NONCE)
        except LoginFailed:
            return None

    return asyncio.run(run()), stream


def mysql8_client(password: bytes, *, secure: bool, rsa: bool = True) -> Callable[[bytes], bytes | None]:
    """A caching_sha2_password client like PyMySQL: switches, fast path, full auth."""

    def answer(packet: bytes) -> bytes | None:
        if packet.startswith(b"\xfecaching_sha2_password\0"):
            nonce = packet.split(b"\0", 1)[1][:-1]
            return scramble_sha2(password, nonce)
        if packet.startswith(b"\xfemysql_native_password\0"):
            return scramble_native(password.decode(), NONCE)
        if packet == b"\x01\x04":
            if secure:
                return password + b"\0"
            return b"\x02" if rsa else password + b"\0"
        if packet.startswith(b"\x01-----BEGIN PUBLIC KEY"):
            return pymysql_auth.sha2_rsa_encrypt(password, NONCE, packet[1:])
        return None

    return answer


def test_native_login_unchanged():
    account, stream = login("app", scramble_native("pw", NONCE), "mysql_native_password", lambda p: None)
    assert account == APP and stream.sent == []
    account, stream = login("app", scramble_native("px", NONCE), "mysql_native_password", lambda p: None)
    assert account is None and stream.sent[-1][:3] == b"\xff\x15\x04"  # 1045


def test_sha2_data_for_a_native_account_switches_to_native_over_plain_tcp():
    account, stream = login("app", scramble_sha2(b"pw", NONCE), "caching_sha2_password", mysql8_client(b"pw", secure=False))
    assert account == APP
    assert stream.sent == [b"\xfemysql_native_password\0" + NONCE + b"\0"]


def test_sha2_over_tls_learns_the_verifier_then_takes_the_fast_path():
    cache = VerifierCache()
    account, stream = login("app", scramble_sha2(b"pw", NONCE), "caching_sha2_password", mysql8_client(b"pw", secure=True),
                            secure=True, cache=cache)
    assert account == APP and stream.sent == [b"\x01\x04"]
    account, stream = login("app", scramble_sha2(b"pw", NONCE), "caching_sha2_password", mysql8_client(b"pw", secure=False),
                            cache=cache)
    assert account == APP and stream.sent == [b"\x01\x03"]  # fast_auth_success, no clear password


def test_sha2_account_switches_a_native_client_and_does_rsa_without_tls():
    client = mysql8_client(b"pw", secure=False)
    account, stream = login("sha", scramble_native("pw", NONCE), "mysql_native_password", client)
    assert account == SHA2
    assert stream.sent[0] == b"\xfecaching_sha2_password\0" + NONCE + b"\0"
    assert stream.sent[1] == b"\x01\x04" and stream.sent[2] == b"\x01" + RSA.public_pem


def test_sha2_clear_password_over_plain_tcp_is_refused_with_a_reason():
    account, stream = login("sha", scramble_sha2(b"pw", NONCE), "caching_sha2_password", mysql8_client(b"pw", secure=False, rsa=False))
    assert account is None
    assert stream.sent[-1][:3] == b"\xff\x15\x04"
    assert b"needs TLS" in stream.sent[-1]


def test_sha2_wrong_password_is_refused_over_tls_and_rsa():
    for secure in (True, False):
        account, stream = login("sha", scramble_sha2(b"bad", NONCE), "caching_sha2_password", mysql8_client(b"bad", secure=secure),
                                secure=secure)
        assert account is None and stream.sent[-1][:3] == b"\xff\x15\x04"


def test_stored_sha2_verifier_fast_path_and_empty_password():
    account, stream = login("stored", scramble_sha2(b"pw", NONCE), "caching_sha2_password", lambda p: None)
    assert account == SHA2_STORED and stream.sent == [b"\x01\x03"]
    # a native client is switched: the account has no native hash to check
    account, stream = login("stored", scramble_native("pw", NONCE), "mysql_native_password", mysql8_client(b"pw", secure=False))
    assert account == SHA2_STORED
    account, _ = login("root", b"", "caching_sha2_password", lambda p: None)
    assert account == EMPTY
    account, _ = login("stored", b"", "caching_sha2_password", lambda p: None)
    assert account is None


def test_unknown_user_goes_through_full_auth_and_gets_1045():
    account, stream = login("nobody", scramble_sha2(b"pw", NONCE), "caching_sha2_password", mysql8_client(b"pw", secure=True),
                            secure=True)
    assert account is None and stream.sent[0] == b"\x01\x04" and stream.sent[-1][:3] == b"\xff\x15\x04"


def test_require_ssl():
    right = scramble_native("pw", NONCE)
    account, stream = login("tlsonly", right, "mysql_native_password", lambda p: None)
    assert account is None and stream.sent[-1][:3] == b"\xff\x15\x04"
    account, _ = login("tlsonly", right, "mysql_native_password", lambda p: None, secure=True)
    assert account == TLS_ONLY


def test_ed25519_switch_and_signature():
    def mariadb_client(password: bytes) -> Callable[[bytes], bytes | None]:
        def answer(packet: bytes) -> bytes | None:
            if packet.startswith(b"\xfeclient_ed25519\0"):
                challenge = packet[len(b"\xfeclient_ed25519\0"):]
                assert len(challenge) == 32
                return sign_ed25519(password, challenge)
            return None

        return answer

    account, _ = login("ed", scramble_native("pw", NONCE), "mysql_native_password", mariadb_client(b"pw"))
    assert account == ED
    account, stream = login("ed", scramble_native("pw", NONCE), "mysql_native_password", mariadb_client(b"bad"))
    assert account is None and stream.sent[-1][:3] == b"\xff\x15\x04"
