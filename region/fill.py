"""Online copies: a new copy of a table filled while clients keep writing.

The master's side is master/copier.py; the proxy's is proxy/fillguard.py.
The steps, each a task on the *target* region:

1. `prepare_fill`: is the table fit for an online copy (an InnoDB base table
   with a primary key, no triggers, no foreign keys either way)?  If so, the
   target drops any old copy and creates the table empty from the source's
   `SHOW CREATE TABLE`, and answers the columns of the primary key and of
   every UNIQUE key (the proxies' fill guard).  The master then marks the copy
   FILLING (every write to the table reaches it from that placement epoch on)
   and waits until every live proxy has acknowledged that epoch.
2. `fill_table`: the existing rows, in primary-key chunks of FILL_CHUNK_ROWS.
   Per chunk, on the source, in one REPEATABLE READ transaction: the chunk's
   last key `hi`, then one `... WHERE key > <last> AND key <= hi LOCK IN SHARE
   MODE` read -- the key range (last, hi] (to the end of the table for the
   last chunk) is now locked against every writer, gaps included -- that
   also checksums the range and has MariaDB write its rows as SQL literals
   (`_ChunkFiller`; Python rows for column types it does not know).  On the target, in one
   transaction: one multi-row INSERT IGNORE of the source's rows (a row the
   clients already inserted there while the range was not copied yet is the
   same on the source: every write reaches both), then compare a checksum of
   the range on both sides (COUNT and BIT_XOR of a 64-bit MD5 prefix per row,
   NULLs marked).  Commit the target, then release the source.  A chunk
   whose checksums differ is copied again clean: DELETE of the range, INSERT.
   (One statement, no DELETE: the fewer locks the copy takes on the target,
   the fewer deadlocks with the clients' writes there, which InnoDB would
   resolve by failing the client's.)
   Why it is consistent: a write the proxy sends during the fill reaches the
   source first and the target after (FanOutWrite), in the same transaction;
   while the chunk's source range is locked no such write can be half-way
   through that range, and one that finished is in the rows read.  Rows
   outside the range are untouched.  After the range is copied, every write
   to it runs on both copies alike (the proxies' guard holds back the writes
   that would not: proxy/fillguard.py).

Error handling -- where state can be lost:
* both sessions use innodb_lock_wait_timeout = LOCK_WAIT: a client
  transaction holding a target gap lock while it waits for our source lock
  (a deadlock across two servers, which neither detects) costs at most that;
  the chunk is rolled back on both sides and retried (CHUNK_ATTEMPTS times);
* a chunk whose checksums differ is retried, then the task fails; the master
  marks the copy STALE and starts again later -- a copy is published IN_SYNC
  only after every chunk matched;
* the task holds no state across calls: an agent restart mid-fill fails the
  task, and the copy is retried from scratch.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Awaitable, Callable, Mapping, Sequence

import aiomysql
import pymysql

from minisql.config import BackendCredentials
from minisql.errors import ER_UNKNOWN, SqlError

from . import metrics
from .mysql import connect, qualified, quote_ident

log = logging.getLogger(__name__)

FILL_CHUNK_ROWS = 5000
FILL_CHUNK_BYTES = 4 << 20  # ... and at most about this much SQL text per chunk
LOCK_WAIT = 2  # seconds (innodb_lock_wait_timeout of the copy's sessions)
CHUNK_ATTEMPTS = 60
MISMATCH_ATTEMPTS = 3
_RETRY = (1205, 1213)  # lock wait timeout, deadlock: roll back both sides, try the chunk again


def after_key(key: Sequence[str], values: Sequence[Any]) -> tuple[str, list[Any]]:
    """SQL for "key > values" over a composite key (lexicographic), with parameters."""
    ors, params = [], []
    for i, col in enumerate(key):
        eqs = [f"{quote_ident(k)} = %s" for k in key[:i]]
        ors.append("(" + " AND ".join([*eqs, f"{quote_ident(col)} > %s"]) + ")")
        params.extend(values[: i + 1])
    return "(" + " OR ".join(ors) + ")", params


def upto_key(key: Sequence[str], values: Sequence[Any]) -> tuple[str, list[Any]]:
    """SQL for "key <= values": NOT (key > values), written out for the range optimizer."""
    ors, params = [], []
    for i, col in enumerate(key):
        eqs = [f"{quote_ident(k)} = %s" for k in key[:i]]
        ors.append("(" + " AND ".join([*eqs, f"{quote_ident(col)} < %s"]) + ")")
        params.extend(values[: i + 1])
    ors.append("(" + " AND ".join(f"{quote_ident(k)} = %s" for k in key) + ")")
    params.extend(values)
    return "(" + " OR ".join(ors) + ")", params


def checksum_sql(name: str, cols: Sequence[str], where: str) -> str:
    """COUNT(*) and BIT_XOR of a 64-bit hash of every row in `where` (pt-table-checksum's shape);
    `cols`: an exact text expression per column (`exact_text`)."""
    nulls = "CONCAT(" + ", ".join(f"ISNULL({c})" for c in cols) + ")"
    row = f"CONCAT_WS('#', {', '.join(cols)}, {nulls})"
    return (f"SELECT COUNT(*), COALESCE(BIT_XOR(CAST(CONV(LEFT(MD5({row}), 16), 16, 10) AS UNSIGNED)), 0) "
            f"FROM {name} WHERE {where}")


class FillTasks:
    """The `prepare_fill` and `fill_table` region tasks (module docstring)."""

    def __init__(self, region_id: str, mysql_host: str, mysql_port: int, creds: BackendCredentials) -> None:
        self.region_id = region_id
        self._host = mysql_host
        self._port = mysql_port
        self._creds = creds

    def ops(self) -> dict[str, Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]]:
        return {"prepare_fill": self.prepare_fill, "fill_table": self.fill_table}

    async def _source(self, payload: Mapping[str, Any]) -> aiomysql.Connection:
        source = payload.get("source")
        if not isinstance(source, Mapping) or not source.get("host") or not source.get("port"):
            raise SqlError(ER_UNKNOWN, "an online copy needs source {region_id, host, port}")
        if source.get("region_id") == self.region_id:
            raise SqlError(ER_UNKNOWN, f"region {self.region_id} cannot copy a table onto itself")
        conn = await connect(str(source["host"]), int(source["port"]), self._creds, autocommit=False)
        async with conn.cursor() as cur:
            await cur.execute(f"SET SESSION time_zone = '+00:00', tx_isolation = 'REPEATABLE-READ', "
                              f"innodb_lock_wait_timeout = {LOCK_WAIT}, net_write_timeout = 600")
        return conn

    async def prepare_fill(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        database, table = str(payload["database"]), str(payload["table"])
        src = await self._source(payload)
        try:
            fit, facts = await _fitness(src, database, table)
            if fit:
                async with src.cursor() as cur:
                    await cur.execute(f"SHOW CREATE TABLE {qualified(database, table)}")
                    create_sql = (await cur.fetchone())[1]
            await src.commit()
        finally:
            src.close()
        if not fit:
            return {"ok": True, "online": False, "reason": facts["reason"]}
        local = await connect(self._host, self._port, self._creds)
        try:
            async with local.cursor() as cur:
                await cur.execute("SET SESSION foreign_key_checks = 0, sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'")
                await cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(database)}")
                await local.select_db(database)
                await cur.execute(f"DROP TABLE IF EXISTS {qualified(database, table)}")
                await cur.execute(create_sql)
        finally:
            local.close()
        return {"ok": True, "online": True, **facts}

    async def fill_table(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        database, table = str(payload["database"]), str(payload["table"])
        key = [str(k) for k in payload.get("key", ())]
        if not key:
            raise SqlError(ER_UNKNOWN, "fill_table needs the primary key columns")
        chunk = int(payload.get("chunk_rows", FILL_CHUNK_ROWS))
        started = time.monotonic()
        src = await self._source(payload)
        local = await connect(self._host, self._port, self._creds, autocommit=False)
        try:
            async with local.cursor() as cur:
                await cur.execute(f"SET SESSION foreign_key_checks = 0, time_zone = '+00:00', innodb_lock_wait_timeout = {LOCK_WAIT}, "
                                  "sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION', tx_isolation = 'REPEATABLE-READ'")
                await cur.execute("SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND "
                                  "TABLE_NAME = %s AND IS_GENERATED = 'NEVER' ORDER BY ORDINAL_POSITION", (database, table))
                typed = [(r[0], str(r[1]).lower()) for r in await cur.fetchall()]
            await local.commit()
            async with src.cursor() as cur:
                await cur.execute("SELECT AVG_ROW_LENGTH FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                                  (database, table))
                row = await cur.fetchone()
                await cur.execute("SET SESSION group_concat_max_len = 1073741824")
            await src.commit()
            width = int(row[0] or 0) if row else 0
            chunk = min(chunk, max(100, FILL_CHUNK_BYTES // (2 * width + 16)))  # its SQL text: about twice the row
            filler = _ChunkFiller(src, local, qualified(database, table), typed, key, chunk)
            last: tuple[Any, ...] | None = None
            while True:
                last, done = await filler.next_chunk(last)
                if done:
                    break
        finally:
            src.close()
            local.close()
        seconds = time.monotonic() - started
        metrics.COPIED_ROWS.inc(filler.rows)
        log.info("filled %s.%s from %s: %d rows in %d chunks (%d retried) in %.1fs (%.0f rows/s)",
                 database, table, payload["source"].get("region_id"), filler.rows, filler.chunks, filler.retries,
                 seconds, filler.rows / seconds if seconds else 0.0)
        return {"ok": True, "rows": filler.rows, "chunks": filler.chunks, "retries": filler.retries, "seconds": round(seconds, 3)}


async def _fitness(src: aiomysql.Connection, database: str, table: str) -> tuple[bool, dict[str, Any]]:
    """(fit for an online copy, facts): the key, guard columns and UNIQUE keys, or the reason it is not."""
    async with src.cursor() as cur:
        await cur.execute("SELECT ENGINE, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                          (database, table))
        row = await cur.fetchone()
        if row is None or row[1] != "BASE TABLE":
            return False, {"reason": "not a base table"}
        if str(row[0]).lower() != "innodb":
            return False, {"reason": f"engine {row[0]} takes no row locks"}
        await cur.execute("SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s AND "
                          "TABLE_NAME = %s AND NON_UNIQUE = 0 ORDER BY INDEX_NAME = 'PRIMARY' DESC, INDEX_NAME, SEQ_IN_INDEX",
                          (database, table))
        unique = [(r[0], r[1]) for r in await cur.fetchall()]
        key = [c for i, c in unique if i == "PRIMARY"]
        if not key:
            return False, {"reason": "no primary key"}
        await cur.execute("SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = %s AND "
                          "EVENT_OBJECT_TABLE = %s", (database, table))
        if (await cur.fetchone())[0]:
            return False, {"reason": "it has triggers"}
        await cur.execute("SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE (CONSTRAINT_SCHEMA = %s AND "
                          "TABLE_NAME = %s) OR (UNIQUE_CONSTRAINT_SCHEMA = %s AND REFERENCED_TABLE_NAME = %s)",
                          (database, table, database, table))
        if (await cur.fetchone())[0]:
            return False, {"reason": "it has foreign keys"}
    guard = sorted({c.lower() for _, c in unique})
    return True, {"key": key, "guard": guard, "unique": any(i != "PRIMARY" for i, _ in unique)}


_AS_HEX_STRING = {"char", "varchar", "binary", "varbinary", "tinytext", "text", "mediumtext", "longtext", "tinyblob", "blob",
                  "mediumblob", "longblob", "enum", "set", "json", "geometry", "point", "linestring", "polygon", "multipoint",
                  "multilinestring", "multipolygon", "geometrycollection"}
_AS_NUMBER = {"tinyint", "smallint", "mediumint", "int", "bigint", "decimal", "double", "real"}  # (a DOUBLE's text round-trips)
_AS_QUOTED = {"date", "datetime", "timestamp", "time", "year"}


def exact_text(column: str, data_type: str) -> str:
    """The column as text that tells any two values apart (the checksums')."""
    c = quote_ident(column)
    return f"CAST({c} AS DOUBLE)" if data_type == "float" else c


def literal_sql(column: str, data_type: str) -> str | None:
    """SQL that makes MariaDB write the column's value as an exact SQL literal
    (None: a type unknown here; the table is then copied through Python rows)."""
    c = quote_ident(column)
    if data_type in _AS_HEX_STRING:  # the stored bytes, in the column's own character set
        return f"IF({c} IS NULL, 'NULL', CONCAT('X''', HEX({c}), ''''))"
    if data_type == "bit":
        return f"IF({c} IS NULL, 'NULL', CONCAT('0x', HEX({c})))"
    if data_type in _AS_NUMBER:
        return f"IF({c} IS NULL, 'NULL', {c})"
    if data_type == "float":  # its own text has 6 digits; the DOUBLE it widens to is exact and rounds back to it
        return f"IF({c} IS NULL, 'NULL', CAST({c} AS DOUBLE))"
    if data_type in _AS_QUOTED:
        return f"IF({c} IS NULL, 'NULL', QUOTE({c}))"
    return None


class _ChunkFiller:
    """Copies and verifies one key chunk at a time (module docstring).

    Fast path: MariaDB itself writes the chunk's rows as SQL literals
    (`literal_sql`, in the one locking read that also checksums them);
    Python only passes the text on.  A chunk copied again after a mismatch
    first deletes its range on the target.  Rows path (a column type
    `literal_sql` does not know): the rows are read and re-sent as parameters."""

    def __init__(self, src: aiomysql.Connection, local: aiomysql.Connection, name: str, typed: list[tuple[str, str]],
                 key: list[str], chunk: int) -> None:
        columns = [c for c, _ in typed]
        self.src, self.local, self.name, self.columns, self.key, self.chunk = src, local, name, columns, key, chunk
        literals = [literal_sql(c, t) for c, t in typed]
        self.texts = [exact_text(c, t) for c, t in typed]
        self.fast = bool(literals) and all(literals)
        self.as_text = "CONCAT('(', " + ", ',', ".join(literals) + ", ')')" if self.fast else ""  # type: ignore[arg-type]

        self.col_list = ", ".join(quote_ident(c) for c in columns)
        self.order = ", ".join(quote_ident(k) for k in key)
        self.key_at = [columns.index(k) for k in key]
        self.insert = (f"INSERT IGNORE INTO {name.replace('%', '%%')} ({self.col_list.replace('%', '%%')}) "
                       f"VALUES ({', '.join(['%s'] * len(columns))})")
        self.rows = self.chunks = self.retries = 0

    async def next_chunk(self, last: tuple[Any, ...] | None) -> tuple[tuple[Any, ...] | None, bool]:
        """Copy and verify the chunk after `last`; (its last key, whether it was the final one)."""
        mismatches = 0
        for attempt in range(1, CHUNK_ATTEMPTS + 1):
            try:
                if self.fast:
                    outcome = await self._copy_text(last, clean=mismatches > 0)
                else:
                    outcome = await self._copy(last, clean=mismatches > 0)
            except pymysql.err.OperationalError as e:
                await self._rollback()
                if e.args[0] not in _RETRY:
                    raise
                self.retries += 1
                await asyncio.sleep(random.uniform(0.02, 0.2) * min(attempt, 5))
                continue
            except BaseException:
                await self._rollback()
                raise
            if outcome is None:
                await self._rollback()
                mismatches += 1
                self.retries += 1
                if mismatches >= MISMATCH_ATTEMPTS:
                    raise SqlError(ER_UNKNOWN, f"the copy of {self.name} after key {last} never matched its source")
                continue
            return outcome
        raise SqlError(ER_UNKNOWN, f"the copy of {self.name} after key {last} kept waiting for locks ({CHUNK_ATTEMPTS} tries)")

    async def _copy(self, last: tuple[Any, ...] | None, clean: bool) -> tuple[tuple[Any, ...] | None, bool] | None:
        where, params = after_key(self.key, last) if last is not None else ("TRUE", [])
        async with self.src.cursor() as scur:
            await scur.execute("START TRANSACTION")
            await scur.execute(f"SELECT {self.col_list} FROM {self.name} WHERE {where} ORDER BY {self.order} "
                               f"LIMIT {self.chunk} LOCK IN SHARE MODE", params)
            rows = await scur.fetchall()
            final = len(rows) < self.chunk
            if not final:
                hi = tuple(rows[-1][i] for i in self.key_at)
                upto, more = upto_key(self.key, hi)
                where, params = f"{where} AND {upto}", params + more
            await scur.execute(checksum_sql(self.name, self.texts, where), params)
            src_sum = await scur.fetchone()
        dst_sum = await self._fill_target(where, params, clean, (lambda lcur: lcur.executemany(self.insert, rows)) if rows else None)
        end = tuple(rows[-1][i] for i in self.key_at) if rows else None
        return await self._end_chunk(last, tuple(src_sum), dst_sum, end, final)

    async def _copy_text(self, last: tuple[Any, ...] | None, clean: bool) -> tuple[tuple[Any, ...] | None, bool] | None:
        where, params = after_key(self.key, last) if last is not None else ("TRUE", [])
        async with self.src.cursor() as scur:
            await scur.execute("START TRANSACTION")
            # Where the chunk ends (a plain read: every read of rows below is a locking one).
            await scur.execute(f"SELECT {self.order} FROM {self.name} WHERE {where} ORDER BY {self.order} "
                               f"LIMIT 1 OFFSET {self.chunk - 1}", params)
            end = await scur.fetchone()
            final = end is None
            if not final:
                upto, more = upto_key(self.key, tuple(end))
                where, params = f"{where} AND {upto}", params + more
            # One locking read: locks the range (gaps too), checksums it and writes it out.
            checksum = checksum_sql(self.name, self.texts, where)
            await scur.execute(checksum.replace(" FROM ", f", GROUP_CONCAT({self.as_text} ORDER BY {self.order} SEPARATOR ',') "
                                                          "FROM ", 1) + " LOCK IN SHARE MODE", params)
            count, src_checksum, text = await scur.fetchone()
            if final and count:
                await scur.execute(f"SELECT {self.order} FROM {self.name} WHERE {where} ORDER BY {self.order} DESC LIMIT 1 "
                                   "LOCK IN SHARE MODE", params)
                end = await scur.fetchone()
        insert = f"INSERT IGNORE INTO {self.name} ({self.col_list}) VALUES {text}"
        dst_sum = await self._fill_target(where, params, clean, (lambda lcur: lcur.execute(insert)) if count else None)
        return await self._end_chunk(last, (count, src_checksum), dst_sum, tuple(end) if end is not None else None, final)

    async def _fill_target(self, where: str, params: list[Any], clean: bool,
                           insert: Callable[[Any], Awaitable[Any]] | None) -> tuple[Any, ...]:
        """The chunk's rows into the target's range, in one transaction left open;
        the range's checksum there.  Rows the clients already inserted in the range
        are on the source alike (module docstring): INSERT IGNORE skips them, and
        the checksum proves it.  `clean` (a retry after a mismatch): the range is
        emptied first."""
        async with self.local.cursor() as lcur:
            await lcur.execute("START TRANSACTION")
            if clean:
                await lcur.execute(f"DELETE FROM {self.name} WHERE {where}", params)
            if insert is not None:
                await insert(lcur)
            await lcur.execute(checksum_sql(self.name, self.texts, where), params)
            return tuple(await lcur.fetchone())

    async def _end_chunk(self, last: tuple[Any, ...] | None, src_sum: tuple[Any, ...], dst_sum: tuple[Any, ...],
                         end: tuple[Any, ...] | None, final: bool) -> tuple[tuple[Any, ...] | None, bool] | None:
        """Commit the chunk if both checksums (count, hash) agree: the target, then the
        source (its locks go last); None (the caller rolls back) if they differ."""
        if src_sum != dst_sum:
            log.warning("chunk of %s after %s: source %s, copy %s; copying it again", self.name, last, src_sum, dst_sum)
            return None
        await self.local.commit()
        await self.src.commit()
        self.rows += int(src_sum[0])
        self.chunks += 1
        return (end if end is not None else last), final

    async def _rollback(self) -> None:
        for conn in (self.local, self.src):
            try:
                await conn.rollback()
            except Exception:  # noqa: BLE001 - the connection is closed by the caller on failure
                pass
