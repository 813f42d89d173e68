#!/usr/bin/env python3
"""Generate grafana/dashboards/minisql.json (the MiniSQL Cluster dashboard).

    python3 grafana/gen_dashboard.py          # rewrite the JSON
    python3 grafana/check_dashboard.py        # validate it against the code's metrics

Edit the panels here, not in the JSON.  Uses only the standard library.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards" / "minisql.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
# A master gauge as reported by the current leader only (followers may hold stale values).
LEADER_ONLY = "{} * on (instance) (minisql_master_is_leader == 1)"


class Layout:
    """Places panels left to right in rows of 24 grid units."""

    def __init__(self) -> None:
        self.panels: list[dict] = []
        self.next_id = 1
        self.x = 0
        self.y = 0
        self.row_h = 0

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def row(self, title: str) -> None:
        if self.x:
            self.y += self.row_h
        self.panels.append(
            {"type": "row", "title": title, "id": self._id(), "collapsed": False, "panels": [],
             "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}}
        )
        self.y += 1
        self.x = 0
        self.row_h = 0

    def add(self, panel: dict, w: int, h: int) -> None:
        if self.x + w > 24:
            self.y += self.row_h
            self.x = 0
            self.row_h = 0
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)


def targets(*queries: tuple[str, str]) -> list[dict]:
    return [
        {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend, "range": True}
        for i, (expr, legend) in enumerate(queries)
    ]


def timeseries(title: str, *queries: tuple[str, str], unit: str = "short", description: str = "",
               stack: bool = False, step: bool = False, min0: bool = True) -> dict:
    custom: dict = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
                    "spanNulls": False}
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    if step:
        custom["lineInterpolation"] = "stepAfter"
    defaults: dict = {"unit": unit, "custom": custom}
    if min0:
        defaults["min"] = 0
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets(*queries),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(title: str, expr: str, legend: str = "", unit: str = "short", description: str = "",
         steps: list[tuple[float | None, str]] | None = None, text_mode: str = "value") -> dict:
    steps = steps or [(None, "green")]
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets((expr, legend)),
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": {"mode": "absolute",
                               "steps": [{"value": v, "color": c} for v, c in steps]},
                "color": {"mode": "thresholds"},
                "noValue": "none",
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "justifyMode": "auto",
            "textMode": text_mode,
            "orientation": "auto",
        },
    }


def quantiles(metric: str, by: str = "") -> list[tuple[str, str]]:
    by_clause = f"le, {by}" if by else "le"
    prefix = "{{" + by + "}} " if by else ""
    return [
        (f"histogram_quantile({q}, sum by ({by_clause}) (rate({metric}_bucket[{RATE}])))", f"{prefix}p{int(q * 100)}")
        for q in (0.5, 0.95, 0.99)
    ]


def build() -> dict:
    L = Layout()

    # -- overview ------------------------------------------------------------
    L.row("Overview")
    L.add(stat("Proxies up", 'sum(up{job="minisql-proxy"})', steps=[(None, "red"), (1, "green")],
               description="Proxy processes Prometheus can scrape."), 2, 4)
    L.add(stat("Master leader", "max by (instance) (minisql_master_is_leader) == 1", legend="{{instance}}",
               text_mode="name", steps=[(None, "green")],
               description="The master whose minisql_master_is_leader is 1 (empty: no leader)."), 4, 4)
    L.add(stat("Leaders elected", "sum(minisql_master_is_leader)", steps=[(None, "red"), (1, "green"), (2, "red")],
               description="Must be exactly 1."), 2, 4)
    L.add(stat("Live regions", "min(minisql_proxy_live_regions)", steps=[(None, "red"), (1, "green")],
               description="Regions registered in ZooKeeper, as the proxies see them."), 3, 4)
    L.add(stat("Unavailable tables", f"max({LEADER_ONLY.format('minisql_master_unavailable_tables')})",
               steps=[(None, "green"), (1, "red")],
               description="Tables whose primary is dead with no in-sync replica to promote (leader's view)."), 3, 4)
    L.add(stat("Under-replicated tables", f"max({LEADER_ONLY.format('minisql_master_under_replicated_tables')})",
               steps=[(None, "green"), (1, "orange")],
               description="Tables with fewer than two live copies: primary + in-sync replicas (leader's view)."),
          3, 4)
    L.add(stat("Statements/s", f"sum(rate(minisql_proxy_queries_total[{RATE}]))", unit="reqps"), 3, 4)
    L.add(stat("Client sessions", "sum(minisql_proxy_sessions)"), 2, 4)
    L.add(stat("Placement epoch", "max(minisql_proxy_placement_epoch)", unit="none"), 2, 4)

    # -- proxy ---------------------------------------------------------------
    L.row("Proxy")
    L.add(timeseries("Statements/s by plan op",
                     (f"sum by (op) (rate(minisql_proxy_queries_total[{RATE}]))", "{{op}}"),
                     unit="reqps", stack=True), 12, 8)
    L.add(timeseries("Statement latency (receive to reply ready)", *quantiles("minisql_proxy_query_seconds"),
                     unit="s"), 12, 8)
    L.add(timeseries("Errors sent to clients/s by errno",
                     (f"sum by (errno) (rate(minisql_proxy_errors_total[{RATE}]))", "{{errno}}"),
                     unit="reqps", stack=True), 8, 8)
    L.add(timeseries("Transactions ended/s by outcome",
                     (f"sum by (outcome) (rate(minisql_proxy_transactions_total[{RATE}]))", "{{outcome}}"),
                     unit="reqps", stack=True), 8, 8)
    L.add(timeseries("Client sessions", ("sum by (instance) (minisql_proxy_sessions)", "{{instance}}")), 8, 8)
    L.add(timeseries("Backend connections handed out/s by region",
                     (f"sum by (region) (rate(minisql_proxy_backend_connects_total[{RATE}]))", "{{region}}"),
                     unit="ops"), 8, 8)
    L.add(timeseries("Statement analysis cache lookups/s",
                     (f"sum by (result) (rate(minisql_proxy_plan_cache_total[{RATE}]))", "{{result}}"),
                     unit="ops", stack=True), 8, 8)
    L.add(timeseries("Replica divergence (writes whose row count differed)",
                     (f"sum by (region) (increase(minisql_proxy_replica_divergence_total[{RATE}]))", "{{region}}"),
                     description="Should stay at 0."), 8, 8)
    L.add(timeseries("Placement epoch / live regions per proxy",
                     ("minisql_proxy_placement_epoch", "epoch {{instance}}"),
                     ("minisql_proxy_live_regions", "live regions {{instance}}"),
                     step=True, min0=False), 24, 7)

    # -- masters -------------------------------------------------------------
    L.row("Masters")
    L.add(timeseries("Leader", ("max by (instance) (minisql_master_is_leader)", "{{instance}}"), step=True),
          8, 7)
    L.add(timeseries("Elections won",
                     (f"sum by (instance) (increase(minisql_master_elections_total[{RATE}]))", "{{instance}}")),
          8, 7)
    L.add(timeseries("Leader's view: regions, copies, table health",
                     (f"max({LEADER_ONLY.format('minisql_master_live_regions')})", "live regions"),
                     ("sum(minisql_master_copies_in_flight)", "copy_table in flight"),
                     (f"max({LEADER_ONLY.format('minisql_master_unavailable_tables')})", "unavailable tables"),
                     (f"max({LEADER_ONLY.format('minisql_master_under_replicated_tables')})",
                      "under-replicated tables"),
                     step=True), 8, 7)
    L.add(timeseries("DDL requests/s by kind and outcome",
                     (f"sum by (kind, outcome) (rate(minisql_master_ddl_total[{RATE}]))", "{{kind}} {{outcome}}"),
                     unit="ops", stack=True), 8, 8)
    L.add(timeseries("DDL latency", *quantiles("minisql_master_ddl_seconds"), unit="s"), 8, 8)
    L.add(timeseries("Failover moves and stale replicas",
                     (f"sum by (move, outcome) (increase(minisql_master_failover_moves_total[{RATE}]))",
                      "{{move}} {{outcome}}"),
                     (f"sum(increase(minisql_master_stale_replicas_total[{RATE}]))", "replicas marked STALE")),
          8, 8)

    # -- regions -------------------------------------------------------------
    L.row("Regions")
    L.add(timeseries("MariaDB questions/s", ("sum by (instance) (minisql_region_qps)", "{{instance}}"),
                     unit="reqps"), 8, 8)
    L.add(timeseries("MariaDB CPU", ("sum by (instance) (minisql_region_mariadb_cpu_percent)", "{{instance}}"),
                     unit="percent", description="0 when the agent cannot see mariadbd (another host)."), 8, 8)
    L.add(timeseries("Registered in ZooKeeper", ("max by (instance) (minisql_region_registered)", "{{instance}}"),
                     step=True), 8, 8)
    L.add(timeseries("Replica delay (heartbeat age)",
                     ("max by (instance) (minisql_region_heartbeat_delay_seconds)", "{{instance}}"),
                     (f"max({LEADER_ONLY.format('minisql_master_lagging_regions')})", "lagging regions (not promoted)"),
                     (f"sum(rate(minisql_proxy_heartbeats_total{{outcome=\"error\"}}[{RATE}]))", "heartbeat errors/s"),
                     unit="s",
                     description="Seconds since the freshest proxy heartbeat reached each region (seed 004). "
                                 "A region more than --max-promote-delay behind the others is lagging: "
                                 "its copies are not promoted."), 8, 8)
    L.add(timeseries("Rows (estimated)", ("sum by (instance) (minisql_region_rows)", "{{instance}}")), 8, 8)
    L.add(timeseries("Data + index size", ("sum by (instance) (minisql_region_data_bytes)", "{{instance}}"),
                     unit="bytes"), 8, 8)
    L.add(timeseries("Tables", ("sum by (instance) (minisql_region_tables)", "{{instance}}"), step=True), 8, 8)
    L.add(timeseries("Region tasks/s by op and outcome",
                     (f"sum by (instance, op, outcome) (rate(minisql_region_tasks_total[{RATE}]))",
                      "{{instance}} {{op}} {{outcome}}"),
                     unit="ops"), 8, 8)
    L.add(timeseries("Region task latency p95 by op",
                     (f"histogram_quantile(0.95, sum by (le, op) (rate(minisql_region_task_seconds_bucket[{RATE}])))",
                      "{{op}}"),
                     unit="s"), 8, 8)
    L.add(timeseries("Rows copied/s and load reports",
                     (f"sum by (instance) (rate(minisql_region_copied_rows_total[{RATE}]))", "copied {{instance}}"),
                     (f"sum by (instance, outcome) (rate(minisql_region_load_publish_total[{RATE}]))",
                      "load report {{outcome}} {{instance}}"),
                     unit="ops"), 8, 8)

    return {
        "uid": "minisql-cluster",
        "title": "MiniSQL Cluster",
        "description": "Proxy, masters and regions of a MiniSQL Cluster (generated by grafana/gen_dashboard.py)",
        "tags": ["minisql", "mysql", "mariadb"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "schemaVersion": 39,
        "version": 1,
        "links": [],
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
            "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
        }]},
        "templating": {"list": [{
            "name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
            "current": {"selected": False, "text": "Prometheus", "value": "prometheus"},
            "hide": 0, "refresh": 1, "regex": "", "options": [], "includeAll": False, "multi": False,
        }]},
        "panels": L.panels,
    }


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
