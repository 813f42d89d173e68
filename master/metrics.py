"""Prometheus metrics of a master (served by `start_http_server(metrics_port)`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

IS_LEADER = Gauge("minisql_master_is_leader", "1 while this master is the elected leader")
ELECTIONS = Counter("minisql_master_elections", "Times this master was elected leader")
DDL = Counter("minisql_master_ddl", "DDL requests handled, by statement kind and outcome (ok, error)", ["kind", "outcome"])
DDL_SECONDS = Histogram(
    "minisql_master_ddl_seconds",
    "Time to handle one DDL request",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
STALE_REPLICAS = Counter("minisql_master_stale_replicas", "Replicas marked STALE after a DDL failed on them")
FAILOVER_MOVES = Counter(
    "minisql_master_failover_moves",
    "Failover moves executed, by move (promote, drop_replica, copy_replica) and outcome",
    ["move", "outcome"],
)
UNAVAILABLE_TABLES = Gauge(
    "minisql_master_unavailable_tables", "Tables whose primary is dead with no in-sync replica to promote"
)
UNDER_REPLICATED_TABLES = Gauge(
    "minisql_master_under_replicated_tables", "Tables with fewer than two live copies (primary + in-sync replicas)"
)
LIVE_REGIONS = Gauge("minisql_master_live_regions", "Regions registered, as seen by the leader")
COPIES_IN_FLIGHT = Gauge("minisql_master_copies_in_flight", "copy_table tasks the leader is running")
TABLE_MOVES = Counter(
    "minisql_master_table_moves", "Tables moved to other regions, by reason (colocation: joining a FOREIGN KEY group)", ["reason"]
)
XA_IN_DOUBT = Gauge("minisql_master_xa_in_doubt",
                    "Prepared XA branches left by a proxy for the resolver (in doubt for its grace period), last pass")
XA_RESOLVED = Counter("minisql_master_xa_resolved_total", "XA branches the resolver settled, by outcome (commit, abort)",
                      ["outcome"])
LAGGING_REGIONS = Gauge(
    "minisql_master_lagging_regions",
    "Live regions whose heartbeat delay is past the promotion threshold (their copies are not promoted)",
)
