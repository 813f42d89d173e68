"""The names and formats of the cluster's atomic commit (XA two-phase commit).

Shared by the proxy (which commits), the region agent (which creates the
decision table) and the master's resolver (which settles branches a proxy
left prepared).  The protocol itself is described in proxy/commit.py and
docs/architecture.md ("Atomic commit"); this module only says how its
pieces are spelled, so the three never disagree.

* A transaction's branches share one *gtrid*: ``ms1:<decider>:<token>.<id>:<n>``.
  ``<decider>`` is the region whose decision table holds the outcome (the
  first region the transaction touched), ``<token>`` is unique per proxy
  process, ``<id>`` is the client connection's id there and ``<n>`` counts
  that connection's transactions.  The *bqual* is the
  branch's own region id; the format id marks the branch as ours, so the
  resolver never touches an application's own XA transactions.
* The decision is one row of `DECISIONS` on the decider, inserted in its own
  autocommit transaction: ``commit`` by the proxy once every branch is
  prepared, ``abort`` by the resolver for a branch nobody finished.  The
  primary key makes exactly one of them win.  A ``commit`` is then copied to
  the *backup* (`backup_of`: another participant region) before any branch
  commits, so it outlives the decider's failover; the resolver records
  ``commit`` on every region holding a branch before it commits one.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

#: XA format id of the cluster's branches ("MSQ")
FORMAT_ID = 0x4D5351
#: the decision table, in the `mysql` schema: never placed, never written through a proxy
DECISIONS = "mysql.minisql_xa_decisions"
CREATE_DECISIONS = (
    f"CREATE TABLE IF NOT EXISTS {DECISIONS} ("
    " gtrid VARBINARY(64) NOT NULL PRIMARY KEY,"
    " outcome ENUM('commit', 'abort') NOT NULL,"
    " decided_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
    " KEY (decided_at)"
    ") ENGINE=InnoDB COMMENT='MiniSQL Cluster: outcomes of two-phase commits decided here'"
)
COMMIT, ABORT = "commit", "abort"

_GTRID = re.compile(r"^ms1:([^:]+):([0-9A-Za-z.]+):(\d+)$")
_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,24}$")  # a gtrid is at most 64 bytes


def new_token() -> str:
    """A proxy process's part of its gtrids (random: unique across restarts)."""
    return secrets.token_hex(6)


def can_decide(region: str) -> bool:
    """Region ids that fit in a gtrid and need no quoting (else: no XA)."""
    return bool(_SAFE.match(region))


def make_gtrid(decider: str, token: str, n: int) -> str:
    return f"ms1:{decider}:{token}:{n}"


def backup_of(branches: "list[str] | tuple[str, ...]", decider: str | None) -> str | None:
    """The region that keeps the second copy of a transaction's decision: the
    smallest participant other than the decider (None: no other)."""
    others = sorted(r for r in branches if r != decider)
    return others[0] if others else None


def owner_of(gtrid: str) -> str | None:
    """The token of the proxy process that made one of our gtrids (its
    `proxies/<n>` instance token while it lives); None: not ours."""
    m = _GTRID.match(gtrid)
    return m.group(2).split(".", 1)[0] if m else None


def decider_of(gtrid: str) -> str | None:
    """The decider region named by one of our gtrids (None: not ours)."""
    m = _GTRID.match(gtrid)
    return m.group(1) if m else None


@dataclass(frozen=True, slots=True)
class Xid:
    """One branch: the transaction's gtrid and the branch's region."""

    gtrid: str
    bqual: str

    def sql(self) -> str:
        """The xid as XA statements take it (both parts checked when made)."""
        return f"'{self.gtrid}','{self.bqual}',{FORMAT_ID}"

    @property
    def decider(self) -> str | None:
        return decider_of(self.gtrid)


def recovered(rows: list[tuple]) -> list[Xid]:
    """Our branches among `XA RECOVER`'s rows (formatID, gtrid_length,
    bqual_length, data)."""
    out = []
    for row in rows:
        try:
            fmt, glen, blen, data = int(row[0]), int(row[1]), int(row[2]), row[3]
        except (IndexError, TypeError, ValueError):
            continue
        if fmt != FORMAT_ID:
            continue
        raw = data if isinstance(data, (bytes, bytearray)) else str(data).encode()
        gtrid, bqual = raw[:glen].decode("ascii", "replace"), raw[glen:glen + blen].decode("ascii", "replace")
        if decider_of(gtrid) is not None and can_decide(bqual):
            out.append(Xid(gtrid, bqual))
    return out
