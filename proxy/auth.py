"""Client authentication: accounts, password checks, and the login guard.

Pure logic, no sockets (the handshake itself is in `login.py`).

* `Account` is what the proxy knows of one client account: the hash
  mysql_native_password checks (SHA1(SHA1(password)), what MariaDB stores),
  never a password.  An unknown user gets the same 1045 as a wrong password
  (MariaDB does not reveal which users exist).
* `LoginGuard` throttles guessing, like MySQL's connection_control plugin
  and MariaDB's max_password_errors: after a few consecutive failures for one
  (client host, user) -- or many for one host, whatever the user, which stops
  spraying many user names -- every further attempt waits a growing delay (on
  the event loop's timer, never blocking it), and past a threshold the
  (host, user) pair is refused outright for a while.  A host as a whole is
  only slowed, never blocked: clients behind one NAT address, or everyone on
  the local stack, must not be locked out by one bad script; and a (host,
  user) that logged in recently is not slowed by the host's failures either.  Memory is bounded: the table keeps at most `max_entries` keys and
  forgets the oldest.

Error handling: the guard's state is per proxy process and lost on restart;
that only resets throttling, it never lets a wrong password in.
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from dataclasses import dataclass
from hashlib import sha1
from typing import Callable, Protocol

NATIVE_PLUGIN = "mysql_native_password"


@dataclass(frozen=True)
class Account:
    user: str
    host: str  # MariaDB host pattern ('%' = any)
    native_hash: str  # hex SHA1(SHA1(password)); "" = no password
    sha2_hash: str = ""  # hex SHA256(SHA256(password)) for caching_sha2_password's fast path; "" = unknown
    require_ssl: bool = False  # REQUIRE SSL: refuse logins over plain TCP
    plugin: str = ""  # the server plugin asked for: "" or mysql_native_password, caching_sha2_password, ed25519
    ed25519_key: str = ""  # MariaDB's ed25519 auth string (base64 public key) when plugin is ed25519

    @property
    def has_password(self) -> bool:
        return bool(self.native_hash or self.sha2_hash or self.ed25519_key)


class Accounts(Protocol):
    def lookup(self, user: str, client_host: str) -> Account | None: ...


def verify_native(native_hash: str, scramble: bytes, nonce: bytes) -> bool:
    """mysql_native_password: scramble = SHA1(pw) XOR SHA1(nonce + SHA1(SHA1(pw)))."""
    if native_hash == "":
        return scramble == b""
    if len(scramble) != 20:
        return False
    try:
        stored = bytes.fromhex(native_hash)
    except ValueError:
        return False
    mask = sha1(nonce + stored).digest()
    stage1 = bytes(a ^ b for a, b in zip(scramble, mask))
    return hmac.compare_digest(sha1(stage1).digest(), stored)


@dataclass
class _Record:
    failures: int = 0
    last: float = 0.0
    blocked_until: float = 0.0


class LoginGuard:
    """Progressive delays and temporary blocks after failed logins (see module doc)."""

    def __init__(
        self,
        *,
        free_failures: int = 3,
        base_delay: float = 0.1,
        max_delay: float = 5.0,
        block_after: int = 20,
        block_seconds: float = 60.0,
        host_factor: int = 5,
        forget_after: float = 600.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free_failures = free_failures
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.block_after = block_after
        self.block_seconds = block_seconds
        self.host_factor = host_factor  # a host may fail this many times more, over all its users
        self.forget_after = forget_after
        self.max_entries = max_entries
        self.clock = clock
        self._records: OrderedDict[tuple[str, str | None], _Record] = OrderedDict()
        # (host, user) pairs that logged in recently: a guesser spraying other
        # user names from the same address does not slow them down.
        self._trusted: OrderedDict[tuple[str, str], float] = OrderedDict()

    def _get(self, key: tuple[str, str | None]) -> _Record | None:
        rec = self._records.get(key)
        if rec is not None and self.clock() - rec.last > self.forget_after and rec.blocked_until <= self.clock():
            del self._records[key]
            return None
        return rec

    def _scale(self, key: tuple[str, str | None]) -> int:
        return self.host_factor if key[1] is None else 1

    def delay(self, host: str, user: str) -> float:
        """Seconds to wait before answering this attempt (success or failure alike,
        so the delay does not tell a guesser which answer is coming)."""
        worst = 0.0
        trusted_at = self._trusted.get((host, user))
        trusted = trusted_at is not None and self.clock() - trusted_at <= self.forget_after
        for key in ((host, user),) if trusted else ((host, user), (host, None)):
            rec = self._get(key)
            if rec is None:
                continue
            excess = rec.failures - self.free_failures * self._scale(key)
            if excess >= 0:
                worst = max(worst, min(self.max_delay, self.base_delay * 2 ** min(excess, 32)))
        return worst

    def blocked(self, host: str, user: str) -> bool:
        now = self.clock()
        return any((rec := self._get(key)) is not None and rec.blocked_until > now for key in ((host, user), (host, None)))

    def failed(self, host: str, user: str) -> None:
        now = self.clock()
        for key in ((host, user), (host, None)):
            rec = self._get(key)
            if rec is None:
                rec = self._records[key] = _Record()
            self._records.move_to_end(key)
            rec.failures += 1
            rec.last = now
            if self.block_after and key[1] is not None and rec.failures >= self.block_after:
                rec.blocked_until = now + self.block_seconds
                rec.failures = 0
        while len(self._records) > self.max_entries:
            self._records.popitem(last=False)

    def succeeded(self, host: str, user: str) -> None:
        self._records.pop((host, user), None)
        self._trusted[(host, user)] = self.clock()
        self._trusted.move_to_end((host, user))
        while len(self._trusted) > self.max_entries:
            self._trusted.popitem(last=False)
