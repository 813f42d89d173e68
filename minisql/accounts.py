"""How a client account becomes a MariaDB account on every region.

The rule that makes rights sound: a client never runs with more rights than
MariaDB would give that user, because every statement a client sends runs on
the regions *as that user*.  Each client account `'u'@'h'` exists on every
region under the same name and host with the same grants, so MariaDB itself
checks every statement (executable comments, user variables, LOAD_FILE, INTO
OUTFILE, SET GLOBAL: nothing bypasses a check the proxy never makes).

The region copy of an account cannot use the client's password -- the proxy
never learns it (mysql_native_password sends a scramble).  It uses a
*region password* derived from the cluster's backend secret:

    region_password = HMAC-SHA256(backend_password, ["u", "h"])[:40 hex]

so any proxy and any region agent can compute it, nothing new is stored, and
rotating the backend secret rotates them all.  A client cannot learn it: it
never leaves the proxies and region agents, and ZooKeeper holds only the
client-facing hashes.

Also here: MariaDB's host matching and ordering, and the password hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from typing import Iterable, Sequence, TypeVar

from .like import like


def region_password(secret: str, user: str, host: str) -> str:
    message = json.dumps([user, host.lower()], separators=(",", ":")).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:40]


def quote_account(user: str, host: str) -> str:
    """`user`@`host` as MariaDB's SHOW GRANTS writes it."""
    return "`" + user.replace("`", "``") + "`@`" + host.replace("`", "``") + "`"


def native_hash(password: str) -> str:
    """SHA1(SHA1(password)) in hex, "" for no password (what MariaDB stores, minus '*')."""
    if password == "":
        return ""
    return hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest()


def sha2_hash(password: str) -> str:
    """SHA256(SHA256(password)) in hex: caching_sha2_password's fast-path verifier."""
    if password == "":
        return ""
    return hashlib.sha256(hashlib.sha256(password.encode()).digest()).hexdigest()


_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def host_matches(pattern: str, client_host: str) -> bool:
    """MariaDB's host check: 'localhost' for loopback, LIKE wildcards, ip/netmask."""
    pattern = pattern.lower()
    if pattern in ("%", ""):
        return True
    if pattern == "localhost":
        return client_host in _LOOPBACK
    if "/" in pattern:
        try:
            net = ipaddress.ip_network(pattern, strict=False)
            return ipaddress.ip_address(client_host) in net
        except ValueError:
            return False
    return like(pattern, client_host, escapes=False)


def host_specificity(pattern: str) -> tuple[int, int]:
    """Sort key, most specific first (MariaDB's acl sort): literal hosts before
    wildcard patterns, later wildcards before earlier ones, '%' last."""
    if pattern in ("%", ""):
        return (2, 0)
    positions = [i for i, ch in enumerate(pattern) if ch in "%_"]
    if not positions:
        return (0, 0)
    return (1, -positions[0])


T = TypeVar("T")


def best_match(candidates: Iterable[tuple[str, str, T]], user: str, client_host: str) -> T | None:
    """The account MariaDB would pick for (user, client_host): among (user, host
    pattern, value) triples, the most specific matching host first, then a named
    user before the anonymous '' user -- MariaDB's order, where ''@'localhost'
    beats 'app'@'%'."""
    matching: Sequence[tuple[tuple[int, int], int, T]] = sorted(
        ((host_specificity(h), 0 if u else 1, v) for u, h, v in candidates if u in (user, "") and host_matches(h, client_host)),
        key=lambda t: (t[0], t[1]),
    )
    return matching[0][2] if matching else None
