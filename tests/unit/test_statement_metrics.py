"""The proxy's per-statement metrics, counted without prometheus_client's locks,
still come out as the same Prometheus series (names, labels, cumulative buckets)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from proxy.metrics import StatementMetrics


def test_counts_and_latency_exposed_as_prometheus_series():
    metrics = StatementMetrics()
    registry = CollectorRegistry()
    registry.register(metrics)  # type: ignore[arg-type]
    for label in ("read", "read", "write"):
        metrics.count(label)
    for seconds in (0.0001, 0.0005, 0.003, 30.0):
        metrics.observe(seconds)
    text = generate_latest(registry).decode()
    assert 'minisql_proxy_queries_total{op="read"} 2.0' in text
    assert 'minisql_proxy_queries_total{op="write"} 1.0' in text
    assert 'minisql_proxy_query_seconds_bucket{le="0.0002",op="query"} 1.0' in text
    assert 'minisql_proxy_query_seconds_bucket{le="0.0005",op="query"} 2.0' in text  # le: an observation on the bound counts
    assert 'minisql_proxy_query_seconds_bucket{le="0.005",op="query"} 3.0' in text
    assert 'minisql_proxy_query_seconds_bucket{le="10.0",op="query"} 3.0' in text
    assert 'minisql_proxy_query_seconds_bucket{le="+Inf",op="query"} 4.0' in text
    assert 'minisql_proxy_query_seconds_count{op="query"} 4.0' in text
    assert "minisql_proxy_query_seconds_sum{op=\"query\"} 30.0036" in text
