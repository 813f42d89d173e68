"""The pure half of `make compat` (tests/compat/results.py): reading suites' results,
comparing the one-MariaDB run with the cluster run, the table, the failure causes."""

from __future__ import annotations

import json

from tests.compat.results import (
    SuiteRun,
    compare,
    error_signature,
    format_table,
    group_causes,
    last_error_line,
    normalize_message,
    parse_count_line,
    parse_junit,
    parse_mtr_log,
    parse_unittest_log,
    parse_unittest_totals,
    unittest_test_id,
)

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest"
 errors="1" failures="2" skipped="2" tests="7">
<testcase classname="pymysql.tests.test_basic.TestConversion" name="test_blob" time="0.004" />
<testcase classname="pymysql.tests.test_basic.TestConversion" name="test_datetime_microseconds" time="0.001">
  <skipped type="pytest.skip" message="target backend does not support microseconds">x</skipped></testcase>
<testcase classname="pymysql.tests.test_nextset.TestNextset" name="test_multi_cursor" time="0.002">
  <skipped type="pytest.xfail" message="" /></testcase>
<testcase classname="pymysql.tests.test_issues.TestGitHubIssues" name="test_issue_95" time="0.003">
  <failure message="pymysql.err.OperationalError: (1105, 'CREATE PROCEDURE is not supported')">Traceback
  cur.execute(...)
E   pymysql.err.OperationalError: (1105, 'CREATE PROCEDURE is not supported')</failure></testcase>
<testcase classname="test.dialect.test_suite.LongNameBlowoutTest_mysql+pymysql_11" name="test_long_convention_name[fk-_fk_name]" time="0.1">
  <error message="failed on setup with &quot;sqlalchemy.exc.OperationalError: (pymysql.err.OperationalError) (1005, 'Can\\'t create table `sqla_test`.`a_things_with_stuff` (errno: 150 &quot;Foreign key constraint is incorrectly formed&quot;)')&quot;">Traceback
sqlalchemy.exc.OperationalError: (pymysql.err.OperationalError) (1005, "Can't create table `sqla_test`.`x` (errno: 150)")
[SQL:
CREATE TABLE a_things_with_stuff (id INTEGER NOT NULL AUTO_INCREMENT)]
(Background on this error at: https://sqlalche.me/e/20/e3q8)</error></testcase>
<testcase classname="pymysql.tests.test_basic.TestCursor" name="test_single_tuple" time="0.005">
  <failure message="AssertionError: 1 != 2">assert</failure>
  <error message="error on teardown">teardown</error></testcase>
<testcase classname="pymysql.tests.test_basic.TestCursor" name="test_aggregates" time="0.005" />
</testsuite></testsuites>"""


def test_junit_counts_and_failure_lines():
    run = parse_junit(JUNIT, "pymysql", "cluster")
    # an xfail is reported as skipped; a failure with a teardown error counts once
    assert (run.passed, run.failed, run.skipped) == (2, 3, 2)
    assert run.counts == "2/3/2"
    assert run.failures["pymysql.tests.test_issues.TestGitHubIssues::test_issue_95"] == (
        "pymysql.err.OperationalError: (1105, 'CREATE PROCEDURE is not supported')")
    assert run.failures["pymysql.tests.test_basic.TestCursor::test_single_tuple"] == "AssertionError: 1 != 2"
    fk = run.failures["test.dialect.test_suite.LongNameBlowoutTest_mysql+pymysql_11::test_long_convention_name[fk-_fk_name]"]
    assert "(1005, " in fk and "errno: 150" in fk
    assert fk.endswith("[SQL: CREATE TABLE a_things_with_stuff (id INTEGER NOT NULL AUTO_INCREMENT)]")


def test_count_lines_of_pytest_and_the_shared_scripts():
    assert parse_count_line("==== 3 failed, 152 passed, 14 skipped, 1 xfailed in 3.51s ====") == {
        "failed": 3, "passed": 152, "skipped": 14, "xfailed": 1}
    assert parse_count_line("152 passed, 14 skipped, 1 xfailed, 1 warning in 3.03s") == {
        "passed": 152, "skipped": 14, "xfailed": 1, "warnings": 1}
    assert parse_count_line("813 passed, 99 failed, 339 skipped") == {"passed": 813, "failed": 99, "skipped": 339}
    assert parse_count_line("2 failed, 1 error in 0.10s (0:00:00)") == {"failed": 2, "errors": 1}
    assert parse_count_line("ran=1251 wall=133.0s (run log: x)") == {}
    assert parse_count_line("No garbages!") == {}


def test_unittest_totals():
    assert parse_unittest_totals("....\nRan 1251 tests in 133.2s\n\nFAILED (failures=12, errors=87, skipped=339)\n") == {
        "ran": 1251, "failures": 12, "errors": 87, "skipped": 339}
    assert parse_unittest_totals("Ran 1 test in 0.001s\n\nOK\n") == {"ran": 1}
    assert parse_unittest_totals("Ran 5 tests in 1s\n\nOK (skipped=2)\n") == {"ran": 5, "skipped": 2}
    assert parse_unittest_totals("nothing ran") == {}


UNITTEST_LOG = """2026-11-30 18:40:01 [INFO]  Creating 'myconnpy' database
..E.s.F
======================================================================
ERROR: aio_connection.MySQLConnectionAioTests.test_cmd_refresh (using MySQLConnection)
----------------------------------------------------------------------
Traceback (most recent call last):
  File "tests/test_aio_connection.py", line 10, in test_cmd_refresh
    await self.cnx.cmd_refresh(refresh)
mysql.connector.errors.ProgrammingError: 1105 (HY000): FLUSH HOSTS is not supported through the cluster

======================================================================
FAIL: setUpClass (tests.test_connection.WL14237)
----------------------------------------------------------------------
Traceback (most recent call last):
  File "tests/test_connection.py", line 3, in test_server_version
AssertionError: (10, 11, 19) != (8, 0, 0)

----------------------------------------------------------------------
Ran 7 tests in 2.500s

FAILED (failures=1, errors=1, skipped=1)
2026-11-30 18:42:01 [INFO]  Skipped tests: 40
"""


def test_unittest_log_of_connector_harness():
    run = parse_unittest_log(UNITTEST_LOG, "connector", "cluster")
    assert (run.passed, run.failed, run.skipped) == (4, 2, 1)
    assert run.error is None
    assert run.failures == {
        "aio_connection.MySQLConnectionAioTests.test_cmd_refresh":
            "mysql.connector.errors.ProgrammingError: 1105 (HY000): FLUSH HOSTS is not supported through the cluster",
        "setUpClass (tests.test_connection.WL14237)": "AssertionError: (10, 11, 19) != (8, 0, 0)",
    }


def test_unittest_log_skips_counted_by_the_harness_itself():
    text = "ERROR: bugs.Bug1.test_a\n" + "-" * 70 + "\nTraceback\nKeyError: 'x'\n\n" + "-" * 70 + (
        "\nRan 10 tests in 1.0s\n\nFAILED (errors=1)\n2026 [myconnpy_tests:INFO] Skipped tests: 3\n")
    run = parse_unittest_log(text, "connector", "mariadb")
    assert (run.passed, run.failed, run.skipped) == (6, 1, 3)
    assert run.failures == {"bugs.Bug1.test_a": "KeyError: 'x'"}


def test_unittest_log_of_a_run_cut_by_the_watchdog_budget():
    text = ("Ran 400 tests in 900.1s\n\nOK\n"
            "compat watchdog: budget of 900 s spent, run stopped before tests.test_bugs.Bug1.test_a\n")
    run = parse_unittest_log(text, "connector", "cluster")
    assert (run.passed, run.failed, run.skipped) == (400, 0, 0)
    assert run.error == "partial run: budget of 900 s spent, run stopped before tests.test_bugs.Bug1.test_a"


def test_unittest_log_of_a_harness_that_cannot_start():
    text = ("2026-11-30 [ERROR] Failed connecting to the external MySQL server: 1046 (3D000): No database selected\n")
    run = parse_unittest_log(text, "connector", "cluster")
    assert (run.passed, run.failed, run.skipped) == (0, 0, 0)
    assert run.counts == "not run"
    assert "1046 (3D000): No database selected" in run.error


def test_unittest_ids_match_the_recorded_baseline_form():
    assert unittest_test_id("ERROR: aio_connection.MySQLConnectionAioTests.test__do_auth (using MySQLConnection)") == (
        "aio_connection.MySQLConnectionAioTests.test__do_auth")
    assert unittest_test_id("ERROR: setUpClass (tests.test_aio_connection.WL14237)") == (
        "setUpClass (tests.test_aio_connection.WL14237)")
    assert unittest_test_id("FAIL: tests.qa.test_qa_connection_api.TestCharsetAndCollation.test_default") == (
        "tests.qa.test_qa_connection_api.TestCharsetAndCollation.test_default")


MTR_LOG = """Logging: ./mtr  --extern host=127.0.0.1 main.alter_table
main.alter_table                         [ pass ]   1532
main.create_drop_view                    [ fail ]
        Test ended at 2026-11-30 18:50:00

CURRENT_TEST: main.create_drop_view
mysqltest: At line 12: query 'CREATE VIEW v1 AS SELECT 1' failed: ER_UNKNOWN_ERROR (1105): views are not supported
main.create_drop_view                    [ fail ]  Found warnings/errors in server log file!
main.alter_table_errors                  [ fail ]
        Test ended at 2026-11-30 19:31:43

mysqltest: In included file "./include/have_innodb.inc":
At line 11: query 'if (`select count(*) from information_schema.system_variables`)
{' failed: ER_NOT_SUPPORTED_YET (1235): queries on information_schema are not supported

main.case                                [ fail ]
At line 48: query 'CREATE TABLE t1 SELECT CASE WHEN 1 THEN 1 ELSE 2 END AS c, CASE WHEN 1 THEN 1 ELSE 2 END AS c, CASE WHEN 1 THEN 1 ELSE 2 END AS c, CASE WHEN 1 THEN 1 ELSE 2 END AS c, CASE WHEN 1 THEN 1 ELSE 2 END AS c, CASE WHEN 1 THEN 1 ELSE 2 END AS c, CASE WHEN 1 THEN 1 ELSE 2 END AS c, CASE WHEN 1 THEN 1 ELSE 2 END AS c, CASE WHEN 1 THEN 1 ELSE 2 END AS c, CASE WHEN 1 THEN 1 ELSE 2 END AS c, CASE WHEN 1 THEN 1 ELSE 2 END AS c, CASE WHEN 1 THEN 1 ELSE 2 END AS c, CASE WHEN 1 THEN 1 ELSE 2 END AS c, CASE WHEN 1 THEN 1 ELSE 2 END AS c, CASE WHEN 1 THEN 1 ELSE 2 END AS c, CASE WHEN 1 THEN 1 ELSE 2 END AS c, CASE WHEN 1 THEN 1 ELSE 2 END AS c, CASE WHEN 1 THEN 1 ELSE 2 END AS c, CASE WHEN 1 THEN 1 ELSE 2 END AS c, CASE WHEN 1 THEN 1 ELSE 2 END AS c, 1 AS z
FROM t0' failed: ER_NOT_SUPPORTED_YET (1235): CREATE TABLE ... SELECT is not supported

main.key                                 [ skipped ]  Requires debug build
main.flush                                [ fail ]
--- /x/main/flush.result
+++ /x/main/flush.reject
main.flush                               [ pass ]     10
"""


def test_mtr_log_last_verdict_wins_and_missing_tests_fail():
    run = parse_mtr_log(MTR_LOG, "mtr", "cluster", expected=["alter_table", "create_drop_view", "key", "flush", "auto_increment"])
    assert (run.passed, run.failed, run.skipped) == (2, 4, 1)
    assert run.failures["main.case"].startswith("At line 48: query 'CREATE TABLE t1 SELECT CASE")
    assert run.failures["main.case"].endswith(" ...' failed: ER_NOT_SUPPORTED_YET (1235): CREATE TABLE ... SELECT is not supported")
    assert error_signature(run.failures["main.case"])[0] == "1235"
    assert run.failures["main.create_drop_view"].startswith("mysqltest: At line 12:")
    assert run.failures["main.alter_table_errors"] == (
        "At line 11: query 'if (`select count(*) from information_schema.system_variables`) {' failed: "
        "ER_NOT_SUPPORTED_YET (1235): queries on information_schema are not supported")
    assert error_signature(run.failures["main.alter_table_errors"]) == (
        "1235", "queries on information_schema are not supported")
    assert run.failures["main.auto_increment"].startswith("no result")
    assert "main.flush" not in run.failures  # retried and passed


def test_last_error_line():
    assert last_error_line("Traceback\n  x()\nValueError: bad\n") == "ValueError: bad"
    assert last_error_line("E   pymysql.err.ProgrammingError: (1146, 'no table')\nmore context") == (
        "pymysql.err.ProgrammingError: (1146, 'no table')")
    assert last_error_line("just a message") == "just a message"
    setup = ('failed on setup with "sqlalchemy.exc.NotSupportedError: (pymysql.err.NotSupportedError) (1235, '
             "'no INFORMATION_SCHEMA')\n[SQL: SELECT 1 FROM INFORMATION_SCHEMA.TABLES]\n[parameters: {}]\n"
             '[+1 more line; full report in element text]"')
    assert last_error_line(setup) == (
        "sqlalchemy.exc.NotSupportedError: (pymysql.err.NotSupportedError) (1235, 'no INFORMATION_SCHEMA')")
    assert last_error_line("During handling...\nKeyError: 1\nmysql.connector.errors.Error: 2013: lost\n") == (
        "mysql.connector.errors.Error: 2013: lost")
    assert last_error_line("wrong result\n[SQL: SELECT 1]\n(Background on this error at: x)") == "wrong result"
    assert last_error_line("") == ""


def _run(target, passed, failures, skipped=0, **kw):
    return SuiteRun("s", target, passed=passed, failed=len(failures), skipped=skipped, failures=failures, **kw)


def test_compare_new_failures_fixed_and_a_sick_reference():
    ref = _run("mariadb", 10, {"a": "x", "b": "y"})
    clu = _run("cluster", 8, {"b": "y", "c": "(1105, 'no')", "d": "(1146, 'gone')"})
    c = compare(ref, clu, baseline=["b"])
    assert c.new_failures == {"c": "(1105, 'no')", "d": "(1146, 'gone')"}
    assert c.fixed == ["a"]
    assert c.reference_unexpected == ["a"]
    assert c.new == "2"


def test_compare_a_partial_cluster_run_claims_no_fixes():
    ref = _run("mariadb", 10, {"a": "x"})
    clu = _run("cluster", 3, {"c": "y"}, error="partial run: budget of 600 s spent, run stopped before t")
    c = compare(ref, clu)
    assert c.fixed == [] and c.new_failures == {"c": "y"} and c.new == "1"


def test_compare_when_the_cluster_run_produced_nothing():
    ref = _run("mariadb", 10, {})
    clu = SuiteRun("s", "cluster", error="harness could not start")
    c = compare(ref, clu)
    assert c.new == "n/a" and c.fixed == [] and c.new_failures == {}


def test_table_side_by_side():
    c1 = compare(_run("mariadb", 152, {}, skipped=15, wall_s=3.2), _run("cluster", 140, {"t": "e"} , skipped=15, wall_s=20))
    c2 = compare(_run("mariadb", 813, {"a": "x"}, skipped=339), SuiteRun("connector", "cluster", error="1046"))
    table = format_table([c1, c2], {"s": "PyMySQL 0.10.1"}).splitlines()
    assert table[0].startswith("| suite ") and "one MariaDB (passed/failed/skipped)" in table[0]
    assert "cluster (passed/failed/skipped)" in table[0] and table[0].rstrip().endswith("new failures vs the MariaDB run |")
    assert set(table[1]) <= {"|", "-"}
    cells = [cell.strip() for cell in table[2].strip("|").split("|")]
    assert cells == ["PyMySQL 0.10.1", "152/0/15 (3 s)", "140/1/15 (20 s)", "1"]
    cells = [cell.strip() for cell in table[3].strip("|").split("|")]
    assert cells == ["PyMySQL 0.10.1", "813/1/339", "not run", "n/a"]
    partial = _run("cluster", 3, {}, wall_s=600, error="partial run: budget of 600 s spent")
    assert "3/0/0 (600 s, partial)" in format_table([compare(_run("mariadb", 3, {}), partial)])
    assert len({len(line) for line in table}) == 1  # aligned columns


def test_error_signature_and_normalization():
    assert error_signature("pymysql.err.OperationalError: (1105, \"unsupported statement 'CREATE PROCEDURE p1'\")") == (
        "1105", "unsupported statement 'CREATE PROCEDURE ...'")
    assert error_signature("mysql.connector.errors.ProgrammingError: 1046 (3D000): No database selected") == (
        "1046", "No database selected")
    assert error_signature("mysqltest: At line 3: query 'x' failed: ER_NO_SUCH_TABLE (1146): Table 'test.t1' doesn't exist") == (
        "1146", "Table '?' doesn't exist")
    assert error_signature("AssertionError: 3 != 4") == ("AssertionError", "N != N")
    errno, message = error_signature("At line 16: query 'CREATE INDEX i1 ON t1(b)' failed with wrong errno "
                                     "ER_NO_SUCH_TABLE (1146): 'Table 'test.t1' doesn't exist', instead of "
                                     "ER_WRONG_USAGE (1221)...")
    assert errno == "1146" and message.endswith("instead of ER_WRONG_USAGE (N)...")
    assert normalize_message("Unknown table `db`.`t_12` [SQL: DROP TABLE t_12]") == "Unknown table `?`.`?`"
    # a quoted statement keeps its leading keywords: they are the cause
    assert normalize_message("does not support 'LOAD DATA LOCAL INFILE '/tmp/x' INTO TABLE t' yet") == (
        "does not support 'LOAD DATA LOCAL INFILE ...' yet")
    assert normalize_message("does not support 'LOAD DATA LOCAL INFILE '/work/x/src/' through the gateway yet") == (
        "does not support 'LOAD DATA LOCAL INFILE ...' through the gateway yet")
    assert normalize_message("does not support 'show processlist' through the gateway yet") == (
        "does not support 'SHOW PROCESSLIST' through the gateway yet")
    assert normalize_message("unsupported: 'CREATE PROCEDURE p1(a INT) BEGIN END'") == "unsupported: 'CREATE PROCEDURE ...'"
    assert normalize_message("Unknown column 'price' in 'field list'") == "Unknown column '?' in '?'"
    assert normalize_message("a write that reads sqla_test.manual_pk, which has no copy on region(s) r1, r3 yet") == (
        "a write that reads ?.?, which has no copy on region(s) rN yet")


def test_group_causes_biggest_first_with_an_example():
    failures = {
        "t3": "pymysql.err.OperationalError: (1005, \"Can't create table `a`.`b` (errno: 150)\")",
        "t1": "pymysql.err.OperationalError: (1005, \"Can't create table `c`.`d` (errno: 150)\")",
        "t2": "pymysql.err.InternalError: (1105, 'SAVEPOINT sp_1 is not supported')",
        "t4": "AssertionError: 1 != 2",
        "t5": "pymysql.err.InternalError: (1105, 'SAVEPOINT SP_1 IS NOT SUPPORTED')",
    }
    causes = group_causes(failures)
    assert [(c.errno, c.count, c.example_test) for c in causes] == [
        ("1005", 2, "t1"), ("1105", 2, "t2"), ("AssertionError", 1, "t4")]
    assert causes[0].example_error == failures["t1"]
    assert causes[0].message == "Can't create table `?`.`?` (errno: 150)"  # errno kept: it is the cause
    assert causes[1].message == "SAVEPOINT sp_1 is not supported"
    assert len(group_causes(failures, limit=2)) == 2


def test_suite_run_round_trips_through_json():
    run = _run("cluster", 3, {"a": "b"}, skipped=1, wall_s=2.5, error=None)
    assert SuiteRun.from_dict(json.loads(json.dumps(run.to_dict()))) == run


def test_reference_mariadb_is_a_plain_server_on_its_own_datadir(tmp_path):
    from tests.compat.runner import MTR_SERVER_OPTIONS, ReferenceMariaDB

    server = ReferenceMariaDB(tmp_path / "datadir", 23456)
    argv = server.command()
    assert argv[1] == "--no-defaults"
    assert f"--datadir={tmp_path / 'datadir'}" in argv and "--port=23456" in argv
    assert "--bind-address=127.0.0.1" in argv and "--local-infile=1" in argv
    # none of the stack's hardening or defaults on the bar
    assert not any(a.startswith(("--skip-name-resolve", "--character-set-server")) for a in argv)
    mtr = ReferenceMariaDB(tmp_path / "datadir", 23456, profile="mtr").command()
    assert all(option in mtr for option in MTR_SERVER_OPTIONS)
