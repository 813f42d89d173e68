"""A region dies for good under autocommit writes (issue 8's target; figures in docs/benchmarks.md).

    python bench/region_death.py --data-dir .minisql [--port 6033] [--threads 8] [--after 25]

Against a running `minisql up` (3 regions at least).  Issue 8's target:
writes resume within the ZooKeeper session timeout + 2 s of a region's
death, with no client error for autocommit statements.

1. a table `bench_death.t` (id, v) of 1,000 rows; --threads connections
   (autocommit on) update random rows through the proxy, each UPDATE
   recorded with when it finished and how;
2. after --warmup seconds, the region holding the table's primary dies:
   `minisql up`'s supervisor is paused (SIGSTOP) so it restarts nothing,
   then that region's MariaDB and agent are SIGKILLed.  Its agent's
   ZooKeeper session lapses after the session timeout (6 s), the leading
   master promotes the replica after its grace (2 s), and the proxy holds
   the statements meanwhile (up to 10 s) and runs them on the new primary;
3. --after seconds later the writers stop, the supervisor resumes (it
   restarts the dead processes: the region returns and drops its stale
   copy), and the figures are printed: the longest gap with no successful
   write, the time from the kill to the first write that succeeded after
   it, and every error by errno (an UPDATE in flight on the dying MariaDB
   gets 2013, as it would on one MariaDB: the target is about statements
   sent after the death).

Exits 1 if the table is not writable again within the proxy's window.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pymysql

ROOT = Path(__file__).resolve().parents[1]


class Writer(threading.Thread):
    def __init__(self, port: int, number: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.number, self.stop = port, number, stop
        self.done: list[tuple[float, float, int]] = []  # (sent at, finished at, errno or 0)
        self.messages: Counter[str] = Counter()

    def run(self) -> None:
        rng = random.Random(self.number)
        conn = None
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                if conn is None:
                    conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", password="",
                                           database="bench_death", autocommit=True, read_timeout=60)
                with conn.cursor() as cur:
                    cur.execute("UPDATE t SET v = v + 1 WHERE id = %s", (rng.randrange(1000),))
                self.done.append((sent, time.monotonic(), 0))
            except pymysql.err.MySQLError as e:
                errno = e.args[0] if e.args and isinstance(e.args[0], int) else -1
                self.done.append((sent, time.monotonic(), errno))
                self.messages[f"{errno}: {str(e.args[-1])[:120]}"] += 1
                if conn is not None and errno in (2013, 2006, -1):
                    conn.close()
                    conn = None
                time.sleep(0.05)


def status(data_dir: Path, zk: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "minisql.cli", "status", "--json", "--zk", zk, "--data-dir", str(data_dir)],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"minisql status failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=".minisql")
    parser.add_argument("--port", type=int, default=6033)
    parser.add_argument("--zk", default="127.0.0.1:2181")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--after", type=float, default=25.0)
    args = parser.parse_args()
    data_dir = Path(args.data_dir)
    state = json.loads((data_dir / "run" / "up.json").read_text())

    setup = pymysql.connect(host="127.0.0.1", port=args.port, user="root", password="", autocommit=True)
    with setup.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS bench_death")
        cur.execute("CREATE DATABASE bench_death")
        cur.execute("CREATE TABLE bench_death.t (id INT PRIMARY KEY, v BIGINT NOT NULL)")
        cur.execute("INSERT INTO bench_death.t VALUES " + ",".join(f"({i}, 0)" for i in range(1000)))
    setup.close()
    table = next(t for t in status(data_dir, args.zk)["tables"] if (t["database"], t["table"]) == ("bench_death", "t"))
    victim = table["primary"]
    pids = {c["name"]: c["pid"] for c in state["children"]}

    stop = threading.Event()
    writers = [Writer(args.port, n, stop) for n in range(args.threads)]
    for w in writers:
        w.start()
    time.sleep(args.warmup)
    supervisor = state["supervisor_pid"]
    os.kill(supervisor, signal.SIGSTOP)
    try:
        killed_at = time.monotonic()
        for name in (f"mysql-{victim}", f"region-{victim}"):
            os.kill(pids[name], signal.SIGKILL)
        print(f"killed region {victim} (its MariaDB and agent; the supervisor paused)", flush=True)
        time.sleep(args.after)
        stop.set()
        for w in writers:
            w.join(timeout=70)
    finally:
        os.kill(supervisor, signal.SIGCONT)

    done = sorted(d for w in writers for d in w.done)
    ok_times = sorted(f for _, f, e in done if e == 0)
    # (a statement finishing at the kill's instant was already answered: count those sent after it)
    after = sorted(f for s, f, e in done if e == 0 and s > killed_at + 0.05)
    first_after = after[0] - killed_at if after else None
    gaps = [b - a for a, b in zip(ok_times, ok_times[1:])]
    errors = Counter(e for _, _, e in done if e)
    in_flight = Counter(e for s, _, e in done if e and s <= killed_at)
    sent_after = [(round(s - killed_at, 2), round(f - killed_at, 2), e) for s, f, e in done if e and s > killed_at]
    placement = next(t for t in status(data_dir, args.zk)["tables"] if (t["database"], t["table"]) == ("bench_death", "t"))
    print(json.dumps({
        "victim": victim,
        "new_primary": placement["primary"],
        "writes_ok": len(ok_times),
        "writes_resumed_after_s": None if first_after is None else round(first_after, 2),
        "longest_gap_s": round(max(gaps), 2) if gaps else None,
        "errors_by_errno": dict(errors),
        "error_messages": dict(sum((w.messages for w in writers), Counter())),
        "errors_of_statements_in_flight_at_the_kill": dict(in_flight),
        "errors_of_statements_sent_after_the_kill (sent, failed, errno; seconds after the kill)": sent_after,
    }, indent=1))
    return 0 if first_after is not None and first_after < 6.0 + 2.0 + 10.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
