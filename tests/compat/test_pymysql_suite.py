"""PyMySQL 0.10.1's own test suite (nobody here wrote it) through a 3-region cluster.

The suite comes from PyPI (`pip download PyMySQL==0.10.1`, the last sdist that
ships its tests; cached under ~/.cache/minisql-compat), runs in a subprocess
with its own `pymysql` package first on the path, and its JUnit report is
compared with `pymysql-known-failures.txt`: any failure not listed fails this
test (the list may only shrink); listed tests that now pass are printed so
the list can be trimmed.  `../shared/compat/run-pymysql.sh` is how the
project measures the same suite by hand, against one MariaDB or the cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERSION = "0.10.1"
CACHE = Path(os.environ.get("MINISQL_COMPAT_CACHE", Path.home() / ".cache" / "minisql-compat"))


def known_failures() -> set[str]:
    lines = (HERE / "pymysql-known-failures.txt").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def suite_dir() -> Path:
    """The unpacked PyMySQL 0.10.1 sdist (downloaded once from PyPI)."""
    target = CACHE / f"PyMySQL-{VERSION}"
    if (target / "pymysql" / "tests").is_dir():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
         f"PyMySQL=={VERSION}", "-d", str(CACHE)],
        check=True, timeout=300,
    )
    with tarfile.open(CACHE / f"PyMySQL-{VERSION}.tar.gz") as tar:
        tar.extractall(CACHE)  # noqa: S202 - PyPI's own sdist of a pinned version
    data = target / "pymysql" / "tests" / "data"
    data.mkdir(parents=True, exist_ok=True)
    # The sdist lacks test_load_local's data file (22749 "a,b" rows): regenerate it.
    (data / "load_local_data.txt").write_text("".join(f"{i},{i * 2}\n" for i in range(22749)))
    return target


def test_pymysql_suite_has_no_new_failures(cluster, tmp_path):
    suite = suite_dir()
    conn = cluster.connect()
    with conn.cursor() as cur:
        for db in ("test1", "test2"):
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {db} DEFAULT CHARACTER SET utf8mb4")
    conn.close()
    common = {"host": "127.0.0.1", "port": cluster.proxy_port, "user": "root", "passwd": ""}
    (suite / "pymysql" / "tests" / "databases.json").write_text(json.dumps([
        {**common, "db": "test1", "use_unicode": True, "local_infile": True},
        {**common, "db": "test2"},
    ]))
    junit = tmp_path / "junit.xml"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", "pymysql/tests"],
        cwd=suite, env=env, capture_output=True, text=True, timeout=600,
    )
    assert junit.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    failed, passed = set(), 0
    for case in ET.parse(junit).iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            failed.add(name)
        elif case.find("skipped") is None:
            passed += 1
    known = known_failures()
    new = sorted(failed - known)
    fixed = sorted(known - failed)
    print(f"\nPyMySQL {VERSION} suite through the cluster: {passed} passed, {len(failed)} failed "
          f"({len(known)} known); now passing, remove from the list: {fixed}")
    assert passed >= 100, run.stdout[-3000:]
    assert not new, f"new failures through the cluster: {new}\n{run.stdout[-5000:]}"
