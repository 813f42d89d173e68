"""An online copy under load (issue 8; figures in docs/benchmarks.md).

    python bench/online_copy.py --data-dir .minisql [--port 6033] [--zk 127.0.0.1:2181] [--rows 1000000]

Against a running `minisql up` (its data dir holds the secrets this reads):

1. a table of --rows rows (BIGINT key, an INT, a 50-character string),
   loaded through the proxy in 5,000-row INSERTs;
2. --writers connections (PyMySQL's defaults: autocommit off, COMMIT per
   write) insert, update and delete their own rows for --baseline seconds:
   the write latency without a copy;
3. the table's replica is marked STALE (as a region failing mid-statement
   does); the leading master re-copies it online (FILLING, every proxy
   acknowledges, key chunks copied and verified, IN_SYNC) while the writers
   go on; latency during the fill, the fill's rows/s and the time from the
   mark to two in-sync copies;
4. the writers stop; the table through the proxy must equal what the writers
   were told committed, and CHECKSUM TABLE must agree on both copies.

Prints one summary; exits 1 if a check fails or a writer saw an error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pymysql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minisql.config import load_backend_credentials  # noqa: E402
from minisql.runtime import cluster_zk_auth  # noqa: E402
from topology import ReplicaState, Topology  # noqa: E402


class Writer(threading.Thread):
    def __init__(self, port: int, database: str, number: int, writers: int, rows: int, model: dict[int, int]) -> None:
        super().__init__(daemon=True)
        self.port, self.database, self.number, self.writers, self.rows, self.model = port, database, number, writers, rows, model
        self.stop = threading.Event()
        self.samples: list[tuple[float, float]] = []  # (finished at, seconds)
        self.errors: list[str] = []

    def run(self) -> None:
        rng = random.Random(self.number)
        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", password="", database=self.database)
        mine = list(self.model)
        try:
            with conn.cursor() as cur:
                while not self.stop.is_set():
                    roll = rng.random()
                    started = time.perf_counter()
                    try:
                        if roll < 0.3 or not mine:
                            new = rng.randrange(0, 2 * self.rows) // self.writers * self.writers + self.number
                            if new in self.model:
                                continue
                            cur.execute("INSERT INTO t (id, v, pad) VALUES (%s, 1, %s)", (new, "n" * 50))
                            conn.commit()
                            self.model[new] = 1
                            mine.append(new)
                        elif roll < 0.9:
                            row = rng.choice(mine)
                            cur.execute("UPDATE t SET v = v + 1 WHERE id = %s", (row,))
                            conn.commit()
                            self.model[row] += 1
                        else:
                            at = rng.randrange(len(mine))
                            row = mine[at]
                            cur.execute("DELETE FROM t WHERE id = %s", (row,))
                            conn.commit()
                            del self.model[row]
                            mine[at] = mine[-1]
                            mine.pop()
                    except pymysql.MySQLError as e:
                        self.errors.append(repr(e))
                        conn.rollback()
                        continue
                    done = time.perf_counter()
                    self.samples.append((done, done - started))
        finally:
            conn.close()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def mark_stale_and_watch(zk: str, root: str, secrets: Path, database: str, timeout: float) -> dict[str, Any]:
    """Mark the replica STALE, then the time of each state it goes through until IN_SYNC."""
    topo = Topology.for_zookeeper(zk, root, auth=cluster_zk_auth(secrets))
    await topo.start()
    try:
        table = (await topo.get_placement()).table(database, "t")
        replica = table.in_sync_replicas[0]

        def mutate(p: Any) -> Any:
            t = p.table(database, "t")
            return p.with_table(replace(t, replicas=MappingProxyType({**t.replicas, replica: ReplicaState.STALE}), epoch=t.epoch + 1))

        marked = time.perf_counter()
        await topo.update_placement(mutate)
        seen: dict[str, float] = {"stale": marked}
        while time.perf_counter() - marked < timeout:
            state = (await topo.get_placement()).table(database, "t").replicas.get(replica)
            if state is not None and state.value not in seen:
                seen[state.value] = time.perf_counter()
            if state == ReplicaState.IN_SYNC:
                break
            await asyncio.sleep(0.05)
        return {"primary": table.primary, "replica": replica, "seen": seen}
    finally:
        await topo.close()


def region_checksum(port: int, creds: Any, database: str) -> tuple[int, int]:
    conn = pymysql.connect(host="127.0.0.1", port=port, user=creds.user, password=creds.password)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM `{database}`.t")
            (count,) = cur.fetchone()
            cur.execute(f"CHECKSUM TABLE `{database}`.t")
            return int(count), int(cur.fetchone()[1])
    finally:
        conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=".minisql")
    ap.add_argument("--port", type=int, default=6033)
    ap.add_argument("--zk", default="127.0.0.1:2181")
    ap.add_argument("--zk-root", default="/minisql")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--baseline", type=float, default=20.0)
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args()
    secrets = Path(args.data_dir) / "secrets.json"
    creds = load_backend_credentials(secrets)
    database = f"bench_fill_{random.randrange(1 << 30):x}"

    conn = pymysql.connect(host="127.0.0.1", port=args.port, user="root", password="", autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {database}")
        cur.execute(f"CREATE TABLE {database}.t (id BIGINT PRIMARY KEY, v INT NOT NULL, pad VARCHAR(60))")
        started = time.perf_counter()
        pad = "p" * 50
        for start in range(0, args.rows, 5000):
            cur.execute(f"INSERT INTO {database}.t VALUES " + ",".join(
                f"({2 * i},0,'{pad}')" for i in range(start, min(args.rows, start + 5000))))
        print(f"loaded {args.rows} rows through the proxy in {time.perf_counter() - started:.1f}s", flush=True)
    conn.close()

    models: list[dict[int, int]] = [{} for _ in range(args.writers)]
    for i in range(args.rows):
        models[(2 * i) % args.writers][2 * i] = 0
    writers = [Writer(args.port, database, n, args.writers, args.rows, models[n]) for n in range(args.writers)]
    for w in writers:
        w.start()
    time.sleep(args.baseline)
    watch = asyncio.run(mark_stale_and_watch(args.zk, args.zk_root, secrets, database, args.timeout))
    time.sleep(2)
    for w in writers:
        w.stop.set()
    for w in writers:
        w.join(timeout=60)

    seen = watch["seen"]
    fill_from, fill_to = seen.get("filling", seen["stale"]), seen.get("in_sync", float("inf"))
    base = [s for w in writers for (at, s) in w.samples if at < seen["stale"]]
    during = [s for w in writers for (at, s) in w.samples if fill_from <= at <= fill_to]
    errors = [e for w in writers for e in w.errors]
    expected = sorted((i, v) for m in models for i, v in m.items())
    conn = pymysql.connect(host="127.0.0.1", port=args.port, user="root", password="", database=database)
    with conn.cursor() as cur:
        cur.execute("SELECT id, v FROM t ORDER BY id")
        through_proxy = list(cur.fetchall())
    conn.close()
    status = json.loads(__import__("subprocess").run(
        [sys.executable, "-m", "minisql.cli", "status", "--zk", args.zk, "--zk-root", args.zk_root, "--json",
         "--data-dir", args.data_dir], capture_output=True, text=True, check=True).stdout)
    ports = {r["id"]: r["mysql_port"] for r in status["regions"]}
    sums = {r: region_checksum(ports[r], creds, database) for r in (watch["primary"], watch["replica"])}
    fill_seconds = fill_to - fill_from
    summary = {
        "rows": args.rows,
        "writers": args.writers,
        "mark_to_in_sync_s": round(fill_to - seen["stale"], 2),
        "fill_s": round(fill_seconds, 2),
        "fill_rows_per_s": round(args.rows / fill_seconds) if fill_seconds > 0 else None,
        "writes_baseline": len(base),
        "writes_during_fill": len(during),
        "p50_ms_baseline": round(1000 * percentile(base, 0.5), 2),
        "p99_ms_baseline": round(1000 * percentile(base, 0.99), 2),
        "p50_ms_during_fill": round(1000 * percentile(during, 0.5), 2),
        "p99_ms_during_fill": round(1000 * percentile(during, 0.99), 2),
        "mean_ms_during_fill": round(1000 * statistics.fmean(during), 2) if during else None,
        "client_errors": len(errors),
        "acknowledged_writes_all_present": through_proxy == expected,
        "copies_equal": len(set(sums.values())) == 1,
        "checksums": sums,
    }
    summary["p99_ratio"] = round(summary["p99_ms_during_fill"] / summary["p99_ms_baseline"], 2)
    print(json.dumps(summary, indent=2))
    if errors:
        print("first errors:", errors[:5])
    ok = not errors and summary["acknowledged_writes_all_present"] and summary["copies_equal"] and "in_sync" in seen
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
