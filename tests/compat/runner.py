"""`make compat`: third-party suites against one plain MariaDB and through a 3-region cluster.

    python -m tests.compat.runner [--suites pymysql,connector,sqlalchemy] [--work DIR]

For every suite, twice -- against a reference MariaDB 10.11 started the way
the project's measuring scripts start it (stock options, root with an empty
password, LOAD DATA LOCAL allowed) and through a fresh `minisql up` cluster of
3 regions on free ports -- it creates the databases the suite expects, runs
the suite with its own harness, and keeps the results.  Then it prints one
table (suite | one MariaDB | cluster | new failures vs the MariaDB run),
writes ``summary.json`` and ``table.md`` in the work dir, and the cluster's
failures grouped by error.

Suites (downloaded once from PyPI into ~/.cache/minisql-compat, run with a
private venv there):

* ``pymysql``    PyMySQL 0.10.1's own tests (with the DB-API 2.0 ones), text protocol;
* ``connector``  Oracle Connector/Python 26.10's unittests.py ``--use-external-server``,
                 pure Python, sync + asyncio, server-side prepared statements.  It
                 targets MySQL 8/9, so ~100 tests fail on MariaDB too: the MariaDB
                 run is the bar, `baselines/connector-mariadb-failures.txt` the
                 recorded one (a reference run that fails more is flagged);
* ``sqlalchemy`` SQLAlchemy 2.0.58's dialect compliance suite, PyMySQL driver;
* ``sqlalchemy-backend``  SQLAlchemy's own backend-only tests (dialect/mysql, sql,
                 engine, base, orm: ~3900 tests, minutes);
* ``mtr``        (optional, not in the default list) 100 tests of MariaDB's own
                 mysql-test-run, ``mtr --extern`` (apt package mariadb-test).  It
                 needs MTR's server settings on every region: see MTR_SERVER_OPTIONS.

Every run of a server + suite is a separate ``flock $LOCK python -m
tests.compat.runner phase SUITE TARGET`` (LOCK: --lock, $MINISQL_CLUSTER_LOCK,
default /tmp/minisql-cluster.lock), so it waits for other clusters and
benchmarks on the machine and lets them in between suites.  Logs stay under
``WORK/SUITE/TARGET/`` (``run.log``, JUnit XML, the cluster's process logs in
``cluster/logs``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from minisql.localstack import CommandProcess, MariaDBProcess, install_mariadb_datadir, is_mariadb_datadir, port_is_free
from tests.compat.results import (
    Comparison,
    SuiteRun,
    compare,
    format_table,
    group_causes,
    parse_junit,
    parse_mtr_log,
    parse_unittest_log,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CACHE = Path(os.environ.get("MINISQL_COMPAT_CACHE", Path.home() / ".cache" / "minisql-compat"))
DEFAULT_WORK = ROOT / ".minisql" / "compat"
DEFAULT_LOCK = os.environ.get("MINISQL_CLUSTER_LOCK", "/tmp/minisql-cluster.lock")
DEFAULT_SUITES = ("pymysql", "connector", "connector-lenient", "sqlalchemy", "sqlalchemy-backend")
TARGETS = ("mariadb", "cluster")

#: what the suites' private venv holds (pinned: the figures must not move under us)
SUITE_VENV_REQUIREMENTS = (
    "pytest==9.2.0", "pytest-timeout==2.4.0", "PyMySQL==1.1.1", "typing_extensions==4.15.0",
    "greenlet==3.2.4", "setuptools==80.9.0",
)

#: server options of mysql-test-run's own defaults (mysql-test/include/default_mysqld.cnf):
#: the .result files of the MTR list match only with these.
MTR_SERVER_OPTIONS = (
    "--character-set-server=latin1", "--collation-server=latin1_swedish_ci", "--default-storage-engine=myisam",
    "--use-stat-tables=preferably", "--histogram-type=json_hb", "--key-buffer-size=1M", "--sort-buffer-size=256K",
    "--max-heap-table-size=1M", "--log-bin-trust-function-creators=1", "--open-files-limit=1024",
    "--connect-timeout=60", "--plugin-maturity=unknown", "--loose-aria-pagecache-buffer-size=8M",
    "--performance-schema",
)


def log(msg: str) -> None:
    print(f"[compat] {msg}", flush=True)


@dataclass
class Endpoint:
    host: str
    port: int
    user: str = "root"
    password: str = ""

    def connect(self, database: str | None = None, timeout: float = 10.0):
        import pymysql

        return pymysql.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                               database=database, autocommit=True, connect_timeout=timeout)

    def execute(self, statements: Sequence[str], attempts: int = 20) -> None:
        """Run setup statements, retrying while the endpoint is still settling."""
        last: Exception | None = None
        for _ in range(attempts):
            try:
                conn = self.connect()
                try:
                    with conn.cursor() as cur:
                        for sql in statements:
                            cur.execute(sql)
                    return
                finally:
                    conn.close()
            except Exception as exc:  # noqa: BLE001 - reported below if it persists
                last = exc
                time.sleep(1.5)
        raise RuntimeError(f"setup SQL on {self.host}:{self.port} failed: {last}")


# -- downloads and the suites' venv (no lock needed) -------------------------------------------
def pip_sdist(name: str, version: str, archive: str, unpacked: str) -> Path:
    """Unpack PyPI's sdist of name==version into CACHE (once); returns the unpacked dir."""
    target = CACHE / unpacked
    if target.is_dir() and (target / ".complete").exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    if not (CACHE / archive).exists():
        log(f"downloading {name}=={version} (sdist) from PyPI")
        # The sdist of this package only (its build tools as wheels, in pip's isolated
        # build env: the project's venv may lack `wheel`, and building them from source
        # takes minutes).
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", name,
                        f"{name}=={version}", "-d", str(CACHE)], check=True, timeout=900)
    with tarfile.open(CACHE / archive) as tar:
        tar.extractall(CACHE)  # noqa: S202 - PyPI's own sdist of a pinned version
    (target / ".complete").write_text("")
    return target


def suite_python() -> Path:
    """A venv with the suites' test tools (not the project's: SQLAlchemy's suite wants PyMySQL 1.1)."""
    tag = hashlib.sha1(" ".join(SUITE_VENV_REQUIREMENTS).encode()).hexdigest()[:8]
    venv = CACHE / f"venv-{tag}"
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return python
    log(f"creating the suites' venv {venv}")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *SUITE_VENV_REQUIREMENTS], check=True, timeout=900)
    (venv / ".complete").write_text("")
    return python


# -- the suites ------------------------------------------------------------------------------------
class Suite:
    name = ""
    label = ""
    #: databases the suite expects to exist
    databases: tuple[str, ...] = ()
    timeout = 1800.0
    server_profile = "default"

    def fetch(self) -> Path:
        raise NotImplementedError

    def setup_sql(self) -> list[str]:
        return [f"CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
                for db in self.databases]

    def execute(self, src: Path, endpoint: Endpoint, out: Path) -> tuple[int | None, float]:
        """Run the suite against `endpoint`, its logs into `out`: (exit code or None if killed, seconds)."""
        raise NotImplementedError

    def parse(self, out: Path, target: str) -> SuiteRun:
        """The results the suite left in `out` (also re-read by `report` after a parser change)."""
        raise NotImplementedError

    def run(self, src: Path, endpoint: Endpoint, out: Path, target: str) -> SuiteRun:
        code, wall = self.execute(src, endpoint, out)
        result = self.parse(out, target)
        result.wall_s, result.returncode = wall, code
        if code is None:
            result.error = f"killed at the suite's timeout ({self.timeout:.0f} s)" + (
                f"; {result.error}" if result.error else "")
        return result

    def baseline(self) -> set[str] | None:
        return None

    def _subprocess(self, argv: list[str], cwd: Path, logfile: Path, env: dict | None = None) -> tuple[int | None, float]:
        start = time.monotonic()
        full_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        full_env.update(env or {})
        with open(logfile, "wb") as fh:
            fh.write(("$ " + " ".join(argv) + "\n").encode())
            fh.flush()
            proc = subprocess.Popen(argv, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=full_env, start_new_session=True)
            try:
                code: int | None = proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
                code = None
                fh.write(f"\n[compat] killed after {self.timeout:.0f} s\n".encode())
        return code, time.monotonic() - start


class JUnitSuite(Suite):
    """A pytest suite: results from its JUnit XML."""

    def parse(self, out: Path, target: str) -> SuiteRun:
        junit, logfile = out / "junit.xml", out / "run.log"
        if junit.exists():
            run = parse_junit(junit.read_text(errors="replace"), self.name, target)
        else:
            tail = logfile.read_text(errors="replace").strip().splitlines()[-5:] if logfile.exists() else []
            run = SuiteRun(self.name, target, error="no JUnit report: " + " | ".join(tail)[-500:])
        run.log = str(logfile)
        return run


class PyMySQLSuite(JUnitSuite):
    name, label = "pymysql", "PyMySQL 0.10.1"
    databases = ("test1", "test2")
    timeout = 900.0

    def fetch(self) -> Path:
        src = pip_sdist("PyMySQL", "0.10.1", "PyMySQL-0.10.1.tar.gz", "PyMySQL-0.10.1")
        data = src / "pymysql" / "tests" / "data" / "load_local_data.txt"
        if not data.exists() or data.stat().st_size == 0:  # the sdist lacks test_load_local's file
            data.parent.mkdir(parents=True, exist_ok=True)
            data.write_text("".join(f"{i},{i * 2}\n" for i in range(22749)))
        # its own (empty) pytest config, or pytest would take a parent's (this repository's) and name
        # the tests after the path from there
        (src / "pytest.ini").write_text("[pytest]\n")
        return src

    def execute(self, src: Path, endpoint: Endpoint, out: Path) -> tuple[int | None, float]:
        common = {"host": endpoint.host, "port": endpoint.port, "user": endpoint.user, "passwd": endpoint.password}
        (src / "pymysql" / "tests" / "databases.json").write_text(json.dumps([
            {**common, "db": "test1", "use_unicode": True, "local_infile": True},
            {**common, "db": "test2"},
        ]))
        return self._subprocess(
            [str(suite_python()), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout=120",
             f"--junitxml={out / 'junit.xml'}", "-rfEs", "pymysql/tests"], src, out / "run.log")


class SQLAlchemySuite(JUnitSuite):
    name, label = "sqlalchemy", "SQLAlchemy 2.0.58 dialect compliance"
    databases = ("sqla_test", "test_schema", "test_schema_2")
    timeout = 3600.0

    def fetch(self) -> Path:
        return pip_sdist("SQLAlchemy", "2.0.58", "sqlalchemy-2.0.58.tar.gz", "sqlalchemy-2.0.58")

    def execute(self, src: Path, endpoint: Endpoint, out: Path) -> tuple[int | None, float]:
        pw = f":{endpoint.password}" if endpoint.password else ""
        uri = f"mysql+pymysql://{endpoint.user}{pw}@{endpoint.host}:{endpoint.port}/sqla_test?charset=utf8mb4"
        return self._subprocess(
            [str(suite_python()), "-m", "pytest", "--dburi", uri, "-p", "no:cacheprovider", "--maxfail=100000",
             "--timeout=120", "-q", "-rfE", f"--junitxml={out / 'junit.xml'}", "test/dialect/test_suite.py"],
            src, out / "run.log")


class SQLAlchemyBackendSuite(SQLAlchemySuite):
    """SQLAlchemy's own backend tests (dialect/mysql, sql, engine, base, orm) with
    --backend-only: the ORM and Core against a live database, fixtures with
    FOREIGN KEYs, views and sequences (3881 passed on one MariaDB)."""

    name, label = "sqlalchemy-backend", "SQLAlchemy 2.0.58 backend-only tests"
    paths = ("test/dialect/mysql", "test/sql", "test/engine", "test/base", "test/orm")

    def execute(self, src: Path, endpoint: Endpoint, out: Path) -> tuple[int | None, float]:
        pw = f":{endpoint.password}" if endpoint.password else ""
        uri = f"mysql+pymysql://{endpoint.user}{pw}@{endpoint.host}:{endpoint.port}/sqla_test?charset=utf8mb4"
        return self._subprocess(
            [str(suite_python()), "-m", "pytest", "--dburi", uri, "--backend-only", "-p", "no:cacheprovider",
             "--maxfail=100000", "--timeout=120", "-q", "-rfE", f"--junitxml={out / 'junit.xml'}", *self.paths],
            src, out / "run.log")


class ConnectorSuite(Suite):
    name, label = "connector", "Connector/Python 26.10 (own harness)"
    timeout = 3600.0

    def fetch(self) -> Path:
        return pip_sdist("mysql-connector-python", "26.10.0", "mysql_connector_python-26.10.0.tar.gz",
                         "mysql_connector_python-26.10.0")

    def setup_sql(self) -> list[str]:
        return []  # the harness drops and creates its `myconnpy` database itself

    def baseline(self) -> set[str]:
        return read_list(HERE / "baselines" / "connector-mariadb-failures.txt")

    script = "unittests.py"
    #: seconds one test may take before the watchdog fails it (it takes < 10 s on one MariaDB)
    test_timeout = 30
    #: seconds after which the watchdog starts no further test (one MariaDB: ~130 s for all)
    budget = float(os.environ.get("MINISQL_COMPAT_CONNECTOR_BUDGET", "900"))

    def execute(self, src: Path, endpoint: Endpoint, out: Path) -> tuple[int | None, float]:
        # The harness has no per-test timeout, and a client waiting for an answer that never comes
        # (e.g. the compressed protocol through the cluster) would stall the whole run: run it
        # under a watchdog that fails such a test and goes on.
        shutil.copy(HERE / "unittest_watchdog.py", src / "unittest_watchdog.py")
        return self._subprocess(
            [str(suite_python()), "unittest_watchdog.py", str(self.test_timeout), str(self.budget), self.script,
             "--use-external-server", f"--host={endpoint.host}", f"--port={endpoint.port}",
             f"--user={endpoint.user}", f"--password={endpoint.password}", "--verbosity=1"], src, out / "run.log")

    def parse(self, out: Path, target: str) -> SuiteRun:
        logfile = out / "run.log"
        text = logfile.read_text(errors="replace") if logfile.exists() else ""
        run = parse_unittest_log(text, self.name, target)
        run.log = str(logfile)
        return run


class LenientConnectorSuite(ConnectorSuite):
    """The same harness with one change: its start-up probe for Oracle's HeatWave ML
    (``SELECT 1 FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA='sys' AND
    ROUTINE_NAME='ML_TRAIN'``, which finds nothing on MariaDB) may fail instead of ending the
    whole run before any test; its tests then count as "no ML", as on MariaDB."""

    name, label = "connector-lenient", "Connector/Python 26.10, ML probe non-fatal"
    script = "unittests_lenient.py"
    PROBE = "                    cur.execute(\n                        \"\"\"\n                        SELECT 1 FROM information_schema.ROUTINES"
    PROBE_END = "                    tests.MYSQL_ML_ENABLED = cur.fetchone() is not None\n"

    def execute(self, src: Path, endpoint: Endpoint, out: Path) -> tuple[int | None, float]:
        text = (src / "unittests.py").read_text()
        start, end = text.find(self.PROBE), text.find(self.PROBE_END)
        if start < 0 or end < start:
            raise RuntimeError("unittests.py changed: the HeatWave ML probe to make non-fatal is not where it was")
        block = text[start:end + len(self.PROBE_END)]
        patched = ("                    try:  # [minisql compat] the probe may fail\n"
                   + "".join("    " + line for line in block.splitlines(keepends=True))
                   + "                    except Exception as err:  # noqa: BLE001\n"
                   + "                        LOGGER.warning(\"HeatWave ML probe failed (%s): no ML tests\", err)\n"
                   + "                        tests.MYSQL_ML_ENABLED = False\n")
        (src / self.script).write_text(text[:start] + patched + text[end + len(self.PROBE_END):])
        return super().execute(src, endpoint, out)


class MTRSuite(Suite):
    name, label = "mtr", "MariaDB mysql-test-run, 100 tests"
    timeout = 3600.0
    server_profile = "mtr"

    def fetch(self) -> Path:
        if not Path("/usr/share/mysql/mysql-test/mariadb-test-run.pl").exists():
            raise SuiteUnavailable("MTR needs the apt package mariadb-test (apt-get install mariadb-test)")
        return HERE / "mtr"

    def setup_sql(self) -> list[str]:
        return []  # run-mtr.sh creates `test` and MTR's helper schema `mtr` itself

    def execute(self, src: Path, endpoint: Endpoint, out: Path) -> tuple[int | None, float]:
        env = {"HOST": endpoint.host, "PORT": str(endpoint.port), "DB_USER": endpoint.user,
               "DB_PASSWORD": endpoint.password, "COMPAT_WORK": str(out / "mtr-work"), "VARDIR": str(out / "mtr-var")}
        (out / "mtr-work").mkdir(parents=True, exist_ok=True)
        shutil.copy(src / "mtr-schema.sql", out / "mtr-work" / "mtr-schema.sql")
        return self._subprocess(["bash", str(src / "run-mtr.sh"), str(src / "mtr-list.txt")], src, out / "run.log", env)

    def parse(self, out: Path, target: str) -> SuiteRun:
        mtr_out = out / "mtr-var" / "mtr-output.txt"
        text = mtr_out.read_text(errors="replace") if mtr_out.exists() else ""
        run = parse_mtr_log(text, self.name, target, expected=sorted(read_list(HERE / "mtr" / "mtr-list.txt")))
        run.log = str(mtr_out if mtr_out.exists() else out / "run.log")
        return run


class SuiteUnavailable(RuntimeError):
    pass


SUITES: dict[str, Suite] = {
    s.name: s for s in (PyMySQLSuite(), ConnectorSuite(), LenientConnectorSuite(), SQLAlchemySuite(), SQLAlchemyBackendSuite(),
                        MTRSuite())
}


def read_list(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")}


def private_copy(src: Path, work: Path) -> Path:
    """The suite's tree copied into the work dir once: the suites write into it (databases.json,
    Connector/Python's build), and tests/compat/test_pymysql_suite.py uses the same cache."""
    target = work / "src" / src.name
    if not (target / ".complete").exists():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(src, target, symlinks=True)
        (target / ".complete").write_text("")
    return target


# -- the servers (run inside the lock) -----------------------------------------------------------
def template_datadir(work: Path) -> Path:
    """One installed, never-started datadir to copy (mariadb-install-db once, not 4 times per suite)."""
    template = work / "mariadb-template"
    if not is_mariadb_datadir(template):
        log("installing a MariaDB template datadir")
        install_mariadb_datadir(template, work / "mariadb-template.log")
    return template


class ReferenceMariaDB(MariaDBProcess):
    """One plain MariaDB as the bar, started like shared/compat/start-mariadb.sh: stock
    server options (no --skip-name-resolve, LOAD DATA LOCAL allowed), root@localhost
    reachable over TCP with an empty password; `profile` "mtr" adds MTR's defaults."""

    stop_timeout = 60.0

    def __init__(self, data_dir: Path, port: int, profile: str = "default") -> None:
        super().__init__(data_dir, port, name=f"reference-mariadb:{port}", backend_password=None)
        self.profile = profile

    def command(self) -> list[str]:
        # Written out, not derived from MariaDBProcess.command(): none of the stack's hardening
        # or defaults (--skip-name-resolve, --local-infile=0, utf8mb4) belongs on the bar.
        argv = [shutil.which("mariadbd") or "/usr/sbin/mariadbd", "--no-defaults", f"--datadir={self.data_dir}",
                f"--socket={self.socket}", f"--port={self.port}", f"--bind-address={self.host}",
                f"--user={self.run_user or 'root'}", f"--log-error={self.log_path}", f"--pid-file={self.pid_file}",
                "--max-connections=500", "--local-infile=1"]
        if self.profile == "mtr":
            argv += [*MTR_SERVER_OPTIONS, f"--secure-file-priv={self.secure_file_dir}", "--log-basename=mysqld"]
        return argv

    def after_ready(self) -> None:
        conn = self.root_connection()
        try:
            with conn.cursor() as cur:
                # like mariadb-install-db --auth-root-authentication-method=normal, plus MTR's hygiene
                cur.execute("ALTER USER root@localhost IDENTIFIED VIA mysql_native_password USING PASSWORD('') "
                            "OR unix_socket")
                cur.execute("DELETE FROM mysql.global_priv WHERE user=''")
                cur.execute("FLUSH PRIVILEGES")
                cur.execute("CREATE USER IF NOT EXISTS 'peer'@'%' IDENTIFIED BY 'peerpass'")
                cur.execute("GRANT ALL ON *.* TO 'peer'@'%' WITH GRANT OPTION")
                cur.execute("CREATE DATABASE IF NOT EXISTS test")
        finally:
            conn.close()


def _copy_datadir(template: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(template, target, symlinks=True)


def up_supports_mariadb_option() -> bool:
    out = subprocess.run([sys.executable, "-m", "minisql.cli", "up", "--help"], capture_output=True, text=True,
                         cwd=ROOT, env=_project_env())
    return "--mariadb-option" in out.stdout


def _project_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def pick_up_ports(start: int = 21000, stop: int = 60000, step: int = 97) -> dict[str, int]:
    """Free ports for `minisql up`: proxy, ZooKeeper, 3 MariaDBs (base..base+2), metrics
    (base, base+10, base+11, base+21..23)."""
    for base in range(start + (os.getpid() % 50) * step, stop, step):
        wanted = {"port": base, "zk": base + 1, "mysql": base + 2, "metrics": base + 40}
        ports = [base, base + 1, base + 2, base + 3, base + 4, base + 40, base + 50, base + 51, base + 61,
                 base + 62, base + 63]
        if all(port_is_free(p) for p in ports):
            return wanted
    raise RuntimeError("no free port range for `minisql up`")


class UpCluster:
    """`minisql up` (3 regions, 2 masters, a proxy) in its own data dir on free ports."""

    def __init__(self, data_dir: Path, template: Path, mariadb_options: Sequence[str] = ()) -> None:
        self.data_dir = data_dir
        self.template = template
        self.mariadb_options = list(mariadb_options)
        self.ports = pick_up_ports()
        self.proc: CommandProcess | None = None

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.ports["port"])

    def start(self, timeout: float = 300.0) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        for r in ("r1", "r2", "r3"):  # `minisql up` installs a datadir only where none is
            _copy_datadir(self.template, self.data_dir / "regions" / r / "mysql")
        argv = [sys.executable, "-m", "minisql.cli", "up", "--data-dir", str(self.data_dir),
                "--port", str(self.ports["port"]), "--zk-port", str(self.ports["zk"]),
                "--mysql-base-port", str(self.ports["mysql"]), "--metrics-base-port", str(self.ports["metrics"]),
                "--zk-root", "/compat", "--log-level", "INFO",
                *(f"--mariadb-option={opt}" for opt in self.mariadb_options)]
        self.proc = CommandProcess("minisql-up", argv, log_path=self.data_dir.parent / "up.log", env=_project_env(),
                                   cwd=ROOT)
        self.proc.stop_timeout = 180.0
        self.proc.launch()
        deadline = time.monotonic() + timeout
        while "MiniSQL Cluster is up" not in self.proc.log_tail(400):
            if not self.proc.alive:
                raise RuntimeError(f"`minisql up` exited with {self.proc.returncode}:\n{self.proc.log_tail(30)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"`minisql up` not up after {timeout:.0f} s:\n{self.proc.log_tail(30)}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
        for r in ("r1", "r2", "r3"):  # keep the logs, not 3 datadirs per suite
            shutil.rmtree(self.data_dir / "regions" / r / "mysql", ignore_errors=True)


def run_phase(suite_name: str, target: str, work: Path) -> SuiteRun:
    """Start `target`, run the suite against it, stop it.  Runs under the machine-wide lock."""
    suite = SUITES[suite_name]
    out = work / suite_name / target
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    src = private_copy(suite.fetch(), work)
    template = template_datadir(work)
    started = time.monotonic()
    server: ReferenceMariaDB | UpCluster
    if target == "mariadb":
        datadir = work / "reference" / "datadir"
        _copy_datadir(template, datadir)
        server = ReferenceMariaDB(datadir, pick_up_ports()["port"], profile=suite.server_profile)
        server.log_path = out / "mariadbd.err"
        endpoint = Endpoint("127.0.0.1", server.port)
    else:
        options: list[str] = []
        if suite.server_profile == "mtr":
            # Every region runs with MTR's settings through `minisql up --mariadb-option` (a tree
            # from before that flag cannot: the cluster side of MTR is then reported as not run).
            if not up_supports_mariadb_option():
                return _save(out, SuiteRun(suite_name, target, error="`minisql up` has no --mariadb-option yet: "
                                           "regions cannot take MTR's server settings"))
            options = list(MTR_SERVER_OPTIONS)
        server = UpCluster(out / "cluster", template, options)
        endpoint = server.endpoint
    try:
        log(f"{suite_name} / {target}: starting the server")
        server.start(timeout=300) if isinstance(server, UpCluster) else server.start(timeout=120)
        endpoint.execute(["SELECT 1", *suite.setup_sql()])
        log(f"{suite_name} / {target}: server up in {time.monotonic() - started:.0f} s, running {suite.label}")
        result = suite.run(src, endpoint, out, target)
    except Exception as exc:  # noqa: BLE001 - a server that cannot start is a result too
        result = SuiteRun(suite_name, target, error=f"{type(exc).__name__}: {exc}"[:2000])
    finally:
        server.stop()
        if target == "mariadb":
            shutil.rmtree(work / "reference", ignore_errors=True)
    return _save(out, result)


def _save(out: Path, result: SuiteRun) -> SuiteRun:
    (out / "result.json").write_text(json.dumps(result.to_dict(), indent=1))
    return result


# -- the whole run -----------------------------------------------------------------------------------
def run_all(suites: Sequence[str], targets: Sequence[str], work: Path, lock: str) -> list[Comparison]:
    work.mkdir(parents=True, exist_ok=True)
    runnable = []
    for name in suites:
        try:
            SUITES[name].fetch()  # downloads outside the lock
            runnable.append(name)
        except SuiteUnavailable as exc:
            log(f"{name}: skipped: {exc}")
    suite_python()
    for name in runnable:
        for target in targets:
            argv = [sys.executable, "-m", "tests.compat.runner", "phase", name, target, "--work", str(work)]
            if lock:
                argv = ["flock", lock, *argv]
                log(f"{name} / {target}: waiting for {lock}")
            subprocess.run(argv, cwd=ROOT, env=_project_env(), check=False)
    comparisons = []
    for name in runnable:
        runs = {t: load_result(work, name, t) for t in TARGETS}
        comparisons.append(compare(runs["mariadb"], runs["cluster"], SUITES[name].baseline()))
    return comparisons


def load_result(work: Path, suite: str, target: str, reparse: bool = False) -> SuiteRun:
    """A phase's result.json; with `reparse`, counts and failures read again from its logs."""
    out = work / suite / target
    path = out / "result.json"
    if not path.exists():
        return SuiteRun(suite, target, error="not run")
    saved = SuiteRun.from_dict(json.loads(path.read_text()))
    if not reparse or (saved.error and not saved.returncode and saved.returncode != 0 and saved.wall_s == 0):
        return saved  # (a server that never came up left no suite logs)
    run = SUITES[suite].parse(out, target)
    run.wall_s, run.returncode = saved.wall_s, saved.returncode
    if saved.returncode is None and saved.wall_s:
        run.error = saved.error
    return run


def summarize(comparisons: Sequence[Comparison], work: Path, top: int = 12) -> str:
    labels = {name: s.label for name, s in SUITES.items()}
    lines = [format_table(comparisons, labels), ""]
    summary: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "work": str(work), "suites": {}}
    for c in comparisons:
        causes = group_causes(c.new_failures)
        summary["suites"][c.suite] = {
            "mariadb": c.reference.to_dict(), "cluster": c.cluster.to_dict(),
            "new_failures": c.new_failures, "fixed_by_cluster": c.fixed,
            "reference_failures_not_in_baseline": c.reference_unexpected,
            "new_failure_causes": [vars(x) for x in causes],
        }
        for run in (c.reference, c.cluster):
            if run.error:
                lines.append(f"{c.suite} / {run.target}: {run.error}")
        if c.reference_unexpected:
            lines.append(f"{c.suite}: the MariaDB run fails {len(c.reference_unexpected)} tests the recorded baseline "
                         f"passes, e.g. {c.reference_unexpected[:3]}")
        if causes:
            lines.append(f"{c.suite}: new failures through the cluster by error (top {min(top, len(causes))} "
                         f"of {len(causes)}):")
            for cause in causes[:top]:
                lines.append(f"  {cause.count:5d}  {cause.errno:>6}  {cause.message[:100]}")
                lines.append(f"         e.g. {cause.example_test}")
        lines.append(f"{c.suite}: logs in {work / c.suite}/{{mariadb,cluster}}/")
    text = "\n".join(lines)
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    (work / "table.md").write_text(format_table(comparisons, labels) + "\n")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.compat.runner", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    phase = sub.add_parser("phase", help="(internal) one suite against one target; run it under the lock")
    phase.add_argument("suite", choices=sorted(SUITES))
    phase.add_argument("target", choices=TARGETS)
    phase.add_argument("--work", type=Path, default=DEFAULT_WORK)
    report = sub.add_parser("report", help="print the table again from an earlier run's results")
    report.add_argument("--suites", default=",".join(DEFAULT_SUITES))
    report.add_argument("--work", type=Path, default=DEFAULT_WORK)
    for p in (parser,):
        p.add_argument("--suites", default=",".join(DEFAULT_SUITES),
                       help=f"comma-separated, of {', '.join(SUITES)} (default: {','.join(DEFAULT_SUITES)})")
        p.add_argument("--targets", default=",".join(TARGETS), help="mariadb,cluster (default: both)")
        p.add_argument("--work", type=Path, default=DEFAULT_WORK, help=f"logs and results (default: {DEFAULT_WORK})")
        p.add_argument("--lock", default=DEFAULT_LOCK, help="flock(1) file around each server + suite run ('' = none)")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    if args.command == "phase":
        result = run_phase(args.suite, args.target, work)
        log(f"{args.suite} / {args.target}: {result.counts}" + (f" ({result.error})" if result.error else ""))
        return 0
    suites = [s.strip() for s in args.suites.split(",") if s.strip()]
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        parser.error(f"unknown suites {unknown}; choose from {', '.join(SUITES)}")
    if args.command == "report":
        comparisons = [compare(load_result(work, s, "mariadb", reparse=True),
                               load_result(work, s, "cluster", reparse=True), SUITES[s].baseline())
                       for s in suites]
    else:
        targets = [t.strip() for t in args.targets.split(",") if t.strip()]
        comparisons = run_all(suites, targets, work, args.lock)
    print(summarize(comparisons, work), flush=True)
    log(f"summary: {work / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
