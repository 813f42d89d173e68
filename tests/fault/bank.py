"""The bank workload under faults (issue 8), against a running `minisql up`.

    python -m tests.fault.bank --data-dir DIR --zk 127.0.0.1:2181 --ports 6033,6034 \\
        [--duration 600] [--interval 30] [--threads 8] [--seed 1]

Transfers move money between rows of `bank.accounts` and log each transfer
in `bank.ledger`, whose primary is on another region than accounts', so
every transfer is a transaction across regions (XA two-phase commit),
through the proxies in turn, with PyMySQL's defaults.  Meanwhile
tests/fault/harness.py fires a fault every `--interval` seconds.  Each
transfer ends acknowledged (COMMIT answered OK), failed (an error before
COMMIT, or a definite refusal of it) or unknown (the connection was lost
during COMMIT: either outcome is allowed, but the same on every copy).

At the end, once the cluster has settled, `check` asserts what a bank
needs: the total is conserved; every acknowledged transfer is in the ledger
and no failed one is; the balances are exactly what the ledger says; every
copy of both tables is identical (CHECKSUM TABLE); no XA branch is left
prepared.  It prints, per fault, the longest time with no acknowledged
transfer from the fault until the next one.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pymysql

from minisql.xa import recovered

from .harness import KINDS, Fault, Stack, schedule, wait_until

ACCOUNTS, START_BALANCE = 20, 1000
LOST = {2006, 2013, 2055}  # the client lost the connection: the COMMIT's outcome is unknown to it


@dataclass
class Outcomes:
    acked: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)
    ack_times: list[float] = field(default_factory=list)
    errors: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, kind: str, tid: str, errno: int = 0) -> None:
        with self.lock:
            getattr(self, kind).add(tid)
            if kind == "acked":
                self.ack_times.append(time.monotonic())
            if errno:
                self.errors[errno] = self.errors.get(errno, 0) + 1


def connect(port: int, **kw) -> pymysql.connections.Connection:
    return pymysql.connect(host="127.0.0.1", port=port, user="root", password="", connect_timeout=5,
                           read_timeout=60, write_timeout=60, **kw)


def setup(stack: Stack, port: int) -> None:
    """bank.accounts and bank.ledger on different primaries."""
    conn = connect(port, autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute("CREATE DATABASE bank")
        cur.execute("USE bank")
        cur.execute("CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL)")
        cur.execute("INSERT INTO accounts VALUES " + ", ".join(f"({i}, {START_BALANCE})" for i in range(ACCOUNTS)))
        ledger = "CREATE TABLE ledger (id VARCHAR(40) PRIMARY KEY, src INT, dst INT, amount INT)"
        for i in range(8):
            cur.execute(ledger)
            tables = {(t["database"], t["table"]): t["primary"] for t in stack.status()["tables"]}
            if tables[("bank", "ledger")] != tables[("bank", "accounts")]:
                return
            cur.execute(f"CREATE TABLE filler_{i} (x INT)")
            cur.execute("DROP TABLE ledger")
        raise RuntimeError("ledger keeps its primary with accounts")
    finally:
        conn.close()


def worker(n: int, ports: list[int], stop: threading.Event, out: Outcomes, seed: int) -> None:
    rng = random.Random(seed * 1000 + n)
    count = 0
    conn = None
    while not stop.is_set():
        port = ports[(n + count) % len(ports)]
        count += 1
        tid = f"{n}-{count}"
        src, dst = rng.sample(range(ACCOUNTS), 2)
        amount = rng.randint(1, 50)
        committing = False
        try:
            if conn is None:
                conn = connect(port, database="bank")  # autocommit off
            cur = conn.cursor()
            cur.execute("UPDATE accounts SET balance = balance - %s WHERE id = %s", (amount, src))
            cur.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s", (amount, dst))
            cur.execute("INSERT INTO ledger VALUES (%s, %s, %s, %s)", (tid, src, dst, amount))
            committing = True
            conn.commit()
            out.note("acked", tid)
        except pymysql.err.MySQLError as exc:
            errno = exc.args[0] if exc.args and isinstance(exc.args[0], int) else -1
            out.note("unknown" if committing and errno in LOST else "failed", tid, errno)
            try:
                if conn is not None:
                    conn.rollback()
            except pymysql.err.MySQLError:
                pass
            if errno in LOST or errno in (2003, -1):
                try:
                    if conn is not None:
                        conn.close()
                except Exception:  # noqa: BLE001
                    pass
                conn = None
                time.sleep(0.05)
        if conn is not None and count % 20 == 0:  # move between the proxies now and then
            conn.close()
            conn = None
    if conn is not None:
        conn.close()


def gaps(faults: list[tuple[float, str]], acks: list[float], end: float) -> list[tuple[str, float]]:
    """Per fault: the longest time with no acknowledged transfer from the fault
    until the next fault (or the end).  Pure."""
    acks = sorted(acks)
    out = []
    for i, (at, what) in enumerate(faults):
        until = faults[i + 1][0] if i + 1 < len(faults) else end
        window = [t for t in acks if at <= t < until]
        edges = [at, *window, until]
        out.append((what, max(b - a for a, b in zip(edges, edges[1:]))))
    return out


def check(stack: Stack, port: int, out: Outcomes, timeout: float = 120.0) -> dict:
    """The bank's invariants (module docstring); returns a summary, raises AssertionError."""
    def settled() -> bool:
        return not any(prepared(stack).values())

    wait_until(settled, timeout, "no XA branch left prepared")
    conn = connect(port, autocommit=True, database="bank")
    try:
        cur = conn.cursor()
        cur.execute("SELECT id, balance FROM accounts ORDER BY id")
        balances = dict(cur.fetchall())
        cur.execute("SELECT id, src, dst, amount FROM ledger")
        ledger = {row[0]: row[1:] for row in cur.fetchall()}
    finally:
        conn.close()
    total = sum(balances.values())
    assert total == ACCOUNTS * START_BALANCE, f"total {total} != {ACCOUNTS * START_BALANCE}"
    lost = sorted(out.acked - set(ledger))
    assert not lost, f"{len(lost)} acknowledged transfers lost: {lost[:10]}"
    applied = sorted(out.failed & set(ledger))
    assert not applied, f"{len(applied)} failed transfers applied: {applied[:10]}"
    expected = {i: START_BALANCE for i in range(ACCOUNTS)}
    for src, dst, amount in ledger.values():
        expected[src] -= amount
        expected[dst] += amount
    assert balances == expected, "balances disagree with the ledger"
    checksums = copy_checksums(stack)
    for table, sums in checksums.items():
        assert len(set(sums.values())) == 1, f"copies of bank.{table} differ: {sums}"
    return {"transfers": len(out.acked) + len(out.failed) + len(out.unknown), "acked": len(out.acked),
            "failed": len(out.failed), "unknown": len(out.unknown),
            "unknown_applied": len(out.unknown & set(ledger)), "errors": out.errors, "checksums": checksums}


def _backend(stack: Stack) -> tuple[str, str]:
    secrets = json.loads((stack.data_dir / "secrets.json").read_text())
    return secrets["backend_user"], secrets["backend_password"]


def _regions(stack: Stack) -> dict[str, int]:
    """The live regions' MariaDB ports."""
    return {r["id"]: r["mysql_port"] for r in stack.status()["regions"] if r["alive"] and r["mysql_port"]}


def prepared(stack: Stack) -> dict[str, list]:
    user, password = _backend(stack)
    found = {}
    for region, port in _regions(stack).items():
        conn = pymysql.connect(host="127.0.0.1", port=port, user=user, password=password, connect_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute("XA RECOVER")
                found[region] = recovered(list(cur.fetchall()))
        finally:
            conn.close()
    return found


def copy_checksums(stack: Stack) -> dict[str, dict[str, int]]:
    """CHECKSUM TABLE of every copy of bank.accounts / bank.ledger the placement lists."""
    user, password = _backend(stack)
    ports = _regions(stack)
    status = stack.status()
    out: dict[str, dict[str, int]] = {}
    for t in status["tables"]:
        if t["database"] != "bank" or t["table"] not in ("accounts", "ledger"):
            continue
        sums = {}
        for region in [t["primary"], *[r for r, state in t["replicas"].items() if state == "in_sync"]]:
            conn = pymysql.connect(host="127.0.0.1", port=ports[region], user=user, password=password,
                                   connect_timeout=5)
            try:
                with conn.cursor() as cur:
                    cur.execute(f"CHECKSUM TABLE bank.{t['table']}")
                    sums[region] = cur.fetchone()[1]
            finally:
                conn.close()
        out[t["table"]] = sums
    return out


def run(stack: Stack, ports: list[int], duration: float, interval: float, threads: int, seed: int,
        log=print, kinds: tuple[str, ...] = KINDS) -> dict:
    """Set up, run the workload with faults for `duration` s, check; the summary."""
    setup(stack, ports[0])
    plan = schedule(seed, duration, interval, kinds)
    out = Outcomes()
    stop = threading.Event()
    workers = [threading.Thread(target=worker, args=(n, ports, stop, out, seed), daemon=True) for n in range(threads)]
    start = time.monotonic()
    for w in workers:
        w.start()
    fired: list[tuple[float, str]] = []
    pending: list[Fault] = list(plan)
    while time.monotonic() - start < duration:
        if pending and time.monotonic() - start >= pending[0].at:
            fault = pending.pop(0)
            try:
                what = stack.inject(fault, ("bank", "accounts"))
            except Exception as exc:  # noqa: BLE001 - a fault that cannot fire now is skipped, and said
                what = f"{fault.kind} skipped: {exc}"
            fired.append((time.monotonic(), what))
            log(f"[{time.monotonic() - start:6.1f}s] fault: {what} (acked so far: {len(out.acked)})")
        time.sleep(0.1)
    stack.blackhole.heal()  # a partition still on at the end ends now
    stop.set()
    for w in workers:
        w.join(timeout=90)
    end = time.monotonic()
    summary = check(stack, ports[0], out)
    summary["gaps"] = gaps(fired, out.ack_times, end)
    for what, gap in summary["gaps"]:
        log(f"longest gap with no acknowledged transfer after '{what}': {gap:.1f} s")
    log(f"transfers: {summary['acked']} acknowledged, {summary['failed']} failed, {summary['unknown']} unknown "
        f"({summary['unknown_applied']} of them applied); errors by errno: {summary['errors']}")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--zk", required=True)
    parser.add_argument("--ports", required=True, help="the proxies' ports, comma-separated")
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    stack = Stack(Path(args.data_dir), args.zk)
    summary = run(stack, [int(p) for p in args.ports.split(",")], args.duration, args.interval, args.threads, args.seed)
    print(json.dumps({k: v for k, v in summary.items() if k != "checksums"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
