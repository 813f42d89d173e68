"""Making a write come out the same on every copy, beyond SET STATEMENT pinning
(engine.FanOutWrite pins NOW(), RAND() and insert ids with `_pinned`):

* `substitute_uuids`: in INSERT ... VALUES each UUID() call is evaluated once,
  so the proxy evaluates it and sends the literal to every copy;
* `order_by_key`: UPDATE/DELETE ... LIMIT without ORDER BY may change
  different rows on each copy (MariaDB's "unsafe for statement-based
  replication"); ordered by the table's primary key (or a unique key of NOT
  NULL columns, else every column: `table_key`, read from the primary once per
  placement epoch), every copy picks the same rows (a keyless table's rows
  equal in every column are interchangeable; BLOB/TEXT values are ordered by
  their first max_sort_length bytes, so two rows differing only after those
  and nowhere else could still be picked differently);
* `substitute_nextvals`: NEXTVAL of a sequence placed apart from the table an
  INSERT ... VALUES writes is evaluated on the sequence's copies first.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from minisql.errors import unsupported

from .protocol import text_row
from .statements import SEQUENCE_CALL, blank_quoted

if TYPE_CHECKING:
    from .engine import VCursor

_UUID_CALL = re.compile(
    r"""('[^'\\]*(?:(?:\\.|'')[^'\\]*)*'?|"[^"\\]*(?:(?:\\.|"")[^"\\]*)*"?|`[^`]*`?|/\*.*?(?:\*/|\Z))|\buuid\s*\(\s*\)""",
    re.I | re.S,
)


_KEYS: dict[tuple[str, str, int], tuple[str, ...]] = {}  # (db, table, placement epoch) -> key columns


async def table_key(vc: "VCursor", region: str, table: tuple[str, str]) -> tuple[str, ...]:
    """The columns of the table's primary key (else of a unique key of NOT NULL
    columns), read from `region` once per placement epoch."""
    cached = _KEYS.get((*table, vc.snapshot.epoch))
    if cached is not None:
        return cached
    db, name = table
    quoted = "`" + db.replace("`", "``") + "`.`" + name.replace("`", "``") + "`"
    result = await vc.run(region, f"SHOW KEYS FROM {quoted}", join=False)
    keys: dict[str, list[tuple[int, str, bool]]] = {}
    unique: dict[str, bool] = {}
    for raw in result.rows:
        v = [x.decode("utf8", "surrogateescape") if x is not None else None for x in text_row(raw)]
        # Table, Non_unique, Key_name, Seq_in_index, Column_name, Collation, Cardinality, Sub_part, Packed, Null, ...
        keys.setdefault(v[2] or "", []).append((int(v[3] or 0), v[4] or "", (v[9] or "") == "YES"))
        unique[v[2] or ""] = v[1] == "0"
    chosen = keys.get("PRIMARY") or next(
        (cols for k, cols in keys.items() if unique.get(k) and not any(weak for _, _, weak in cols)), None)
    if chosen:
        columns = tuple(c for _, c, _ in sorted(chosen))
    else:
        # No key: every column.  Rows equal in all of them are indistinguishable, so
        # whichever of them a copy picks, the copies stay identical.
        shown = await vc.run(region, f"SHOW COLUMNS FROM {quoted}", join=False)
        columns = tuple((text_row(raw)[0] or b"").decode("utf8", "surrogateescape") for raw in shown.rows)
    if len(_KEYS) > 4096:
        _KEYS.clear()
    _KEYS[(db, name, vc.snapshot.epoch)] = columns
    return columns


_TRAILING_LIMIT = re.compile(r"\blimit\s+[^\s;]+\s*;?\s*$", re.I)


def order_by_key(sql: str, columns: tuple[str, ...]) -> str:
    """`... LIMIT n` as `... ORDER BY <key> LIMIT n`: every copy picks the same rows."""
    m = _TRAILING_LIMIT.search(blank_quoted(sql))
    if m is None:
        raise unsupported("this form of UPDATE/DELETE ... LIMIT on a replicated table (add ORDER BY)")
    order = ", ".join("`" + c.replace("`", "``") + "`" for c in columns)
    return f"{sql[:m.start()]}ORDER BY {order} {sql[m.start():]}"


def substitute_uuids(sql: str) -> str:
    """Each UUID() call (outside strings and comments) as a fresh version-1 UUID
    literal, as MariaDB's UUID() makes them."""
    return _UUID_CALL.sub(lambda m: m.group(1) or f"'{uuid.uuid1()}'", sql)


async def substitute_nextvals(
    vc: "VCursor", sql: str, sequences: dict[str, tuple[str, ...]], run: Callable[..., Awaitable[Any]]
) -> str:
    """INSERT ... VALUES (NEXTVAL(s), ...) into a table placed apart from `s`:
    each NEXTVAL(s) / NEXT VALUE FOR s (outside strings and comments), in text
    order -- MariaDB's order of evaluation for VALUES -- becomes the literal
    `SELECT NEXTVAL(s)` returns when run as a write on s's copies (`run`:
    a FanOutWrite there, so every copy of s advances alike).  SETVAL on such a
    sequence cannot be moved out of the statement: 1235."""
    out: list[str] = []
    last = 0
    for m in SEQUENCE_CALL.finditer(sql):
        if m.group(1) is not None or not (m.group(2) or m.group(4)):
            continue
        name = m.group(3) or m.group(5)
        parts = [p.strip().strip("`") for p in re.split(r"\s*\.\s*(?=(?:`|[\w$]))", name, maxsplit=1)]
        key = ".".join(parts) if len(parts) == 2 else f"{vc.state.database}.{parts[0]}"
        regions = sequences.get(key)
        if regions is None:
            continue
        if (m.group(2) or "").lower() == "setval":
            raise unsupported("SETVAL() in a write to a table placed apart from its sequence")
        end = m.end()
        if m.group(2):  # NEXTVAL( name ): through its closing parenthesis
            close = sql.find(")", end)
            if close < 0:
                continue
            end = close + 1
        quoted = ".".join("`" + p.replace("`", "``") + "`" for p in key.split(".", 1))
        result = await run(vc, f"SELECT NEXTVAL({quoted})", regions)
        value = text_row(result.rows[0])[0] if result.rows else None
        out.append(sql[last:m.start()])
        out.append("NULL" if value is None else value.decode("ascii"))
        last = end
    out.append(sql[last:])
    return "".join(out)
