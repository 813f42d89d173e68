"""The leader's DDL handler: the `master` queue's {"op": "ddl"} requests.

Request (from the proxy)::

    {"op": "ddl", "sql": <client's original text>, "database": <session db or null>,
     "account": {"user", "host"}, "statement_vars": <SET STATEMENT vars or "">,
     "session_sets": [<the client session's SET statements>],
     "charset": <its character_set_client>}

Result::

    {"ok": true, "affected_rows": N, "warnings": [{"level", "code", "message"}...],
     "placement_version": V}
    {"error": {"errno", "sqlstate", "message"}}

`placement_version` is the version of the placement written by this DDL, or
the current one when nothing changed; the proxy waits until its snapshot has
reached it before answering the client, so the client's next statement is
routed with the change visible.

What each statement does, and in which order (the order is what keeps the
cluster from ever publishing a table that does not exist everywhere it is
said to):

* CREATE DATABASE: create on every live region, then publish.
* DROP DATABASE: drop on every live region, then unpublish (with its tables).
Every region task for the client runs as the client's account after its
session's SETs (`session_sets`: sql_mode, foreign_key_checks, ...).

* CREATE TABLE / CREATE SEQUENCE: pick the regions -- those of the tables it
  is linked to (FOREIGN KEY parents, children already naming it, the
  sequence of a DEFAULT NEXTVAL), brought together first by moving tables
  (assignor.plan_colocation, mover.py), else the least-loaded pair -- run the
  client's text on each; if one fails, drop the copies that succeeded and
  return the region's error; only then publish the table with the FOREIGN KEY
  parents MariaDB reports (compare-and-set).
* CREATE / ALTER / DROP VIEW: view_service.py.  RENAME TABLE and ALTER TABLE
  ... RENAME: rename.py plans what each region runs.
* {"op": "colocate", "table", "with"} (not DDL: the proxy before a CREATE
  TRIGGER whose body reaches other tables): those tables moved onto the
  table's regions and recorded as its `links`.
* DROP TABLE t1[, t2]: all-or-nothing on names like MySQL 8 (an unknown name
  -> 1051 and nothing dropped, unless IF EXISTS); drop each copy on live
  regions, then unpublish.
* ALTER TABLE / CREATE INDEX / DROP INDEX / TRUNCATE: the primary first (its
  failure is the client's error and nothing changed), then every IN_SYNC
  replica; a replica that fails, is down, or is COPYING or FILLING is marked STALE in
  the placement -- never silently divergent.  STALE replicas are re-copied by
  the failover loop.

Error handling
--------------
* Region copies on regions that are down are skipped by DROP; they stay on
  that MariaDB as orphans, harmless because only the placement routes.  An
  orphan found by a later CREATE TABLE (1050 from a region although the
  placement has no such table, or the 1050 note of IF NOT EXISTS) is dropped
  and the CREATE run again on that region.
* A leader that dies mid-DDL leaves the request unanswered and the next
  leader runs it again (at-least-once).  A CREATE TABLE whose placement was
  already published then answers 1050 (or OK with IF NOT EXISTS): the table
  exists, but the client is told it did -- the one visible trace of the
  re-run.  One that was not yet published is redone from scratch (orphans).
* If the final placement write fails (ZooKeeper away), the regions have been
  changed but the placement not: the client gets an error and a retry
  converges (creates re-run through the orphan path; drops are idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any, Callable, Mapping

from minisql.errors import (
    ER_BAD_DB,
    ER_BAD_TABLE,
    ER_DB_CREATE_EXISTS,
    ER_DB_DROP_EXISTS,
    ER_NO_SUCH_TABLE,
    ER_NOT_SUPPORTED_YET,
    ER_TABLE_EXISTS,
    ER_UNKNOWN,
    SqlError,
)
from topology import Placement, RegionInfo, ReplicaState, TablePlacement, Topology, TopologyError

from . import metrics
from .assignor import MoveTable, NotEnoughRegions, mark_replicas, place_new_table, plan_colocation
from .mover import move_table
from .ddl_results import note, ok, user_schema, without_tables
from .rename import apply_rename, plan_rename, rename_sql
from .view_service import ER_IT_IS_A_VIEW, ER_WRONG_OBJECT, ViewStatements, is_a_view
from .ddl import TABLE_CHANGES, DdlKind, DdlStatement, analyze_ddl
from .regions import RegionCaller

log = logging.getLogger(__name__)

ER_CANT_CREATE_TABLE = 1005
ER_NOT_SEQUENCE = 4089


def _references(result: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The FOREIGN KEY parents a region reported after execute_ddl."""
    return tuple(sorted({(str(d), str(t)) for d, t in result.get("references") or ()}))


def _sequences_named(placement: Placement, db: str, stmt: DdlStatement) -> set[tuple[str, str]]:
    """The sequences among the names a CREATE / ALTER TABLE links to (DEFAULT NEXTVAL(s))."""
    return {k for ref in stmt.references if (t := placement.table(*(k := ref.resolve(db)))) is not None and t.kind == "sequence"}


def _with_references(placement: Placement, db: str, name: str, references: tuple[tuple[str, str], ...],
                     links: tuple[tuple[str, str], ...] | None = None) -> Placement | None:
    table = placement.table(db, name)
    links = table.links if table is not None and links is None else links
    if table is None or (table.references, table.links) == (references, links):
        return None
    return placement.with_table(replace(table, references=references, links=links))


def _has_1050(result: dict[str, Any] | SqlError) -> bool:
    if isinstance(result, SqlError):
        return result.errno == ER_TABLE_EXISTS
    return any(w.get("code") == ER_TABLE_EXISTS for w in result.get("warnings", []))


class DdlService(ViewStatements):
    """Handles DDL requests; one at a time (the queue is served serially)."""

    def __init__(self, topology: Topology, regions: RegionCaller, lock: asyncio.Lock, *, copy_timeout: float = 600.0) -> None:
        self.copy_timeout = copy_timeout  # per copy of a table moved into a colocation group
        self._topo = topology
        self._regions = regions
        self._as_user: dict[str, str] | None = None  # the requesting client's account, per request
        self._statement_vars = ""  # the request's SET STATEMENT <vars> FOR, per request
        self._session_sets: tuple[str, ...] = ()  # the client session's SET statements, per request
        self._charset: str | None = None  # the client session's character_set_client, per request
        self._lock = lock  # shared with the failover loop: one placement change at a time

    async def handle(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        kind = "unparsed"
        try:
            if payload.get("op") == "colocate":
                kind = "colocate"
                async with self._lock:
                    result = await self._colocate_request(payload)
                metrics.DDL.labels(kind=kind, outcome="ok").inc()
                return result
            if payload.get("op") != "ddl":
                raise SqlError(ER_NOT_SUPPORTED_YET, f"unknown master request op {payload.get('op')!r}")
            sql = payload.get("sql")
            if not isinstance(sql, str):
                raise SqlError(ER_UNKNOWN, "DDL request without 'sql' text")
            database = payload.get("database") or None
            stmt = analyze_ddl(sql)
            kind = stmt.kind.value
            account = payload.get("account")
            # The client's statements run on the regions as the client's own
            # account, so MariaDB checks its privileges; our compensating drops
            # (rollback of a half-made CREATE, orphans) run as the agent's account.
            self._as_user = {"user": str(account["user"]), "host": str(account["host"])} if isinstance(account, dict) else None
            statement_vars = payload.get("statement_vars")
            self._statement_vars = statement_vars if isinstance(statement_vars, str) else ""
            session_sets = payload.get("session_sets")
            self._session_sets = tuple(s for s in session_sets if isinstance(s, str)) if isinstance(session_sets, list) else ()
            charset = payload.get("charset")
            self._charset = charset if isinstance(charset, str) else None
            async with self._lock:
                result = await self._dispatch(stmt, sql, database)
            outcome = "ok"
        except SqlError as exc:
            result, outcome = {"error": exc.to_dict()}, "error"
        except TopologyError as exc:
            log.warning("DDL failed on ZooKeeper: %s", exc)
            result = {"error": SqlError(ER_UNKNOWN, f"cluster metadata unavailable: {exc}").to_dict()}
            outcome = "error"
        metrics.DDL.labels(kind=kind, outcome=outcome).inc()
        metrics.DDL_SECONDS.observe(time.monotonic() - started)
        log.info("DDL %s -> %s", str(payload.get("sql"))[:200], result.get("error") or "ok")
        return result

    async def _dispatch(self, stmt: DdlStatement, sql: str, session_db: str | None) -> dict[str, Any]:
        if stmt.kind == DdlKind.CREATE_DATABASE:
            return await self._create_database(stmt, sql)
        if stmt.kind == DdlKind.DROP_DATABASE:
            return await self._drop_database(stmt)
        if stmt.kind in (DdlKind.CREATE_TABLE, DdlKind.CREATE_SEQUENCE):
            return await self._create_table(stmt, sql, session_db)
        if stmt.kind == DdlKind.DROP_SEQUENCE:
            return await self._drop_views(stmt, session_db)
        if stmt.kind == DdlKind.DROP_TABLE:
            return await self._drop_tables(stmt, session_db)
        if stmt.kind in TABLE_CHANGES:
            return await self._change_table(stmt, sql, session_db)
        if stmt.kind == DdlKind.RENAME_TABLE:
            return await self._rename_tables(stmt, session_db)
        if stmt.kind in (DdlKind.CREATE_VIEW, DdlKind.ALTER_VIEW):
            return await self._create_view(stmt, sql, session_db)
        if stmt.kind == DdlKind.DROP_VIEW:
            return await self._drop_views(stmt, session_db)
        raise SqlError(ER_NOT_SUPPORTED_YET, f"MiniSQL Cluster does not support {stmt.kind.value} yet")

    def _client_task(self, task: dict[str, Any]) -> dict[str, Any]:
        """A region task done on the client's behalf: run as the client's
        account, after the client session's own SETs (sql_mode,
        foreign_key_checks, ...), as one MariaDB would run it."""
        if self._as_user is not None:
            task["as_user"] = self._as_user
        if self._session_sets:
            task["session_sets"] = list(self._session_sets)
        if self._charset and task.get("op") == "execute_ddl":
            task["charset"] = self._charset
        if self._statement_vars and task.get("op") == "execute_ddl":
            task["statement_vars"] = self._statement_vars
        return task

    async def _live(self) -> set[str]:
        return set(await self._topo.list_regions())

    async def _publish(self, mutate: Callable[[Placement], Placement | None]) -> Placement:
        return await self._topo.update_placement(mutate)

    @staticmethod
    def _first_error(results: Mapping[str, Any], prefer: str | None = None) -> SqlError | None:
        if prefer is not None and isinstance(results.get(prefer), SqlError):
            return results[prefer]
        for result in results.values():
            if isinstance(result, SqlError):
                return result
        return None

    # -- databases ------------------------------------------------------------
    async def _create_database(self, stmt: DdlStatement, sql: str) -> dict[str, Any]:
        db = user_schema(stmt.database or "")
        placement = await self._topo.get_placement()
        if placement.has_database(db) and stmt.or_replace:  # CREATE OR REPLACE DATABASE: the old one goes first
            await self._drop_database(replace(stmt, kind=DdlKind.DROP_DATABASE, if_exists=True))
            placement = await self._topo.get_placement()
        if placement.has_database(db):
            message = f"Can't create database '{db}'; database exists"
            if stmt.if_not_exists:
                return ok(placement, 0, [note(ER_DB_CREATE_EXISTS, message)])
            raise SqlError(ER_DB_CREATE_EXISTS, message)
        results = await self._regions.call_many(
            sorted(await self._live()), self._client_task({"op": "create_database", "database": db, "sql": sql})
        )
        error = self._first_error(results)
        if error is not None:
            raise error  # regions that did create it hold an empty orphan: harmless
        written = await self._publish(lambda p: None if p.has_database(db) else p.with_database(db))
        return ok(written, 1)

    async def _drop_database(self, stmt: DdlStatement) -> dict[str, Any]:
        db = user_schema(stmt.database or "")
        placement = await self._topo.get_placement()
        if not placement.has_database(db):
            message = f"Can't drop database '{db}'; database doesn't exist"
            if stmt.if_exists:
                return ok(placement, 0, [note(ER_DB_DROP_EXISTS, message)])
            raise SqlError(ER_DB_DROP_EXISTS, message)
        tables = len(placement.tables(db))
        results = await self._regions.call_many(sorted(await self._live()), self._client_task({"op": "drop_database", "database": db}))
        error = self._first_error(results)
        if error is not None:
            raise error
        written = await self._publish(lambda p: p.without_database(db) if p.has_database(db) else None)
        return ok(written, tables)

    # -- tables ---------------------------------------------------------------
    async def _create_table(self, stmt: DdlStatement, sql: str, session_db: str | None) -> dict[str, Any]:
        db, name = stmt.tables[0].resolve(session_db)
        user_schema(db)
        placement = await self._topo.get_placement()
        if not placement.has_database(db):
            raise SqlError(ER_BAD_DB, f"Unknown database '{db}'")
        existing = placement.table(db, name)
        if existing is not None and stmt.or_replace and existing.kind == "sequence":  # CREATE OR REPLACE SEQUENCE
            return await self._change_table(replace(stmt, kind=DdlKind.ALTER_SEQUENCE), sql, session_db)
        if existing is not None:
            message = f"Table '{name}' already exists"
            if stmt.if_not_exists:
                return ok(placement, 0, [note(ER_TABLE_EXISTS, message)])
            raise SqlError(ER_TABLE_EXISTS, message)
        primary, replicas = await self._regions_for_new_table(placement, db, name, stmt)
        create = self._client_task({"op": "execute_ddl", "database": db, "sql": sql})
        drop = {"op": "drop_table", "database": db, "table": name}
        copies = [primary, *replicas]
        results = await self._regions.call_many(copies, {**create, "report_references": name})
        orphans = [r for r, res in results.items() if _has_1050(res)]
        if orphans:
            # The placement has no such table, so these copies are leftovers
            # (a region that was away during a DROP, or a re-run request).
            log.warning("dropping orphan copies of `%s`.`%s` on %s before creating it", db, name, orphans)
            dropped = await self._regions.call_many(orphans, drop)
            results.update({r: e for r, e in dropped.items() if isinstance(e, SqlError)})
            retry = [r for r in orphans if not isinstance(dropped[r], SqlError)]
            results.update(await self._regions.call_many(retry, {**create, "report_references": name}))
        error = self._first_error(results, prefer=primary)
        if error is not None:
            await self._rollback_copies(db, name, [r for r, res in results.items() if not isinstance(res, SqlError)])
            raise error
        primary_result = results[primary]
        assert isinstance(primary_result, dict)
        table = TablePlacement(
            db, name, primary, {r: ReplicaState.IN_SYNC for r in replicas}, references=_references(primary_result),
            kind="sequence" if stmt.kind == DdlKind.CREATE_SEQUENCE else "table",
            links=tuple(sorted(_sequences_named(placement, db, stmt))),
        )

        def add(p: Placement) -> Placement | None:
            if not p.has_database(db) or p.table(db, name) is not None:
                return None
            return p.with_table(table)

        written = await self._publish(add)
        published = written.table(db, name)
        if published is None or published.primary != primary:
            # The database was dropped (or the table made) behind our back.
            await self._rollback_copies(db, name, copies)
            raise SqlError(ER_UNKNOWN, f"placement of `{db}`.`{name}` changed concurrently; try again")
        log.info(
            "created `%s`.`%s`: primary %s, replicas %s (placement v%d)", db, name, primary, ",".join(replicas), written.version
        )
        return ok(written, 0, primary_result.get("warnings"))

    async def _regions_for_new_table(
        self, placement: Placement, db: str, name: str, stmt: DdlStatement
    ) -> tuple[str, tuple[str, ...]]:
        """(primary, replicas) for a new table: with the tables it references
        and the tables that already reference its name."""
        linked = [ref.resolve(db) for ref in stmt.references] + list(placement.referencing(db, name))
        return await self._regions_for(placement, linked, f"Can't create table `{db}`.`{name}`")

    async def _regions_for(
        self, placement: Placement, linked: list[tuple[str, str]], refusal: str
    ) -> tuple[str, tuple[str, ...]]:
        """The regions of the colocation group(s) of `linked` (moved together
        first if they are apart), else -- nothing linked -- the least-loaded pair."""
        live = await self._topo.list_regions()
        loads = await self._topo.get_loads()
        try:
            colocation = plan_colocation(placement, linked, live, loads)
            if colocation is None:
                primary, replica = place_new_table(live, loads, placement)
                return primary, (replica,)
        except NotEnoughRegions as exc:
            raise SqlError(ER_CANT_CREATE_TABLE, f"{refusal}: {exc}") from None
        await self._run_moves(colocation.moves, live)
        return colocation.primary, colocation.replicas

    async def _colocate(self, db: str, name: str, stmt: DdlStatement) -> None:
        """Before an ALTER TABLE that adds FOREIGN KEYs: the table and its new
        parents onto one set of regions (the DDL then runs where both are)."""
        if not stmt.references:
            return
        placement = await self._topo.get_placement()
        live = await self._topo.list_regions()
        linked = [(db, name)] + [ref.resolve(db) for ref in stmt.references]
        try:
            colocation = plan_colocation(placement, linked, live, await self._topo.get_loads())
        except NotEnoughRegions as exc:
            raise SqlError(ER_UNKNOWN, f"Can't colocate `{db}`.`{name}` with the tables it references: {exc}") from None
        if colocation is not None:
            await self._run_moves(colocation.moves, live)

    async def _colocate_request(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """{"op": "colocate", "table": [db, name], "with": [[db, name], ...]}: the
        proxy before a CREATE TRIGGER whose body reaches other tables, or a
        multi-table UPDATE/DELETE writing tables placed apart.  They are
        brought onto the table's group's regions (moved if apart) and kept there
        by `links` on the table, so later moves and failovers keep them together."""
        try:
            table = (str(payload["table"][0]), str(payload["table"][1]))
            others = {(str(d), str(t)) for d, t in payload.get("with") or ()}
        except (KeyError, IndexError, TypeError, ValueError):
            raise SqlError(ER_UNKNOWN, "malformed colocate request") from None
        placement = await self._topo.get_placement()
        if placement.table(*table) is None:
            raise SqlError(ER_NO_SUCH_TABLE, f"Table '{table[0]}.{table[1]}' doesn't exist", "42S02")
        others = {k for k in others if placement.table(*k) is not None and k != table}
        if others:
            live = await self._topo.list_regions()
            try:
                colocation = plan_colocation(placement, [table, *sorted(others)], live, await self._topo.get_loads())
            except NotEnoughRegions as exc:
                raise SqlError(ER_UNKNOWN, f"Can't place `{table[0]}`.`{table[1]}` with the tables written or reached with it: {exc}") from None
            if colocation is not None:
                await self._run_moves(colocation.moves, live)

        def link(p: Placement) -> Placement | None:
            t = p.table(*table)
            if t is None or others <= set(t.links):
                return None
            return p.with_table(replace(t, links=tuple(sorted(set(t.links) | others))))

        return ok(await self._publish(link))

    async def _run_moves(self, moves: tuple[MoveTable, ...], live: Mapping[str, RegionInfo]) -> None:
        for move in moves:
            log.info("colocating: moving `%s`.`%s` to %s + %s", move.database, move.table, move.primary, move.replicas)
            await move_table(self._topo, self._regions, move, live, timeout=self.copy_timeout)
            metrics.TABLE_MOVES.labels(reason="colocation").inc()

    async def _rename_tables(self, stmt: DdlStatement, session_db: str | None) -> dict[str, Any]:
        """RENAME TABLE: each region runs the pairs its copies go through
        (rename.py); if one refuses, the regions that renamed rename back and
        the client gets the refusal -- all or nothing, as in MariaDB."""
        pairs = [(src.resolve(session_db), dst.resolve(session_db)) for src, dst in stmt.renames]
        for src, dst in pairs:
            user_schema(src[0])
            user_schema(dst[0])
        placement = await self._topo.get_placement()
        plan = plan_rename(placement, pairs, stmt.if_exists)
        live = await self._live()
        for src, _ in plan.pairs:
            table = placement.table(*src)
            if table is not None and table.primary not in live:
                raise SqlError(
                    ER_UNKNOWN, f"the primary copy of `{src[0]}`.`{src[1]}` is on region {table.primary}, which is down; "
                    "retry once it has failed over",
                )
        database = pairs[0][0][0]
        tasks = {
            region: self._client_task({"op": "execute_ddl", "database": database, "sql": rename_sql(steps)})
            for region, steps in plan.per_region.items() if region in live
        }
        results = dict(zip(tasks, await asyncio.gather(*(self._call_or_error(r, t) for r, t in tasks.items()))))
        error = self._first_error(results)
        if error is not None:
            for region, result in results.items():
                if not isinstance(result, SqlError):
                    undo = {**tasks[region], "sql": rename_sql(plan.per_region[region], undo=True)}
                    undone = await self._call_or_error(region, undo)
                    if isinstance(undone, SqlError):
                        log.error("RENAME TABLE: could not undo on %s (%s); its copies keep the new names", region, undone)
            raise error
        written = await self._publish(lambda p: apply_rename(p, plan.pairs))
        down = sorted(set(plan.per_region) - set(tasks))
        for src, dst in plan.pairs:  # a copy on a region that was down keeps its old name: re-copied
            table = written.table(*dst)
            missed = [r for r in down if table is not None and r in table.replicas]
            if missed:
                written = await self._publish(lambda p, d=dst, m=missed: mark_replicas(p, *d, m, ReplicaState.STALE))
        notes = [note(ER_NO_SUCH_TABLE, f"Table '{db}.{name}' doesn't exist") for db, name in plan.skipped]
        return ok(written, 0, notes)

    async def _call_or_error(self, region: str, task: dict[str, Any]) -> dict[str, Any] | SqlError:
        try:
            return await self._regions.call(region, task)
        except SqlError as exc:
            return exc

    async def _rollback_copies(self, db: str, name: str, regions: list[str]) -> None:
        if not regions:
            return
        results = await self._regions.call_many(regions, {"op": "drop_table", "database": db, "table": name})
        for region, res in results.items():
            if isinstance(res, SqlError):
                log.error("could not roll back copy of `%s`.`%s` on %s (orphan left): %s", db, name, region, res)

    async def _drop_tables(self, stmt: DdlStatement, session_db: str | None) -> dict[str, Any]:
        refs = [ref.resolve(session_db) for ref in stmt.tables]
        for db, _ in refs:
            user_schema(db)
        placement = await self._topo.get_placement()
        missing = [f"{db}.{name}" for db, name in refs if placement.table(db, name) is None]
        if missing and not stmt.if_exists:
            raise SqlError(ER_BAD_TABLE, f"Unknown table '{','.join(missing)}'")
        views = [(db, name) for db, name in refs if (t := placement.table(db, name)) is not None and t.is_view]
        if views and not stmt.if_exists:
            raise is_a_view(*views[0])
        refs = [ref for ref in refs if ref not in views]  # DROP TABLE IF EXISTS leaves a view alone (a Note)
        live = await self._live()
        dropped: list[tuple[str, str]] = []
        first_error: SqlError | None = None
        for db, name in dict.fromkeys(refs):
            table = placement.table(db, name)
            if table is None:
                continue
            down = [r for r in table.all_regions if r not in live]
            if down:
                log.warning("dropping `%s`.`%s`: regions %s are down; their copies stay as orphans", db, name, down)
            results = await self._regions.call_many(
                [r for r in table.all_regions if r in live], self._client_task({"op": "drop_table", "database": db, "table": name})
            )
            error = self._first_error(results)
            if error is None:
                dropped.append((db, name))
            elif first_error is None:
                first_error = error

        written = await self._publish(without_tables(dropped))
        if first_error is not None:
            raise first_error
        notes = [note(ER_BAD_TABLE, f"Unknown table '{m}'") for m in missing]
        notes += [note(ER_IT_IS_A_VIEW, f"'{db}.{name}' is a view") for db, name in views]
        return ok(written, 0, notes)

    async def _change_table(self, stmt: DdlStatement, sql: str, session_db: str | None) -> dict[str, Any]:
        db, name = stmt.tables[0].resolve(session_db)
        user_schema(db)
        placement = await self._topo.get_placement()
        table = placement.table(db, name)
        if table is None:
            message = f"Table '{db}.{name}' doesn't exist"
            if stmt.if_exists:
                return ok(placement, 0, [note(ER_NO_SUCH_TABLE, message)])
            raise SqlError(ER_NO_SUCH_TABLE, message)
        if table.is_view:
            if stmt.kind == DdlKind.TRUNCATE_TABLE:
                raise SqlError(ER_NO_SUCH_TABLE, f"Table '{db}.{name}' doesn't exist", "42S02")
            raise SqlError(ER_WRONG_OBJECT, f"'{db}.{name}' is not BASE TABLE", "HY000")
        if stmt.kind == DdlKind.ALTER_SEQUENCE and table.kind != "sequence":
            raise SqlError(ER_NOT_SEQUENCE, f"'{db}.{name}' is not a SEQUENCE", "42S02")
        live = await self._live()
        if table.primary not in live:
            raise SqlError(
                ER_UNKNOWN,
                f"the primary copy of `{db}`.`{name}` is on region {table.primary}, which is down; "
                "retry once it has failed over",
            )
        if stmt.kind == DdlKind.ALTER_TABLE and stmt.references:
            await self._colocate(db, name, stmt)
            table = (await self._topo.get_placement()).table(db, name) or table
        renames = tuple((src.resolve(db), dst.resolve(db)) for src, dst in stmt.renames)
        if renames:  # ALTER TABLE ... RENAME TO: the new name must be free (MariaDB checks the same)
            plan_rename(placement, list(renames))
            for _, (new_db, _) in renames:
                user_schema(new_db)
            name_after = renames[-1][1]
        else:
            name_after = (db, name)
        payload = self._client_task({"op": "execute_ddl", "database": db, "sql": sql})
        report = {"report_references": name_after[1], "references_database": name_after[0]} if stmt.kind == DdlKind.ALTER_TABLE else {}
        primary_result = await self._regions.call(table.primary, {**payload, **report})  # its error is the client's
        stale = [r for r, s in table.replicas.items() if s in (ReplicaState.COPYING, ReplicaState.FILLING)]
        in_sync = [r for r, s in table.replicas.items() if s == ReplicaState.IN_SYNC]
        stale += [r for r in in_sync if r not in live]
        results = await self._regions.call_many([r for r in in_sync if r in live], payload)
        for region, res in results.items():
            if isinstance(res, SqlError):
                stale.append(region)
                log.error(
                    "`%s`.`%s`: DDL succeeded on primary %s but failed on replica %s (%s); marking it STALE",
                    db, name, table.primary, region, res,
                )
        if renames:
            await self._publish(lambda p: apply_rename(p, renames))
        if stale:
            metrics.STALE_REPLICAS.inc(len(stale))
            await self._publish(lambda p: mark_replicas(p, *name_after, stale, ReplicaState.STALE))
        written = await self._topo.get_placement()
        if report:  # FOREIGN KEYs added or dropped: the colocation graph follows
            references = _references(primary_result)
            links = tuple(sorted(set(table.links) | _sequences_named(written, db, stmt)))
            written = await self._publish(lambda p: _with_references(p, *name_after, references, links))
        return ok(written, int(primary_result.get("affected_rows", 0)), primary_result.get("warnings"))
