#!/usr/bin/env python3
"""Check grafana/dashboards/*.json against the metrics the code exports.

    python3 grafana/check_dashboard.py

* every dashboard parses as JSON, panel ids are unique, every panel has a query;
* every `minisql_*` series a query references is exported by a Counter / Gauge /
  Histogram / Summary defined in proxy/, master/ or region/ (found with `ast`,
  nothing imported), with the names prometheus_client really exposes: counters
  get `_total`, histograms `_bucket`/`_sum`/`_count`;
* label names used in `by (...)` exist on that metric (or are Prometheus
  target labels: instance, job, le, region_id);
* reports metrics no panel shows (a warning, not an error).

Exit status 0 when everything checks out.  Uses only the standard library.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "grafana" / "dashboards"
PACKAGES = ("proxy", "master", "region")
TARGET_LABELS = {"instance", "job", "le", "region_id", "__name__"}
METRIC_RE = re.compile(r"\bminisql_[a-zA-Z0-9_]+\b")
BY_RE = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")


def exported_metrics() -> dict[str, tuple[str, set[str]]]:
    """{exposed series name: (metric family, label names)} from the source."""
    series: dict[str, tuple[str, set[str]]] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                kind = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                family = {"CounterMetricFamily": "Counter", "GaugeMetricFamily": "Gauge",
                          "HistogramMetricFamily": "Histogram", "SummaryMetricFamily": "Summary"}.get(kind or "")
                kind = family or kind  # a custom collector's families (proxy/metrics.py StatementMetrics)
                if kind not in ("Counter", "Gauge", "Histogram", "Summary"):
                    continue
                if not node.args or not isinstance(node.args[0], ast.Constant) or not isinstance(node.args[0].value, str):
                    continue  # collections.Counter() and the like
                name = node.args[0].value
                labels: set[str] = set()
                label_node = node.args[2] if len(node.args) > 2 else None
                for kw in node.keywords:
                    if kw.arg in ("labelnames", "labels"):
                        label_node = kw.value
                if isinstance(label_node, (ast.List, ast.Tuple)):
                    labels = {e.value for e in label_node.elts if isinstance(e, ast.Constant)}
                if kind == "Counter":
                    base = name[: -len("_total")] if name.endswith("_total") else name
                    names = [base + "_total"]
                elif kind == "Gauge":
                    names = [name]
                else:
                    names = [name + "_bucket", name + "_sum", name + "_count"] if kind == "Histogram" else [
                        name, name + "_sum", name + "_count"]
                for n in names:
                    series[n] = (name, labels)
    return series


def panels(doc: dict) -> list[dict]:
    out = []
    for p in doc.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows
    return out


def check(path: Path, series: dict[str, tuple[str, set[str]]], used: set[str]) -> list[str]:
    errors: list[str] = []
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        return [f"{path.name}: not valid JSON: {exc}"]
    for key in ("title", "uid", "panels", "schemaVersion"):
        if key not in doc:
            errors.append(f"{path.name}: missing top-level {key!r}")
    ids = [p.get("id") for p in panels(doc)]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        errors.append(f"{path.name}: duplicate panel ids {sorted(dupes)}")
    for p in panels(doc):
        if p.get("type") == "row":
            continue
        title = p.get("title", f"panel {p.get('id')}")
        if "gridPos" not in p:
            errors.append(f"{path.name}: {title!r} has no gridPos")
        exprs = [t.get("expr", "") for t in p.get("targets", [])]
        if not exprs or not all(exprs):
            errors.append(f"{path.name}: {title!r} has a target without a query")
        for expr in exprs:
            names = METRIC_RE.findall(expr)
            for name in names:
                if name not in series:
                    errors.append(f"{path.name}: {title!r}: {name} is not exported by the code")
                else:
                    used.add(series[name][0])
            known_labels = set(TARGET_LABELS)
            for name in names:
                if name in series:
                    known_labels |= series[name][1]
            for group in BY_RE.findall(expr):
                for label in (x.strip() for x in group.split(",")):
                    if label and label not in known_labels:
                        errors.append(f"{path.name}: {title!r}: label {label!r} not on {', '.join(names)}")
    return errors


def main() -> int:
    series = exported_metrics()
    if not series:
        print("no metrics found in the code", file=sys.stderr)
        return 1
    files = sorted(DASHBOARDS.glob("*.json"))
    if not files:
        print(f"no dashboards in {DASHBOARDS}", file=sys.stderr)
        return 1
    used: set[str] = set()
    errors: list[str] = []
    for f in files:
        errors += check(f, series, used)
    families = {fam for fam, _ in series.values()}
    for fam in sorted(families - used):
        print(f"warning: metric {fam} is not shown on any dashboard")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if not errors:
        print(f"ok: {len(files)} dashboard(s), {len(used)} of {len(families)} metric families shown")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
