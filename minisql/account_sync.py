"""Make one MariaDB's copy of an account match its ZooKeeper record.

Used by region agents (every account, at start and on every change of the
accounts znode) and by the proxy (the accounts of its users file at start,
so a freshly started cluster accepts its bootstrap users at once).  Runs as
the cluster's internal account, on an aiomysql connection.

What "match" means: the account exists as `'user'@'host'` with its region
password (minisql/accounts.py) and exactly the grants recorded, which are
MariaDB's own `SHOW GRANTS` lines with the password part removed.

Error handling: a grant that cannot be applied (a role that does not exist
on this region, say) is logged and skipped; the rest still converge, and the
next change or restart tries again.  An account dropped while a region was
down stays on that region, harmless: no proxy authenticates an account
ZooKeeper does not list.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Iterable

from topology.accounts import AccountRecord

from .accounts import native_hash, quote_account, region_password

log = logging.getLogger(__name__)

_PASSWORD_PART = re.compile(r" IDENTIFIED (?:BY PASSWORD '[^']*'|VIA .*?(?= REQUIRE | WITH |$))")
_REQUIRE_PART = re.compile(r" REQUIRE (?:NONE|SSL|X509|(?:ISSUER|SUBJECT|CIPHER) '[^']*'(?: AND (?:ISSUER|SUBJECT|CIPHER) '[^']*')*)")


def normalize_grants(lines: Iterable[str]) -> tuple[str, ...]:
    """SHOW GRANTS lines without password and REQUIRE parts (those are the proxy's)."""
    return tuple(_REQUIRE_PART.sub("", _PASSWORD_PART.sub("", line)) for line in lines)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)


async def read_grants(conn: Any, user: str, host: str) -> tuple[str, ...] | None:
    """The account's normalized grants, None when it does not exist."""
    async with conn.cursor() as cur:
        try:
            await cur.execute("SHOW GRANTS FOR %s@%s", (user, host))
        except Exception as exc:  # noqa: BLE001 - 1141: no such grant/account
            if getattr(exc, "args", (0,))[0] == 1141:
                return None
            raise
        return normalize_grants(_text(row[0]) for row in await cur.fetchall())


async def ensure_account(conn: Any, record: AccountRecord, secret: str) -> bool:
    """Create or fix the account on this MariaDB; True when anything changed."""
    user, host = record.user, record.host
    wanted_hash = "*" + native_hash(region_password(secret, user, host)).upper()
    changed = False
    async with conn.cursor() as cur:
        await cur.execute("SELECT authentication_string FROM mysql.user WHERE User = %s AND Host = %s", (user, host))
        row = await cur.fetchone()
        if row is None:
            await cur.execute("CREATE USER %s@%s IDENTIFIED BY PASSWORD %s", (user, host, wanted_hash))
            changed = True
        elif _text(row[0]).upper() != wanted_hash:
            await cur.execute("ALTER USER %s@%s IDENTIFIED BY PASSWORD %s", (user, host, wanted_hash))
            changed = True
    current = await read_grants(conn, user, host) or ()
    if sorted(current) != sorted(record.grants):
        async with conn.cursor() as cur:
            await cur.execute("REVOKE ALL PRIVILEGES, GRANT OPTION FROM %s@%s", (user, host))
            for grant in record.grants:
                try:
                    await cur.execute(grant)
                except Exception as exc:  # noqa: BLE001 - see "Error handling"
                    log.warning("cannot apply %r for %s@%s: %s", grant, user, host, exc)
        changed = True
    return changed


def superuser_grants(user: str, host: str) -> tuple[str, ...]:
    """What a users-file account gets when the file names no grants: everything."""
    return (f"GRANT ALL PRIVILEGES ON *.* TO {quote_account(user, host)} WITH GRANT OPTION",)
