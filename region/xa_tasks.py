"""Region tasks of the two-phase commit's resolver (master/resolver.py).

The master holds no MariaDB credentials: it asks each region, through its
ZooKeeper queue, for the branches a proxy left prepared (`xa_recover`), for
the outcome of a transaction this region decides (`xa_decide`), to finish a
branch (`xa_settle`) and to forget old decisions (`xa_forget`).  Names and
formats are minisql/xa.py's.

Error handling: every step is idempotent.  `xa_decide` inserts ``abort``
only if no outcome exists (the primary key keeps the proxy's ``commit`` if
it came first) and returns whichever outcome stands; `xa_settle` of a
branch that is already gone (XAER_NOTA, 1397) is a success.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from minisql.errors import SqlError
from minisql.xa import ABORT, COMMIT, DECISIONS, Xid, can_decide, decider_of, recovered

ER_DUP_ENTRY = 1062
ER_XAER_NOTA = 1397
_GTRID_TEXT = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def _gtrid(payload: Mapping[str, Any]) -> str:
    gtrid = payload.get("gtrid")
    if not isinstance(gtrid, str) or not _GTRID_TEXT.match(gtrid) or decider_of(gtrid) is None:
        raise SqlError(1105, f"malformed gtrid {gtrid!r}")
    return gtrid


class XaTasks:
    """The resolver's handlers, over the agent's pool (the internal account,
    autocommit: each decision is its own transaction)."""

    def __init__(self, region_id: str, pool: Any) -> None:
        self.region_id = region_id
        self._pool = pool

    def ops(self) -> dict[str, Any]:
        return {"xa_recover": self.recover, "xa_decide": self.decide, "xa_record": self.record, "xa_settle": self.settle,
                "xa_forget": self.forget}

    async def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        async with self._pool.acquire() as conn:
            await conn.ping(reconnect=True)
            async with conn.cursor() as cur:
                await cur.execute(sql, args or None)
                return list(await cur.fetchall())

    async def recover(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Our prepared branches here: {"branches": [[gtrid, bqual], ...]}."""
        rows = await self._query("XA RECOVER")
        return {"branches": [[x.gtrid, x.bqual] for x in recovered(rows)]}

    async def decide(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The outcome of a transaction decided here: `abort` unless the proxy's
        `commit` is already recorded (then that)."""
        gtrid = _gtrid(payload)
        if decider_of(gtrid) != self.region_id:
            raise SqlError(1105, f"{gtrid} is decided on {decider_of(gtrid)}, not {self.region_id}")
        return await self._insert_unless_there(gtrid, ABORT)

    async def record(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Record `outcome` for a transaction here unless one is recorded
        already; the one that stands.  The resolver copies a decider's
        `commit` to every region of a branch (so a failover of the decider
        cannot lose it) and, when the decider was failed over, asks every
        live region with `abort` (a `commit` found anywhere is the backup's:
        proxy/commit.py).  `"lookup": true` only reads (None if none)."""
        gtrid = _gtrid(payload)
        if payload.get("lookup") is True:
            rows = await self._query(f"SELECT outcome FROM {DECISIONS} WHERE gtrid = %s", (gtrid,))
            return {"outcome": str(rows[0][0]) if rows else None}
        outcome = payload.get("outcome")
        if outcome not in (COMMIT, ABORT):
            raise SqlError(1105, f"xa_record: outcome must be {COMMIT!r} or {ABORT!r}")
        return await self._insert_unless_there(gtrid, str(outcome))

    async def _insert_unless_there(self, gtrid: str, outcome: str) -> dict[str, Any]:
        async with self._pool.acquire() as conn:
            await conn.ping(reconnect=True)
            async with conn.cursor() as cur:
                try:
                    await cur.execute(f"INSERT INTO {DECISIONS} (gtrid, outcome) VALUES (%s, %s)", (gtrid, outcome))
                    return {"outcome": outcome}
                except Exception as exc:  # noqa: BLE001 - a duplicate means the outcome exists
                    if getattr(exc, "args", (0,))[0] != ER_DUP_ENTRY:
                        raise
                await cur.execute(f"SELECT outcome FROM {DECISIONS} WHERE gtrid = %s", (gtrid,))
                row = await cur.fetchone()
        outcome = str(row[0]) if row else ABORT
        return {"outcome": COMMIT if outcome == COMMIT else ABORT}

    async def settle(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """XA COMMIT or XA ROLLBACK of one of our prepared branches here."""
        gtrid = _gtrid(payload)
        bqual = payload.get("bqual")
        if not isinstance(bqual, str) or not can_decide(bqual):
            raise SqlError(1105, f"malformed bqual {bqual!r}")
        xid = Xid(gtrid, bqual)
        verb = "COMMIT" if payload.get("commit") is True else "ROLLBACK"
        try:
            await self._query(f"XA {verb} {xid.sql()}")
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "args", (0,))[0] != ER_XAER_NOTA:  # already settled
                raise
        return {"ok": True, "settled": verb.lower()}

    async def forget(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Delete decisions older than `older_than` seconds (no branch of them
        can still be prepared on a region that serves: see master/resolver.py)."""
        age = payload.get("older_than")
        if not isinstance(age, (int, float)) or age < 60:
            raise SqlError(1105, "xa_forget needs older_than >= 60 seconds")
        async with self._pool.acquire() as conn:
            await conn.ping(reconnect=True)
            async with conn.cursor() as cur:
                deleted = await cur.execute(
                    f"DELETE FROM {DECISIONS} WHERE decided_at < NOW(6) - INTERVAL %s SECOND LIMIT 10000", (int(age),))
        return {"ok": True, "deleted": int(deleted or 0)}

