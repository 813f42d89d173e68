"""`minisql up`: the whole stack on one machine, supervised until Ctrl-C.

`LocalCluster` starts ZooKeeper, one MariaDB and region agent per region, the
master candidates and one or more proxies (each a `minisql.localstack`
process) and watches them: a child that dies is restarted with backoff
(minisql/supervise.py) while everything else keeps running -- a dead
region's MariaDB is the failure the cluster exists to survive.  Only a
signal (Ctrl-C, SIGTERM) stops everything, in reverse start order.  Several proxies (``--proxies N``) share ZooKeeper, the
secrets, the users file and the TLS certificate, so a client may use any of
them; they listen on consecutive ports from ``--port``.  Server options for
every region's MariaDB (``--mariadb-option``) are checked by
`minisql.mariadb_options` before anything starts.
It lives apart from the argparse entry point (`minisql.cli`) because it is a
supervisor with its own state: a lock file so two supervisors never share a
data dir, and ``run/up.json`` so children of a SIGKILLed supervisor are found
and stopped on the next run.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from .certs import ensure_local_tls
from .config import (
    BackendCredentials,
    ConfigError,
    ProxyUser,
    ZooKeeperCredentials,
    generate_password,
    load_backend_credentials,
    setup_logging,
    write_backend_credentials,
    write_private_json,
    write_users,
)
from .supervise import Backoff

log = logging.getLogger("minisql.up")

#: put on the children's PYTHONPATH so `python -m minisql.cli` finds every package
PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: proxies' metrics ports are base..base+N-1 and the masters' start at base+10
MAX_PROXIES = 10


def _pid_running(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z"


def _stamp() -> str:
    return time.strftime("%H:%M:%S")


class _StartupFailed(Exception):
    pass


class _Stopped(Exception):
    pass


class LocalCluster:
    """Supervises ZooKeeper, N MariaDB servers, N regions, the masters and the proxies."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data_dir = Path(args.data_dir).expanduser().resolve()
        self.logs_dir = self.data_dir / "logs"
        self.run_dir = self.data_dir / "run"
        self.secrets_path = self.data_dir / "secrets.json"
        self.users_path = self.data_dir / "users.json"
        self.region_ids = [f"r{k}" for k in range(1, args.regions + 1)]
        self.master_ids = [f"m{i}" for i in range(1, args.masters + 1)]
        self.proxy_ids = [f"p{i}" for i in range(1, args.proxies + 1)]
        base = args.metrics_base_port
        self.proxy_ports = {p: args.port + i for i, p in enumerate(self.proxy_ids)}
        workers = args.proxy_workers
        # worker w of proxy i serves metrics on base + i * workers + w (below the masters' base + 10)
        self.proxy_metrics_ports = {p: base + i * workers for i, p in enumerate(self.proxy_ids)}
        self.master_metrics_ports = {m: base + 10 + i for i, m in enumerate(self.master_ids)}
        self.region_metrics_ports = {r: base + 20 + k for k, r in enumerate(self.region_ids, start=1)}
        self.mysql_ports = {r: args.mysql_base_port + k for k, r in enumerate(self.region_ids)}
        self.zk_hosts = f"127.0.0.1:{args.zk_port}"
        # (group name, processes) in start order; stopped in reverse.
        self.groups: list[tuple[str, list[Any]]] = []
        # Set only by the signal handler (a plain flag: taking locks in a handler can deadlock).
        self._stopping = False
        self._signal_count = 0
        self._lock_fh: Any = None

    # -- signals ------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: object) -> None:
        # os.write, not print: a handler may interrupt a print to the same stream.
        self._signal_count += 1
        if self._signal_count == 1:
            msg = f"\nminisql up: {signal.Signals(signum).name} received, stopping...\n"
        else:
            msg = "minisql up: signal again: killing what does not stop at once\n"
        with contextlib.suppress(OSError):
            os.write(sys.stderr.fileno(), msg.encode())
        self._stopping = True

    def _check_stop(self) -> None:
        if self._stopping:
            raise _Stopped()

    # -- preparation ---------------------------------------------------------------
    def _lock(self) -> None:
        path = self.data_dir / "up.lock"
        self._lock_fh = open(path, "a+")
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_fh.seek(0)
            holder = self._lock_fh.read().strip() or "?"
            raise _StartupFailed(f"another `minisql up` (pid {holder}) is already running on {self.data_dir}") from None
        self._lock_fh.seek(0)
        self._lock_fh.truncate()
        self._lock_fh.write(f"{os.getpid()}\n")
        self._lock_fh.flush()

    def _ensure_files(self) -> BackendCredentials:
        if not self.secrets_path.exists():
            write_backend_credentials(
                self.secrets_path, BackendCredentials("minisql", generate_password()), ZooKeeperCredentials.generate()
            )
            log.info("wrote new backend and ZooKeeper credentials to %s", self.secrets_path)
        else:
            self._add_zk_credentials()
        if not self.users_path.exists():
            # The local stack listens on loopback only: root without a password.
            write_users(self.users_path, {"root": ProxyUser("root", "")})
            log.info("wrote %s (user root, empty password)", self.users_path)
        try:
            return load_backend_credentials(self.secrets_path)
        except ConfigError as exc:
            raise _StartupFailed(str(exc)) from None

    def _add_zk_credentials(self) -> None:
        """A data dir from before ZooKeeper ACLs: add the ZooKeeper identities.

        Only missing keys are added; everything else in the file is kept as
        it is.  The znodes stay world-open until the first process with the
        new identity starts and secures them (Topology.start).
        """
        try:
            doc = json.loads(self.secrets_path.read_text())
        except (OSError, ValueError) as exc:
            raise _StartupFailed(f"cannot read {self.secrets_path}: {exc}") from None
        if not isinstance(doc, dict):
            raise _StartupFailed(f"{self.secrets_path} must hold a JSON object")
        missing = {k: v for k, v in ZooKeeperCredentials.generate().to_dict().items() if not doc.get(k)}
        if not missing:
            return
        write_private_json(self.secrets_path, {**doc, **missing})
        log.info("added ZooKeeper credentials (%s) to %s", ", ".join(sorted(missing)), self.secrets_path)

    def _state_path(self) -> Path:
        return self.run_dir / "up.json"

    def _proxy_name(self, p: str) -> str:
        """"proxy" alone (its log stays logs/proxy.log), else "proxy-p1", "proxy-p2", ..."""
        return "proxy" if len(self.proxy_ids) == 1 else f"proxy-{p}"

    def _write_state(self) -> None:
        children = [
            {"name": p.name, "pid": p.pid, "argv": p.argv}
            for _, procs in self.groups
            for p in procs
            if p.pid is not None
        ]
        # What `minisql status --data-dir` lists: proxies do not register in ZooKeeper.
        proxies = [
            {"id": p, "name": self._proxy_name(p), "host": "127.0.0.1", "port": self.proxy_ports[p],
             "metrics_port": self.proxy_metrics_ports[p]}
            for p in self.proxy_ids
        ]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._state_path().with_suffix(".tmp")
        state = {"supervisor_pid": os.getpid(), "children": children, "proxies": proxies}
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self._state_path())

    def _stop_leftovers(self) -> None:
        """Stop children a previous supervisor left running (it was SIGKILLed).

        Only processes whose command line is exactly the one recorded are touched.
        """
        try:
            state = json.loads(self._state_path().read_text())
        except (OSError, ValueError):
            return
        leftovers: list[int] = []
        for child in state.get("children", []):
            pid, argv = child.get("pid"), child.get("argv")
            if not isinstance(pid, int) or not argv or not _pid_running(pid):
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
            except OSError:
                continue
            if [c.decode("utf-8", "replace") for c in cmdline] != argv:
                continue
            print(f"minisql up: stopping {child.get('name')} (pid {pid}) left over from a previous run", file=sys.stderr)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            leftovers.append(pid)
        deadline = time.monotonic() + 60
        while any(_pid_running(pid) for pid in leftovers):
            if time.monotonic() > deadline or self._signal_count >= 2:
                break
            time.sleep(0.1)
        for pid in leftovers:
            if _pid_running(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def wanted_ports(self) -> list[tuple[int, str]]:
        """Every port the stack listens on, with who wants it (in start order)."""
        wanted = [(self.args.zk_port, "ZooKeeper (--zk-port)")]
        wanted += [(p, f"MariaDB of {r} (--mysql-base-port)") for r, p in self.mysql_ports.items()]
        many = len(self.proxy_ids) > 1
        for p in self.proxy_ids:
            who = f"proxy {p}" if many else "proxy"
            wanted.append((self.proxy_ports[p], f"{who} (--port)"))
            for w in range(self.args.proxy_workers):
                wanted.append((self.proxy_metrics_ports[p] + w, f"{who} metrics (--metrics-base-port)"))
        wanted += [(p, f"metrics of {m} (--metrics-base-port)") for m, p in self.master_metrics_ports.items()]
        wanted += [(p, f"metrics of region {r} (--metrics-base-port)") for r, p in self.region_metrics_ports.items()]
        return wanted

    def port_conflicts(self) -> list[str]:
        """Why the chosen ports cannot work together ([]: they can)."""
        problems = []
        owner: dict[int, str] = {}
        for port, what in self.wanted_ports():
            if not 1 <= port <= 65535:
                problems.append(f"{what} would be port {port}, outside 1..65535")
            elif port in owner:
                problems.append(f"port {port} is wanted by both {owner[port]} and {what}")
            else:
                owner[port] = what
        return problems

    def _check_ports(self) -> None:
        from .localstack import port_is_free

        conflicts = self.port_conflicts()
        if conflicts:
            raise _StartupFailed("the chosen ports overlap: " + "; ".join(conflicts) + " -- pick bases further apart")
        busy = [f"{port} ({what})" for port, what in sorted(self.wanted_ports()) if not port_is_free(port)]
        if busy:
            raise _StartupFailed("ports already in use: " + ", ".join(busy) + " -- is another stack running?")

    # -- start ------------------------------------------------------------------------
    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        return env

    def _component(self, name: str, sub: str, extra: list[str], ready_port: int | None = None) -> Any:
        from .localstack import CommandProcess

        argv = [
            sys.executable,
            "-m",
            "minisql.cli",
            sub,
            "--zk",
            self.zk_hosts,
            "--zk-root",
            self.args.zk_root,
            "--log-level",
            self.args.log_level,
            *extra,
        ]
        return CommandProcess(
            name,
            argv,
            log_path=self.logs_dir / f"{name}.log",
            env=self._child_env(),
            cwd=self.data_dir,
            ready_port=ready_port,
            min_uptime=1.0,
        )

    def _start_group(self, group: str, procs: list[Any], timeout: float) -> None:
        self.groups.append((group, procs))
        for p in procs:
            self._check_stop()
            log.info("starting %s", p.name)
            p.launch()
            self._write_state()
        for p in procs:
            p.wait_ready(timeout=timeout, should_abort=lambda: self._stopping)

    def _start(self, creds: BackendCredentials) -> None:
        from .localstack import MariaDBProcess, ZooKeeperProcess

        zk = ZooKeeperProcess(self.data_dir / "zookeeper", self.args.zk_port, log_path=self.logs_dir / "zookeeper.log")
        zk.name = "zookeeper"
        self._start_group("zookeeper", [zk], timeout=90)
        log.info("ZooKeeper serves on %s", self.zk_hosts)

        mysqls = []
        for r in self.region_ids:
            m = MariaDBProcess(
                self.data_dir / "regions" / r / "mysql",
                self.mysql_ports[r],
                log_path=self.logs_dir / f"mysql-{r}.log",
                backend_user=creds.user,
                backend_password=creds.password,
                server_options=self.args.mariadb_options,
                name=f"mysql-{r}",
            )
            if not m.installed:
                self._check_stop()
                log.info("installing MariaDB datadir %s", m.data_dir)
                m.install()
            mysqls.append(m)
        self._start_group("mariadb", mysqls, timeout=120)
        log.info("MariaDB serves on ports %s", ", ".join(str(p) for p in self.mysql_ports.values()))

        regions = [
            self._component(
                f"region-{r}",
                "region",
                [
                    "--id",
                    r,
                    "--mysql-host",
                    "127.0.0.1",
                    "--mysql-port",
                    str(self.mysql_ports[r]),
                    "--metrics-port",
                    str(self.region_metrics_ports[r]),
                    "--secrets",
                    str(self.secrets_path),
                    "--advertise-host",
                    "127.0.0.1",
                ],
            )
            for r in self.region_ids
        ]
        self._start_group("regions", regions, timeout=60)

        masters = [
            self._component(
                f"master-{m}", "master",
                ["--id", m, "--metrics-port", str(self.master_metrics_ports[m]), "--advertise-host", "127.0.0.1",
                 "--secrets", str(self.secrets_path)],
            )
            for m in self.master_ids
        ]
        self._start_group("masters", masters, timeout=60)

        self.tls = ensure_local_tls(self.data_dir / "tls")  # client TLS: local CA + server certificate
        proxies = [
            self._component(
                self._proxy_name(p), "proxy",
                [*self.tls.proxy_args(), "--host", "127.0.0.1", "--port", str(self.proxy_ports[p]),
                 "--metrics-port", str(self.proxy_metrics_ports[p]), "--workers", str(self.args.proxy_workers),
                 "--secrets", str(self.secrets_path), "--users", str(self.users_path)],
                ready_port=self.proxy_ports[p],
            )
            for p in self.proxy_ids
        ]
        self._start_group("proxy", proxies, timeout=60)

    def _banner(self) -> str:
        regions = ", ".join(f"{r} -> MariaDB 127.0.0.1:{self.mysql_ports[r]}" for r in self.region_ids)
        masters = ", ".join(f"{m} :{p}" for m, p in self.master_metrics_ports.items())
        region_metrics = ", ".join(f"{r} :{p}" for r, p in self.region_metrics_ports.items())
        if len(self.proxy_ids) == 1:
            proxy_metrics = f"proxy :{self.proxy_metrics_ports[self.proxy_ids[0]]}"
        else:
            proxy_metrics = "proxies " + ", ".join(f"{p} :{port}" for p, port in self.proxy_metrics_ports.items())
        zk_arg = "" if self.zk_hosts == "127.0.0.1:2181" else f" --zk {self.zk_hosts}"
        root_arg = "" if self.args.zk_root == "/minisql" else f" --zk-root {self.args.zk_root}"
        return "\n".join(
            [
                f"MiniSQL Cluster is up (data in {self.data_dir})",
                f"  connect:   mariadb -h 127.0.0.1 -P {self.args.port} -u root",
                *(
                    ["  proxies:   " + ", ".join(f"{p} 127.0.0.1:{port}" for p, port in self.proxy_ports.items())
                     + " (any of them: same accounts and tables)"]
                    if len(self.proxy_ids) > 1 else []
                ),
                *(
                    [f"  with TLS:  mariadb -h 127.0.0.1 -P {self.args.port} -u root --ssl-ca={tls.ca} --ssl-verify-server-cert"]
                    if (tls := getattr(self, "tls", None)) is not None else []
                ),
                f"  status:    minisql status{zk_arg}{root_arg} --data-dir {self.data_dir}",
                f"  zookeeper: {self.zk_hosts}",
                f"  regions:   {regions}",
                *(
                    ["  mariadbd:  " + " ".join(self.args.mariadb_options) + " (on every region)"]
                    if self.args.mariadb_options else []
                ),
                f"  metrics:   {proxy_metrics}; masters {masters}; regions {region_metrics}",
                f"  logs:      {self.logs_dir}/",
                "Press Ctrl-C to stop everything.",
            ]
        )

    # -- run / monitor / stop --------------------------------------------------------
    def _report_failure(self, name: str, reason: str, log_path: Path | None, log_tail: str) -> None:
        print(f"\nminisql up: {name} {reason}", file=sys.stderr)
        if log_path is not None:
            print(f"minisql up: last lines of {log_path}:", file=sys.stderr)
            for line in (log_tail or "(empty)").splitlines():
                print(f"    {line}", file=sys.stderr)
        print("minisql up: stopping the rest of the stack", file=sys.stderr, flush=True)

    def _report_exit(self, name: str, reason: str, log_path: Path | None, log_tail: str, delay: float) -> None:
        print(f"\n{_stamp()} minisql up: {name} {reason}; restarting it in {delay:.0f} s (the rest keeps running)",
              file=sys.stderr)
        if log_path is not None:
            print(f"minisql up: last lines of {log_path}:", file=sys.stderr)
            for line in (log_tail or "(empty)").splitlines()[-15:]:
                print(f"    {line}", file=sys.stderr)
        sys.stderr.flush()

    def _monitor(self) -> int:
        """Until a signal: restart any child that exits, with backoff
        (minisql/supervise.py); the rest of the stack keeps running."""
        from .localstack import LocalStackError

        now = time.monotonic()
        schedule = {id(p): Backoff(started_at=now) for _, procs in self.groups for p in procs}
        while not self._stopping:
            now = time.monotonic()
            for _, procs in self.groups:
                for p in procs:
                    backoff = schedule[id(p)]
                    if backoff.due is None:
                        code = p.returncode
                        if code is None or self._stopping:
                            continue
                        p.stop()  # reap it, close its log
                        delay = backoff.died(now)
                        self._report_exit(p.name, f"exited unexpectedly with code {code}", p.log_path, p.log_tail(), delay)
                    elif backoff.ready(now) and not self._stopping:
                        try:
                            p.launch()
                        except (LocalStackError, OSError) as exc:
                            delay = backoff.died(now)
                            print(f"{_stamp()} minisql up: could not restart {p.name}: {exc}; trying again in {delay:.0f} s",
                                  file=sys.stderr, flush=True)
                            continue
                        backoff.launched(now)
                        self._write_state()
                        print(f"{_stamp()} minisql up: restarted {p.name} (pid {p.pid}, restart #{backoff.restarts})",
                              file=sys.stderr, flush=True)
            for _ in range(5):
                if self._stopping:
                    break
                time.sleep(0.1)
        return 0

    def _shutdown(self) -> None:
        timeouts = {"proxy": 15.0, "masters": 15.0, "regions": 15.0, "mariadb": 60.0, "zookeeper": 20.0}
        for group, procs in reversed(self.groups):
            running = [p for p in procs if p.alive]
            if not running:
                for p in procs:
                    p.stop()  # reap and close logs
                continue
            log.info("stopping %s", ", ".join(p.name for p in running))
            for p in running:
                p.resume()
                p.terminate()
            deadline = time.monotonic() + timeouts.get(group, 15.0)
            while any(p.alive for p in running):
                if time.monotonic() > deadline or self._signal_count >= 2:
                    for p in running:
                        if p.alive:
                            print(f"minisql up: killing {p.name} (pid {p.pid})", file=sys.stderr)
                            p.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.05)
            for p in procs:
                p.stop(timeout=10)
        if not self.groups:
            return
        left = [p.name for _, procs in self.groups for p in procs if p.alive]
        if left:
            print(f"minisql up: still running: {', '.join(left)}", file=sys.stderr)
        else:
            print("minisql up: all processes stopped", file=sys.stderr, flush=True)

    def run(self) -> int:
        from .localstack import LocalStackError, ProcessStartError, StartAborted

        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        code = 1
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.logs_dir.mkdir(exist_ok=True)
            self._lock()
            self._stop_leftovers()
            creds = self._ensure_files()
            self._check_ports()
            self._start(creds)
            self._check_stop()
            print(self._banner(), flush=True)
            code = self._monitor()
        except (_Stopped, StartAborted):
            code = 0 if self._signal_count else 1
        except ProcessStartError as exc:
            if self._stopping:  # e.g. Ctrl-C reached the children too
                code = 0
            else:
                self._report_failure(exc.name, exc.reason, exc.log_path, exc.log_tail)
                code = 1
        except (_StartupFailed, LocalStackError, ConfigError) as exc:
            if self._stopping:  # an install interrupted by Ctrl-C, ...
                code = 0
            else:
                print(f"minisql up: error: {exc}", file=sys.stderr, flush=True)
                code = 1
        except BaseException:
            log.exception("minisql up: unexpected error")
            code = 1
        finally:
            try:
                self._shutdown()
            finally:
                with contextlib.suppress(Exception):
                    self._write_state()
                for s, h in old.items():
                    signal.signal(s, h)
                if self._lock_fh is not None:
                    self._lock_fh.close()
        return code


def run_up(args: argparse.Namespace) -> int:
    """The `minisql up` command: check the counts, then supervise until stopped.

    (The --mariadb-option values were already checked by the parser.)
    """
    setup_logging(args.log_level)
    if not 1 <= args.regions <= 50:
        print("minisql up: --regions must be between 1 and 50", file=sys.stderr)
        return 2
    if not 1 <= args.masters <= 10:
        print("minisql up: --masters must be between 1 and 10", file=sys.stderr)
        return 2
    if not 1 <= args.proxies <= MAX_PROXIES:
        print(f"minisql up: --proxies must be between 1 and {MAX_PROXIES}", file=sys.stderr)
        return 2
    if not 1 <= args.proxy_workers or args.proxies * args.proxy_workers > MAX_PROXIES:
        print(f"minisql up: --proxies x --proxy-workers must be between 1 and {MAX_PROXIES}", file=sys.stderr)
        return 2
    return LocalCluster(args).run()
