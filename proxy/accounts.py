"""Client accounts in the proxy: who may log in, and the statements that change that.

* `ClusterAccounts` answers `lookup(user, client_host)` from the accounts
  znode (watched; snapshots swapped whole) with MariaDB's host matching.
* `AccountAdmin` runs CREATE/ALTER/DROP/RENAME USER, GRANT, REVOKE and SET
  PASSWORD: rewritten by `account_sql` (region passwords instead of the
  client's), run on every live region *as the client* -- so MariaDB decides
  whether the client may -- then recorded in ZooKeeper with the grants the
  first region reports.  SHOW GRANTS is answered from that record, with the
  client-facing hash (the regions only know region passwords).
* `bootstrap_accounts` seeds the users file's accounts into ZooKeeper (never
  overwriting a record) and onto the live regions, so a new cluster accepts
  its first users at once.

Error handling: the first region's answer is the client's answer (an error
there changes nothing anywhere).  A later region that fails is logged; the
region agents converge it from ZooKeeper (region/accounts.py).  If the
ZooKeeper write fails after the regions changed, the client gets the error
and a retry converges (CREATE USER IF NOT EXISTS / ALTER USER are
idempotent).
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import Any, Mapping

import aiomysql

from minisql.account_sync import ensure_account, read_grants, superuser_grants
from minisql.accounts import best_match, native_hash, quote_account, region_password
from minisql.config import ProxyUser
from minisql.errors import ER_UNKNOWN, SqlError
from topology import Topology, TopologyError
from topology.accounts import ACCOUNTS_LOCK, AccountRecord, AccountsSnapshot, AccountStore
from topology.locks import zk_lock

from .account_sql import AccountChange, UserRef, rewrite, tokenize, unquote
from .auth import Account
from .backend import BackendError
from .engine import Reply
from .planner import LocalResult

log = logging.getLogger(__name__)

LOCK_TIMEOUT = 30.0


def to_account(record: AccountRecord) -> Account:
    return Account(record.user, record.host, record.native_hash, record.sha2_hash, record.require_ssl,
                   record.plugin, record.ed25519_key)


class ClusterAccounts:
    """`proxy.auth.Accounts` over the accounts znode."""

    def __init__(self) -> None:
        self.snapshot = AccountsSnapshot()
        self._index: dict[str, list[tuple[str, str, Account]]] = {}

    def update(self, snapshot: AccountsSnapshot) -> None:
        index: dict[str, list[tuple[str, str, Account]]] = {}
        for record in snapshot.accounts.values():
            index.setdefault(record.user, []).append((record.user, record.host, to_account(record)))
        self._index, self.snapshot = index, snapshot

    def lookup(self, user: str, client_host: str) -> Account | None:
        candidates = self._index.get(user, []) + self._index.get("", [])
        return best_match(candidates, user, client_host)


def _internal_connect(info: Any, user: str, password: str) -> Any:
    return aiomysql.connect(host=info.host, port=info.mysql_port, user=user, password=password,
                            charset="utf8mb4", autocommit=True, connect_timeout=5)


async def bootstrap_accounts(topology: Topology, users: Mapping[str, ProxyUser], regions: Mapping[str, Any],
                             backend_user: str, secret: str) -> None:
    """Seed the users file's accounts (host '%', all privileges) where ZooKeeper lacks them."""
    store = AccountStore(topology)

    def add_missing(snap: AccountsSnapshot) -> AccountsSnapshot | None:
        new = snap
        for name, u in users.items():
            if snap.get(name, "%") is None:
                new = new.with_account(AccountRecord(
                    user=name, host="%", native_hash=u.native_password_hash,
                    sha2_hash=u.sha2_hash, require_ssl=u.require_ssl, plugin=u.plugin, ed25519_key=u.ed25519_key,
                    grants=superuser_grants(name, "%"),
                ))
        return new if new is not snap else None

    async with zk_lock(topology, ACCOUNTS_LOCK, timeout=LOCK_TIMEOUT):
        snapshot = await store.update(add_missing)
        await _ensure_on_regions(snapshot, list(users), regions, backend_user, secret)


async def _ensure_on_regions(snapshot: AccountsSnapshot, names: list[str], regions: Mapping[str, Any],
                             backend_user: str, secret: str) -> None:
    for region_id, info in regions.items():
        try:
            conn = await _internal_connect(info, backend_user, secret)
        except Exception as exc:  # noqa: BLE001 - the region agent will sync it
            log.warning("bootstrap: region %s unreachable (%s); its agent will sync the accounts", region_id, exc)
            continue
        try:
            for name in names:
                record = snapshot.get(name, "%")
                if record is not None:
                    await ensure_account(conn, record, secret)
        finally:
            conn.close()


def grants_for_client(record: AccountRecord) -> list[str]:
    """The record's grants as MariaDB's SHOW GRANTS prints them for this account."""
    extra = ""
    if record.plugin == "ed25519" and record.ed25519_key:
        extra += f" IDENTIFIED VIA ed25519 USING '{record.ed25519_key}'"
    elif record.native_hash:
        extra += f" IDENTIFIED BY PASSWORD '*{record.native_hash.upper()}'"
    if record.require_ssl:
        extra += " REQUIRE SSL"
    lines, done = [], False
    for line in record.grants:
        m = re.match(r"(GRANT .*? ON \*\.\* TO `(?:[^`]|``)*`@`(?:[^`]|``)*`)(.*)$", line)
        if m and not done:
            line, done = m.group(1) + extra + m.group(2), True
        lines.append(line)
    if not done:
        lines.insert(0, f"GRANT USAGE ON *.* TO {quote_account(record.user, record.host)}{extra}")
    return lines


class AccountAdmin:
    """Runs account statements for sessions (see module docstring)."""

    def __init__(self, topology: Topology, accounts: ClusterAccounts, backend_user: str, secret: str) -> None:
        self.topology = topology
        self.store = AccountStore(topology)
        self.accounts = accounts
        self.backend_user = backend_user
        self.secret = secret

    def _resolve(self, ref: UserRef, session: Any) -> UserRef:
        if ref.current:
            return UserRef(session.account.user, session.account.host)
        return ref

    def region_hash(self, ref: UserRef) -> str:
        return native_hash(region_password(self.secret, ref.user, ref.host))

    async def execute(self, session: Any, sql: str) -> Reply:
        region_sql, change = rewrite(sql, lambda ref: self.region_hash(self._resolve(ref, session)))
        snap = session.routing.snapshot
        # Under the accounts lock: the regions and ZooKeeper change together, and
        # no region agent syncs from the record in between (topology/locks.py).
        # A region that fails after the first is converged by its agent.
        async with zk_lock(self.topology, ACCOUNTS_LOCK, timeout=LOCK_TIMEOUT):
            result = await session.on_every_region(region_sql, "account statement")
            await self._record(change, session, snap.regions[min(snap.regions)], snap.regions)
        return Reply(result)

    async def _record(self, change: AccountChange, session: Any, first: Any, regions: Mapping[str, Any]) -> None:
        """Write what the statement changed into ZooKeeper (grants as the first region reports them)."""
        conn = await _internal_connect(first, self.backend_user, self.secret)
        try:
            grants: dict[tuple[str, str], tuple[str, ...] | None] = {}
            refs = [self._resolve(s.ref, session) for s in change.accounts] + [new for _, new in change.renames]
            for ref in refs:
                grants[(ref.user, ref.host)] = await read_grants(conn, ref.user, ref.host)
        finally:
            conn.close()
        specs = [(self._resolve(s.ref, session), s) for s in change.accounts]

        def mutate(snap: AccountsSnapshot) -> AccountsSnapshot:
            new = snap
            for ref, spec in specs:
                current = new.get(ref.user, ref.host)
                found = grants.get((ref.user, ref.host))
                if change.verb == "DROP USER" or found is None:
                    if current is not None:
                        new = new.without(ref.user, ref.host)
                    continue
                record = current or AccountRecord(ref.user, ref.host)
                keep_password = change.verb == "CREATE USER" and change.if_not_exists and current is not None
                if spec.native_hash is not None and not keep_password:
                    record = replace(record, native_hash=spec.native_hash, sha2_hash=spec.sha2_hash or "",
                                     plugin=spec.plugin, ed25519_key=spec.ed25519_key)
                if change.require_ssl is not None and not keep_password:
                    record = replace(record, require_ssl=change.require_ssl)
                new = new.with_account(record.with_grants(found))
            for old, renamed in change.renames:
                current = new.get(old.user, old.host)
                found = grants.get((renamed.user, renamed.host))
                if current is None or found is None:
                    continue
                new = new.without(old.user, old.host).with_account(
                    replace(current, user=renamed.user, host=renamed.host, grants=found))
            return new

        try:
            snapshot = await self.store.update(mutate)
        except TopologyError as e:
            raise SqlError(ER_UNKNOWN, f"The account change ran on the regions but could not be recorded in ZooKeeper ({e}); run it again")
        self.accounts.update(snapshot)
        for old, renamed in change.renames:  # the region password depends on the name: fix it everywhere
            record = snapshot.get(renamed.user, renamed.host)
            if record is None:
                continue
            for info in regions.values():
                try:
                    conn = await _internal_connect(info, self.backend_user, self.secret)
                    try:
                        await ensure_account(conn, record, self.secret)
                    finally:
                        conn.close()
                except Exception as exc:  # noqa: BLE001 - the agents converge it
                    log.warning("rename: region password of %s@%s not set on %s: %s", renamed.user, renamed.host, info.host, exc)

    async def show_grants(self, session: Any, sql: str) -> Reply:
        """SHOW GRANTS [FOR user | CURRENT_USER]: checked by MariaDB, answered from ZooKeeper."""
        toks = tokenize(sql, limit=8)
        ref = UserRef("", "", current=True)
        words = [t.upper for t in toks]
        if len(toks) > 2 and words[2] == "FOR":
            rest = toks[3:]
            if rest and rest[0].upper not in ("CURRENT_USER", "CURRENT_USER()"):
                host = unquote(rest[2]) if len(rest) >= 3 and rest[1].text == "@" else "%"
                ref = UserRef(unquote(rest[0]), host)
        ref = self._resolve(ref, session)
        if (ref.user, ref.host) != (session.account.user, session.account.host):
            snap = session.routing.snapshot
            region = session.backends.any_region(snap)
            conn = await session.backends.get(region, snap, session.state)
            await _run(conn, f"SHOW GRANTS FOR {ref.sql()}")  # MariaDB's privilege check
        record = self.accounts.snapshot.get(ref.user, ref.host) or await self._fresh(ref)
        if record is None:
            raise SqlError(1141, f"There is no such grant defined for user '{ref.user}' on host '{ref.host}'", "42000")
        rows = tuple((line,) for line in grants_for_client(record))
        return Reply(local=LocalResult((f"Grants for {ref.user}@{ref.host}",), rows))

    async def _fresh(self, ref: UserRef) -> AccountRecord | None:
        snapshot = await self.store.get()
        self.accounts.update(snapshot)
        return snapshot.get(ref.user, ref.host)


async def _run(conn: Any, sql: str) -> Any:
    try:
        return await conn.run(sql)
    except BackendError as e:
        raise e.to_sql_error()
