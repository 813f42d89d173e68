"""Which writes may run while a table has a FILLING copy (pure).

An online copy (region/fill.py) is filled in primary-key chunks: rows below
the chunk being copied are already on the new copy, rows above are not yet.
Every write reaches the new copy too (FanOutWrite, `filling`), and a write
is harmless there when it only changes rows it names by their own values: on a
copied row it does what it does on the primary; on an uncopied row it does
nothing, or inserts a row the chunk copy will replace (the chunk copy deletes
its key range on the new copy and writes the primary's rows, under locks on
the primary).  Its affected-row count may differ there; that is expected.

Writes that could leave a copied range different from the primary's wait
instead (`FillInProgress`; the session holds them until the copy is in sync or
FILL_WAIT seconds pass, then 1205, which drivers and ORMs retry):

* an UPDATE assigning a primary-key or UNIQUE column (or anything but plain
  columns): it can move a row from the uncopied range into a copied one, which
  the new copy never gets;
* a write that reads rows (INSERT ... SELECT, a subquery, a multi-table
  UPDATE/DELETE, a CALL, LOAD DATA): the new copy would read its incomplete rows;
* UPDATE/DELETE ... LIMIT: the rows chosen may differ;
* with a UNIQUE key besides the primary key, INSERT IGNORE and ON DUPLICATE
  KEY UPDATE: a conflict with an uncopied row is seen on the primary only, so
  the new copy would insert a row the primary did not.

Tables without a primary key, with triggers or foreign keys, or on a
non-transactional engine are never FILLING: they get the offline COPYING
fallback (master/copier.py).
"""

from __future__ import annotations

import re

from minisql.errors import ER_LOCK_WAIT_TIMEOUT, SqlError
from topology import TablePlacement

from .statements import Analysis, Kind

FILL_WAIT = 10.0  # seconds a write waits for a fill before 1205

_SELECT = re.compile(r"\bselect\b", re.I)


class FillInProgress(SqlError):
    """A write that cannot run while `table` has a FILLING copy (module docstring);
    nothing was sent anywhere."""

    def __init__(self, table: TablePlacement, why: str) -> None:
        super().__init__(ER_LOCK_WAIT_TIMEOUT,
                         f"Lock wait timeout exceeded; try restarting transaction (a new copy of "
                         f"`{table.database}`.`{table.name}` is being filled and this statement {why})", "HY000")
        self.table = table


def check_fill(analysis: Analysis, sql: str, writes: tuple[TablePlacement, ...], reads: tuple[TablePlacement, ...]) -> None:
    """Raise FillInProgress if this write must wait for a fill; else return."""
    filling = next((t for t in writes + reads if t.filling_replicas), None)
    if filling is None:
        return
    if len(writes) != 1 or reads or _SELECT.search(sql):
        raise FillInProgress(filling, "reads rows the new copy may not have yet")
    table = writes[0]
    guard = set(table.fill_guard)
    if analysis.assigned is None or guard.intersection(analysis.assigned):
        raise FillInProgress(table, "changes a key column")
    if analysis.limited:
        raise FillInProgress(table, "has a LIMIT")
    if table.fill_unique and analysis.kind is not Kind.REPLACE and (analysis.ignore or analysis.upsert):
        raise FillInProgress(table, "may conflict with a row not copied yet")


def refuse_while_filling(tables: tuple[TablePlacement, ...], what: str) -> None:
    """For writes planned outside the DML planner (CALL, LOAD DATA)."""
    for t in tables:
        if t.filling_replicas:
            raise FillInProgress(t, what)
