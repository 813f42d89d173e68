#!/usr/bin/env bash
# Proxy/direct ratio of a read-only workload, measured in alternating rounds.
#
#   bash bench/ratio_rounds.sh PROXY_PORT DIRECT_PORT DIRECT_USER DIRECT_PASSWORD [PS_MODE=auto] [ROUNDS=5]
#
# Why: on a small shared VM the direct figure of one `make bench` run can move by
# 40 % from one run to the next (docs/benchmarks.md), and bench/run.sh measures all
# direct runs before all proxy runs.  Here each round runs the workload directly
# against the region's MariaDB and then through the proxy, back to back, and the
# ratio of each pair is printed with the median over the rounds.  Read-only
# workloads only (oltp_point_select by default: WORKLOAD=...), so direct runs leave
# the copies identical.  Needs a running stack with sbtest prepared through the
# proxy, DIRECT_PORT being the MariaDB of the region holding sbtest1's primary.
# Environment: BENCH_TIME [10] seconds per run, BENCH_THREADS [8], WORKLOAD, BENCH_TABLE_SIZE [10000].
set -euo pipefail
PROXY_PORT="$1"; DIRECT_PORT="$2"; DIRECT_USER="$3"; DIRECT_PASSWORD="$4"
MODE="${5:-auto}"; ROUNDS="${6:-5}"
WORKLOAD="${WORKLOAD:-oltp_point_select}"; SECONDS_RUN="${BENCH_TIME:-10}"; THREADS="${BENCH_THREADS:-8}"

qps() {  # port user password -> queries per second
    sysbench "$WORKLOAD" --mysql-host=127.0.0.1 --mysql-port="$1" --mysql-user="$2" --mysql-password="$3" \
        --mysql-db=sbtest --tables=1 --table-size="${BENCH_TABLE_SIZE:-10000}" --threads="$THREADS" \
        --time="$SECONDS_RUN" --db-ps-mode="$MODE" run 2>&1 | sed -n 's/^ *queries: *[0-9]* *(\([0-9.]*\) per sec.)/\1/p'
}

ratios=()
for round in $(seq 1 "$ROUNDS"); do
    direct="$(qps "$DIRECT_PORT" "$DIRECT_USER" "$DIRECT_PASSWORD")"
    proxy="$(qps "$PROXY_PORT" root "")"
    [[ -n "$direct" && -n "$proxy" ]] || { echo "sysbench failed in round $round" >&2; exit 1; }
    ratio="$(awk -v p="$proxy" -v d="$direct" 'BEGIN { printf "%.3f", p / d }')"
    ratios+=("$ratio")
    echo "$WORKLOAD ps-mode=$MODE round $round: direct $direct qps, proxy $proxy qps, ratio $ratio"
done
median="$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')"
echo "$WORKLOAD ps-mode=$MODE: median ratio $median over $ROUNDS rounds (${ratios[*]})"
