"""The leader's CREATE / ALTER / DROP VIEW (a part of DdlService).

A view is a placement entry of kind "view" whose `references` are the tables
and views its SELECT reads: an edge set of the colocation graph, so a view
lives on the regions of what it reads, and creating it first brings those
together (assignor.plan_colocation, mover.py) exactly as a FOREIGN KEY does.
Its copies hold no rows, so a failover or a move re-creates it from SHOW
CREATE VIEW (region copy_table) once the tables it reads are in place.

Errors are MariaDB's: 1050 for a taken name, 1347 "is not VIEW" for CREATE OR
REPLACE / ALTER VIEW over a table, 1146 for ALTER VIEW of nothing, 4092
"Unknown VIEW" for DROP VIEW of a missing name (a Note with IF EXISTS).

Error handling
--------------
* A CREATE that a region refuses is dropped on the regions that made it and
  the region's error returned; nothing is published.  A CREATE OR REPLACE /
  ALTER that one copy refuses after another accepted leaves that copy with
  the old definition: it is marked STALE and re-created by the failover loop.
* DROP VIEW drops the copies on live regions, then unpublishes; a copy on a
  region that is down stays there as an orphan, as for tables.
"""

from __future__ import annotations

import logging
from typing import Any

from minisql.errors import ER_BAD_DB, ER_NO_SUCH_TABLE, ER_TABLE_EXISTS, SqlError
from topology import Placement, ReplicaState, TablePlacement

from .assignor import mark_replicas
from .ddl_results import note, ok, user_schema, without_tables
from .ddl import DdlKind, DdlStatement

log = logging.getLogger(__name__)

ER_WRONG_OBJECT = 1347
ER_UNKNOWN_SEQUENCE = 4091
ER_UNKNOWN_VIEW = 4092
ER_IT_IS_A_VIEW = 1965


def not_a_view(db: str, name: str) -> SqlError:
    return SqlError(ER_WRONG_OBJECT, f"'{db}.{name}' is not VIEW", "HY000")


def is_a_view(db: str, name: str) -> SqlError:
    return SqlError(ER_IT_IS_A_VIEW, f"'{db}.{name}' is a view", "42S02")


class ViewStatements:
    """Mixed into DdlService: uses its topology, region caller and helpers."""

    async def _create_view(self: Any, stmt: DdlStatement, sql: str, session_db: str | None) -> dict[str, Any]:
        db, name = stmt.tables[0].resolve(session_db)
        user_schema(db)
        placement: Placement = await self._topo.get_placement()
        if not placement.has_database(db):
            raise SqlError(ER_BAD_DB, f"Unknown database '{db}'")
        existing = placement.table(db, name)
        if stmt.kind == DdlKind.ALTER_VIEW:
            if existing is None:
                raise SqlError(ER_NO_SUCH_TABLE, f"Table '{db}.{name}' doesn't exist", "42S02")
            if not existing.is_view:
                raise not_a_view(db, name)
        elif existing is not None:
            if stmt.if_not_exists:
                return ok(placement, 0, [note(ER_TABLE_EXISTS, f"Table '{name}' already exists")])
            if not stmt.or_replace:
                raise SqlError(ER_TABLE_EXISTS, f"Table '{name}' already exists", "42S01")
            if not existing.is_view:
                raise not_a_view(db, name)
        reads = tuple(sorted({ref.resolve(session_db or db) for ref in stmt.references}))
        linked = list(reads) + ([(db, name)] if existing is not None else [])  # (a view of no table: the least-loaded pair)
        primary, replicas = await self._regions_for(placement, linked, f"Can't create view `{db}`.`{name}`")
        task = self._client_task({"op": "execute_ddl", "database": session_db or db, "sql": sql})
        copies = [primary, *replicas]
        results = await self._regions.call_many(copies, task)
        error = self._first_error(results, prefer=primary)
        if error is not None and (existing is None or isinstance(results[primary], SqlError)):
            if existing is None:
                await self._rollback_copies(db, name, [r for r, res in results.items() if not isinstance(res, SqlError)])
            raise error
        view = TablePlacement(
            db, name, primary, {r: ReplicaState.IN_SYNC for r in replicas}, references=reads, kind="view"
        )
        written = await self._publish(lambda p: p.with_table(view) if p.has_database(db) else None)
        failed = [r for r, res in results.items() if isinstance(res, SqlError)]
        if failed:  # a replaced definition one copy refused: that copy is re-created from the primary
            log.error("view `%s`.`%s`: new definition refused on %s; marking those copies STALE", db, name, failed)
            written = await self._publish(lambda p: mark_replicas(p, db, name, failed, ReplicaState.STALE))
        log.info("view `%s`.`%s` on %s + %s, reading %s (placement v%d)", db, name, primary, replicas, reads, written.version)
        primary_result = results[primary]
        return ok(written, 0, primary_result.get("warnings") if isinstance(primary_result, dict) else None)

    async def _drop_views(self: Any, stmt: DdlStatement, session_db: str | None) -> dict[str, Any]:
        """DROP VIEW [IF EXISTS] v, ... (and DROP SEQUENCE): the views that exist
        are dropped; the names that are not views get 4092 (4091 "Unknown
        SEQUENCE"), a Note with IF EXISTS, as in MariaDB."""
        kind, errno, what = ("sequence", ER_UNKNOWN_SEQUENCE, "SEQUENCE") if stmt.kind == DdlKind.DROP_SEQUENCE else (
            "view", ER_UNKNOWN_VIEW, "VIEW")
        refs = list(dict.fromkeys(ref.resolve(session_db) for ref in stmt.tables))
        for db, _ in refs:
            user_schema(db)
        placement: Placement = await self._topo.get_placement()
        views = [(db, name) for db, name in refs if (t := placement.table(db, name)) is not None and t.kind == kind]
        missing = [f"{db}.{name}" for db, name in refs if (db, name) not in views]
        live = await self._live()
        dropped = []
        for db, name in views:
            view = placement.table(db, name)
            assert view is not None
            results = await self._regions.call_many(
                [r for r in view.all_regions if r in live],
                self._client_task({"op": "drop_table", "database": db, "table": name, "kind": kind}),
            )
            error = self._first_error(results)
            if error is not None:
                raise error
            dropped.append((db, name))

        written = await self._publish(without_tables(dropped))
        if missing and not stmt.if_exists:
            raise SqlError(errno, f"Unknown {what}: '{','.join(missing)}'", "42S02")
        return ok(written, 0, [note(errno, f"Unknown {what}: '{m}'") for m in missing])
