"""The process machinery under every launcher of `minisql.localstack`.

Split out of localstack so the generic part -- one child process with a log
file, a readiness probe and a clean stop, plus the port and program helpers
the launchers and tests share -- reads apart from what is specific to
ZooKeeper and MariaDB.  `minisql.localstack` re-exports every public name
here, so ``from minisql.localstack import free_port, ManagedProcess`` keeps
working.

* ``start()`` = ``launch()`` + ``wait_ready()``: it returns only once the server
  really serves (the subclass's ``probe()`` succeeds), and raises
  `ProcessStartError` with the log tail if the process dies or does not get
  ready in time (the half-started process is stopped first).
* ``stop()`` sends SIGTERM, waits, then SIGKILLs.  Children are *not* started in
  a new session (Ctrl-C in a terminal reaches them too), and nothing makes them
  die with their parent: whoever starts them must stop them.  An ``atexit``
  hook stops whatever is still running when the interpreter exits normally.

Everything a process writes goes to its ``log_path``, opened for append so
restarts keep the history.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
import weakref
from pathlib import Path
from typing import Callable

# Named after the module this code was split from, so log lines (which show
# the logger name) and any logging configuration stay exactly as before.
log = logging.getLogger("minisql.localstack")

LOOPBACK = "127.0.0.1"


# -- errors -------------------------------------------------------------------------
class LocalStackError(RuntimeError):
    """Base of every error raised here and in `minisql.localstack`."""


class MissingDependencyError(LocalStackError):
    """A program or jar this stack needs is not installed (run `make deps`)."""


class PortInUseError(LocalStackError):
    """A port a server must listen on is taken (is another stack running?)."""


class StartAborted(LocalStackError):
    """`should_abort` returned True while waiting for a process to get ready."""


class ProcessStartError(LocalStackError):
    """A process exited during start-up or did not get ready in time."""

    def __init__(self, name: str, reason: str, log_path: Path | None, log_tail: str) -> None:
        self.name = name
        self.reason = reason
        self.log_path = log_path
        self.log_tail = log_tail
        msg = f"{name} {reason}"
        if log_path is not None:
            msg += f"; log: {log_path}"
        if log_tail:
            msg += "\n--- last lines of the log ---\n" + log_tail
        super().__init__(msg)


# -- ports --------------------------------------------------------------------------
def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now (free_ports)."""
    return free_ports(1, host)[0]


_HANDED_OUT: set[int] = set()  # ports this process already chose (not bound yet, perhaps)


def _outside_ephemeral() -> tuple[int, int] | None:
    """A port range the kernel never hands to outgoing connections (None: unknown).

    A port chosen free is only bound later by the process that gets it; a
    port from the kernel's ephemeral range may meanwhile become the local
    end of some outgoing connection (seen in `make test`: a region agent's
    metrics port taken while the stack started).  Below that range it cannot."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        return None
    if low - 1 - 10_000 >= 4_000:
        return 10_000, low - 1
    if 65_535 - high >= 4_000:
        return high + 1, 65_535
    return None


def free_ports(count: int, host: str = LOOPBACK, span: int = 1) -> list[int]:
    """`count` distinct free ports (each the first of `span` free ones in a row),
    none chosen before by this process, outside the ephemeral range when it is known.

    A port is closed again before its user binds it, and the kernel may hand
    the same port to the next call: two components then got one metrics port
    (seen in `make test`).  So a port this process chose before is never
    chosen again."""
    outside = _outside_ephemeral()
    if outside is not None:
        rng = random.Random()
        ports: list[int] = []
        for _ in range(20_000):
            if len(ports) == count:
                break
            base = rng.randint(outside[0], outside[1] - span + 1)
            block = range(base, base + span)
            if all(p not in _HANDED_OUT and p not in ports and port_is_free(p, host) for p in block):
                ports.append(base)
                _HANDED_OUT.update(block)
        if len(ports) == count:
            return ports
        raise OSError(f"could not find {count} free ports on {host}")
    socks: list[socket.socket] = []
    ports = []
    try:
        for _ in range(count + 1000):
            if len(ports) == count:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)  # held: the next bind gets another port
            port = s.getsockname()[1]
            if port not in _HANDED_OUT:
                ports.append(port)
        if len(ports) < count:
            raise OSError(f"could not find {count} free ports on {host}")
        _HANDED_OUT.update(ports)
        return ports
    finally:
        for s in socks:
            s.close()


def free_port_block(count: int, host: str = LOOPBACK) -> int:
    """The first of `count` consecutive free ports (a proxy with N workers
    serves metrics on base .. base+N-1), none handed out before."""
    if _outside_ephemeral() is not None:
        return free_ports(1, host, span=count)[0]
    for _ in range(200):
        base = free_port(host)
        block = range(base, base + count)
        if base + count <= 65535 and all(p == base or (p not in _HANDED_OUT and port_is_free(p, host)) for p in block):
            _HANDED_OUT.update(block)
            return base
    raise OSError(f"could not find {count} consecutive free ports on {host}")


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when a server could listen on host:port now (SO_REUSEADDR, like servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def port_accepts(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(port: int, host: str = LOOPBACK, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not port_accepts(port, host):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing accepts connections on {host}:{port} after {timeout:.0f}s")
        time.sleep(0.1)


def tail(path: Path | str | None, lines: int = 30, start: int = 0) -> str:
    """The last `lines` lines of a text file from byte `start` on ("" if none)."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(start, size - 64 * 1024))
            data = fh.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def find_program(name: str, *extra_dirs: str) -> str | None:
    """`shutil.which` that also looks in sbin directories (mariadbd lives in /usr/sbin)."""
    found = shutil.which(name)
    if found:
        return found
    for d in (*extra_dirs, "/usr/sbin", "/usr/local/sbin", "/sbin"):
        candidate = os.path.join(d, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_program(name: str, package: str) -> str:
    """`find_program`, or MissingDependencyError naming the Debian package to install."""
    path = find_program(name)
    if path is None:
        raise MissingDependencyError(f"{name} not found: run `make deps` (Debian package {package})")
    return path


# -- the process base ----------------------------------------------------------------
_LIVE: "weakref.WeakSet[ManagedProcess]" = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_leftovers() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        with contextlib.suppress(Exception):
            if proc.alive:
                log.warning("stopping %s (pid %s) left running at exit", proc.name, proc.pid)
                proc.stop(timeout=10)


class ManagedProcess:
    """One child process with a log file, a readiness probe and a clean stop."""

    #: seconds `stop()` waits after SIGTERM before SIGKILL
    stop_timeout: float = 20.0
    #: seconds `start()` waits for readiness
    start_timeout: float = 60.0

    def __init__(
        self,
        name: str,
        *,
        log_path: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        self.name = name
        self.log_path = Path(log_path) if log_path is not None else None
        self.env = env
        self.cwd = str(cwd) if cwd is not None else None
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_fh = None
        self._log_offset = 0  # where the current run's output starts in log_path

    # subclasses -------------------------------------------------------------
    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Runs before every launch (write config files, install a datadir...)."""

    def probe(self) -> bool:
        """True once the process serves.  Runs repeatedly while starting."""
        return True

    def after_ready(self) -> None:
        """Runs once after the probe first succeeds (bootstrap accounts...)."""

    # state -------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    @property
    def argv(self) -> list[str]:
        return list(self.proc.args) if self.proc is not None else []  # type: ignore[arg-type]

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the current (or last) run wrote to its log."""
        return tail(self.log_path, lines, self._log_offset)

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.alive else "stopped"
        return f"<{type(self).__name__} {self.name} {state}>"

    # lifecycle ---------------------------------------------------------------
    def launch(self) -> None:
        """Start the process without waiting for it to serve."""
        if self.alive:
            raise LocalStackError(f"{self.name} is already running (pid {self.pid})")
        self.prepare()
        argv = self.command()
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._close_log()
            self._log_fh = open(self.log_path, "ab", buffering=0)
            self._log_offset = self._log_fh.tell()
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            self._log_fh.write(f"\n=== {stamp} starting {self.name}: {' '.join(argv)}\n".encode())
            out = self._log_fh
        else:
            out = subprocess.DEVNULL
        log.debug("starting %s: %s", self.name, " ".join(argv))
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=False,
            close_fds=True,
        )
        with _LIVE_LOCK:
            _LIVE.add(self)

    def wait_ready(self, timeout: float | None = None, should_abort: Callable[[], bool] | None = None) -> None:
        """Poll `probe()` until it succeeds; raise ProcessStartError if the process
        exits or `timeout` passes, StartAborted if `should_abort()` says so."""
        timeout = self.start_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is None:
                raise LocalStackError(f"{self.name} was never launched")
            code = self.proc.poll()
            if code is not None:
                raise ProcessStartError(self.name, f"exited during start-up with code {code}", self.log_path, self.log_tail())
            try:
                ready = self.probe()
            except Exception as exc:  # a probe error just means "not yet"
                log.debug("%s probe: %s", self.name, exc)
                ready = False
            if ready:
                break
            if should_abort is not None and should_abort():
                raise StartAborted(f"start of {self.name} aborted")
            if time.monotonic() > deadline:
                raise ProcessStartError(self.name, f"did not get ready within {timeout:.0f}s", self.log_path, self.log_tail())
            time.sleep(0.1)
        self.after_ready()

    def start(self, timeout: float | None = None, should_abort: Callable[[], bool] | None = None) -> "ManagedProcess":
        """Launch and wait until ready; on any failure the process is stopped again."""
        self.launch()
        try:
            self.wait_ready(timeout, should_abort)
        except BaseException:
            self.stop(timeout=10)
            raise
        return self

    def send_signal(self, sig: int) -> None:
        if self.alive:
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL now (a crash, for failure tests) and reap."""
        self.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()
        self._finished()

    def suspend(self) -> None:
        """SIGSTOP: the process hangs without exiting (session-expiry tests)."""
        self.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.send_signal(signal.SIGCONT)

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for exit; the exit code, or None if still running after `timeout`."""
        if self.proc is None:
            return None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._finished()
        return code

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, wait up to `timeout` seconds, then SIGKILL.  Idempotent."""
        if self.proc is None:
            return None
        timeout = self.stop_timeout if timeout is None else timeout
        if self.proc.poll() is None:
            self.resume()  # a stopped process cannot act on SIGTERM
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %s) ignored SIGTERM for %.0fs; killing it", self.name, self.pid, timeout)
                self.send_signal(signal.SIGKILL)
                self.proc.wait()
        self._finished()
        return self.proc.returncode

    def _finished(self) -> None:
        self._close_log()
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def _close_log(self) -> None:
        if self._log_fh is not None:
            with contextlib.suppress(OSError):
                self._log_fh.close()
            self._log_fh = None

    def __enter__(self) -> "ManagedProcess":
        if not self.alive:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = [
    "LOOPBACK",
    "LocalStackError",
    "ManagedProcess",
    "MissingDependencyError",
    "PortInUseError",
    "ProcessStartError",
    "StartAborted",
    "find_program",
    "free_port",
    "free_ports",
    "port_accepts",
    "port_is_free",
    "require_program",
    "tail",
    "wait_for_port",
]
