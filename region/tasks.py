"""The region's task handlers: what the master asks a region's MariaDB to do.

Tasks arrive on the ZooKeeper queue `region-<id>` (see topology.serve) as JSON
dicts with an "op".  Results are {"ok": true, ...} or {"error": {"errno",
"sqlstate", "message"}} carrying MariaDB's own error, so the master can hand a
client the exact error MariaDB gave.

Every handler is idempotent, because delivery is at-least-once (a region that
dies mid-task has the task run again by its next incarnation):

==================  =========================================================
op                  effect
==================  =========================================================
create_database     CREATE DATABASE [IF NOT EXISTS]; "database exists" is OK
drop_database       DROP DATABASE IF EXISTS
execute_ddl         run the client's original DDL text with `database` as the
                    default database (created first for CREATE statements).
                    Not idempotent by nature (ALTER ... ADD COLUMN twice fails
                    with 1060): a re-delivery returns MariaDB's error and the
                    master reports it -- never a silent double change.
                    After the client session's `session_sets` (its sql_mode,
                    foreign_key_checks, ...); with `report_references`, the
                    result lists that table's FOREIGN KEY parents.
drop_table          DROP TABLE IF EXISTS
copy_table          replace the local table with a copy from another region
table_checksum      CHECKSUM TABLE + COUNT(*)
==================  =========================================================

Error handling
--------------
* Each task runs on a pooled connection that is pinged (and reconnected)
  first, so a MariaDB restart costs no task.  A connection lost *during* a
  statement is reported (2013), not retried: the statement may have run.
* copy_table drops the local table before re-creating it: the local copy is
  lost if the copy then fails.  That is safe only because the master never
  sends copy_table for a copy it routes reads or writes to (it marks it
  COPYING first) and refuses a copy from this region to itself.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Awaitable, Callable, Mapping

import aiomysql
import pymysql
from pymysql.charset import charset_by_name

from minisql.accounts import region_password
from minisql.config import BackendCredentials
from minisql.errors import ER_DBACCESS_DENIED, ER_NOT_SUPPORTED_YET, ER_UNKNOWN, SqlError

from . import metrics
from .mysql import SYSTEM_SCHEMAS, WarningCursor, connect, qualified, quote_ident, sql_error_of
from .fill import FillTasks
from .xa_tasks import XaTasks

log = logging.getLogger(__name__)

COPY_BATCH_ROWS = 1000

Task = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]


def _require(payload: Mapping[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise SqlError(ER_UNKNOWN, f"region task {payload.get('op')!r} needs a non-empty string {key!r}")
    return value



def _client_encoding(charset: Any, statements: tuple[str, ...]) -> str | None:
    """The client's character set to send `statements` in (execute_ddl's
    `charset`), or None for the pool's utf8mb4: unknown names, utf8mb4
    itself, and text that character set cannot carry."""
    if not isinstance(charset, str) or charset.lower() in ("utf8mb4", "binary"):
        return None
    known = charset_by_name(charset.lower())
    if known is None:
        return None
    try:
        encoding = known.encoding
        for sql in statements:
            sql.encode(encoding)
    except (KeyError, LookupError, UnicodeEncodeError):
        return None
    return charset.lower()

def _user_schema(database: str) -> str:
    """Refuse tasks on MariaDB's own schemas: the cluster never places tables there."""
    if database.lower() in SYSTEM_SCHEMAS:
        raise SqlError(ER_DBACCESS_DENIED, f"Access denied to system database '{database}' through MiniSQL Cluster")
    return database


def _starts_with_create(sql: str) -> bool:
    return sql.lstrip().lstrip("(").upper().startswith("CREATE")


class RegionTasks:
    """Handlers for the region queue, over a pool to the local MariaDB."""

    def __init__(
        self, region_id: str, pool: aiomysql.Pool, creds: BackendCredentials, mysql_host: str, mysql_port: int,
        *, leader_epoch: int = 0, remember_epoch: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self.region_id = region_id
        # `remember_epoch` stores a higher leader epoch in MariaDB before the task runs
        # (region/fencing.py), so an agent restart does not forget it; `leader_epoch`
        # is what the last incarnation stored.
        self._remember_epoch = remember_epoch
        self._pool = pool
        self._mysql_host = mysql_host
        self._mysql_port = mysql_port
        self._creds = creds
        self.leader_epoch = leader_epoch  # the highest master leader epoch seen on a task
        self._ops: dict[str, Task] = {
            "create_database": self.create_database,
            "drop_database": self.drop_database,
            "execute_ddl": self.execute_ddl,
            "drop_table": self.drop_table,
            "copy_table": self.copy_table,
            "table_checksum": self.table_checksum,
            **XaTasks(region_id, pool).ops(),
            **FillTasks(region_id, mysql_host, mysql_port, creds).ops(),
        }

    async def handle(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Entry point for topology.serve: never raises, always a result dict."""
        op = str(payload.get("op"))
        task = self._ops.get(op)
        started = time.monotonic()
        if task is None:
            metrics.TASKS.labels(op="unknown", outcome="error").inc()
            return {"error": SqlError(ER_NOT_SUPPORTED_YET, f"unknown region task op {op!r}").to_dict()}
        epoch = payload.get("epoch")
        if isinstance(epoch, int):
            # Fencing: a task from a deposed leader (its epoch below one already served) is
            # refused, so a master that lost its election cannot act here after its successor.
            if epoch < self.leader_epoch:
                metrics.TASKS.labels(op=op, outcome="fenced").inc()
                return {"error": SqlError(ER_UNKNOWN, f"task {op} refused: leader epoch {epoch} is older than "
                                                      f"{self.leader_epoch}, which this region already serves").to_dict()}
            raised = epoch > self.leader_epoch
            self.leader_epoch = epoch
        else:
            raised = False
        try:
            if raised and self._remember_epoch is not None:
                await self._remember_epoch(epoch)  # (a failure fails the task: the leader retries)
            result = await task(payload)
            outcome = "ok"
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error result
            err = sql_error_of(exc)
            if not isinstance(exc, (SqlError, pymysql.err.Error, OSError)):
                log.exception("task %s failed unexpectedly", op)  # a bug here, not MariaDB's refusal
            log.log(
                logging.WARNING if err.errno < 2000 else logging.ERROR,
                "task %s on %s failed: %s",
                op,
                payload.get("database"),
                err,
            )
            result = {"error": err.to_dict()}
            outcome = "error"
        metrics.TASKS.labels(op=op, outcome=outcome).inc()
        metrics.TASK_SECONDS.labels(op=op).observe(time.monotonic() - started)
        return result

    # -- helpers -------------------------------------------------------------
    async def _run(
        self, *statements: str, database: str | None = None, as_user: Mapping[str, Any] | None = None,
        session_sets: Any = None, charset: Any = None,
    ) -> tuple[int, list[dict[str, Any]]]:
        """Run statements; (affected rows, warnings) of the last.

        `as_user` ({"user", "host"}): on a connection of that client account
        (its region password, minisql/accounts.py), so MariaDB checks the
        client's privileges; otherwise on the agent's pool.  `session_sets`:
        the client session's SET statements, run first (a connection of its
        own then, so they never leak into the pool).  `charset`: the client's
        character_set_client, which a view or routine records and which gives
        string literals their character set (CREATE TABLE ... SELECT 'x'); the
        statements are sent in it when they can be (else in utf8mb4).
        """
        sets = tuple(s for s in session_sets if isinstance(s, str)) if isinstance(session_sets, (list, tuple)) else ()
        encoding = _client_encoding(charset, statements)
        if as_user is not None or sets or encoding:
            login = self._creds if as_user is None else BackendCredentials(
                user=str(as_user["user"]),
                password=region_password(self._creds.password, str(as_user["user"]), str(as_user["host"])),
            )
            conn = await connect(self._mysql_host, self._mysql_port, login)
            try:
                if encoding:
                    await conn.set_charset(encoding)
                await self._run_on(conn, sets, None)
                return await self._run_on(conn, statements, database)
            finally:
                conn.close()
        async with self._pool.acquire() as conn:
            await conn.ping(reconnect=True)
            return await self._run_on(conn, statements, database)

    @staticmethod
    async def _run_on(conn: Any, statements: tuple[str, ...], database: str | None) -> tuple[int, list[dict[str, Any]]]:
        if database is not None:
            await conn.select_db(database)
        affected, warnings = 0, []
        for sql in statements:
            async with conn.cursor(WarningCursor) as cur:
                affected = await cur.execute(sql)
                warnings = cur.warnings_as_dicts()
        return max(int(affected or 0), 0), warnings

    # -- ops ------------------------------------------------------------------
    async def create_database(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        database = _user_schema(_require(payload, "database"))
        sql = payload.get("sql")
        if isinstance(sql, str) and sql.strip():
            # The client's text keeps its CHARACTER SET / COLLATE options.
            try:
                await self._run(sql, as_user=payload.get("as_user"))
            except Exception as exc:  # noqa: BLE001
                if sql_error_of(exc).errno != 1007:  # ER_DB_CREATE_EXISTS: already done
                    raise
        else:
            await self._run(f"CREATE DATABASE IF NOT EXISTS {quote_ident(database)}", as_user=payload.get("as_user"))
        return {"ok": True}

    async def drop_database(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        database = _user_schema(_require(payload, "database"))
        affected, _ = await self._run(
            f"DROP DATABASE IF EXISTS {quote_ident(database)}", as_user=payload.get("as_user"), session_sets=payload.get("session_sets")
        )
        return {"ok": True, "affected_rows": affected}

    async def execute_ddl(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        database = _user_schema(_require(payload, "database"))
        sql = _require(payload, "sql")
        if _starts_with_create(sql):
            # Housekeeping, as the agent: the database is already in the placement
            # (its creator's privileges were checked then); this region just lacks it.
            await self._run(f"CREATE DATABASE IF NOT EXISTS {quote_ident(database)}")
        statement_vars = payload.get("statement_vars")
        if isinstance(statement_vars, str) and statement_vars:
            # The client's SET STATEMENT ... FOR <this DDL>: its settings for this statement only.
            sql = f"SET STATEMENT {statement_vars} FOR {sql}"
        affected, warnings = await self._run(
            sql, database=database, as_user=payload.get("as_user"), session_sets=payload.get("session_sets"),
            charset=payload.get("charset"),
        )
        result: dict[str, Any] = {"ok": True, "affected_rows": affected}
        if warnings:
            result["warnings"] = warnings
        reported = payload.get("report_references")
        if isinstance(reported, str) and reported:  # (in references_database after ALTER TABLE ... RENAME)
            result["references"] = await self._references(str(payload.get("references_database") or database), reported)
        return result

    async def _references(self, database: str, table: str) -> list[list[str]]:
        """The tables `table`'s FOREIGN KEYs reference, as MariaDB now has them
        (the master keeps them in the placement: colocation groups)."""
        async with self._pool.acquire() as conn:
            await conn.ping(reconnect=True)
            async with conn.cursor() as cur:
                await cur.execute(
                    "SELECT DISTINCT REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME FROM information_schema.KEY_COLUMN_USAGE "
                    "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND REFERENCED_TABLE_NAME IS NOT NULL",
                    (database, table),
                )
                rows = await cur.fetchall()
        return sorted([str(r[0]), str(r[1])] for r in rows)

    async def drop_table(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """DROP TABLE IF EXISTS, or DROP VIEW IF EXISTS when the name is a view
        here (`kind` "view", or found so: a discarded copy may be either)."""
        database = _user_schema(_require(payload, "database"))
        table = _require(payload, "table")
        kind = payload.get("kind")
        what = "VIEW" if kind == "view" or (kind != "sequence" and await self._is_view(database, table)) else (
            "SEQUENCE" if kind == "sequence" else "TABLE")
        await self._run(
            f"DROP {what} IF EXISTS {qualified(database, table)}", as_user=payload.get("as_user"),
            session_sets=payload.get("session_sets"),
        )
        return {"ok": True}

    async def _is_view(self, database: str, table: str) -> bool:
        async with self._pool.acquire() as conn:
            await conn.ping(reconnect=True)
            async with conn.cursor() as cur:
                await cur.execute(
                    "SELECT TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                    (database, table),
                )
                row = await cur.fetchone()
        return row is not None and row[0] == "VIEW"

    async def table_checksum(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        database = _require(payload, "database")
        table = _require(payload, "table")
        if await self._is_view(database, table):  # no rows of its own: its definition is what was copied
            return {"ok": True, "rows": 0, "checksum": None, "view": True}
        async with self._pool.acquire() as conn:
            await conn.ping(reconnect=True)
            async with conn.cursor() as cur:
                # COUNT(*) first: it fails with 1146 on a missing table, whereas
                # CHECKSUM TABLE only warns and returns NULL.
                await cur.execute(f"SELECT COUNT(*) FROM {qualified(database, table)}")
                (rows,) = await cur.fetchone()
                await cur.execute(f"CHECKSUM TABLE {qualified(database, table)}")
                row = await cur.fetchone()
        checksum = row[1] if row else None
        return {"ok": True, "rows": int(rows), "checksum": None if checksum is None else int(checksum)}

    async def copy_table(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the local table with a snapshot of the source region's copy.

        How: SHOW CREATE TABLE on the source; locally DROP TABLE IF EXISTS and
        CREATE it from that text (database created if missing); then, inside
        one `START TRANSACTION WITH CONSISTENT SNAPSHOT` on the source, stream
        `SELECT <stored columns> ORDER BY <primary key>` and insert it in
        batches of COPY_BATCH_ROWS rows with parameterised multi-row INSERTs.
        The source's triggers follow once the rows are in (_copy_triggers).
        Both sessions use time_zone '+00:00' (TIMESTAMP values are not
        shifted), the local one NO_AUTO_VALUE_ON_ZERO (a 0 in an
        AUTO_INCREMENT column stays 0) and no foreign-key checks (tables that
        reference one another may live on different regions).  Generated
        columns are not copied: MariaDB recomputes them.

        Limitation, stated plainly: the copy is the source's content as of one
        instant.  Writes the source commits after that instant are NOT in the
        copy, and nothing here catches up on them.  The copy is consistent
        with its primary only if no write reaches the table from the snapshot
        until the master publishes the copy as IN_SYNC.  The master keeps the
        copy COPYING (the proxy sends it no writes) and compares
        `table_checksum` of both copies before promoting it, which detects --
        but cannot prevent -- writes during the copy; an online catch-up (or a
        write pause) is future work.
        """
        database = _user_schema(_require(payload, "database"))
        table = _require(payload, "table")
        source = payload.get("source")
        if not isinstance(source, Mapping) or not source.get("host") or not source.get("port"):
            raise SqlError(ER_UNKNOWN, "copy_table needs source {region_id, host, port}")
        if source.get("region_id") == self.region_id:
            raise SqlError(ER_UNKNOWN, f"copy_table: region {self.region_id} cannot copy a table onto itself")
        started = time.monotonic()
        name = qualified(database, table)
        src = await connect(str(source["host"]), int(source["port"]), self._creds, autocommit=False)
        try:
            view = await self._copy_view(src, database, table)
            if view:
                return {"ok": True, "rows": 0, "view": True}
            async with src.cursor() as cur:
                await cur.execute(
                    "SET SESSION time_zone = '+00:00', SESSION tx_isolation = 'REPEATABLE-READ', "
                    "SESSION net_write_timeout = 600"  # we may read slower than it sends
                )
                await cur.execute(f"SHOW CREATE TABLE {name}")
                create_sql = (await cur.fetchone())[1]
                await cur.execute(
                    "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND "
                    "TABLE_NAME = %s AND IS_GENERATED = 'NEVER' ORDER BY ORDINAL_POSITION",
                    (database, table),
                )
                columns = [r[0] for r in await cur.fetchall()]
                await cur.execute(
                    "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s AND "
                    "TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
                    (database, table),
                )
                key = [r[0] for r in await cur.fetchall()]
            await src.commit()
            rows = await self._fill_local(src, database, table, create_sql, columns, key)
            triggers = await self._copy_triggers(src, database, table)
        finally:
            src.close()
        metrics.COPIED_ROWS.inc(rows)
        log.info(
            "copied %s from %s (%s:%s): %d rows, %d triggers in %.1fs",
            name,
            source.get("region_id"),
            source["host"],
            source["port"],
            rows,
            triggers,
            time.monotonic() - started,
        )
        return {"ok": True, "rows": rows}

    async def _copy_view(self, src: aiomysql.Connection, database: str, table: str) -> bool:
        """A view is copied as its definition (SHOW CREATE VIEW, DEFINER kept):
        False when the source object is not a view."""
        async with src.cursor() as cur:
            await cur.execute(
                "SELECT TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (database, table),
            )
            row = await cur.fetchone()
            if row is None or row[0] != "VIEW":
                await src.commit()
                return False
            await cur.execute(f"SHOW CREATE VIEW {qualified(database, table)}")
            definition = (await cur.fetchone())[1]
        await src.commit()
        local = await connect(self._mysql_host, self._mysql_port, self._creds)
        try:
            async with local.cursor() as lcur:
                await lcur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(database)}")
                await local.select_db(database)
                await lcur.execute(f"DROP TABLE IF EXISTS {qualified(database, table)}")  # a stale table of that name
                await lcur.execute(f"DROP VIEW IF EXISTS {qualified(database, table)}")
                await lcur.execute(definition)
        finally:
            local.close()
        log.info("copied view %s", qualified(database, table))
        return True

    async def _copy_triggers(self, src: aiomysql.Connection, database: str, table: str) -> int:
        """Re-create the source copy's triggers on the new one, after its rows are
        in (they must not fire for the copy's own INSERTs): each as the source
        shows it (DEFINER included: the agent's account may set any definer),
        under the sql_mode it was created with, in firing order (each new
        trigger of a timing and event fires after those before it)."""
        async with src.cursor() as cur:
            await cur.execute(
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = %s AND "
                "EVENT_OBJECT_TABLE = %s ORDER BY ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER",
                (database, table),
            )
            names = [r[0] for r in await cur.fetchall()]
            definitions = []
            for trigger in names:
                await cur.execute(f"SHOW CREATE TRIGGER {qualified(database, trigger)}")
                row = await cur.fetchone()
                definitions.append((row[1], row[2]))  # sql_mode, SQL Original Statement
        await src.commit()
        if not definitions:
            return 0
        local = await connect(self._mysql_host, self._mysql_port, self._creds)
        try:
            await local.select_db(database)
            async with local.cursor() as lcur:
                for sql_mode, statement in definitions:
                    await lcur.execute("SET SESSION sql_mode = %s", (sql_mode,))
                    await lcur.execute(statement)  # no args: aiomysql does not %-format it
        finally:
            local.close()
        return len(definitions)

    async def _fill_local(
        self,
        src: aiomysql.Connection,
        database: str,
        table: str,
        create_sql: str,
        columns: list[str],
        key: list[str],
    ) -> int:
        # A dedicated local connection: the session settings below must not
        # leak into the pool used by other tasks.
        local = await connect(self._mysql_host, self._mysql_port, self._creds)
        try:
            async with local.cursor(WarningCursor) as lcur:
                await lcur.execute(
                    "SET SESSION foreign_key_checks = 0, unique_checks = 0, time_zone = '+00:00', "
                    "sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'"
                )
                await lcur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(database)}")
                await local.select_db(database)
                await lcur.execute(f"DROP TABLE IF EXISTS {qualified(database, table)}")
                await lcur.execute(create_sql)
                if not columns:
                    return 0
                col_list = ", ".join(quote_ident(c) for c in columns)
                order = f" ORDER BY {', '.join(quote_ident(c) for c in key)}" if key else ""
                # '%' in identifiers must not be taken for a parameter marker.
                insert = (
                    f"INSERT INTO {qualified(database, table).replace('%', '%%')} "
                    f"({col_list.replace('%', '%%')}) VALUES ({', '.join(['%s'] * len(columns))})"
                )
                total = 0
                async with src.cursor(aiomysql.SSCursor) as scur:
                    await scur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                    await scur.execute(f"SELECT {col_list} FROM {qualified(database, table)}{order}")
                    while True:
                        batch = await scur.fetchmany(COPY_BATCH_ROWS)
                        if not batch:
                            break
                        await lcur.executemany(insert, batch)
                        total += len(batch)
                await src.commit()
                return total
        finally:
            local.close()
