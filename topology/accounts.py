"""Client accounts, cluster-wide: one versioned znode, like the placement.

Why ZooKeeper: every proxy must authenticate every account the same way, and
a region that joins (or comes back) must learn every account and its grants.
What is stored is what MariaDB itself stores -- password *hashes* and the
`SHOW GRANTS` text -- never a password:

    accounts  {"format": 1, "accounts": {"[\"<user>\",\"<host>\"]": {
                 "user", "host", "native_hash", "sha2_hash", "require_ssl",
                 "grants": ["GRANT ... TO `u`@`h`", ...]}}}

One znode, because account changes are rare and readers want one
consistent snapshot; writers do a versioned read-modify-write
(`update_accounts(mutate)`), never a blind write.

Error handling: a malformed document is logged and ignored by watchers (they
keep the last good snapshot); `update_accounts` raises ConflictError after
losing `attempts` races, and TopologyUnavailable when ZooKeeper is away.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .backend import Cancel
from .errors import NoNodeError
from .znodes import dump_json, update_document

if TYPE_CHECKING:
    from .service import Topology

log = logging.getLogger(__name__)

FORMAT = 1
ACCOUNTS_LOCK = "accounts"  # held while accounts change on the regions and here together (topology/locks.py)


@dataclass(frozen=True)
class AccountRecord:
    """One `'user'@'host'` account as every proxy and region must know it."""

    user: str
    host: str
    native_hash: str = ""  # hex SHA1(SHA1(password)); "" = no password
    sha2_hash: str = ""  # hex SHA256(SHA256(password)); "" = unknown
    require_ssl: bool = False
    grants: tuple[str, ...] = ()
    plugin: str = ""  # "" (mysql_native_password), caching_sha2_password or ed25519
    ed25519_key: str = ""  # MariaDB's ed25519 auth string (base64 public key) for plugin ed25519

    @property
    def key(self) -> str:
        return account_key(self.user, self.host)

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.user, "host": self.host, "native_hash": self.native_hash, "sha2_hash": self.sha2_hash,
            "require_ssl": self.require_ssl, "grants": list(self.grants), "plugin": self.plugin,
            "ed25519_key": self.ed25519_key,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AccountRecord":
        return cls(
            user=str(d["user"]), host=str(d["host"]), native_hash=str(d.get("native_hash", "")),
            sha2_hash=str(d.get("sha2_hash", "")), require_ssl=bool(d.get("require_ssl", False)),
            grants=tuple(str(g) for g in d.get("grants", ())), plugin=str(d.get("plugin", "")),
            ed25519_key=str(d.get("ed25519_key", "")),
        )

    def with_grants(self, grants: tuple[str, ...]) -> "AccountRecord":
        return replace(self, grants=grants)


def account_key(user: str, host: str) -> str:
    """A unique key per account: user names are case-sensitive, host names are not
    (MariaDB lowercases them), and either may contain '@', hence the JSON pair."""
    return json.dumps([user, host.lower()], separators=(",", ":"))


@dataclass(frozen=True)
class AccountsSnapshot:
    """Every account at one znode version (-1: no accounts znode yet)."""

    accounts: Mapping[str, AccountRecord] = field(default_factory=dict)
    version: int = -1

    def get(self, user: str, host: str) -> AccountRecord | None:
        return self.accounts.get(account_key(user, host))

    def to_json(self) -> bytes:
        return dump_json({"format": FORMAT, "accounts": {k: a.to_dict() for k, a in sorted(self.accounts.items())}})

    @classmethod
    def from_json(cls, raw: bytes, version: int) -> "AccountsSnapshot":
        doc = json.loads(raw)
        if doc.get("format") != FORMAT:
            raise ValueError(f"unknown accounts format {doc.get('format')!r}")
        records = (AccountRecord.from_dict(a) for a in doc.get("accounts", {}).values())
        return cls({r.key: r for r in records}, version)

    def with_account(self, record: AccountRecord) -> "AccountsSnapshot":
        return AccountsSnapshot({**self.accounts, record.key: record}, self.version)

    def without(self, user: str, host: str) -> "AccountsSnapshot":
        key = account_key(user, host)
        return AccountsSnapshot({k: a for k, a in self.accounts.items() if k != key}, self.version)


EMPTY_ACCOUNTS = AccountsSnapshot()


class AccountStore:
    """The accounts znode of one Topology (see module docstring)."""

    def __init__(self, topology: "Topology") -> None:
        self._topo = topology
        self._path = topology._path("accounts")

    async def get(self) -> AccountsSnapshot:
        try:
            raw, version = await self._topo.backend.get(self._path)
        except NoNodeError:
            return EMPTY_ACCOUNTS
        return AccountsSnapshot.from_json(raw, version)

    async def update(
        self, mutate: Callable[[AccountsSnapshot], AccountsSnapshot | None], *, attempts: int = 20
    ) -> AccountsSnapshot:
        """Versioned read-modify-write; `mutate` is pure and may run several times
        (None: no change)."""
        return await update_document(
            self._topo.backend, self._path, self.get, mutate, AccountsSnapshot.from_json, "accounts", attempts
        )

    def watch(self, callback: Callable[[AccountsSnapshot], None]) -> Cancel:
        """Call back now and on every change with a whole new snapshot."""

        def on_data(raw: bytes | None, version: int) -> None:
            if raw is None:
                callback(EMPTY_ACCOUNTS)
                return
            try:
                callback(AccountsSnapshot.from_json(raw, version))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("ignoring malformed accounts version %d: %s", version, exc)

        return self._topo._track(self._topo.backend.watch_data(self._path, on_data))
