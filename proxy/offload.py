"""Analysis of big statements, off the event loop and with bounded memory.

Why: the proxy has one event loop.  Parsing a 5.5 MB INSERT with sqlglot
took 6.8 s of it (and ~90 MB of AST per MB of SQL), freezing every other
client; a client could do that on purpose.  Statements of at least
`BIG_STATEMENT` bytes are therefore analysed in a separate worker process,
one at a time (a semaphore bounds the queue's memory to the statements
waiting), while the loop keeps serving everyone else.

Most big statements are bulk INSERT/REPLACE ... VALUES with literal rows.
For those the worker parses only the first row: when every further row is
literals only (checked on the digest, where literals are already `?`), the
tables, the write kind and the function checks of the one-row statement are
those of the whole.  Anything else gets the full parse, still off the loop.

Big statements are not cached: their digests are as big as they are, and a
cache of them would be a memory leak a client controls.

Error handling: a worker that dies (killed, out of memory) fails that one
statement with 1105 and the pool is rebuilt for the next one.  Workers are
recycled after `RECYCLE_AFTER` jobs, which gives back the parser's memory.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from minisql.errors import ER_UNKNOWN, SqlError

from .statements import BIG_STATEMENT, Analysis, Kind, analyze, digest

__all__ = ["BIG_STATEMENT", "Offloader", "analyze_big", "collapse_rows"]
RECYCLE_AFTER = 16

_VALUES = re.compile(r"\bvalues?\b", re.I)
_LITERAL_ROWS = re.compile(
    r"(?:\s*,\s*\(\s*(?:-\s*)?(?:\?|NULL|DEFAULT|TRUE|FALSE)(?:\s*,\s*(?:-\s*)?(?:\?|NULL|DEFAULT|TRUE|FALSE))*\s*\))*\s*;?\s*",
    re.I,
)


def _first_row_end(sql: str) -> int | None:
    """Index just after the first VALUES row, scanning outside quotes and comments."""
    i, n, depth, seen_values = 0, len(sql), 0, False
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            j = i + 1
            while j < n and sql[j] != ch:
                j += 2 if sql[j] == "\\" and ch != "`" else 1
            i = j + 1
            continue
        if sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end < 0:
                return None
            i = end + 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if seen_values and depth == 0:
                return i + 1
        elif depth == 0 and not seen_values and ch in "vV":
            m = _VALUES.match(sql, i)
            if m and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] in "_$")):
                seen_values = True
                i = m.end()
                continue
        i += 1
    return None


def collapse_rows(sql: str, shape: str) -> str | None:
    """The statement cut after its first VALUES row, when the other rows are
    literals only and nothing follows them; None otherwise.  `shape` is the
    statement's digest, where every literal is already `?`."""
    end = _first_row_end(sql)
    shape_end = _first_row_end(shape)
    if end is None or shape_end is None:
        return None
    return sql[:end] if _LITERAL_ROWS.fullmatch(shape, shape_end) else None


def analyze_big(sql: str, kind: Kind) -> Analysis | SqlError:
    """Runs in the worker process."""
    try:
        shape = digest(sql)
        collapsed = collapse_rows(sql, shape) if kind in (Kind.INSERT, Kind.REPLACE) else None
        return analyze(collapsed if collapsed is not None else sql, kind, shape)
    except SqlError as e:
        return e


class Offloader:
    """One worker process for the analysis of big statements (see module docstring)."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._one_at_a_time = asyncio.Semaphore(1)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the proxy has kazoo threads a fork would copy mid-flight.
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=RECYCLE_AFTER)
        return self._pool

    async def analyze(self, sql: str, kind: Kind) -> Analysis:
        async with self._one_at_a_time:
            loop = asyncio.get_running_loop()
            try:
                result = await loop.run_in_executor(self._executor(), analyze_big, sql, kind)
            except BrokenProcessPool:
                self._pool = None
                raise SqlError(ER_UNKNOWN, "The statement analyser stopped while reading this statement; try again")
        if isinstance(result, SqlError):
            raise result
        return result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
