"""The pure half of `make compat`: read what a suite printed, compare two runs, print the table.

Nothing here starts a process or touches the network, so all of it is unit
tested (tests/unit/test_compat_results.py).  `tests.compat.runner` feeds it
the files each suite leaves behind:

* pytest suites (PyMySQL, SQLAlchemy) -> their JUnit XML (`parse_junit`);
* Connector/Python's own harness (unittest) -> its console log (`parse_unittest_log`);
* MariaDB's mysql-test-run -> its console log (`parse_mtr_log`);

each into a `SuiteRun`: counts plus one error line per failed test.  A run
against one plain MariaDB is the bar: `compare` says which tests fail through
the cluster that pass there, `format_table` prints both side by side and
`group_causes` buckets the cluster's failures by error (errno + message with
names and numbers taken out) for the analysis in docs/compat.md.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping, Sequence


@dataclass
class SuiteRun:
    """One suite against one endpoint."""

    suite: str
    target: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    #: test id -> the line that says why it failed (the last line of the error)
    failures: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0
    returncode: int | None = None
    #: set when the suite produced no results at all (harness could not start, timeout ...)
    error: str | None = None
    log: str | None = None

    @property
    def counts(self) -> str:
        if self.error and not (self.passed or self.failed or self.skipped):
            return "not run"
        return f"{self.passed}/{self.failed}/{self.skipped}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping) -> "SuiteRun":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in doc.items() if k in names})


# -- summary lines ---------------------------------------------------------------------
_COUNT_WORDS = {
    "passed": "passed", "failed": "failed", "skipped": "skipped", "error": "errors", "errors": "errors",
    "deselected": "deselected", "xfailed": "xfailed", "xpassed": "xpassed", "warning": "warnings",
    "warnings": "warnings",
}


def parse_count_line(line: str) -> dict[str, int]:
    """Counts from a closing line: pytest's '== 3 failed, 152 passed, 14 skipped in 3.51s ==',
    the plain 'N passed, N failed, N skipped' of the shared scripts.  {} if it is neither."""
    text = line.strip().strip("=").strip()
    text = re.sub(r"\s+in\s+[\d.]+s(\s*\(.*\))?$", "", text)
    found: dict[str, int] = {}
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s+([a-z]+)\s*", part)
        if not m or m.group(2) not in _COUNT_WORDS:
            return {}
        found[_COUNT_WORDS[m.group(2)]] = int(m.group(1))
    return found


def parse_unittest_totals(text: str) -> dict[str, int]:
    """unittest's 'Ran N tests' and 'FAILED (failures=F, errors=E, skipped=S)' / 'OK (skipped=S)'."""
    totals: dict[str, int] = {}
    ran = re.findall(r"^Ran (\d+) tests?\b", text, re.M)
    if ran:
        totals["ran"] = int(ran[-1])
    status = re.findall(r"^(?:FAILED|OK)(?: \(([^)]*)\))?\s*$", text, re.M)
    if status:
        for item in (status[-1] or "").split(","):
            key, _, value = item.strip().partition("=")
            if value.isdigit():
                totals[key] = int(value)
    return totals


# -- error lines -------------------------------------------------------------------------
_EXC = re.compile(r"(?:^|(?<=[\s\"'(]))((?:[A-Za-z_]\w*\.)*(?:(?:[A-Z]\w*)?(?:Error|Exception|Failure|Exit|Interrupt|Warning)"
                  r"|AssertionError|error)):(?:\s|$)")
_NOISE = re.compile(r"^\s*(\[SQL:|\[parameters:|\(Background on this error|\[\+\d+ more lines?|\]$)")


def last_error_line(text: str | None) -> str:
    """The line of a failure text that says what went wrong: the last 'SomeError: ...' of a
    traceback (also inside pytest's 'failed on setup with "...Error: ..."'), else the last line
    that is not SQLAlchemy's [SQL: ...] / [parameters: ...] trailer."""
    if not text:
        return ""
    lines = [line.rstrip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        m = _EXC.search(line)
        if m:
            return line[m.start():].strip().rstrip('"').strip()
    meaningful = [line for line in lines if not _NOISE.match(line)]
    return (meaningful or lines or [""])[-1].strip()


def _first_sql(text: str | None) -> str:
    """The statement of SQLAlchemy's '[SQL: ...]' trailer (it may span lines), on one line."""
    m = re.search(r"\[SQL:\s*(.*?)\]\s*(?:\n\[parameters|\n\(Background|\n\[\+\d|\Z)", text or "", re.S)
    return re.sub(r"\s+", " ", m.group(1)).strip() if m else ""


# -- JUnit XML (pytest) ------------------------------------------------------------------
def parse_junit(xml_text: str, suite: str, target: str) -> SuiteRun:
    """A pytest --junitxml report.  Test id: 'classname::name'.  A test with both a
    failure and a teardown error counts once, as failed."""
    root = ET.fromstring(xml_text)
    run = SuiteRun(suite, target)
    outcome: dict[str, str] = {}
    for case in root.iter("testcase"):
        tid = f"{case.get('classname')}::{case.get('name')}"
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            body = (bad.text or "")
            message = bad.get("message") or ""
            line = last_error_line(message) or last_error_line(body)
            sql = _first_sql(body) or _first_sql(message)
            if sql and sql not in line:
                line = f"{line} [SQL: {sql[:300]}]"
            run.failures[tid] = line[:600]
            outcome[tid] = "failed"
        elif case.find("skipped") is not None:
            outcome.setdefault(tid, "skipped")
        else:
            outcome.setdefault(tid, "passed")
    run.passed = sum(1 for v in outcome.values() if v == "passed")
    run.failed = sum(1 for v in outcome.values() if v == "failed")
    run.skipped = sum(1 for v in outcome.values() if v == "skipped")
    return run


# -- Connector/Python's unittests.py --------------------------------------------------------
_UT_HEADER = re.compile(r"^(ERROR|FAIL): (.+?)(?: \(using [A-Za-z]+\))?\s*$")


def unittest_test_id(header: str) -> str:
    """The test named by an 'ERROR: ...' / 'FAIL: ...' header, as the recorded MariaDB baseline
    names it: the header's text without the harness's ' (using MySQLConnection)' suffix
    ('aio_connection.MySQLConnectionAioTests.test__do_auth', 'setUpClass (tests.test_aio_connection.WL14237)')."""
    m = _UT_HEADER.match(header.rstrip())
    return m.group(2) if m else header.strip()


def parse_unittest_log(text: str, suite: str, target: str) -> SuiteRun:
    """The console log of a unittest run (Connector/Python's harness, verbosity 1):
    'ERROR: ...' / 'FAIL: ...' blocks give the failed tests, the closing lines the totals."""
    run = SuiteRun(suite, target)
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _UT_HEADER.match(line)
        if not m or i + 1 >= len(lines) or not lines[i + 1].startswith("---"):
            continue
        tid = m.group(2)
        body = []
        for nxt in lines[i + 2:]:
            if nxt.startswith("=" * 20) or nxt.startswith("-" * 20) or _UT_HEADER.match(nxt):
                break
            body.append(nxt)
        run.failures.setdefault(tid, last_error_line("\n".join(body))[:600])
    totals = parse_unittest_totals(text)
    ran = totals.get("ran", 0)
    run.failed = len(run.failures)
    # Connector/Python's harness records skips itself ('Skipped tests: N' at the end, counted in 'Ran')
    harness_skips = re.findall(r"Skipped tests: (\d+)", text)
    run.skipped = totals.get("skipped", int(harness_skips[-1]) if harness_skips else 0)
    run.passed = max(ran - run.failed - run.skipped, 0)
    if not ran:
        run.error = "no 'Ran N tests' line: " + (last_error_line(text) or "empty log")[:400]
    cut = re.findall(r"^compat watchdog: .*$", text, re.M)
    if cut and ran:
        run.error = f"partial run: {cut[-1][len('compat watchdog: '):]}"
    return run


# -- MariaDB mysql-test-run ------------------------------------------------------------------
_MTR_LINE = re.compile(r"^(\S+\.\S+)\s+(?:'[^']*'\s+)?(?:w\d+\s+)?\[ (pass|fail|skipped|disabled) \]\s*(.*)$")


def parse_mtr_log(text: str, suite: str, target: str, expected: Sequence[str] = ()) -> SuiteRun:
    """mtr's '<suite.test> [ pass ]' lines (a retried test keeps its last verdict); a test
    of `expected` with no line at all counts as failed ('no result')."""
    run = SuiteRun(suite, target)
    verdict: dict[str, str] = {}
    reason: dict[str, str] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _MTR_LINE.match(line.strip())
        if not m:
            continue
        test, status = m.group(1), m.group(2)
        verdict[test] = status
        if status == "fail":
            detail = ""
            for j, nxt in enumerate(lines[i + 1:i + 40], start=i + 1):
                s = nxt.strip()
                if _MTR_LINE.match(s):
                    break
                if s.startswith(("mysqltest: At line", "mariadb-test: At line", "query '", "At line")):
                    # the query may span lines: up to its "failed: ..." / "..., instead of ..."
                    parts = [s]
                    for more in lines[j + 1:j + 60]:
                        if "failed:" in parts[-1] or "instead of" in parts[-1] or not more.strip():
                            break
                        parts.append(more.strip())
                    detail = " ".join(parts)
                    cut = max(detail.rfind("' failed"), detail.rfind("', instead of"))
                    if len(detail) > 500 and cut > 200:  # keep the error, shorten the query
                        detail = detail[:200] + " ..." + detail[cut:]
                    break
                if s.startswith(("---", "+++")) and not detail:
                    detail = "result differs"
            if detail.startswith(("mysqltest", "mariadb-test", "query", "At line")) or test not in reason:
                reason[test] = detail or "fail"
    for test in expected:
        full = test if "." in test else f"main.{test}"
        if full not in verdict:
            verdict[full] = "fail"
            reason[full] = "no result (mtr stopped before reporting it)"
    for test, status in verdict.items():
        if status == "pass":
            run.passed += 1
        elif status == "fail":
            run.failed += 1
            run.failures[test] = reason.get(test, "fail")[:600]
        else:
            run.skipped += 1
    return run


# -- side by side ------------------------------------------------------------------------------
@dataclass
class Comparison:
    suite: str
    reference: SuiteRun
    cluster: SuiteRun
    #: failing through the cluster, not on the one MariaDB
    new_failures: dict[str, str]
    #: failing on the one MariaDB, passing through the cluster
    fixed: list[str]
    #: failing on the one MariaDB and not in the recorded baseline (a sick reference run)
    reference_unexpected: list[str] = field(default_factory=list)

    @property
    def new(self) -> str:
        if self.cluster.error and not self.cluster.failed and not self.cluster.passed:
            return "n/a"
        if self.reference.error and not self.reference.failed and not self.reference.passed:
            return "n/a"
        return str(len(self.new_failures))


def compare(reference: SuiteRun, cluster: SuiteRun, baseline: Iterable[str] | None = None) -> Comparison:
    ref_failed = set(reference.failures)
    new = {t: msg for t, msg in sorted(cluster.failures.items()) if t not in ref_failed}
    complete = (cluster.passed or cluster.failed) and not (cluster.error or "").startswith("partial run")
    fixed = sorted(ref_failed - set(cluster.failures)) if complete else []
    unexpected = sorted(ref_failed - set(baseline)) if baseline is not None else []
    return Comparison(reference.suite, reference, cluster, new, fixed, unexpected)


def format_table(comparisons: Sequence[Comparison], labels: Mapping[str, str] | None = None) -> str:
    """A Markdown table: suite | one MariaDB | cluster | new failures vs the MariaDB run
    (passed/failed/skipped in each run)."""
    labels = labels or {}
    head = ["suite", "one MariaDB (passed/failed/skipped)", "cluster (passed/failed/skipped)",
            "new failures vs the MariaDB run"]
    rows = []
    for c in comparisons:
        rows.append([
            labels.get(c.suite, c.suite),
            _cell(c.reference),
            _cell(c.cluster),
            c.new,
        ])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in rows:
        out.append("| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |")
    return "\n".join(out)


def _cell(run: SuiteRun) -> str:
    text = run.counts
    notes = [f"{run.wall_s:.0f} s"] if run.wall_s else []
    if (run.error or "").startswith("partial run"):
        notes.append("partial")
    return text + (f" ({', '.join(notes)})" if notes else "")


# -- failure causes -----------------------------------------------------------------------------
_ERRNO_PATTERNS = (
    re.compile(r"\((\d{4}),\s*(['\"])(.*?)\2\)"),       # PyMySQL: (1105, 'message')
    re.compile(r"\b(\d{4}) \([0-9A-Z]{5}\): (.*)"),      # Connector/Python: 1046 (3D000): message
    re.compile(r"failed: (?:[A-Z_]+ )?\(?(\d{4})\)?: (.*)"),  # mtr: query '...' failed: ER_X (1105): message
    re.compile(r"failed with wrong errno (?:[A-Z_]+ )?\((\d{4})\): (.*)"),  # mtr: ... instead of ER_Y
    re.compile(r"\berrno:? (\d{4})\b\W*(.*)"),
)


def error_signature(line: str) -> tuple[str, str]:
    """(errno or exception type, message with literals taken out) of one failure line."""
    for pat in _ERRNO_PATTERNS:
        m = pat.search(line)
        if m:
            errno = m.group(1)
            message = m.group(m.lastindex)
            return errno, normalize_message(message)
    m = re.match(r"^([A-Za-z_][\w.]*)(?::\s*(.*))?$", line)
    if m and m.group(1)[:1].isupper() or (m and "." in m.group(1)):
        return m.group(1).rsplit(".", 1)[-1], normalize_message(m.group(2) or "")
    return "-", normalize_message(line)


#: a quoted text starting with one of these is a statement: its leading keywords name the cause
_STATEMENT_WORDS = frozenset("""
    ALTER ANALYZE BEGIN BINLOG CALL CHANGE CHECK CHECKSUM COMMIT CREATE DEALLOCATE DELETE DESC DESCRIBE DO DROP
    EXECUTE EXPLAIN FLUSH GET GRANT HANDLER HELP INSERT INSTALL KILL LOAD LOCK OPTIMIZE PREPARE PURGE RELEASE
    RENAME REPAIR REPLACE RESET RESIGNAL REVOKE ROLLBACK SAVEPOINT SELECT SET SHOW SHUTDOWN SIGNAL START TRUNCATE
    UNINSTALL UNLOCK UPDATE USE WITH XA""".split())
_KEYWORDS = _STATEMENT_WORDS | frozenset("""
    AGGREGATE ALL BINARY CHARACTER COLLATE COLLATION COLUMNS CONSISTENT DATA DATABASE DATABASES DEFINER DISTINCT
    ENGINE ENGINES ERRORS EVENT EVENTS EXISTS FULL FUNCTION GLOBAL GRANTS HIGH_PRIORITY IF IGNORE INDEX INFILE INTO
    KEYS LOCAL LOW_PRIORITY NAMES NOT ONLY OR PASSWORD PLUGINS PRIVILEGES PROCEDURE PROCESSLIST QUICK READ SCHEMA
    SESSION SNAPSHOT SQL_CALC_FOUND_ROWS STATEMENT STATUS TABLE TABLES TEMPORARY TRANSACTION TRIGGER TRIGGERS
    USER VARIABLES VIEW WARNINGS WORK WRITE""".split())


def _quoted(match: re.Match) -> str:
    return _quoted_text(match.group(0)[0], match.group(0)[1:-1])


def _quoted_text(quote: str, body: str) -> str:
    words: list[str] = []
    for token in body.split():
        if not re.fullmatch(r"[A-Za-z_]+", token) or token.upper() not in (_KEYWORDS if words else _STATEMENT_WORDS):
            break
        words.append(token.upper())
    if not words:
        return f"{quote}?{quote}"
    rest = body.split()[len(words):]
    return quote + " ".join(words) + (" ..." if rest else "") + quote


def normalize_message(message: str) -> str:
    """Names, numbers and SQL text out, so one cause is one bucket; a quoted statement keeps
    its leading keywords ('LOAD DATA LOCAL INFILE ...')."""
    msg = re.sub(r"\s*\[SQL: .*", "", message)
    msg = re.sub(r"\(Background on this error.*", "", msg)
    msg = re.sub(r"`[^`]*`", "`?`", msg)
    # a quoted statement may hold quotes itself (or be cut short): it runs to the last such quote
    start = re.search(r"(['\"])([A-Za-z_]+)\b", msg)
    if start and start.group(2).upper() in _STATEMENT_WORDS:
        end = msg.rfind(start.group(1))
        if end > start.start():
            msg = msg[:start.start()] + _quoted_text(start.group(1), msg[start.start() + 1:end]) + msg[end + 1:]
    msg = re.sub(r"'(?:[^'\\]|\\.)*'", _quoted, msg)
    msg = re.sub(r'"(?:[^"\\]|\\.)*"', _quoted, msg)
    msg = re.sub(r"\b[A-Za-z_]\w*\.[A-Za-z_]\w*\b", "?.?", msg)  # db.table
    msg = re.sub(r"\b(region\(s\)|on) r\d+(, r\d+)*", r"\1 rN", msg)
    msg = re.sub(r"\b0x[0-9a-fA-F]+\b", "N", msg)
    msg = re.sub(r"(?<!errno: )\b\d+(\.\d+)?\b", "N", msg)
    msg = re.sub(r"\s+", " ", msg).strip()
    return msg[:160]


@dataclass
class Cause:
    errno: str
    message: str
    count: int
    example_test: str
    example_error: str


def group_causes(failures: Mapping[str, str], limit: int | None = None) -> list[Cause]:
    """Failures bucketed by `error_signature`, biggest bucket first (ties: by errno)."""
    buckets: dict[tuple[str, str], list[str]] = {}
    shown: dict[tuple[str, str], str] = {}
    for test in sorted(failures):
        errno, message = error_signature(failures[test])
        key = (errno, message.lower())  # a name echoed in the client's case is one cause
        buckets.setdefault(key, []).append(test)
        shown.setdefault(key, message)
    causes = [
        Cause(key[0], shown[key], len(tests), tests[0], failures[tests[0]])
        for key, tests in buckets.items()
    ]
    causes.sort(key=lambda c: (-c.count, c.errno, c.message))
    return causes[:limit] if limit else causes
