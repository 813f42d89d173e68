"""The client's own XA transactions (`XA START ... XA COMMIT`), across regions.

An application (a JTA transaction manager, SQLAlchemy's `begin_twophase()`)
may run its own two-phase commit against what it takes for one MariaDB.
Through the cluster, its transaction touches several regions, each a MariaDB
transaction of its own, so the client's one xid becomes one XA *branch* per
region: same gtrid and formatID, the bqual extended by a marker and the
region id (`AppXid.branch`).  Every XA statement the client sends acts on
all the branches of its transaction:

* ``XA START xid``: the session enters the ACTIVE state; each region the
  transaction then reaches joins with ``XA START <branch>`` (cursor.py).
* ``XA END xid``: ``XA END`` on every branch (IDLE).
* ``XA PREPARE xid``: ``XA PREPARE`` on every branch (PREPARED); if one
  fails, every branch is rolled back and the client gets the error.
* ``XA COMMIT xid`` / ``XA ROLLBACK xid``: on every branch.  ``XA COMMIT xid
  ONE PHASE`` with several branches prepares them all first, then commits.
* ``XA COMMIT|ROLLBACK xid`` from a session that does not hold `xid` (the
  client's transaction manager recovering after a crash): the branches are
  found with ``XA RECOVER`` on every live region and finished there.
* ``XA RECOVER``: every live region's prepared branches of the client's
  transactions, each client xid once (the cluster's own branches, formatID
  `minisql.xa.FORMAT_ID`, are never shown).

The client is the coordinator, as with one MariaDB: the cluster's resolver
never touches these branches.  A prepared branch survives its client's
disconnect (MDEV-742): a session that ends with prepared branches closes
their connections instead of pooling them (session.py), so MariaDB detaches
the branches and any session can finish them.

All XA state (the xid, ACTIVE/IDLE/PREPARED) lives in the session state
(sessionstate.py); this module parses the statements and carries them out.
MariaDB's errors are kept: 1397 XAER_NOTA, 1399 XAER_RMFAIL, 1400
XAER_OUTSIDE, 1398 XAER_INVAL.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from minisql.errors import SqlError
from minisql.xa import FORMAT_ID

from .backend import QueryResult
from .engine import Reply, VCursor, ok
from .protocol import lenenc_str, text_row

ER_XAER_NOTA, ER_XAER_INVAL, ER_XAER_RMFAIL, ER_XAER_OUTSIDE = 1397, 1398, 1399, 1400
MAX_PART = 64  # bytes of a gtrid or a bqual (MariaDB's XIDDATASIZE / 2)
MARKER = b"\x1fmsq:"  # between the client's bqual and the region id in a branch's bqual

_STRING = r"(?:x'[0-9a-f]*'|0x[0-9a-f]+|b'[01]*'|'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\")"
_VERB = re.compile(r"^\s*xa\s+(start|begin|end|prepare|commit|rollback|recover)\b", re.I)
_XID = re.compile(rf"\s*({_STRING})\s*(?:,\s*({_STRING})?\s*(?:,\s*(\d+))?)?", re.I | re.S)
_TAILS = {
    "start": re.compile(r"\s*(join|resume)?\s*;?\s*$", re.I),
    "end": re.compile(r"\s*(suspend(?:\s+for\s+migrate)?)?\s*;?\s*$", re.I),
    "prepare": re.compile(r"\s*()?;?\s*$"),
    "commit": re.compile(r"\s*(one\s+phase)?\s*;?\s*$", re.I),
    "rollback": re.compile(r"\s*()?;?\s*$"),
    "recover": re.compile(r"\s*(?:format\s*=\s*'(raw|sql)')?\s*;?\s*$", re.I),
}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "b": "\b", "Z": "\x1a"}


def rmfail(state: str) -> SqlError:
    return SqlError(ER_XAER_RMFAIL, f"XAER_RMFAIL: The command cannot be executed when global transaction is in the  "
                                    f"{state} state", "XAE07")


def nota() -> SqlError:
    return SqlError(ER_XAER_NOTA, "XAER_NOTA: Unknown XID", "XAE04")


def outside() -> SqlError:
    return SqlError(ER_XAER_OUTSIDE, "XAER_OUTSIDE: Some work is done outside global transaction", "XAE09")


@dataclass(frozen=True, slots=True)
class AppXid:
    """The client's xid: gtrid, bqual (bytes) and formatID."""

    gtrid: bytes
    bqual: bytes = b""
    format_id: int = 1

    def branch_bqual(self, region: str) -> bytes:
        return self.bqual + MARKER + region.encode()

    def branch(self, region: str) -> "AppBranch":
        bqual = self.branch_bqual(region)
        if len(bqual) > MAX_PART:
            raise SqlError(ER_XAER_INVAL, "XAER_INVAL: Invalid arguments (or unsupported command): the cluster needs "
                                          f"{len(MARKER) + len(region)} bytes of the bqual for its regions", "XAE05")
        return AppBranch(self, region)

    def sql(self) -> str:
        """The client's own xid, as XA RECOVER FORMAT='SQL' shows it."""
        return f"X'{self.gtrid.hex()}',X'{self.bqual.hex()}',{self.format_id}"


@dataclass(frozen=True, slots=True)
class AppBranch:
    """One region's branch of a client xid (duck-types minisql.xa.Xid for commit.py)."""

    xid: AppXid
    region: str

    @property
    def gtrid(self) -> str:
        return self.xid.gtrid.decode("utf8", "replace")

    def sql(self) -> str:
        return f"X'{self.xid.gtrid.hex()}',X'{self.xid.branch_bqual(self.region).hex()}',{self.xid.format_id}"


@dataclass(frozen=True, slots=True)
class XaCommand:
    verb: str  # start, end, prepare, commit, rollback, recover
    xid: AppXid | None = None
    one_phase: bool = False
    sql_format: bool = False  # XA RECOVER FORMAT='SQL'


def _bytes(literal: str, codec: str) -> bytes:
    low = literal.lower()
    if low.startswith("x'"):
        return bytes.fromhex(literal[2:-1])
    if low.startswith("0x"):
        digits = literal[2:]
        return bytes.fromhex(digits if len(digits) % 2 == 0 else "0" + digits)
    if low.startswith("b'"):
        bits = literal[2:-1] or "0"
        return int(bits, 2).to_bytes((len(bits) + 7) // 8 or 1, "big")
    quote, body = literal[0], literal[1:-1]
    body = body.replace(quote * 2, quote)
    body = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body, flags=re.S)
    return body.encode(codec, "surrogateescape")


def _syntax(sql: str) -> SqlError:
    return SqlError(1064, "You have an error in your SQL syntax; check the manual that corresponds to your MariaDB "
                          f"server version for the right syntax to use near '{sql.strip()[:40]}' at line 1", "42000")


def _inval() -> SqlError:
    return SqlError(ER_XAER_INVAL, "XAER_INVAL: Invalid arguments (or unsupported command)", "XAE05")


def parse_xa(sql: str, codec: str = "utf8") -> XaCommand:
    """One XA statement (MariaDB's grammar); 1064 for anything else."""
    verb_match = _VERB.match(sql)
    if not verb_match:
        raise _syntax(sql)
    verb = verb_match.group(1).lower()
    verb = "start" if verb == "begin" else verb
    rest = sql[verb_match.end():]
    if verb == "recover":
        tail = _TAILS["recover"].match(rest)
        if not tail:
            raise _syntax(rest)
        return XaCommand("recover", sql_format=(tail.group(1) or "").lower() == "sql")
    m = _XID.match(rest)
    if not m:
        raise _syntax(rest)
    tail = _TAILS[verb].match(rest[m.end():])
    if not tail:
        raise _syntax(rest[m.end():])
    gtrid, bqual, fmt = m.groups()
    xid = AppXid(_bytes(gtrid, codec), _bytes(bqual, codec) if bqual else b"", int(fmt) if fmt else 1)
    if not xid.gtrid or len(xid.gtrid) > MAX_PART or len(xid.bqual) > MAX_PART:
        raise _inval()
    if verb in ("start", "end") and tail.group(1):  # JOIN / RESUME / SUSPEND: not supported by MariaDB either
        raise _inval()
    return XaCommand(verb, xid, one_phase=verb == "commit" and bool(tail.group(1)))


def branches_in(rows: list[bytes], regions: set[str]) -> list[tuple[AppXid, str]]:
    """The client branches among a region's `XA RECOVER` text rows: (client xid, region)."""
    out = []
    for raw in rows:
        values = text_row(raw)
        try:
            fmt, glen, blen, data = int(values[0] or b""), int(values[1] or b""), int(values[2] or b""), values[3] or b""
        except (IndexError, ValueError):
            continue
        if fmt == FORMAT_ID:
            continue  # the cluster's own commit branches (minisql/xa.py)
        gtrid, bqual = data[:glen], data[glen:glen + blen]
        at = bqual.rfind(MARKER)
        if at < 0:
            continue  # not made through the cluster
        region = bqual[at + len(MARKER):].decode("utf8", "replace")
        if region in regions:
            out.append((AppXid(gtrid, bqual[:at], fmt), region))
    return out


@dataclass(frozen=True, slots=True)
class XaStatement:
    """One client XA statement (module docstring)."""

    command: XaCommand
    label: str = "xa"
    epoch: int = -1

    async def execute(self, vc: VCursor) -> Reply:
        cmd, state = self.command, vc.state
        if cmd.verb == "recover":
            return await _recover(vc, cmd.sql_format)
        xid = cmd.xid
        assert xid is not None
        if cmd.verb == "start":
            state.xa_start(xid)
            return ok()
        if state.app_xid is None or state.app_xid != xid:
            if state.app_xa:
                raise rmfail(state.app_xa)
            if cmd.verb in ("end", "prepare"):
                raise nota()
            if state.tx.active or not state.tx.autocommit:  # MariaDB: in_multi_stmt_transaction_mode()
                raise outside()
            await _finish_elsewhere(vc, xid, commit=cmd.verb == "commit")
            return ok()
        branches = {r: xid.branch(r) for r in state.participants}
        if cmd.verb == "end":
            if state.app_xa != "ACTIVE":
                raise rmfail(state.app_xa)
            await _on_all(vc, [f"XA END {b.sql()}" for b in branches.values()], list(branches))
            state.app_xa = "IDLE"
            return ok()
        if cmd.verb == "prepare":
            if state.app_xa != "IDLE":
                raise rmfail(state.app_xa)
            await _prepare_all(vc, branches)
            state.app_xa = "PREPARED"
            return ok()
        if cmd.verb == "rollback":
            if state.app_xa == "ACTIVE":
                raise rmfail(state.app_xa)
            try:
                await _on_all(vc, [f"XA ROLLBACK {b.sql()}" for b in branches.values()], list(branches))
            finally:
                state.xa_finish()
            return ok()
        # commit
        if state.app_xa == "ACTIVE" or (state.app_xa == "IDLE" and not cmd.one_phase):
            raise rmfail(state.app_xa)
        if state.app_xa == "PREPARED" and cmd.one_phase:
            raise rmfail(state.app_xa)
        try:
            if state.app_xa == "IDLE":
                if len(branches) == 1:
                    (region, b), = branches.items()
                    await vc.run(region, f"XA COMMIT {b.sql()} ONE PHASE", join=False)
                    return ok()
                await _prepare_all(vc, branches)
            await _on_all(vc, [f"XA COMMIT {b.sql()}" for b in branches.values()], list(branches))
        finally:
            state.xa_finish()
        return ok()

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Xa": self.command.verb}
        if self.command.xid is not None:
            out["xid"] = self.command.xid.sql()
        if self.command.one_phase:
            out["one_phase"] = True
        return out


async def _on_all(vc: VCursor, statements: list[str], regions: list[str]) -> None:
    """Each region its statement, all at once; the first error is the client's."""
    results = await asyncio.gather(*(vc.run(r, sql, join=False) for r, sql in zip(regions, statements)),
                                   return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def _prepare_all(vc: VCursor, branches: dict[str, AppBranch]) -> None:
    """XA PREPARE every branch; if one fails, roll every branch back (the
    transaction is then gone, as when MariaDB's own prepare fails)."""
    try:
        await _on_all(vc, [f"XA PREPARE {b.sql()}" for b in branches.values()], list(branches))
    except BaseException:
        await asyncio.gather(*(vc.run(r, f"XA ROLLBACK {b.sql()}", join=False) for r, b in branches.items()),
                             return_exceptions=True)
        vc.state.xa_finish()
        raise


async def _recovered(vc: VCursor) -> tuple[list[tuple[AppXid, str]], QueryResult | None]:
    regions = sorted(vc.snapshot.regions)
    results = await asyncio.gather(*(vc.run(r, "XA RECOVER", join=False) for r in regions))
    found: list[tuple[AppXid, str]] = []
    for result in results:
        found += branches_in(result.rows, set(regions))
    return found, (results[0] if results else None)


async def _finish_elsewhere(vc: VCursor, xid: AppXid, commit: bool) -> None:
    """XA COMMIT/ROLLBACK of an xid this session does not hold: its prepared
    branches, wherever XA RECOVER finds them."""
    found, _ = await _recovered(vc)
    regions = sorted({region for x, region in found if x == xid})
    if not regions:
        raise nota()
    verb = "COMMIT" if commit else "ROLLBACK"
    await _on_all(vc, [f"XA {verb} {xid.branch(r).sql()}" for r in regions], regions)


async def _recover(vc: VCursor, sql_format: bool) -> Reply:
    found, first = await _recovered(vc)
    if first is None or first.fields is None:
        return ok()
    rows, seen = [], set()
    for xid, _region in found:
        if xid in seen:
            continue
        seen.add(xid)
        data = xid.sql().encode() if sql_format else xid.gtrid + xid.bqual
        rows.append(b"".join(lenenc_str(v) for v in (str(xid.format_id).encode(), str(len(xid.gtrid)).encode(),
                                                     str(len(xid.bqual)).encode(), data)))
    return Reply(QueryResult(first.fields, rows, 0, 0, 0, first.server_status, b""))
