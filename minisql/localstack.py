"""Launchers for the local processes of a one-machine stack and of the tests.

`ZooKeeperProcess` runs Debian's ZooKeeper (standalone), `MariaDBProcess` a
private mariadbd on its own datadir, and `CommandProcess` any other command
(the proxy, master and region agents under ``minisql up``).  All share
`ManagedProcess` (in `minisql.processes`, with the start/stop contract):
``start()`` returns only once the server really serves (ZooKeeper answers
``ruok`` with ``imok`` and ``stat``; MariaDB runs a query), ``stop()`` is
SIGTERM, wait, SIGKILL.

Everything a process writes (stdout, stderr, MariaDB's error log) goes to its
``log_path``, opened for append so restarts keep the history.

The generic machinery (errors, port helpers, `tail`, `find_program`) lives in
`minisql.processes` and is re-exported here, so callers import launchers and
helpers from one place.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterable, Sequence

from .mariadb_options import merge_defaults, parse_options
from .processes import (
    LOOPBACK,
    LocalStackError,
    ManagedProcess,
    MissingDependencyError,
    PortInUseError,
    ProcessStartError,
    StartAborted,
    find_program,
    free_port,
    free_ports,
    port_accepts,
    port_is_free,
    require_program,
    tail,
    wait_for_port,
)

log = logging.getLogger("minisql.localstack")

ZOOKEEPER_JARS = ("/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-simple.jar")
ZOOKEEPER_MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"

DEFAULT_BACKEND_USER = "minisql"
#: the system account Debian's mariadb-server creates; mariadbd runs as it when we are root
MYSQL_SYSTEM_USER = "mysql"


class CommandProcess(ManagedProcess):
    """Any command; ready once `ready_port` accepts connections (if given) and it
    has stayed up for `min_uptime` seconds."""

    stop_timeout = 15.0

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        ready_port: int | None = None,
        ready_host: str = LOOPBACK,
        min_uptime: float = 0.0,
    ) -> None:
        super().__init__(name, log_path=log_path, env=env, cwd=cwd)
        self._argv = list(argv)
        self.ready_port = ready_port
        self.ready_host = ready_host
        self.min_uptime = min_uptime
        self._launched_at = 0.0

    def command(self) -> list[str]:
        return list(self._argv)

    def launch(self) -> None:
        super().launch()
        self._launched_at = time.monotonic()

    def probe(self) -> bool:
        if time.monotonic() - self._launched_at < self.min_uptime:
            return False
        if self.ready_port is not None:
            return port_accepts(self.ready_port, self.ready_host)
        return True


# -- ZooKeeper -----------------------------------------------------------------------
def zookeeper_classpath() -> list[str]:
    override = os.environ.get("MINISQL_ZOOKEEPER_CLASSPATH")
    return override.split(":") if override else list(ZOOKEEPER_JARS)


class ZooKeeperProcess(ManagedProcess):
    """Debian's ZooKeeper, standalone, with its config and data under `data_dir`.

    Layout: ``data_dir/conf/zoo.cfg`` (rewritten at each start),
    ``data_dir/data`` (snapshots and transaction logs: survive restarts),
    log in `log_path` (default ``data_dir/zookeeper.log``).
    tickTime is 1000 ms so sessions may be as short as 2 s.
    """

    stop_timeout = 15.0

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int,
        *,
        host: str = LOOPBACK,
        log_path: str | os.PathLike[str] | None = None,
        heap: str = "512m",
        java: str | None = None,
    ) -> None:
        data_dir = Path(data_dir).resolve()
        super().__init__(f"zookeeper:{port}", log_path=log_path or data_dir / "zookeeper.log")
        self.data_dir = data_dir
        self.port = int(port)
        self.host = host
        self.heap = heap
        self.java = java
        self.conf_dir = data_dir / "conf"
        self.zk_data_dir = data_dir / "data"

    @property
    def hosts(self) -> str:
        """The kazoo / --zk connect string."""
        return f"{self.host}:{self.port}"

    def prepare(self) -> None:
        for jar in zookeeper_classpath():
            if not os.path.exists(jar):
                raise MissingDependencyError(f"{jar} not found: run `make deps` (Debian package zookeeper)")
        if not port_is_free(self.port, self.host):
            raise PortInUseError(f"cannot start ZooKeeper: port {self.host}:{self.port} is already in use")
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.zk_data_dir.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "zoo.cfg").write_text(
            "\n".join(
                [
                    "# written by minisql.localstack at every start",
                    "tickTime=1000",
                    "initLimit=10",
                    "syncLimit=5",
                    f"dataDir={self.zk_data_dir}",
                    f"clientPort={self.port}",
                    f"clientPortAddress={self.host}",
                    "minSessionTimeout=2000",
                    "maxSessionTimeout=60000",
                    "maxClientCnxns=0",
                    "admin.enableServer=false",
                    "4lw.commands.whitelist=ruok,stat",
                    "autopurge.snapRetainCount=3",
                    "autopurge.purgeInterval=1",
                    "",
                ]
            )
        )
        # slf4j-simple reads this from the classpath (conf_dir comes first).
        (self.conf_dir / "simplelogger.properties").write_text(
            "org.slf4j.simpleLogger.defaultLogLevel=info\n"
            "org.slf4j.simpleLogger.showDateTime=true\n"
            "org.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd HH:mm:ss.SSS\n"
            "org.slf4j.simpleLogger.log.org.apache.zookeeper.server.NIOServerCnxn=warn\n"
        )

    def command(self) -> list[str]:
        java = self.java or require_program("java", "default-jre-headless (pulled in by zookeeper)")
        return [
            java,
            f"-Xmx{self.heap}",
            "-XX:+UseSerialGC",
            "-Dzookeeper.admin.enableServer=false",
            "-Dzookeeper.jmx.log4j.disable=true",
            "-cp",
            ":".join([str(self.conf_dir), *zookeeper_classpath()]),
            ZOOKEEPER_MAIN,
            str(self.conf_dir / "zoo.cfg"),
        ]

    def four_letter(self, word: str, timeout: float = 2.0) -> str:
        """Send a four-letter command (ruok, stat) and return the whole answer."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            s.sendall(word.encode())
            chunks = []
            while True:
                data = s.recv(4096)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode("utf-8", "replace")

    def probe(self) -> bool:
        if self.four_letter("ruok", timeout=1.0).strip() != "imok":
            return False
        return "not currently serving" not in self.four_letter("stat", timeout=1.0)


# -- MariaDB -------------------------------------------------------------------------
def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "root" if os.geteuid() == 0 else str(os.geteuid())


def is_mariadb_datadir(path: str | os.PathLike[str]) -> bool:
    """True when `path` holds an installed MariaDB datadir (system tables present)."""
    mysql = Path(path) / "mysql"
    return mysql.is_dir() and any(mysql.glob("global_priv.*"))


def _staging_dir(target: Path, what: str) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.{what}-", dir=target.parent))


def _move_into_place(staging: Path, target: Path) -> None:
    if target.exists():
        if any(target.iterdir()):
            raise LocalStackError(f"{target} exists, is not empty and is not a MariaDB datadir; refusing to overwrite it")
        target.rmdir()
    os.rename(staging, target)


def _untraversable_dir(path: Path, account: pwd.struct_passwd, chowned: Iterable[Path] = ()) -> Path | None:
    """The first ancestor of `path` that `account` may not enter (None: all
    fine); directories in `chowned` will be its own, so they are fine.

    mariadbd switches to its user before it opens its datadir, error log and
    socket, so every directory above them must be searchable (x) for it; a
    0700 directory of root's (pytest's /tmp/pytest-of-root) is not.
    """
    groups = set(os.getgrouplist(account.pw_name, account.pw_gid))
    mine = set(chowned)
    for directory in reversed(path.parents):
        if directory in mine:
            continue
        try:
            st = directory.stat()
        except FileNotFoundError:
            return None  # created by us later, with our own permissions
        if st.st_uid == account.pw_uid:
            bit = 0o100
        elif st.st_gid in groups:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            return directory
    return None


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    """chown `path` and everything under it that is not already uid:gid."""
    def fix(p: str) -> None:
        st = os.lstat(p)
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.lchown(p, uid, gid)

    fix(str(path))
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            with contextlib.suppress(FileNotFoundError):
                fix(os.path.join(root, name))


_INSTALL_SERVER_OPTIONS = ("--innodb-buffer-pool-size=64M", "--innodb-log-file-size=16M")

#: the stack's choices a region's `server_options` (``minisql up --mariadb-option``) may override
DEFAULT_SERVER_OPTIONS = (
    "--skip-log-bin",
    *_INSTALL_SERVER_OPTIONS,
    "--max-connections=500",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_general_ci",
)


def install_mariadb_datadir(data_dir: str | os.PathLike[str], log_path: str | os.PathLike[str] | None = None) -> bool:
    """Run mariadb-install-db into `data_dir` unless it is already installed.

    Installs into a staging directory beside it and renames, so an interrupted
    install never leaves a half datadir behind.  Returns True if it installed.
    root@localhost (and the OS user) authenticate by unix socket.
    """
    target = Path(data_dir).resolve()
    if is_mariadb_datadir(target):
        return False
    install_db = require_program("mariadb-install-db", "mariadb-server")
    require_program("mariadbd", "mariadb-server")
    staging = _staging_dir(target, "installing")
    argv = [
        install_db,
        "--no-defaults",
        f"--datadir={staging}",
        f"--user={_os_user()}",
        "--auth-root-authentication-method=socket",
        "--skip-test-db",
        "--skip-name-resolve",
        *_INSTALL_SERVER_OPTIONS,
    ]
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
        if log_path is not None:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab") as fh:
                fh.write(f"\n=== mariadb-install-db into {target}\n".encode() + result.stdout)
        if result.returncode != 0 or not is_mariadb_datadir(staging):
            output = "\n".join(result.stdout.decode("utf-8", "replace").splitlines()[-30:])
            raise LocalStackError(f"mariadb-install-db failed for {target} (exit {result.returncode}):\n{output}")
        _move_into_place(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return True


class MariaDBProcess(ManagedProcess):
    """A private mariadbd on `data_dir`, listening on 127.0.0.1:`port` and a unix socket.

    Hardened, because the proxy forwards clients' SQL to it as the backend
    user, who holds ALL PRIVILEGES (FILE included):

    * ``--secure-file-priv`` is `secure_file_dir` (default: ``<data_dir>-files``
      beside the datadir, e.g. ``regions/r1/mysql-files``; not inside it, where
      MariaDB would take it for a database): ``SELECT ... INTO OUTFILE`` and
      ``LOAD_FILE()`` work there only, never on /etc or the datadir itself;
    * ``--local-infile=1``, managed: ``LOAD DATA LOCAL`` lets a server ask its
      *client* for a file; the regions' only client is the proxy, which
      answers only a request for its own client's LOAD DATA LOCAL, with the
      bytes that client sent (proxy/localinfile.py) -- never a file of the
      proxy's host;
    * when we run as root and the ``mysql`` system user exists (Debian's
      mariadb-server creates it), the datadir, socket directory, error log and
      files directory are chowned to it and mariadbd gets ``--user=mysql``, so
      a server compromise is not a root compromise.  If `mysql` cannot enter a
      directory above them (say a 0700 one of root's), it runs as root as
      before, with a warning.  `run_as`: "auto" (that rule), a user name, or
      None (never switch).  `run_user` says what it chose at the last start.

    `server_options` (``minisql up --mariadb-option``) are checked by
    `minisql.mariadb_options` (options the stack manages are refused) and
    override the stack's `DEFAULT_SERVER_OPTIONS` (charset, buffers, binlog
    off, max connections) but never the managed ones, which come after them
    on the command line.  `extra_args` come last, unchecked: for tests.

    ``start()`` installs the datadir first if needed (``mariadb-install-db``, or
    copy a template with `install_from_template`), waits until a query runs,
    then makes sure the backend account ``backend_user``@'127.0.0.1' and
    @'localhost' exists with ``backend_password`` and ALL PRIVILEGES WITH GRANT
    OPTION (when a password is given; re-applied at every start so a changed
    secrets file takes effect).  The pid file, socket and (by default) error log
    live in `data_dir`.
    """

    stop_timeout = 60.0

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int,
        *,
        host: str = LOOPBACK,
        socket_path: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        backend_user: str = DEFAULT_BACKEND_USER,
        backend_password: str | None = None,
        extra_args: Iterable[str] = (),
        server_options: Iterable[str] = (),
        name: str | None = None,
        secure_file_dir: str | os.PathLike[str] | None = None,
        run_as: str | None = "auto",
    ) -> None:
        data_dir = Path(data_dir).resolve()
        super().__init__(name or f"mariadb:{port}", log_path=log_path or data_dir / "mariadbd.err")
        self.data_dir = data_dir
        self.port = int(port)
        self.host = host
        self.backend_user = backend_user
        self.backend_password = backend_password
        self.extra_args = list(extra_args)
        self.server_options = parse_options(server_options)
        self.pid_file = data_dir / "mariadbd.pid"
        self._private_socket_dir = False
        if socket_path is None:
            socket_path = data_dir / "mysqld.sock"
            if len(str(socket_path)) > 100:  # sun_path is 108 bytes
                socket_path = Path(tempfile.mkdtemp(prefix="minisql-")) / "mysqld.sock"
                self._private_socket_dir = True
        self.socket = str(socket_path)
        self.secure_file_dir = (
            Path(secure_file_dir).resolve() if secure_file_dir is not None else data_dir.with_name(f"{data_dir.name}-files")
        )
        self.run_as = run_as
        self.run_user: str | None = None

    # installation -------------------------------------------------------------
    @property
    def installed(self) -> bool:
        return is_mariadb_datadir(self.data_dir)

    def install(self) -> bool:
        """mariadb-install-db unless installed; True if it installed."""
        return install_mariadb_datadir(self.data_dir, self.log_path)

    @staticmethod
    def create_template(template_dir: str | os.PathLike[str]) -> Path:
        """Install a datadir once to copy from (`install_from_template`)."""
        install_mariadb_datadir(template_dir)
        return Path(template_dir).resolve()

    def install_from_template(self, template_dir: str | os.PathLike[str]) -> bool:
        """Copy a never-started installed datadir instead of running
        mariadb-install-db (much faster).  No-op if already installed."""
        if self.installed:
            return False
        template = Path(template_dir)
        if not is_mariadb_datadir(template):
            raise LocalStackError(f"{template} is not an installed MariaDB datadir")
        staging = _staging_dir(self.data_dir, "copying")
        try:
            shutil.copytree(template, staging, dirs_exist_ok=True, symlinks=True)
            for leftover in ("mariadbd.pid", "mysqld.sock", "mariadbd.err"):
                with contextlib.suppress(FileNotFoundError):
                    (staging / leftover).unlink()
            _move_into_place(staging, self.data_dir)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return True

    # process -------------------------------------------------------------------
    def prepare(self) -> None:
        if not port_is_free(self.port, self.host):
            raise PortInUseError(f"cannot start MariaDB: port {self.host}:{self.port} is already in use")
        self.install()
        Path(self.socket).parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)  # stale socket of a killed server
        self.secure_file_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.secure_file_dir, 0o750)
        account = self._run_account()
        self.run_user = account.pw_name if account is not None else None
        if account is not None:
            uid, gid = account.pw_uid, account.pw_gid
            _chown_tree(self.data_dir, uid, gid)
            _chown_tree(self.secure_file_dir, uid, gid)
            if self._private_socket_dir:
                os.chown(Path(self.socket).parent, uid, gid)
            if self.log_path is not None:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                self.log_path.touch()
                os.chown(self.log_path, uid, gid)

    def _run_account(self) -> pwd.struct_passwd | None:
        """The account mariadbd should switch to (None: stay who we are); see class docstring."""
        if self.run_as is None or os.geteuid() != 0:
            return None
        name = MYSQL_SYSTEM_USER if self.run_as == "auto" else self.run_as
        try:
            account = pwd.getpwnam(name)
        except KeyError:
            if self.run_as != "auto":
                raise LocalStackError(f"cannot run {self.name} as {name!r}: no such user") from None
            return None
        if account.pw_uid == 0:
            return None
        needed = [self.data_dir, self.secure_file_dir, Path(self.socket)]
        if self.log_path is not None:
            needed.append(self.log_path.resolve())
        chowned = [self.data_dir, self.secure_file_dir]
        if self._private_socket_dir:
            chowned.append(Path(self.socket).parent)
        for path in needed:
            blocked = _untraversable_dir(path, account, chowned)
            if blocked is not None:
                log.warning(
                    "%s runs as root: user %s cannot enter %s (mode %o), above %s",
                    self.name, name, blocked, blocked.stat().st_mode & 0o777, path,
                )
                return None
        return account

    def command(self) -> list[str]:
        # Order matters: mariadbd keeps the last value of an option.  The
        # stack's defaults come first, the user's `server_options` next (so
        # they override those), then what the stack manages (listening,
        # paths, account, hardening), so nothing before can change it.
        managed = [
            f"--datadir={self.data_dir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            f"--bind-address={self.host}",
        ]
        if self.run_user is not None:
            managed.append(f"--user={self.run_user}")
        elif os.geteuid() == 0:
            managed.append("--user=root")
        managed += [
            f"--secure-file-priv={self.secure_file_dir}",
            "--local-infile=1",
            "--skip-name-resolve",
            f"--log-error={self.log_path}",
            f"--pid-file={self.pid_file}",
        ]
        return [
            require_program("mariadbd", "mariadb-server"),
            "--no-defaults",
            *merge_defaults(DEFAULT_SERVER_OPTIONS, self.server_options),
            *self.server_options,
            *managed,
            *self.extra_args,
        ]

    def root_connection(self, database: str | None = None, timeout: float = 5.0):
        """A PyMySQL connection as the administrative OS user over the unix socket."""
        import pymysql

        return pymysql.connect(
            unix_socket=self.socket,
            user=_os_user(),
            database=database,
            autocommit=True,
            connect_timeout=timeout,
            read_timeout=60,
            write_timeout=60,
            charset="utf8mb4",
        )

    def backend_connection(self, database: str | None = None, timeout: float = 5.0):
        """A PyMySQL connection as the backend user over TCP (as proxies connect)."""
        import pymysql

        if self.backend_password is None:
            raise LocalStackError(f"{self.name} has no backend password")
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.backend_user,
            password=self.backend_password,
            database=database,
            autocommit=True,
            connect_timeout=timeout,
            charset="utf8mb4",
        )

    def query(self, sql: str, args: object = None, database: str | None = None) -> list[tuple]:
        """Run one statement as root over the socket; returns all rows."""
        conn = self.root_connection(database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def probe(self) -> bool:
        if not os.path.exists(self.socket):
            return False
        return self.query("SELECT 1") == [(1,)]

    def after_ready(self) -> None:
        if self.backend_password is not None:
            self.ensure_backend_user()
            conn = self.backend_connection()  # the TCP listener serves too
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
            finally:
                conn.close()

    def ensure_backend_user(self) -> None:
        """Create or update backend_user@'127.0.0.1' and @'localhost' with full rights."""
        assert self.backend_password is not None
        conn = self.root_connection()
        try:
            with conn.cursor() as cur:
                for host in ("127.0.0.1", "localhost"):
                    cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (self.backend_user, host, self.backend_password))
                    cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (self.backend_user, host, self.backend_password))
                    cur.execute("GRANT ALL PRIVILEGES ON *.* TO %s@%s WITH GRANT OPTION", (self.backend_user, host))
        finally:
            conn.close()


__all__ = [
    "CommandProcess",
    "LocalStackError",
    "MariaDBProcess",
    "ManagedProcess",
    "MissingDependencyError",
    "PortInUseError",
    "ProcessStartError",
    "StartAborted",
    "ZooKeeperProcess",
    "find_program",
    "free_port",
    "free_ports",
    "install_mariadb_datadir",
    "is_mariadb_datadir",
    "port_accepts",
    "port_is_free",
    "tail",
    "wait_for_port",
]
