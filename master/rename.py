"""RENAME TABLE across regions: what each region runs, and the new placement.

MariaDB's RENAME TABLE is atomic and runs its pairs in order, so chains and
swaps work (`RENAME TABLE a TO tmp, b TO a, tmp TO b`).  In the cluster the
tables of one statement may live on different regions, so no region can run
the client's whole statement.  `plan_rename` checks the statement against the
placement the way MariaDB checks it against its tables (1146 for a missing
source, 1050 for a taken target, pair by pair, so a name freed by an earlier
pair may be reused), then follows each table through the chain to give every
region exactly the pairs that concern the copies it holds -- the swap above
becomes `a TO tmp, tmp TO b` where only `a` lives and `b TO a` where `b` lives.

`apply_rename` is the placement edit (pure; re-run on every compare-and-set
attempt): each table keeps its copies under its new name, and every FOREIGN
KEY reference to an old name follows it, because InnoDB rewrites the child's
constraint when its parent is renamed (checked on MariaDB 10.11: SHOW CREATE
TABLE of the child then names the new parent, database included).

This module is pure; master/ddl_service.py runs the plan (and undoes it on the
regions that did rename when another region refuses).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from minisql.errors import ER_NO_SUCH_TABLE, ER_TABLE_EXISTS, SqlError
from topology import Placement

Key = tuple[str, str]
Pair = tuple[Key, Key]


@dataclass(frozen=True)
class RenamePlan:
    pairs: tuple[Pair, ...]  # the pairs that rename something, in statement order
    per_region: dict[str, tuple[Pair, ...]]  # region -> the pairs its copies go through
    skipped: tuple[Key, ...] = ()  # IF EXISTS: sources that did not exist


def plan_rename(placement: Placement, pairs: list[Pair], if_exists: bool = False) -> RenamePlan:
    names = {t.key for t in placement.all_tables()}
    done: list[Pair] = []
    skipped: list[Key] = []
    for src, dst in pairs:
        if src not in names:
            if if_exists:
                skipped.append(src)
                continue
            raise SqlError(ER_NO_SUCH_TABLE, f"Table '{src[0]}.{src[1]}' doesn't exist", "42S02")
        if dst in names:
            raise SqlError(ER_TABLE_EXISTS, f"Table '{dst[1]}' already exists", "42S01")
        names.discard(src)
        names.add(dst)
        done.append((src, dst))
    per_region: dict[str, list[Pair]] = {}
    for region in sorted({r for t in placement.all_tables() for r in t.all_regions}):
        present = {t.key for t in placement.tables_on_region(region)}
        steps = []
        for src, dst in done:
            if src in present:
                present.discard(src)
                present.add(dst)
                steps.append((src, dst))
        if steps:
            per_region[region] = steps
    return RenamePlan(tuple(done), {r: tuple(s) for r, s in per_region.items()}, tuple(skipped))


def apply_rename(placement: Placement, pairs: tuple[Pair, ...]) -> Placement | None:
    """Every pair's table under its new name, references rewritten; None when
    a source is gone or a target taken (the placement changed meanwhile)."""
    result = placement
    for src, dst in pairs:
        table = result.table(*src)
        if table is None or result.table(*dst) is not None or not result.has_database(dst[0]):
            return None
        result = result.without_table(*src).with_table(replace(table, database=dst[0], name=dst[1]))
        for t in list(result.all_tables()):
            if src in t.references or src in t.links:
                def moved(refs: tuple[Key, ...]) -> tuple[Key, ...]:
                    return tuple(sorted({dst if r == src else r for r in refs}))
                result = result.with_table(replace(t, references=moved(t.references), links=moved(t.links)))
    return result if pairs else None


def rename_sql(steps: tuple[Pair, ...], undo: bool = False) -> str:
    """The RENAME TABLE one region runs (or, `undo`, the one that reverses it)."""
    if undo:
        steps = tuple((dst, src) for src, dst in reversed(steps))
    return "RENAME TABLE " + ", ".join(f"{_name(src)} TO {_name(dst)}" for src, dst in steps)


def _name(key: Key) -> str:
    return ".".join("`" + part.replace("`", "``") + "`" for part in key)
