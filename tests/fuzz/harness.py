"""The fuzz runner and its oracle.

Runs the seeded case stream (`generators.stream`) against a live proxy until an
input count or a time budget runs out, and after every single input asks:

* does a separate steady client (PyMySQL, logged in) get `SELECT 1` answered
  within the deadline?  A miss is a *hang* (the proxy's one event loop is
  stuck: every client of the gateway is down);
* is the proxy process alive?  If not, a *crash*;
* is its RSS (/proc/<pid>/status VmRSS) under the bound?  The peak is recorded;
* pre-auth cases: did the connection, which never authenticated validly, get an
  OK or a result set?  After the input the runner also sends, on that same
  connection, an UPDATE of the canary table and a COM_PING, so a failed login
  that silently became a session shows (and the canary check catches the write);
* cases that are valid input (a login or `SELECT 1` split across TCP segments)
  must be answered.

The check runs per input, not per batch, so each failure names its input
exactly.  After a hang or a crash the runner SIGKILLs the proxy (a spinning
event loop never handles SIGTERM) and starts it again, so one run can find
several distinct failures; the restarts are bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pymysql

from . import generators as g
from . import mysqlproto as mp

MB = 1 << 20
CANARY_DB = "fuzzcanary"
CANARY_ROWS = 50
# Families that only appear in the fixed corpus (they can be excluded, not selected alone).
KNOWN_CASE_FAMILIES = {"pre.killer", "pre.silent"}


@dataclass
class FuzzConfig:
    """Everything tunable, from the environment (see `from_env`)."""

    seed: int = 20240611
    budget: float = 30.0  # seconds of fuzzing
    max_inputs: int = 100_000
    deadline: float = 2.0  # steady client's SELECT 1 bound: a hang is forever, a busy 2-core CI box is < 2 s
    max_rss_mb: int = 512
    reply_wait: float = 0.25  # quiet time after which a case's reply is considered complete
    oversized_mb: int = 48
    max_restarts: int = 8
    idle_connections: int = 20
    families: list[str] = field(default_factory=lambda: list(g.FAMILIES))
    exclude: list[str] = field(default_factory=list)

    @classmethod
    def from_env(cls, **defaults: Any) -> "FuzzConfig":
        cfg = cls(**defaults)
        env = os.environ
        cfg.seed = int(env.get("MINISQL_FUZZ_SEED", cfg.seed))
        cfg.budget = float(env.get("MINISQL_FUZZ_BUDGET", cfg.budget))
        cfg.max_inputs = int(env.get("MINISQL_FUZZ_INPUTS", cfg.max_inputs))
        cfg.deadline = float(env.get("MINISQL_FUZZ_DEADLINE", cfg.deadline))
        cfg.max_rss_mb = int(env.get("MINISQL_FUZZ_MAX_RSS_MB", cfg.max_rss_mb))
        cfg.oversized_mb = int(env.get("MINISQL_FUZZ_OVERSIZED_MB", cfg.oversized_mb))
        cfg.max_restarts = int(env.get("MINISQL_FUZZ_MAX_RESTARTS", cfg.max_restarts))
        if env.get("MINISQL_FUZZ_FAMILIES"):
            wanted = env["MINISQL_FUZZ_FAMILIES"]
            cfg.families = list(g.FAMILIES) if wanted == "all" else [f for f in wanted.split(",") if f]
            cfg.exclude = []
        unknown = set(cfg.families) - set(g.FAMILIES) - KNOWN_CASE_FAMILIES
        if unknown:
            raise ValueError(f"unknown fuzz families {sorted(unknown)}; known: {list(g.FAMILIES)}")
        return cfg

    @property
    def selected(self) -> list[str]:
        return [f for f in self.families if f not in self.exclude and f in g.FAMILIES]


@dataclass
class Report:
    seed: int
    families: list[str]
    inputs: int = 0
    per_family: dict[str, int] = field(default_factory=dict)
    hangs: int = 0
    crashes: int = 0
    unauth_answers: int = 0
    valid_unanswered: int = 0
    rss_over_bound: int = 0
    oversized_accepted: int = 0
    restarts: int = 0
    sql_dropped: int = 0  # observation only: COM_QUERY inputs answered by closing the connection
    baseline_rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    steady_checks: int = 0
    steady_max_ms: float = 0.0
    elapsed_s: float = 0.0
    stopped_because: str = ""
    canary_ok: bool | None = None
    copies_consistent: bool | None = None
    failures: list[dict] = field(default_factory=list)
    rss_steps: list[dict] = field(default_factory=list)

    def add_failure(self, kind: str, case: g.Case | None, detail: str, limit_per_kind: int = 10) -> None:
        same = [f for f in self.failures if f["kind"] == kind and (case is None or f.get("family") == case.family)]
        if len(same) >= limit_per_kind:
            return
        entry = {"kind": kind, "detail": detail}
        if case is not None:
            entry.update(case.describe())
        self.failures.append(entry)

    @property
    def ok(self) -> bool:
        return not (self.hangs or self.crashes or self.unauth_answers or self.valid_unanswered or self.rss_over_bound
                    or self.canary_ok is False or self.copies_consistent is False)

    def summary(self) -> str:
        return (f"fuzz seed={self.seed} inputs={self.inputs} hangs={self.hangs} crashes={self.crashes} "
                f"unauth_answers={self.unauth_answers} valid_unanswered={self.valid_unanswered} "
                f"rss_over_bound={self.rss_over_bound} sql_dropped={self.sql_dropped} peak_rss_mb={self.peak_rss_mb:.1f} "
                f"(baseline {self.baseline_rss_mb:.1f}) restarts={self.restarts} steady_max_ms={self.steady_max_ms:.1f} "
                f"canary_ok={self.canary_ok} copies_consistent={self.copies_consistent} elapsed={self.elapsed_s:.1f}s "
                f"stopped: {self.stopped_because}")

    def write(self, *paths: Path | str | None) -> None:
        text = json.dumps(self.__dict__, indent=2, default=str)
        for p in paths:
            if p:
                Path(p).parent.mkdir(parents=True, exist_ok=True)
                Path(p).write_text(text)


def fuzz_source(index: int) -> str:
    """A source address of its own for each fuzz connection, anywhere in 127.1.0.0 -
    127.254.255.255 (Linux routes all of 127/8 to lo).

    Why: the proxy throttles failed logins per client host (growing delays, then a
    block), success and failure alike.  Thousands of failed pre-auth logins from
    127.0.0.1 would slow down and then lock out the steady client and the post-auth
    fuzzer, which must keep logging in from 127.0.0.1.  Fuzzing the parser is the
    goal here, not the throttle (which has its own tests)."""
    return f"127.{1 + (index >> 16) % 254}.{(index >> 8) & 255}.{index & 255}"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Runner:
    """One fuzz run against `cluster` (a tests.integration.cluster.Cluster)."""

    def __init__(self, cluster: Any, cfg: FuzzConfig, log: Callable[[str], None] = print) -> None:
        self.cluster = cluster
        self.cfg = cfg
        self.log = log
        self.host, self.port = "127.0.0.1", cluster.proxy_port
        self.report = Report(seed=cfg.seed, families=cfg.selected)
        self.steady: pymysql.connections.Connection | None = None
        self.sql_client: mp.RawClient | None = None
        self.idle: list[socket.socket] = []

    # -- the proxy process ---------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self.cluster.proxy.pid

    def restart_proxy(self, why: str) -> None:
        """SIGKILL (only our own proxy child, by pid) and start it again."""
        self.report.restarts += 1
        self.log(f"restarting the proxy after {why}; log tail:\n{self.cluster.proxy.log_tail(15)}")
        self._drop_clients()
        proxy = self.cluster.proxy
        if proxy.alive:
            os.kill(proxy.pid, signal.SIGKILL)
        proxy.stop(timeout=10)
        proxy.start(timeout=60)

    def _drop_clients(self) -> None:
        for s in self.idle:
            s.close()
        self.idle.clear()
        if self.sql_client:
            self.sql_client.close()
            self.sql_client = None
        if self.steady is not None:
            try:
                self.steady.close()
            except Exception:  # noqa: BLE001 - already broken
                pass
            self.steady = None

    # -- the oracle ------------------------------------------------------------------------
    def _steady_connect(self) -> pymysql.connections.Connection:
        return pymysql.connect(host=self.host, port=self.port, user=g.FUZZ_USER, password=g.FUZZ_PASSWORD,
                               connect_timeout=self.cfg.deadline, read_timeout=self.cfg.deadline,
                               write_timeout=self.cfg.deadline, autocommit=True)

    def steady_ok(self) -> tuple[bool, str]:
        """SELECT 1 within the deadline, reconnecting once if the connection was dropped."""
        started = time.monotonic()
        for attempt in (1, 2):
            try:
                if self.steady is None:
                    self.steady = self._steady_connect()
                with self.steady.cursor() as cur:
                    cur.execute("SELECT 1")
                    row = cur.fetchone()
                took = time.monotonic() - started
                self.report.steady_checks += 1
                self.report.steady_max_ms = max(self.report.steady_max_ms, took * 1000)
                if row != (1,):
                    return False, f"SELECT 1 returned {row!r}"
                if took > self.cfg.deadline:
                    return False, f"SELECT 1 took {took:.2f}s > {self.cfg.deadline}s"
                return True, ""
            except Exception as e:  # noqa: BLE001 - any failure is an observation
                self.steady = None
                if attempt == 2 or time.monotonic() - started > self.cfg.deadline:
                    return False, f"{type(e).__name__}: {e}"
        return False, "unreachable"

    def check(self, case: g.Case | None) -> bool:
        """The per-input oracle; returns False when the proxy had to be restarted."""
        alive = self.cluster.proxy.alive
        if alive:
            rss = rss_mb(self.pid)
            if rss > self.report.peak_rss_mb + 8 and case is not None:
                # Which inputs made the proxy grow: the first place to look when the bound trips.
                self.report.rss_steps.append({"index": case.index, "family": case.family, "note": case.note[:80],
                                              "rss_mb": round(rss, 1)})
            self.report.peak_rss_mb = max(self.report.peak_rss_mb, rss)
            if rss > self.cfg.max_rss_mb:
                self.report.rss_over_bound += 1
                self.report.add_failure("rss", case, f"proxy RSS {rss:.0f} MiB > {self.cfg.max_rss_mb} MiB")
                self.restart_proxy("RSS over bound")
                return False
            ok, why = self.steady_ok()
            alive = self.cluster.proxy.alive
            if ok:
                return True
            if alive:
                self.report.hangs += 1
                self.report.add_failure("hang", case, f"steady client: {why}")
                self.restart_proxy(f"a hang ({why})")
                return False
        self.report.crashes += 1
        self.report.add_failure("crash", case, f"proxy exited with {self.cluster.proxy.returncode}")
        self.restart_proxy("a crash")
        return False

    # -- running one case ------------------------------------------------------------------
    def _connect(self, source: str | None = None) -> mp.RawClient:
        client = mp.RawClient(self.host, self.port, timeout=self.cfg.deadline, source=source)
        client.read_handshake(self.cfg.deadline)
        return client

    def _write(self, client: mp.RawClient, case: g.Case, reply: mp.Reply) -> None:
        if case.build is not None:
            assert client.handshake is not None
            case.chunks = case.build(client.handshake.nonce)
        if case.stream is not None:
            for part in case.stream():
                if not client.send(part):
                    reply.send_failed = True
                    return
            return
        for data, pause in case.chunks:
            if not client.send(data, pause):
                reply.send_failed = True
                return

    def run_case(self, case: g.Case) -> None:
        if case.phase == "idle":
            self._open_idle()
            return
        if case.phase == "sql":
            self._run_sql(case)
            return
        wait = case.wait or self.cfg.reply_wait
        if case.expect == g.EXPECT_ANSWER:
            wait = max(wait, self.cfg.deadline)  # a valid input: give a busy proxy the steady client's time
        with self._connect(fuzz_source(case.index)) as client:
            if case.phase == "post":
                client.login(g.FUZZ_USER, g.FUZZ_PASSWORD, database="fuzzdb", timeout=self.cfg.deadline)
            reply = mp.Reply()
            self._write(client, case, reply)
            if case.stream is not None:
                wait = max(wait, 2.0)
            client.collect(reply, wait)
            if case.phase == "pre" and case.expect != g.EXPECT_ANSWER and not reply.closed:
                # A failed login must not leave a session behind: try to use one, on the canary.
                probe = f"UPDATE {CANARY_DB}.canary SET v = 'unauthenticated' WHERE id = {case.index % CANARY_ROWS + 1}"
                if client.send(mp.packet(b"\x03" + probe.encode(), 0)):
                    client.collect(reply, wait)
                if not reply.closed and client.send(mp.packet(b"\x0e", 0)):
                    client.collect(reply, wait)
        self._judge(case, reply)

    def _judge(self, case: g.Case, reply: mp.Reply) -> None:
        payloads = [p for _, p in reply.packets]
        if case.phase == "pre" and case.expect != g.EXPECT_ANSWER and any(mp.is_answer(p) for p in payloads):
            self.report.unauth_answers += 1
            first = next(p for p in payloads if mp.is_answer(p))
            self.report.add_failure("unauth_answer", case, f"answered without authentication: {first[:40].hex()} "
                                    f"(all replies: {[p[:12].hex() for p in payloads][:6]})")
        if case.expect == g.EXPECT_ANSWER and not any(mp.is_answer(p) for p in payloads):
            self.report.valid_unanswered += 1
            self.report.add_failure("valid_unanswered", case, f"valid input not answered: replies {[p[:40].hex() for p in payloads]}, "
                                    f"closed={reply.closed} timed_out={reply.timed_out} send_failed={reply.send_failed}")
        if case.expect == g.EXPECT_BOUNDED and not reply.send_failed:
            # The proxy read every byte of an oversized packet; the RSS bound decides if that hurt.
            self.report.oversized_accepted += 1

    def _open_idle(self) -> None:
        """Connections that send nothing (half read the handshake, half not); kept open
        for the rest of the run, so later checks run with them in place."""
        for i in range(self.cfg.idle_connections):
            s = socket.create_connection((self.host, self.port), timeout=self.cfg.deadline,
                                         source_address=(fuzz_source(1_000_000 + len(self.idle)), 0))
            if i % 2:
                try:
                    s.recv(4096)
                except OSError:
                    pass
            self.idle.append(s)

    def _run_sql(self, case: g.Case) -> None:
        if self.sql_client is None:
            self.sql_client = self._connect()
            self.sql_client.login(g.FUZZ_USER, g.FUZZ_PASSWORD, database="fuzzdb", timeout=self.cfg.deadline)
        reply = mp.Reply()
        for data, _ in case.chunks:
            if not self.sql_client.send(data):
                reply.send_failed = True
        # A statement may legitimately take a while on MariaDB; the steady check is the judge.
        self.sql_client.collect(reply, max(self.cfg.reply_wait, 1.0), max_packets=100_000)
        if reply.closed and not reply.packets:
            # Not an oracle failure (the proxy lives on), but a client dropped for one bad
            # statement instead of getting an ERR is worth a line in the report.
            self.report.sql_dropped += 1
            self.report.add_failure("sql_dropped", case, "connection closed without a reply", limit_per_kind=3)
        if reply.closed or reply.send_failed or reply.timed_out:
            self.sql_client.close()
            self.sql_client = None

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> Report:
        cfg, rep = self.cfg, self.report
        rep.baseline_rss_mb = rss_mb(self.pid)
        rep.peak_rss_mb = rep.baseline_rss_mb
        started = time.monotonic()
        rep.stopped_because = "every family exhausted"
        ok, why = self.steady_ok()
        assert ok, f"the steady client cannot use the proxy before fuzzing: {why}"
        for case in g.stream(cfg.seed, cfg.selected, cfg, frozenset(cfg.exclude)):
            if rep.inputs >= cfg.max_inputs:
                rep.stopped_because = f"input count {cfg.max_inputs}"
                break
            if time.monotonic() - started > cfg.budget:
                rep.stopped_because = f"time budget {cfg.budget:.0f}s"
                break
            if rep.restarts >= cfg.max_restarts:
                rep.stopped_because = f"{cfg.max_restarts} proxy restarts"
                break
            case.index = rep.inputs
            rep.inputs += 1
            rep.per_family[case.family] = rep.per_family.get(case.family, 0) + 1
            try:
                self.run_case(case)
            except (OSError, ConnectionError) as e:
                # The proxy refused or dropped us before the input: the check below says why.
                if case.expect == g.EXPECT_ANSWER or case.phase in ("post", "sql"):
                    self.log(f"case {case.index} {case.family}: {type(e).__name__}: {e}")
            self.check(case)
        self._drop_clients()
        rep.elapsed_s = time.monotonic() - started
        return rep
