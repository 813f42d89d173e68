"""Who a process is to ZooKeeper, and who may read what it creates.

Without this every znode of the cluster was ``world:anyone:cdrwa``: anyone who
could reach ZooKeeper could rewrite the placement (and so send writes to the
wrong MariaDB), fake a region, or drop requests into the master's DDL queue.

With a `ZooKeeperAuth` the process authenticates with ZooKeeper's *digest*
scheme (``user:password``; ZooKeeper stores only base64(SHA1(user:password)))
and every znode it creates carries an ACL of

* the cluster identity (`user`): all permissions, and
* each `readers` identity (the ``minisql status`` identity): READ only,

and nothing for ``world:anyone``.  An unauthenticated client then gets NoAuth
on every read and write under the cluster's root (it can still see that a
node *exists*: ZooKeeper's ``exists`` needs no permission).

Only this package imports kazoo; this module builds kazoo's ACL objects lazily
so the memory backend and unit tests never import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ZooKeeperAuth:
    """A digest identity (`user`, `password`) plus read-only `readers` (user, password).

    `readers` only matters to processes that create znodes: it is put in the
    ACL of every znode they create.  A read-only client (``minisql status``)
    passes its own identity as `user` and no readers.
    """

    user: str
    password: str
    readers: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        for name in (self.user, *(u for u, _ in self.readers)):
            if not name or ":" in name:
                raise ValueError(f"ZooKeeper digest user names must be non-empty and without ':' (got {name!r})")

    def __repr__(self) -> str:  # never print a password by accident
        readers = ", ".join(repr(u) for u, _ in self.readers)
        return f"ZooKeeperAuth(user={self.user!r}, password='***', readers=[{readers}])"

    def auth_data(self) -> list[tuple[str, str]]:
        """kazoo's `auth_data`: sent at connect and after every reconnect."""
        return [("digest", f"{self.user}:{self.password}")]

    def acl(self) -> list[Any]:
        """kazoo ACL list for every znode this identity creates."""
        from kazoo.security import make_digest_acl

        acl = [make_digest_acl(self.user, self.password, all=True)]
        acl += [make_digest_acl(u, p, read=True) for u, p in self.readers]
        return acl


def same_acl(a: list[Any], b: list[Any]) -> bool:
    """ACL lists compare equal regardless of order (ZooKeeper keeps its own)."""

    def key(entry: Any) -> tuple[int, str, str]:
        return (int(entry.perms), entry.id.scheme, entry.id.id)

    return sorted(map(key, a)) == sorted(map(key, b))
