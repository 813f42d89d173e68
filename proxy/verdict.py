"""MariaDB's own answer for a statement the proxy could not plan.

The proxy refuses a statement when its own parser fails (1064), when it
names a table the placement does not know (1146), or when it is a form the
gateway cannot route (1235).  One MariaDB would often answer differently:
``select * from (select * left join t on f1=f2) tt`` is a syntax error there
(1064) before any table is looked up, ``insert into (select * from t1)
values (5)`` too, and an expression MariaDB rejects at parse or prepare time
has an error of its own (1210 for a bad ESCAPE, ...).  Applications and test
suites check those numbers.

So, on those refusals only (never on the fast path), the statement's text is
sent to one region as ``COM_STMT_PREPARE``: MariaDB parses and resolves it
without running anything.  If that fails, its error is the client's -- unless
it is one that depends on which region was asked (a table, database or view
the region does not hold: the cluster may hold it elsewhere; LOCK TABLES
state), or MariaDB cannot prepare that kind of statement at all (1295).  If
the region prepares it fine, the statement is valid MariaDB and the proxy's
own error stands.
"""

from __future__ import annotations

import logging
from typing import Any

from minisql.errors import SqlError

log = logging.getLogger(__name__)

#: the proxy's refusals worth a second opinion
ASK_SERVER = frozenset({1064, 1146, 1235})
#: MariaDB errors that depend on which region answered (or say nothing about the statement)
_REGION_DEPENDENT = frozenset({
    1046,  # no database selected: the session's database may be placed nowhere on that region
    1049,  # unknown database
    1100,  # table was not locked with LOCK TABLES
    1109,  # unknown table in a multi-table DELETE
    1146,  # table doesn't exist
    1295,  # not supported in the prepared statement protocol
    1356,  # view references invalid tables
    1615,  # prepared statement needs to be re-prepared
    2013,  # (lost connection)
})


async def server_verdict(session: Any, cursor: Any, sql: str, ours: SqlError) -> SqlError:
    """The error the client gets: MariaDB's (see module docstring) or `ours`."""
    try:
        region = cursor.any_region()
        conn = await session.backends.get(region, cursor.snapshot, session.state)
        prepared = await cursor.call(conn, conn.prepare(sql.encode(conn.sql_encoding, "surrogateescape")))
    except SqlError as theirs:
        if theirs.errno in _REGION_DEPENDENT or theirs.errno >= 2000:
            return ours
        log.debug("proxy refused %r with %s; MariaDB says %s", sql[:80], ours.errno, theirs.errno)
        return theirs
    except Exception as e:  # noqa: BLE001 - a second opinion only: never worse than our own answer
        log.debug("could not ask a region about %r: %s", sql[:80], e)
        return ours
    conn.close_statement(prepared.stmt_id)
    return ours
