"""A local certificate authority for `minisql up`: TLS between clients and the proxy.

Why a CA of our own and not one self-signed certificate: clients verify the
server with `--ssl-ca=ca.pem --ssl-verify-server-cert` (MariaDB) or
`ssl_ca`/`ssl_verify_identity` (drivers), which needs a CA certificate to
trust and a server certificate whose subjectAltName names the address the
client dials (127.0.0.1 and localhost here).  The files stay in the data
directory and are reused on the next start, so clients keep trusting the
same CA; the server certificate is renewed when it nears its end.

Also made here: the proxy's RSA key for caching_sha2_password's password
exchange without TLS, kept so that clients that pinned its public key
(`server_public_key` / `--server-public-key-path`) keep working across restarts.

Private keys are written with mode 0600.  Error handling: a half-written
set (a crash between files) is detected by `ensure_local_tls` -- any file
missing or unreadable -- and the whole set made anew.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

CA_DAYS = 3650
SERVER_DAYS = 825
RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class LocalTls:
    ca: Path
    cert: Path
    key: Path
    rsa_key: Path

    def proxy_args(self) -> list[str]:
        return ["--ssl-cert", str(self.cert), "--ssl-key", str(self.key), "--rsa-private-key", str(self.rsa_key)]


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _new_key():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key) -> bytes:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _valid(cert_path: Path, now: datetime.datetime) -> bool:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return False
    return cert.not_valid_after_utc - RENEW_BEFORE > now


def _make_ca(tls: LocalTls, now: datetime.datetime) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "MiniSQL Cluster local CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(tls.ca.with_name("ca-key.pem"), _key_pem(key))
    _write_public(tls.ca, cert.public_bytes(serialization.Encoding.PEM))


def _make_server(tls: LocalTls, hosts: Sequence[str], now: datetime.datetime) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(tls.ca.read_bytes())
    ca_key = serialization.load_pem_private_key(tls.ca.with_name("ca-key.pem").read_bytes(), password=None)
    key = _new_key()
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)  # type: ignore[arg-type]
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    _write_private(tls.key, _key_pem(key))
    _write_public(tls.cert, cert.public_bytes(serialization.Encoding.PEM))


def ensure_local_tls(directory: str | os.PathLike[str], hosts: Sequence[str] = ("127.0.0.1", "localhost", "::1")) -> LocalTls:
    """The CA, server certificate/key and RSA key under `directory`, made when missing or expiring."""
    base = Path(directory)
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o700)
    tls = LocalTls(ca=base / "ca.pem", cert=base / "server-cert.pem", key=base / "server-key.pem",
                   rsa_key=base / "rsa-private-key.pem")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_ok = tls.ca.with_name("ca-key.pem").exists() and _valid(tls.ca, now)
    if not ca_ok:
        _make_ca(tls, now)
    if not ca_ok or not tls.key.exists() or not _valid(tls.cert, now):
        _make_server(tls, list(hosts), now)
    if not tls.rsa_key.exists():
        _write_private(tls.rsa_key, _key_pem(_new_key()))
    return tls
