#!/usr/bin/env bash
# Two proxies of the same stack, measured in alternating rounds (A, B, A, B, ...).
#
#   bash bench/ab_proxies.sh PORT_A PORT_B [ROUNDS=3]
#
# Why: to price one change (e.g. the XA two-phase commit, docs/benchmarks.md) on a
# small shared VM whose figures drift by 20-40 % between runs, start the old commit's
# proxy beside the new one (a `git worktree` of it, the stack's --zk/--secrets/--users)
# and run the same workload through each, back to back.  Both write through a proxy,
# so the copies stay identical: write workloads are fine.  Needs sbtest prepared
# through one of them.  Environment: WORKLOAD [oltp_read_write], BENCH_TIME [15]
# seconds per run, BENCH_THREADS [8], BENCH_TABLE_SIZE [10000], PS_MODE [disable].
set -euo pipefail
A="$1"; B="$2"; ROUNDS="${3:-3}"
WORKLOAD="${WORKLOAD:-oltp_read_write}"

run() {  # port -> "qps p95_ms"
    sysbench "$WORKLOAD" --mysql-host=127.0.0.1 --mysql-port="$1" --mysql-user=root --mysql-password= \
        --mysql-db=sbtest --tables=1 --table-size="${BENCH_TABLE_SIZE:-10000}" --threads="${BENCH_THREADS:-8}" \
        --time="${BENCH_TIME:-15}" --db-ps-mode="${PS_MODE:-disable}" --percentile=95 run 2>&1 |
        awk '/queries:/ { gsub(/[()]/, "", $3); q = $3 } /95th percentile:/ { p = $3 } END { print q, p }'
}

for round in $(seq 1 "$ROUNDS"); do
    for port in "$A" "$B"; do
        read -r qps p95 < <(run "$port")
        echo "$WORKLOAD round $round port $port: $qps qps, p95 $p95 ms"
    done
done
