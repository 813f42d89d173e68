"""SQLAlchemy 2.0.58's third-party dialect compliance suite (nobody here wrote
it) through a 3-region cluster, in `make test` and so in CI.

The suite is `test/dialect/test_suite.py` of the PyPI sdist (fetched once into
~/.cache/minisql-compat by tests/compat/runner.py's helpers), run with the
suites' own venv (PyMySQL 1.1, pytest-timeout) against the cluster's proxy.
Its JUnit report is compared with `sqlalchemy-known-failures.txt`: a failure
not listed fails this test (the list may only shrink).  `make compat` runs the
same suite against one MariaDB too, side by side (docs/compat.md).
"""

from __future__ import annotations

from pathlib import Path

from tests.compat.results import parse_junit
from tests.compat.runner import Endpoint, SQLAlchemySuite, read_list, suite_python

HERE = Path(__file__).resolve().parent


def test_sqlalchemy_dialect_compliance_has_no_new_failures(cluster, tmp_path):
    suite = SQLAlchemySuite()
    src = suite.fetch()
    suite_python()  # the suites' venv, made once
    conn = cluster.connect()
    with conn.cursor() as cur:
        for sql in suite.setup_sql():
            cur.execute(sql)
    conn.close()
    code, _ = suite.execute(src, Endpoint("127.0.0.1", cluster.proxy_port), tmp_path)
    junit = tmp_path / "junit.xml"
    log = (tmp_path / "run.log").read_text(errors="replace") if (tmp_path / "run.log").exists() else ""
    assert junit.exists(), f"the suite ended ({code}) without a report:\n{log[-4000:]}"
    run = parse_junit(junit.read_text(), suite.name, "cluster")
    known = read_list(HERE / "sqlalchemy-known-failures.txt")
    new = sorted(set(run.failures) - known)
    print(f"\nSQLAlchemy dialect compliance through the cluster: {run.passed} passed, {run.failed} failed "
          f"({len(known)} known); now passing, remove from the list: {sorted(known - set(run.failures))}")
    assert run.passed >= 1500, log[-4000:]
    assert not new, "new failures through the cluster:\n" + "\n".join(f"{t}: {run.failures[t]}" for t in new)
