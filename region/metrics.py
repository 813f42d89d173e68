"""Prometheus metrics of a region agent (served by `start_http_server(metrics_port)`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TASKS = Counter("minisql_region_tasks", "Region tasks handled, by op and outcome (ok, error)", ["op", "outcome"])
TASK_SECONDS = Histogram(
    "minisql_region_task_seconds",
    "Time to handle one region task",
    ["op"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
COPIED_ROWS = Counter("minisql_region_copied_rows", "Rows copied into this region by copy_table")
LOAD_PUBLISH = Counter("minisql_region_load_publish", "Load reports, by outcome (ok, error)", ["outcome"])
TABLES = Gauge("minisql_region_tables", "Base tables in non-system schemas on this region's MariaDB")
ROWS = Gauge("minisql_region_rows", "Estimated rows in non-system schemas (information_schema.TABLES)")
DATA_BYTES = Gauge("minisql_region_data_bytes", "data_length + index_length of non-system schemas")
QPS = Gauge("minisql_region_qps", "MariaDB Questions per second over the last load period")
CPU = Gauge("minisql_region_mariadb_cpu_percent", "CPU used by the local mariadbd (0 when unknown)")
REGISTERED = Gauge("minisql_region_registered", "1 once this region is registered in ZooKeeper")
HEARTBEAT_DELAY = Gauge(
    "minisql_region_heartbeat_delay_seconds",
    "Seconds since the freshest proxy heartbeat reached this region's MariaDB (seed 004's replica delay; NaN: none yet)",
)
