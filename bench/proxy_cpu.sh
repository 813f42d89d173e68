#!/usr/bin/env bash
# Proxy CPU per statement: utime+stime of the proxy process over one sysbench run.
#
#   bash bench/proxy_cpu.sh PORT [PS_MODE=disable|auto] [THREADS=8] [WORKLOAD=oltp_point_select]
#
# Needs a running stack with sbtest.sbtest1 prepared (make bench with BENCH_KEEP_DATA=1,
# or sysbench ... prepare through the proxy). The proxy's pid is the one listening on PORT.
set -euo pipefail
PORT="$1"; MODE="${2:-disable}"; THREADS="${3:-8}"; WORKLOAD="${4:-oltp_point_select}"; SECONDS_RUN="${BENCH_TIME:-10}"
PID="$(ss -ltnpH "sport = :$PORT" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n 1)"
[[ -n "$PID" ]] || { echo "nothing listens on port $PORT" >&2; exit 1; }
read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$PID/stat")
out="$(sysbench "$WORKLOAD" --mysql-host=127.0.0.1 --mysql-port="$PORT" --mysql-user=root --mysql-password= \
    --mysql-db=sbtest --tables=1 --table-size="${BENCH_TABLE_SIZE:-10000}" --threads="$THREADS" --time="$SECONDS_RUN" \
    --db-ps-mode="$MODE" run 2>&1)"
read -r u2 s2 < <(awk '{print $14, $15}' "/proc/$PID/stat")
q="$(sed -n 's/^ *queries: *\([0-9]*\).*/\1/p' <<<"$out")"
[[ -n "$q" && "$q" -gt 0 ]] || { echo "sysbench failed:"; echo "$out" | tail -n 5; exit 1; } >&2
tck="$(getconf CLK_TCK)"
echo "$WORKLOAD ps-mode=$MODE threads=$THREADS: $((q / SECONDS_RUN)) qps," \
     "proxy user $(( (u2 - u1) * 1000000 / tck / q )) us + sys $(( (s2 - s1) * 1000000 / tck / q )) us per statement"
