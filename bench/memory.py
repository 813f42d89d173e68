"""Proxy memory under big statements and big results (figures in docs/benchmarks.md).

    python bench/memory.py --port 6033 [--rows 1000000] [--insert-mb 15.5]

Against a running stack (`minisql up`), through the proxy listening on
--port (its pid is found from the listening socket):

1. idle RSS of the proxy;
2. one INSERT statement of --insert-mb MB (one row, one LONGBLOB value as a
   hex literal) -- it fans out to both copies -- and the proxy's peak RSS
   (VmHWM) after it;
3. --rows rows loaded in 10k-row INSERTs, then one `SELECT *` of all of
   them read by an unbuffered client (PyMySQL SSCursor) at full speed, and by
   a client that reads slowly (it sleeps between batches, so the proxy must
   not buffer what the client has not taken); RSS sampled every 50 ms.

Peak figures are process-lifetime peaks: start a fresh proxy (or stack) for
numbers that belong to one step.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import threading
import time
import uuid

import pymysql
import pymysql.cursors


def proxy_pid(port: int) -> int:
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"pid=(\d+)", out)
    if not m:
        raise SystemExit(f"no process listens on port {port}")
    return int(m.group(1))


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


class Sampler:
    """Max RSS of a process over a window, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.05)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=6033)
    ap.add_argument("--user", default="root")
    ap.add_argument("--password", default="")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--insert-mb", type=float, default=15.5)
    args = ap.parse_args()
    pid = proxy_pid(args.port)
    db = f"mem_{uuid.uuid4().hex[:8]}"

    def connect(**kw: object) -> pymysql.connections.Connection:
        return pymysql.connect(host=args.host, port=args.port, user=args.user, password=args.password,
                               autocommit=True, **kw)  # type: ignore[arg-type]

    conn = connect()
    cur = conn.cursor()
    cur.execute(f"CREATE DATABASE {db}")
    cur.execute(f"USE {db}")
    cur.execute("CREATE TABLE blobs (id INT PRIMARY KEY, body LONGBLOB)")
    cur.execute("CREATE TABLE wide (id INT PRIMARY KEY, a VARCHAR(40), b BIGINT, c DOUBLE)")
    idle = rss_kib(pid)
    print(f"proxy pid {pid}: idle RSS {idle / 1024:.1f} MiB, peak so far {rss_kib(pid, 'VmHWM') / 1024:.1f} MiB")

    nbytes = int(args.insert_mb * 1_000_000) // 2 - 32  # a hex literal: two characters per byte
    sql = "INSERT INTO blobs VALUES (1, X'" + os.urandom(nbytes).hex() + "')"
    statement_mb = len(sql) / 1e6
    with Sampler(pid) as s:
        started = time.monotonic()
        cur.execute(sql)
        took = time.monotonic() - started
    del sql
    print(f"INSERT statement of {statement_mb:.1f} MB ({nbytes / 1e6:.1f} MB value): {took:.2f} s, "
          f"peak RSS {s.peak / 1024:.1f} MiB = {(s.peak - idle) / 1024:.1f} MiB above idle; "
          f"RSS after {rss_kib(pid) / 1024:.1f} MiB")

    batch = 10_000
    for start in range(0, args.rows, batch):
        values = ",".join(f"({i},'row-{i:032d}',{i * 7},{i / 3})" for i in range(start, min(start + batch, args.rows)))
        cur.execute(f"INSERT INTO wide VALUES {values}")
    base = rss_kib(pid)
    for label, pause in (("fast client", 0.0), ("slow client", 0.002)):
        reader = connect(database=db, cursorclass=pymysql.cursors.SSCursor)
        rcur = reader.cursor()
        with Sampler(pid) as s:
            started = time.monotonic()
            rcur.execute("SELECT * FROM wide")
            n = 0
            while True:
                rows = rcur.fetchmany(5000)
                if not rows:
                    break
                n += len(rows)
                if pause:
                    time.sleep(pause)
            took = time.monotonic() - started
        reader.close()
        assert n == args.rows, (n, args.rows)
        print(f"SELECT of {n} rows, {label}: {took:.2f} s, peak RSS {s.peak / 1024:.1f} MiB = "
              f"{(s.peak - base) / 1024:.1f} MiB above the RSS before it")
    cur.execute(f"DROP DATABASE {db}")
    conn.close()


if __name__ == "__main__":
    main()
