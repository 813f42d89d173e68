"""TLS and authentication plugins at the client edge, against a real cluster.

Real clients (the `mariadb` CLI, PyMySQL, mysql-connector-python) and the raw
client check: TLS with a verified server certificate, REQUIRE SSL, many TLS
connects in a row (the ClientHello race of `proxy/tls.py`), caching_sha2_password
over TLS, over RSA and refused in clear, and that every failed login is a 1045
that ends the connection.
"""

from __future__ import annotations

import ssl
import struct
import subprocess
import time
import uuid

import mysql.connector
import pymysql
import pytest

from minisql.certs import ensure_local_tls
from proxy.plugins import RsaKeyPair, scramble_sha2, sha2_verifier

from .cluster import Cluster
from .rawclient import BASIC_CAPS, RawClient, error_code, scramble_native
from .tlsclient import tls_login

USERS = {"root": "", "app": "s3cret", "tlsonly": "tls-pw", "sha2only": "sha-pw", "changer": "ch-pw"}


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return ensure_local_tls(tmp_path_factory.mktemp("edge-tls") / "tls")


@pytest.fixture(scope="module")
def cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory, tls_files):
    c = Cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory.mktemp("edgetls"), f"/edgetls-{uuid.uuid4().hex[:8]}")
    try:
        c.start(
            users=USERS,
            user_options={
                "tlsonly": {"require_ssl": True},
                # only a caching_sha2 verifier: the account's plugin is caching_sha2_password
                "sha2only": {"native_password_hash": "", "sha2_password_hash": sha2_verifier(b"sha-pw")},
            },
            proxy_args=[*tls_files.proxy_args(), "--ssl-ca", str(tls_files.ca), "--login-block-after", "0"],
        )
        wait_until_accounts_reach_the_regions(c)
        yield c
    finally:
        c.stop()


def wait_until_accounts_reach_the_regions(c: Cluster, timeout: float = 30.0) -> None:
    """Statements run on the regions as the client's account; right after start a
    region may not have it yet (its agent syncs it from ZooKeeper)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = c.connect(user="app", password="s3cret", ssl_disabled=True, connect_timeout=5)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                return
            finally:
                conn.close()
        except pymysql.err.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def tls_connect(cluster, tls_files, **kwargs):
    return cluster.connect(ssl={"ca": str(tls_files.ca), "check_hostname": True}, connect_timeout=5, **kwargs)


def plain_connect(cluster, **kwargs):
    """PyMySQL 1.2 uses TLS whenever the server offers it, unless told not to."""
    return cluster.connect(ssl_disabled=True, connect_timeout=5, **kwargs)


def is_tls(conn) -> bool:
    return isinstance(conn._sock, ssl.SSLSocket)


def mariadb_cli(cluster, *args: str, user: str = "root", password: str = "") -> subprocess.CompletedProcess:
    argv = ["mariadb", "-h", "127.0.0.1", "-P", str(cluster.proxy_port), "-u", user, "--connect-timeout=5", *args]
    if password:
        argv.append(f"-p{password}")
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


# -- TLS -------------------------------------------------------------------------
def test_mariadb_cli_verifies_the_server_certificate(cluster, tls_files):
    done = mariadb_cli(cluster, f"--ssl-ca={tls_files.ca}", "--ssl-verify-server-cert", "-e", "status", user="app", password="s3cret")
    assert done.returncode == 0, done.stderr
    assert "Cipher in use is TLS" in done.stdout, done.stdout


def test_mariadb_cli_refuses_a_server_signed_by_another_ca(cluster, tmp_path):
    other = ensure_local_tls(tmp_path / "other")
    done = mariadb_cli(cluster, f"--ssl-ca={other.ca}", "--ssl-verify-server-cert", "-e", "SELECT 1")
    assert done.returncode != 0
    assert "certificate" in done.stderr.lower() or "ssl" in done.stderr.lower(), done.stderr


def test_100_pymysql_tls_connects_in_a_row(cluster, tls_files):
    failures = []
    for i in range(100):
        try:
            conn = tls_connect(cluster, tls_files, user="app", password="s3cret", read_timeout=5)
            try:
                assert is_tls(conn)
                with conn.cursor() as cur:
                    cur.execute("SELECT %s", (i,))
                    assert cur.fetchone() == (i,)
            finally:
                conn.close()
        except Exception as e:  # noqa: BLE001 - count every failure, then assert
            failures.append((i, repr(e)))
    assert failures == []


def test_show_status_tells_the_clients_own_tls_and_compression(cluster, tls_files):
    """The region's connection is the proxy's (plain TCP): these rows are the proxy's."""
    conn = tls_connect(cluster, tls_files, user="app", password="s3cret")
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW STATUS WHERE Variable_name IN ('Ssl_cipher', 'Ssl_version', 'Compression')")
            status = dict(cur.fetchall())
        assert status["Ssl_version"].startswith("TLSv1.") and status["Ssl_cipher"], status
        assert status["Compression"] == "OFF"
    finally:
        conn.close()


def test_client_hello_glued_to_the_ssl_request_is_not_lost(cluster):
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    for _ in range(20):
        tls, answer = tls_login(cluster.proxy_port, context, "app", "s3cret", timeout=5)
        assert answer[:1] == b"\x00", answer
        tls.send(b"\x03SELECT 1", 0)
        assert tls.read_packet()[1][:1] == b"\x01"  # one column
        tls.sock.close()


def test_require_ssl_account_is_refused_in_clear_and_served_over_tls(cluster, tls_files):
    with pytest.raises(pymysql.err.OperationalError) as info:
        plain_connect(cluster, user="tlsonly", password="tls-pw")
    assert info.value.args[0] == 1045
    raw = RawClient(cluster.proxy_port)
    assert error_code(raw.login("tlsonly", "tls-pw")) == 1045
    assert raw.is_closed()
    conn = tls_connect(cluster, tls_files, user="tlsonly", password="tls-pw")
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    conn.close()


def test_wrong_password_over_tls_is_1045(cluster, tls_files):
    with pytest.raises(pymysql.err.OperationalError) as info:
        tls_connect(cluster, tls_files, user="app", password="wrong")
    assert info.value.args[0] == 1045


# -- caching_sha2_password -----------------------------------------------------------
def connector(cluster, tls_files, *, tls: bool, **kwargs):
    if tls:
        kwargs.update(ssl_ca=str(tls_files.ca), ssl_verify_cert=True, ssl_verify_identity=True)
    else:
        kwargs.update(ssl_disabled=True)
    kwargs.setdefault("auth_plugin", "caching_sha2_password")
    return mysql.connector.connect(host="127.0.0.1", port=cluster.proxy_port, connection_timeout=5, use_pure=True, **kwargs)


def sha2_raw_login(cluster, user: str, scramble_for: str) -> RawClient:
    """Plain TCP: a HandshakeResponse with caching_sha2_password data; the answer is left unread."""
    raw = RawClient(cluster.proxy_port)
    raw.read_handshake()
    auth = scramble_sha2(scramble_for.encode(), raw.nonce)
    body = struct.pack("<IIB", BASIC_CAPS, 1 << 24, 45) + bytes(23)
    body += user.encode() + b"\0" + bytes((len(auth),)) + auth + b"caching_sha2_password\0"
    raw.send(body, 1)
    return raw


def select_one(conn) -> None:
    cur = conn.cursor()
    cur.execute("SELECT 1")
    assert cur.fetchall() == [(1,)]
    cur.close()


def test_connector_caching_sha2_over_tls_then_fast_path_in_clear(cluster, tls_files):
    user = "app"
    # Before any TLS login the proxy has no sha2 verifier: in clear, the client is switched to native.
    raw = sha2_raw_login(cluster, user, "s3cret")
    assert raw.read_packet()[1][:1] == b"\xfe"  # AuthSwitchRequest
    raw.close()
    conn = connector(cluster, tls_files, tls=True, user=user, password="s3cret")
    select_one(conn)
    conn.close()
    # The full authentication over TLS cached the verifier: now the fast path, no password sent.
    raw = sha2_raw_login(cluster, user, "s3cret")
    assert raw.read_packet()[1] == b"\x01\x03"  # fast_auth_success
    assert raw.read_packet()[1][:1] == b"\x00"
    raw.close()
    conn = connector(cluster, tls_files, tls=False, user=user, password="s3cret")
    select_one(conn)
    conn.close()


def test_connector_caching_sha2_in_clear_works_by_switching_to_native(cluster, tls_files):
    conn = connector(cluster, tls_files, tls=False, user="changer", password="ch-pw")
    select_one(conn)
    conn.close()


def test_caching_sha2_account_fast_path_with_pymysql_and_connector(cluster, tls_files):
    for conn in (plain_connect(cluster, user="sha2only", password="sha-pw"),  # switched to caching_sha2
                 tls_connect(cluster, tls_files, user="sha2only", password="sha-pw")):
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
        conn.close()
    for tls in (True, False):
        conn = connector(cluster, tls_files, tls=tls, user="sha2only", password="sha-pw")
        select_one(conn)
        conn.close()


def test_caching_sha2_full_authentication_with_rsa(cluster):
    # A scramble that does not match sends the client to full authentication;
    # without TLS it asks for the public key and sends the password RSA-encrypted.
    raw = sha2_raw_login(cluster, "sha2only", "not-the-password")
    assert raw.read_packet()[1] == b"\x01\x04"  # perform_full_authentication
    raw.send(b"\x02", 3)
    seq, pem = raw.read_packet()
    assert pem.startswith(b"\x01-----BEGIN PUBLIC KEY-----")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    key = serialization.load_pem_public_key(pem[1:])
    message = bytes(b ^ raw.nonce[i % 20] for i, b in enumerate(b"sha-pw\0"))
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    raw.send(key.encrypt(message, oaep), seq + 1)
    assert raw.read_packet()[1][:1] == b"\x00"
    assert raw.query("SELECT 1")[:1] == b"\x01"
    raw.close()


def test_pymysql_rsa_full_authentication_with_a_wrong_password_is_1045(cluster):
    with pytest.raises(pymysql.err.OperationalError) as info:
        plain_connect(cluster, user="sha2only", password="wrong")
    assert info.value.args[0] == 1045


def test_clear_password_in_plain_tcp_is_refused_with_a_reason_and_closed(cluster, tls_files):
    with pytest.raises(mysql.connector.Error) as info:
        connector(cluster, tls_files, tls=False, user="sha2only", password="wrong")
    assert info.value.errno == 1045
    assert "needs TLS" in info.value.msg
    raw = sha2_raw_login(cluster, "sha2only", "not-the-password")
    assert raw.read_packet()[1] == b"\x01\x04"
    raw.send(b"sha-pw\0", 3)  # what a client without RSA support sends
    assert error_code(raw.read_packet()[1]) == 1045
    assert raw.is_closed()


def test_wrong_passwords_are_1045_and_close_with_every_plugin(cluster):
    raw = sha2_raw_login(cluster, "app", "wrong")  # in clear: switched to native
    _, switch = raw.read_packet()
    assert switch.startswith(b"\xfemysql_native_password\0")
    raw.send(scramble_native("wrong", raw.nonce), 3)
    assert error_code(raw.read_packet()[1]) == 1045
    assert raw.is_closed()
    raw = RawClient(cluster.proxy_port)
    assert error_code(raw.login("sha2only", "wrong")) is None  # an AuthSwitchRequest first
    raw.send(scramble_sha2(b"wrong", raw.nonce), 3)
    assert raw.read_packet()[1] == b"\x01\x04"
    raw.send(b"\x02", 5)
    seq, pem = raw.read_packet()
    rsa_key = RsaKeyPair.generate()  # a ciphertext under another key does not decrypt
    raw.send(rsa_key.encrypt_password(b"sha-pw", raw.nonce), seq + 1)
    assert error_code(raw.read_packet()[1]) == 1045
    assert raw.is_closed()


def test_change_user_goes_through_the_same_authentication(cluster, tls_files):
    conn = connector(cluster, tls_files, tls=True, user="app", password="s3cret")
    conn.cmd_change_user(username="tlsonly", password="tls-pw")
    cur = conn.cursor()
    cur.execute("SELECT 1")
    assert cur.fetchall() == [(1,)]
    conn.cmd_change_user(username="sha2only", password="sha-pw")
    select_one(conn)
    conn.close()
    conn = connector(cluster, tls_files, tls=False, user="app", password="s3cret")
    with pytest.raises(mysql.connector.Error) as info:
        conn.cmd_change_user(username="tlsonly", password="tls-pw")  # REQUIRE SSL, in clear
    assert info.value.errno == 1045
    with pytest.raises(mysql.connector.Error):
        select_one(conn)  # the failed COM_CHANGE_USER ended the connection
