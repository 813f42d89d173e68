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

import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.compat.runner import Endpoint, SQLAlchemySuite, suite_python
from tests.integration.cluster import Cluster

HERE = Path(__file__).resolve().parent


def known_failures() -> set[str]:
    lines = (HERE / "sqlalchemy-known-failures.txt").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


@pytest.fixture(scope="module")
def cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory):
    c = Cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory.mktemp("sqla"), f"/sqla-{uuid.uuid4().hex[:8]}")
    try:
        c.start(users={"root": ""})
        yield c
    finally:
        c.stop()


def test_sqlalchemy_dialect_compliance_has_no_new_failures(cluster, tmp_path):
    suite = SQLAlchemySuite()
    src = suite.fetch()
    suite_python()  # the suites' venv, made once
    conn = cluster.connect()
    with conn.cursor() as cur:
        for db in suite.databases:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
    conn.close()
    code, _ = suite.execute(src, Endpoint("127.0.0.1", cluster.proxy_port), tmp_path)
    junit = tmp_path / "junit.xml"
    log = (tmp_path / "run.log").read_text(errors="replace") if (tmp_path / "run.log").exists() else ""
    assert junit.exists(), f"the suite ended ({code}) without a report:\n{log[-4000:]}"
    failed, passed = set(), 0
    for case in ET.parse(junit).iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            failed.add(name)
        elif case.find("skipped") is None:
            passed += 1
    known = known_failures()
    new = sorted(failed - known)
    print(f"\nSQLAlchemy dialect compliance through the cluster: {passed} passed, {len(failed)} failed "
          f"({len(known)} known); now passing, remove from the list: {sorted(known - failed)}")
    assert passed >= 1500, log[-4000:]
    assert not new, f"new failures through the cluster: {new}\n{log[-5000:]}"
