#!/usr/bin/env bash
# MiniSQL Cluster benchmark: sysbench straight against one region's MariaDB,
# then the same workloads through the proxy; prints qps and proxy/direct ratios.
#
#   make bench                      # or: bash bench/run.sh
#   BENCH_TIME=10 BENCH_THREADS=4 bash bench/run.sh
#
# Steps
#   1. Use the stack whose proxy answers on 127.0.0.1:$BENCH_PROXY_PORT, or, when
#      nothing listens there, start one: `minisql up --data-dir bench/.stack` in
#      the background; wait until the proxy accepts connections and
#      `minisql status` shows $BENCH_REGIONS live regions and a master leader.
#   2. Through the proxy: CREATE DATABASE sbtest, `sysbench cleanup` + `prepare`
#      (the master places each table on a primary and a replica region).
#   3. DIRECT: each workload against the MariaDB of the region holding the
#      primary of sbtest.sbtest1 (from `minisql status --json`), as the backend
#      user of secrets.json.
#   4. Re-prepare through the proxy (the direct writes touched the primary only),
#      then PROXY: each workload through 127.0.0.1:$BENCH_PROXY_PORT as root with
#      an empty password.
#   5. Drop the tables through the proxy; stop the stack if this script started
#      it (SIGTERM to `minisql up`, then wait for it) -- also on errors and Ctrl-C.
#
# Results: printed and written to bench/results/latest.txt; every sysbench
# output is kept in bench/results/<target>-<workload>.log.
#
# Environment (defaults in brackets)
#   BENCH_TIME [30]  BENCH_THREADS [8]  BENCH_TABLE_SIZE [10000]  BENCH_TABLES [1]
#   BENCH_WORKLOADS ["oltp_point_select oltp_read_write"]
#   BENCH_START_STACK [auto]   auto: start a stack unless a proxy already answers;
#                              always: start one (fails if the ports are taken); never
#   BENCH_PROXY_PORT [6033]  BENCH_ZK_PORT [2181]  BENCH_MYSQL_BASE_PORT [3307]
#   BENCH_METRICS_BASE_PORT [9200]  BENCH_ZK_ROOT [/minisql]   ports of the stack
#                              (passed to `minisql up` when this script starts it)
#   BENCH_ZK [127.0.0.1:$BENCH_ZK_PORT]  ZooKeeper for `minisql status`
#   BENCH_DATA_DIR [bench/.stack]  data dir of the stack this script starts
#   BENCH_SECRETS              secrets.json of an already running stack
#                              [bench/.stack/secrets.json, else .minisql/secrets.json];
#                              MINISQL_BACKEND_USER / MINISQL_BACKEND_PASSWORD override it
#   BENCH_REGIONS [3]  BENCH_START_TIMEOUT [300] (s)  BENCH_KEEP_DATA [0]
#
#   BENCH_PS_MODES ["disable auto"]   sysbench --db-ps-mode values: disable = text
#                              protocol, auto = server-side prepared statements
#                              (sysbench's default)
#   BENCH_LATENCY [1]          also run oltp_point_select at 1 thread per mode and
#                              report p50 latency, direct and through the proxy
# See docs/benchmarks.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BENCH_TIME="${BENCH_TIME:-30}"
BENCH_THREADS="${BENCH_THREADS:-8}"
BENCH_TABLE_SIZE="${BENCH_TABLE_SIZE:-10000}"
BENCH_TABLES="${BENCH_TABLES:-1}"
BENCH_WORKLOADS="${BENCH_WORKLOADS:-oltp_point_select oltp_read_write}"
BENCH_START_STACK="${BENCH_START_STACK:-auto}"
BENCH_PROXY_PORT="${BENCH_PROXY_PORT:-6033}"
BENCH_ZK_PORT="${BENCH_ZK_PORT:-2181}"
BENCH_MYSQL_BASE_PORT="${BENCH_MYSQL_BASE_PORT:-3307}"
BENCH_METRICS_BASE_PORT="${BENCH_METRICS_BASE_PORT:-9200}"
BENCH_ZK_ROOT="${BENCH_ZK_ROOT:-/minisql}"
BENCH_ZK="${BENCH_ZK:-127.0.0.1:$BENCH_ZK_PORT}"
BENCH_DATA_DIR="${BENCH_DATA_DIR:-$ROOT/bench/.stack}"
BENCH_SECRETS="${BENCH_SECRETS:-}"
BENCH_REGIONS="${BENCH_REGIONS:-3}"
BENCH_START_TIMEOUT="${BENCH_START_TIMEOUT:-300}"
BENCH_KEEP_DATA="${BENCH_KEEP_DATA:-0}"
BENCH_PS_MODES="${BENCH_PS_MODES:-disable auto}"
BENCH_LATENCY="${BENCH_LATENCY:-1}"
PS_MODE=disable

HOST=127.0.0.1
DB=sbtest
PROXY_USER=root
RESULTS_DIR="$ROOT/bench/results"
RESULTS="$RESULTS_DIR/latest.txt"

UP_PID=""        # `minisql up` started by this script
FAILED=0

# Messages go to fd 9, a copy of the original stderr: traps may run while a
# function's output is redirected to a sysbench log, and must still be seen.
exec 9>&2
log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&9; }
die() { log "error: $*"; exit 1; }

for v in BENCH_TIME BENCH_THREADS BENCH_TABLE_SIZE BENCH_TABLES BENCH_PROXY_PORT BENCH_ZK_PORT \
         BENCH_MYSQL_BASE_PORT BENCH_METRICS_BASE_PORT BENCH_REGIONS BENCH_START_TIMEOUT; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number (got '${!v}')"
done
case "$BENCH_START_STACK" in auto|always|never) ;; *) die "BENCH_START_STACK must be auto, always or never";; esac

# -- tools ---------------------------------------------------------------------
MINISQL="$(command -v minisql || true)"
[[ -n "$MINISQL" ]] || MINISQL="$ROOT/.venv/bin/minisql"
[[ -x "$MINISQL" ]] || die "minisql not found (run 'make deps', or put .venv/bin on PATH)"
PY="$ROOT/.venv/bin/python"
[[ -x "$PY" ]] || PY="$(command -v python3 || true)"
[[ -n "$PY" ]] || die "python3 not found"
command -v sysbench >/dev/null || die "sysbench not found (apt-get install sysbench, or 'make deps')"
MYSQL_CLIENT="$(command -v mariadb || command -v mysql || true)"
[[ -n "$MYSQL_CLIENT" ]] || die "the mariadb client is not found (apt-get install mariadb-client)"

# -- stack start / stop ----------------------------------------------------------
cleanup() {
    local rc=$?
    trap '' INT TERM   # always finish stopping what we started
    if [[ -n "$UP_PID" ]] && kill -0 "$UP_PID" 2>/dev/null; then
        log "stopping the stack this script started (SIGTERM to minisql up, pid $UP_PID)"
        kill -TERM "$UP_PID" 2>/dev/null || true
        wait "$UP_PID" 2>/dev/null || true
        log "stack stopped"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

proxy_sql() {
    "$MYSQL_CLIENT" --no-defaults --protocol=tcp -h "$HOST" -P "$BENCH_PROXY_PORT" -u "$PROXY_USER" \
        --connect-timeout=5 -N -B -e "$1"
}

# ZooKeeper is ACL'd: status reads with the stack's read-only identity (secrets.json).
status_json() {
    local secrets=()
    if [[ -n "$BENCH_SECRETS" ]]; then
        secrets=(--secrets "$BENCH_SECRETS")
    elif [[ -f "$BENCH_DATA_DIR/secrets.json" ]]; then
        secrets=(--secrets "$BENCH_DATA_DIR/secrets.json")
    fi
    "$MINISQL" status --json --zk "$BENCH_ZK" --zk-root "$BENCH_ZK_ROOT" --timeout 5 "${secrets[@]}" 2>/dev/null
}

# Exit status 0 when the status JSON on stdin shows >= $1 live regions and a leader.
cluster_ready() {
    "$PY" -c '
import json, sys
doc = json.load(sys.stdin)
alive = sum(1 for r in doc.get("regions", []) if r.get("alive"))
sys.exit(0 if alive >= int(sys.argv[1]) and doc.get("leader") else 1)
' "$1"
}

start_stack() {
    mkdir -p "$BENCH_DATA_DIR"
    local up_log="$BENCH_DATA_DIR/up.log"
    log "starting a stack: minisql up --data-dir $BENCH_DATA_DIR (log: $up_log)"
    local setsid=()
    # Its own session: a Ctrl-C on the terminal reaches this script only, whose trap
    # then sends one SIGTERM (two signals would make `minisql up` kill its children).
    command -v setsid >/dev/null && setsid=(setsid)
    "${setsid[@]}" "$MINISQL" up --data-dir "$BENCH_DATA_DIR" --regions "$BENCH_REGIONS" \
        --port "$BENCH_PROXY_PORT" --zk-port "$BENCH_ZK_PORT" --zk-root "$BENCH_ZK_ROOT" \
        --mysql-base-port "$BENCH_MYSQL_BASE_PORT" --metrics-base-port "$BENCH_METRICS_BASE_PORT" \
        --log-level WARNING >"$up_log" 2>&1 &
    UP_PID=$!
    local deadline=$((SECONDS + BENCH_START_TIMEOUT)) json
    while :; do
        if ! kill -0 "$UP_PID" 2>/dev/null; then
            local code=0
            wait "$UP_PID" || code=$?
            UP_PID=""
            log "minisql up exited with code $code; last lines of $up_log:"
            tail -n 25 "$up_log" | sed 's/^/    /' >&9
            die "the stack did not start"
        fi
        if port_open "$HOST" "$BENCH_PROXY_PORT" && proxy_sql "SELECT 1" >/dev/null 2>&1 \
            && json="$(status_json)" && cluster_ready "$BENCH_REGIONS" <<<"$json"; then
            break
        fi
        (( SECONDS < deadline )) || die "the stack was not ready after ${BENCH_START_TIMEOUT}s (see $up_log)"
        sleep 1
    done
    log "stack ready (proxy :$BENCH_PROXY_PORT, ZooKeeper $BENCH_ZK, $BENCH_REGIONS regions, leader elected)"
}

use_existing_stack() {
    local json
    if ! json="$(status_json)"; then
        die "a server answers on $HOST:$BENCH_PROXY_PORT but 'minisql status --zk $BENCH_ZK --zk-root $BENCH_ZK_ROOT' fails: " \
            "set BENCH_ZK / BENCH_ZK_ROOT for that stack, or stop it, or pick free ports (BENCH_PROXY_PORT, BENCH_ZK_PORT, ...)"
    fi
    cluster_ready "$BENCH_REGIONS" <<<"$json" \
        || die "the running stack has fewer than $BENCH_REGIONS live regions or no master leader (minisql status)"
    proxy_sql "SELECT 1" >/dev/null || die "cannot log in to the proxy on $HOST:$BENCH_PROXY_PORT as $PROXY_USER with an empty password"
    log "using the stack already running (proxy :$BENCH_PROXY_PORT, ZooKeeper $BENCH_ZK $BENCH_ZK_ROOT)"
}

# -- credentials and placement -----------------------------------------------------
# Prints "user<TAB>password" of the backend account.
backend_credentials() {
    local file="$1"
    "$PY" -c '
import json, os, sys
doc = {}
if sys.argv[1]:
    with open(sys.argv[1]) as fh:
        doc = json.load(fh)
user = os.environ.get("MINISQL_BACKEND_USER", doc.get("backend_user"))
password = os.environ.get("MINISQL_BACKEND_PASSWORD", doc.get("backend_password"))
if not user or password is None:
    sys.exit("backend_user / backend_password missing")
print(f"{user}\t{password}")
' "$file"
}

# Prints "region<TAB>host<TAB>mysql_port" of the region holding the primary of
# $DB.sbtest1; every other benchmark table must be on that region too.
direct_target() {
    "$PY" -c '
import json, sys
doc = json.load(sys.stdin)
db, ntables = sys.argv[1], int(sys.argv[2])
tables = {t["table"]: t for t in doc["tables"] if t["database"] == db}
first = tables.get("sbtest1")
if first is None:
    sys.exit(f"{db}.sbtest1 is not in the placement (minisql status)")
rid = first["primary"]
for i in range(2, ntables + 1):
    t = tables.get(f"sbtest{i}")
    if t is None or (t["primary"] != rid and rid not in t["replicas"]):
        sys.exit(f"{db}.sbtest{i} is not on region {rid}: use BENCH_TABLES=1")
region = next((r for r in doc["regions"] if r["id"] == rid), None)
if region is None or not region.get("alive") or not region.get("mysql_port"):
    sys.exit(f"region {rid} (primary of {db}.sbtest1) is not alive")
host, port = region["host"], region["mysql_port"]
print(f"{rid}\t{host}\t{port}")
' "$DB" "$BENCH_TABLES"
}

# -- sysbench ----------------------------------------------------------------------
# sb <target> <workload> <command> [extra options]; target = proxy | direct.
sb() {
    local target="$1" workload="$2" command="$3"
    shift 3
    local conn
    if [[ "$target" == proxy ]]; then
        conn=(--mysql-host="$HOST" --mysql-port="$BENCH_PROXY_PORT" --mysql-user="$PROXY_USER" --mysql-password=)
    else
        conn=(--mysql-host="$DIRECT_HOST" --mysql-port="$DIRECT_PORT" --mysql-user="$BACKEND_USER" --mysql-password="$BACKEND_PASSWORD")
    fi
    sysbench "$workload" --db-driver=mysql "${conn[@]}" --mysql-db="$DB" \
        --tables="$BENCH_TABLES" --table-size="$BENCH_TABLE_SIZE" --db-ps-mode="$PS_MODE" "$@" "$command"
}

prepare_data() {
    log "preparing $DB: $BENCH_TABLES table(s) x $BENCH_TABLE_SIZE rows through the proxy"
    local out="$RESULTS_DIR/prepare.log"
    {
        sb proxy oltp_read_write cleanup
        sb proxy oltp_read_write prepare
    } >>"$out" 2>&1 || { tail -n 20 "$out" | sed 's/^/    /' >&9; die "sysbench prepare through the proxy failed (see $out)"; }
}

# run <target> <workload> [threads] [percentile] [tag]: one timed run in $PS_MODE;
# sets QPS_<target>_<mode><tag>_<workload>, P95_..., ERR_... (P95 holds the asked percentile)
run_one() {
    local target="$1" workload="$2" threads="${3:-$BENCH_THREADS}" pct="${4:-95}" tag="${5:-}"
    local out="$RESULTS_DIR/$target-$PS_MODE$tag-$workload.log" key="${target}_${PS_MODE}${tag}_${workload}"
    log "$target $workload (ps-mode $PS_MODE): $threads threads, ${BENCH_TIME}s"
    if sb "$target" "$workload" run --threads="$threads" --time="$BENCH_TIME" --events=0 \
        --report-interval=0 --percentile="$pct" >"$out" 2>&1; then
        local qps p95 errs
        qps="$(sed -n 's/^ *queries: *[0-9]* *(\([0-9.]*\) per sec\.)/\1/p' "$out")"
        p95="$(sed -n 's/^ *[0-9]*th percentile: *\([0-9.]*\)/\1/p' "$out")"
        errs="$(sed -n 's/^ *ignored errors: *\([0-9]*\) .*/\1/p' "$out")"
        if [[ -z "$qps" ]]; then
            log "$target $workload: no qps in the sysbench output ($out)"
            FAILED=1
            qps=FAILED
        fi
        printf -v "QPS_$key" '%s' "$qps"
        printf -v "P95_$key" '%s' "${p95:--}"
        printf -v "ERR_$key" '%s' "${errs:--}"
        log "$target $workload: $qps qps"
    else
        log "$target $workload: sysbench FAILED; last lines of $out:"
        tail -n 10 "$out" | sed 's/^/    /' >&9
        FAILED=1
        printf -v "QPS_$key" '%s' FAILED
        printf -v "P95_$key" '%s' -
        printf -v "ERR_$key" '%s' -
    fi
}

# -- main ----------------------------------------------------------------------------
mkdir -p "$RESULTS_DIR"
rm -f "$RESULTS"
: >"$RESULTS_DIR/prepare.log"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"

STARTED=0
if [[ "$BENCH_START_STACK" == always ]]; then
    start_stack; STARTED=1
elif port_open "$HOST" "$BENCH_PROXY_PORT"; then
    use_existing_stack
else
    [[ "$BENCH_START_STACK" != never ]] || die "no proxy on $HOST:$BENCH_PROXY_PORT and BENCH_START_STACK=never"
    start_stack; STARTED=1
fi

# Backend credentials (for the direct runs).
SECRETS_FILE="$BENCH_SECRETS"
if [[ -z "$SECRETS_FILE" ]]; then
    if [[ "$STARTED" == 1 ]]; then
        SECRETS_FILE="$BENCH_DATA_DIR/secrets.json"
    else
        # The data dir whose `minisql up` is running (it holds DIR/up.lock), else the first
        # one with a secrets.json.
        for d in "$BENCH_DATA_DIR" "$ROOT/.minisql"; do
            if [[ -f "$d/up.lock" && -f "$d/secrets.json" ]] && command -v flock >/dev/null \
                && ! flock -n "$d/up.lock" true 2>/dev/null; then
                SECRETS_FILE="$d/secrets.json"
                break
            fi
        done
        if [[ -z "$SECRETS_FILE" ]]; then
            for d in "$BENCH_DATA_DIR" "$ROOT/.minisql"; do
                if [[ -f "$d/secrets.json" ]]; then SECRETS_FILE="$d/secrets.json"; break; fi
            done
        fi
    fi
fi
if [[ -n "$SECRETS_FILE" && ! -r "$SECRETS_FILE" ]]; then
    die "cannot read the secrets file $SECRETS_FILE (set BENCH_SECRETS)"
fi
if [[ -z "$SECRETS_FILE" && -z "${MINISQL_BACKEND_PASSWORD:-}" ]]; then
    die "no secrets.json for the running stack: set BENCH_SECRETS (or MINISQL_BACKEND_USER/PASSWORD)"
fi
CREDS="$(backend_credentials "$SECRETS_FILE")" || die "cannot read backend credentials from ${SECRETS_FILE:-the environment}"
BACKEND_USER="${CREDS%%$'\t'*}"
BACKEND_PASSWORD="${CREDS#*$'\t'}"

proxy_sql "CREATE DATABASE IF NOT EXISTS $DB" >/dev/null || die "CREATE DATABASE $DB through the proxy failed"
prepare_data

STATUS="$(status_json)" || die "minisql status failed"
TARGET="$(direct_target <<<"$STATUS")" || die "cannot find the region holding $DB.sbtest1"
IFS=$'\t' read -r DIRECT_REGION DIRECT_HOST DIRECT_PORT <<<"$TARGET"
REPLICAS="$("$PY" -c '
import json, sys
doc = json.load(sys.stdin)
t = next(t for t in doc["tables"] if t["database"] == sys.argv[1] and t["table"] == "sbtest1")
print(", ".join(f"{r} ({s})" for r, s in t["replicas"].items()) or "none")
' "$DB" <<<"$STATUS")"
log "$DB.sbtest1: primary $DIRECT_REGION ($DIRECT_HOST:$DIRECT_PORT), replicas $REPLICAS"
MYSQL_PWD="$BACKEND_PASSWORD" "$MYSQL_CLIENT" --no-defaults --protocol=tcp -h "$DIRECT_HOST" -P "$DIRECT_PORT" \
    -u "$BACKEND_USER" --connect-timeout=5 -N -B -e "SELECT 1 FROM $DB.sbtest1 LIMIT 1" >/dev/null \
    || die "cannot read $DB.sbtest1 on $DIRECT_HOST:$DIRECT_PORT as $BACKEND_USER (credentials from ${SECRETS_FILE:-the environment}; set BENCH_SECRETS)"

for PS_MODE in $BENCH_PS_MODES; do
    for w in $BENCH_WORKLOADS; do run_one direct "$w"; done
    [[ "$BENCH_LATENCY" != 1 ]] || run_one direct oltp_point_select 1 50 _1t
done
PS_MODE=disable
prepare_data   # the direct writes reached the primary only: start the proxy runs from equal copies
for PS_MODE in $BENCH_PS_MODES; do
    for w in $BENCH_WORKLOADS; do run_one proxy "$w"; done
    [[ "$BENCH_LATENCY" != 1 ]] || run_one proxy oltp_point_select 1 50 _1t
done
PS_MODE=disable

if [[ "$BENCH_KEEP_DATA" != 1 ]]; then
    sb proxy oltp_read_write cleanup >>"$RESULTS_DIR/prepare.log" 2>&1 || log "warning: sysbench cleanup failed"
fi

# -- report ----------------------------------------------------------------------------
ratio() {
    awk -v p="$1" -v d="$2" 'BEGIN {
        if (p ~ /^[0-9.]+$/ && d ~ /^[0-9.]+$/ && d > 0) printf "%.3f", p / d; else printf "-" }'
}
{
    echo "MiniSQL Cluster benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "machine:   $(nproc) CPU(s), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1); load average before: $LOAD_BEFORE"
    echo "sysbench:  $(sysbench --version), mysql driver, --db-ps-mode in: $BENCH_PS_MODES, $BENCH_THREADS threads, ${BENCH_TIME}s per run,"
    echo "           $BENCH_TABLES table(s) x $BENCH_TABLE_SIZE rows in $DB (prepared through the proxy)"
    echo "direct:    MariaDB of region $DIRECT_REGION at $DIRECT_HOST:$DIRECT_PORT (primary of $DB.sbtest1; replicas: $REPLICAS), user $BACKEND_USER"
    echo "proxy:     $HOST:$BENCH_PROXY_PORT, user $PROXY_USER ($( [[ $STARTED == 1 ]] && echo "stack started by bench/run.sh in ${BENCH_DATA_DIR#$ROOT/}" || echo "already running stack"))"
    echo
    printf '%-20s %-8s %12s %12s %13s %14s %13s %10s\n' workload ps-mode "direct qps" "proxy qps" "proxy/direct" "direct p95 ms" "proxy p95 ms" "errors d/p"
    for m in $BENCH_PS_MODES; do
        for w in $BENCH_WORKLOADS; do
            d="QPS_direct_${m}_$w" p="QPS_proxy_${m}_$w" dp="P95_direct_${m}_$w" pp="P95_proxy_${m}_$w" de="ERR_direct_${m}_$w" pe="ERR_proxy_${m}_$w"
            printf '%-20s %-8s %12s %12s %13s %14s %13s %10s\n' "$w" "$m" "${!d:--}" "${!p:--}" "$(ratio "${!p:--}" "${!d:--}")" \
                "${!dp:--}" "${!pp:--}" "${!de:--}/${!pe:--}"
        done
    done
    if [[ "$BENCH_LATENCY" == 1 ]]; then
        echo
        printf '%-40s %-8s %14s %13s %10s\n' "oltp_point_select, 1 thread" ps-mode "direct p50 ms" "proxy p50 ms" "added ms"
        for m in $BENCH_PS_MODES; do
            dp="P95_direct_${m}_1t_oltp_point_select" pp="P95_proxy_${m}_1t_oltp_point_select"
            printf '%-40s %-8s %14s %13s %10s\n' "" "$m" "${!dp:--}" "${!pp:--}" \
                "$(awk -v p="${!pp:--}" -v d="${!dp:--}" 'BEGIN { if (p ~ /^[0-9.]+$/ && d ~ /^[0-9.]+$/) printf "%.3f", p - d; else printf "-" }')"
        done
    fi
    echo
    echo "sysbench outputs: bench/results/{direct,proxy}-<ps-mode>-<workload>.log"
} >"$RESULTS"
cat "$RESULTS"

[[ "$FAILED" == 0 ]] || die "some runs failed (see above)"
