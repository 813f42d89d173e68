"""The authentication plugins' crypto: pure functions, no sockets.

The proxy verifies clients with two server plugins (the exchanges are in
`login.py`):

* ``mysql_native_password``: `auth.verify_native` against SHA1(SHA1(pw)).
* ``caching_sha2_password`` (MySQL 8 clients' default).  Its *fast path*
  proves knowledge of the password against a verifier SHA256(SHA256(pw)):
  the client sends ``SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + nonce)``.
  When the server has no verifier (the users file normally holds only the
  native hash) or the scramble does not match, it asks for *full
  authentication*: the clear password, either over TLS or RSA-OAEP encrypted
  with the server's public key (the client XORs ``pw + NUL`` with the nonce
  first, so a captured ciphertext is useless on another connection).  A clear
  password that checks out lets the server compute and cache the verifier:
  that cache is what "caching" means, and `VerifierCache` is it.
* ``client_ed25519`` (MariaDB's ``ed25519``): the client signs the nonce
  with a key derived from SHA512(pw); the server checks the signature
  against the stored public key (`verify_ed25519`).

Why the cache is keyed by the account's stored hashes too: a verifier cached
for an old password must never let the old password in after the password
changed; with the hashes in the key, a changed account simply misses.

Error handling: the cache lives in the proxy's memory and is lost on restart
(and bounded, oldest out first); a miss only costs one full authentication.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from .auth import Account

NATIVE_PLUGIN = "mysql_native_password"
SHA2_PLUGIN = "caching_sha2_password"
ED25519_PLUGIN = "client_ed25519"
ED25519_ACCOUNT_PLUGIN = "ed25519"  # MariaDB's server-side name; the client plugin is client_ed25519

# caching_sha2_password's AuthMoreData codes (MySQL's sha2_password.h).
REQUEST_PUBLIC_KEY = 0x02
FAST_AUTH_SUCCESS = 0x03
PERFORM_FULL_AUTHENTICATION = 0x04

MAX_PASSWORD_BYTES = 512


def native_verifier(password: bytes) -> str:
    """SHA1(SHA1(pw)) in hex, "" for the empty password (the users file's format)."""
    return hashlib.sha1(hashlib.sha1(password).digest()).hexdigest() if password else ""


def sha2_verifier(password: bytes) -> str:
    """SHA256(SHA256(pw)) in hex, "" for the empty password."""
    return hashlib.sha256(hashlib.sha256(password).digest()).hexdigest() if password else ""


def scramble_sha2(password: bytes, nonce: bytes) -> bytes:
    """What a caching_sha2_password client sends (used by the tests)."""
    if not password:
        return b""
    stage1 = hashlib.sha256(password).digest()
    mask = hashlib.sha256(hashlib.sha256(stage1).digest() + nonce).digest()
    return bytes(a ^ b for a, b in zip(stage1, mask))


def verify_sha2(verifier: str, scramble: bytes, nonce: bytes) -> bool:
    """The fast path: recover SHA256(pw) from the scramble and hash it once more."""
    if not verifier or len(scramble) != 32:
        return False
    try:
        stored = bytes.fromhex(verifier)
    except ValueError:
        return False
    mask = hashlib.sha256(stored + nonce).digest()
    stage1 = bytes(a ^ b for a, b in zip(scramble, mask))
    return hmac.compare_digest(hashlib.sha256(stage1).digest(), stored)


def account_plugin(account: Account) -> str:
    """The plugin the server asks this account's clients to use.

    An account with only a sha2 verifier must not fall to mysql_native_password,
    whose empty native hash would mean "no password".
    """
    plugin = account.plugin
    if plugin in (SHA2_PLUGIN, NATIVE_PLUGIN):
        return plugin
    if plugin in (ED25519_ACCOUNT_PLUGIN, ED25519_PLUGIN):
        return ED25519_PLUGIN
    if not account.native_hash and account.sha2_hash:
        return SHA2_PLUGIN
    return NATIVE_PLUGIN


def verify_clear(account: Account, password: bytes) -> bool:
    """A clear password (caching_sha2 full authentication) against what the account stores."""
    if not password:
        return not account.has_password
    ok = False
    if account.native_hash:
        ok = hmac.compare_digest(native_verifier(password), account.native_hash)
    elif account.sha2_hash:
        ok = hmac.compare_digest(sha2_verifier(password), account.sha2_hash)
    return ok


class VerifierCache:
    """caching_sha2_password's in-memory verifiers, learned from full authentications."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str, str, str], str] = OrderedDict()

    @staticmethod
    def _key(account: Account) -> tuple[str, str, str, str]:
        return (account.user, account.host, account.native_hash, account.sha2_hash)

    def get(self, account: Account) -> str:
        """The account's verifier: the stored one, else a cached one, else ""."""
        if account.sha2_hash:
            return account.sha2_hash
        key = self._key(account)
        verifier = self._entries.get(key, "")
        if verifier:
            self._entries.move_to_end(key)
        return verifier

    def put(self, account: Account, password: bytes) -> None:
        if not password or account.sha2_hash:
            return
        key = self._key(account)
        self._entries[key] = sha2_verifier(password)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def xor_nonce(data: bytes, nonce: bytes) -> bytes:
    """caching_sha2's obfuscation of pw + NUL before RSA: XOR with the nonce, repeated."""
    if not nonce:
        return data
    return bytes(b ^ nonce[i % len(nonce)] for i, b in enumerate(data))


@dataclass
class RsaKeyPair:
    """The proxy's RSA key for caching_sha2_password's full authentication over plain TCP.

    Uses the `cryptography` package (RSA is not in the standard library).
    """

    private_key: object  # cryptography's RSAPrivateKey
    public_pem: bytes

    @classmethod
    def generate(cls, bits: int = 2048) -> "RsaKeyPair":
        from cryptography.hazmat.primitives.asymmetric import rsa

        return cls._from_key(rsa.generate_private_key(public_exponent=65537, key_size=bits))

    @classmethod
    def load(cls, path: str | Path) -> "RsaKeyPair":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path}: not an RSA private key")
        return cls._from_key(key)

    @classmethod
    def _from_key(cls, key: object) -> "RsaKeyPair":
        from cryptography.hazmat.primitives import serialization

        public = key.public_key().public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(key, public)

    @property
    def size_bytes(self) -> int:
        return self.private_key.key_size // 8  # type: ignore[attr-defined]

    def private_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.private_key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def encrypt_password(self, password: bytes, nonce: bytes) -> bytes:
        """What a client sends (used by the tests): RSA-OAEP(SHA1) of XOR(pw + NUL, nonce)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
        return self.private_key.public_key().encrypt(xor_nonce(password + b"\0", nonce), oaep)  # type: ignore[attr-defined]

    def decrypt_password(self, ciphertext: bytes, nonce: bytes) -> bytes | None:
        """The clear password from the client's RSA packet, None if it does not decrypt."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        if len(ciphertext) != self.size_bytes:
            return None
        oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
        try:
            plain = self.private_key.decrypt(ciphertext, oaep)  # type: ignore[attr-defined]
        except ValueError:
            return None
        plain = xor_nonce(plain, nonce)
        if not plain.endswith(b"\0"):
            return None
        return plain[:-1]


# -- client_ed25519 (MariaDB) --------------------------------------------------------
def ed25519_public_key(password: bytes) -> str:
    """MariaDB's `ed25519` auth string for a password: base64 of the public key, no padding.

    MariaDB derives the private scalar from SHA512(pw) exactly as RFC 8032 derives
    it from a 32-byte seed, so the key cannot be built through a seed-based API;
    this uses the curve arithmetic below.
    """
    return base64.b64encode(_ed25519_pub_from_password(password)).decode().rstrip("=")


def verify_ed25519(public_key_b64: str, signature: bytes, nonce: bytes) -> bool:
    """client_ed25519: a standard Ed25519 signature of the nonce under the stored key."""
    if len(signature) != 64 or not public_key_b64:
        return False
    try:
        public = base64.b64decode(public_key_b64 + "=" * (-len(public_key_b64) % 4))
    except ValueError:
        return False
    if len(public) != 32:
        return False
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, nonce)
    except (InvalidSignature, ValueError):
        return False
    return True


def sign_ed25519(password: bytes, message: bytes) -> bytes:
    """What MariaDB's client_ed25519 sends (used by the tests): RFC 8032 signing with
    the secret scalar and prefix taken from SHA512(pw)."""
    h = hashlib.sha512(password).digest()
    a = _clamp(h[:32])
    prefix = h[32:]
    public = _encode_point(_scalar_mult(a, _B))
    r = int.from_bytes(hashlib.sha512(prefix + message).digest(), "little") % _L
    big_r = _encode_point(_scalar_mult(r, _B))
    k = int.from_bytes(hashlib.sha512(big_r + public + message).digest(), "little") % _L
    s = (r + k * a) % _L
    return big_r + s.to_bytes(32, "little")


# Edwards25519 arithmetic (extended coordinates), only for key derivation and test signing:
# both handle the account's own password, never a client-supplied secret.
_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_I = pow(2, (_P - 1) // 4, _P)


def _recover_x(y: int, sign: int) -> int:
    xx = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P)
    x = pow(xx, (_P + 3) // 8, _P)
    if (x * x - xx) % _P:
        x = x * _I % _P
    if x % 2 != sign:
        x = _P - x
    return x


_BY = 4 * pow(5, _P - 2, _P) % _P
_BX = _recover_x(_BY, 0)
_B = (_BX, _BY, 1, _BX * _BY % _P)


def _add(p: tuple[int, int, int, int], q: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _scalar_mult(s: int, p: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    q = (0, 1, 1, 0)
    while s:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _encode_point(p: tuple[int, int, int, int]) -> bytes:
    zinv = pow(p[2], _P - 2, _P)
    x, y = p[0] * zinv % _P, p[1] * zinv % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _clamp(h: bytes) -> int:
    a = int.from_bytes(h, "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a


def _ed25519_pub_from_password(password: bytes) -> bytes:
    return _encode_point(_scalar_mult(_clamp(hashlib.sha512(password).digest()[:32]), _B))
