"""Session-wide real servers for the tests, built on minisql.localstack.

Fixtures (all session-scoped, started on first use, stopped at session end
even when tests fail):

* ``zookeeper``        -- a ZooKeeperProcess: ``.hosts`` ("127.0.0.1:PORT"), ``.port``
* ``mariadb_template`` -- Path of a once-installed, never-started MariaDB datadir
* ``mariadbs``         -- three MariaDBProcess (``.port``, ``.socket``, ``.host``,
                          ``.query(sql)`` as root, ``.backend_connection()``), each
                          with the backend user of ``backend_credentials``, hardened
                          as `minisql up` runs them (as user mysql when we are root)
* ``backend_credentials`` -- BackendCredentials of that backend user
* ``zk_root``          -- (function-scoped) a fresh ZooKeeper root path per test

and the helper ``free_port()``.  A server that cannot start makes the test
that asked for it fail (never skip).  Tests that kill or stop a shared server
must start it again before they finish.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from minisql.config import BackendCredentials, generate_password
from minisql.localstack import MariaDBProcess, ZooKeeperProcess, free_port, free_ports

__all__ = ["free_port", "free_ports"]

BACKEND_USER = "minisql"
N_MARIADBS = 3


def _sigterm_as_interrupt(signum, frame):  # pragma: no cover - only on a CI kill
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # A SIGTERM (CI timeout, `kill`) would end Python without fixture teardown and
    # leave mariadbd / java running; turn it into an interrupt pytest tears down on.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


@pytest.fixture(scope="session")
def backend_credentials() -> BackendCredentials:
    return BackendCredentials(user=BACKEND_USER, password=generate_password())


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperProcess]:
    zk = ZooKeeperProcess(tmp_path_factory.mktemp("zookeeper"), free_port())
    try:
        zk.start(timeout=90)
        yield zk
    finally:
        zk.stop()


@pytest.fixture()
def zk_root() -> str:
    """A ZooKeeper root no other test uses."""
    return f"/test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def mariadb_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return MariaDBProcess.create_template(tmp_path_factory.mktemp("mariadb-template") / "datadir")


@pytest.fixture(scope="session")
def mariadbs(
    tmp_path_factory: pytest.TempPathFactory,
    mariadb_template: Path,
    backend_credentials: BackendCredentials,
) -> Iterator[list[MariaDBProcess]]:
    # Not under tmp_path_factory: pytest keeps /tmp/pytest-of-root at mode 0700,
    # which the `mysql` user mariadbd switches to cannot enter.  0711 lets it
    # reach its own (chowned) datadir without listing anyone else's.
    base = Path(tempfile.mkdtemp(prefix="minisql-test-mariadbs-"))
    os.chmod(base, 0o711)
    servers = [
        MariaDBProcess(
            base / f"r{i}",
            port,
            backend_user=backend_credentials.user,
            backend_password=backend_credentials.password,
            name=f"mariadb-r{i}",
        )
        for i, port in enumerate(free_ports(N_MARIADBS), start=1)
    ]
    try:
        for server in servers:
            server.install_from_template(mariadb_template)
            server.launch()
        for server in servers:
            server.wait_ready(timeout=120)
        yield servers
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)
