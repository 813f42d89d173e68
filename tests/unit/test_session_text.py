"""The session's text scanners stay linear on hostile sizes (each once froze the proxy)."""

from __future__ import annotations

import time

import pytest

from minisql.errors import SqlError
from proxy.account_sql import rewrite, verb_of
from proxy.planbuilder import savepoint_name, split_top_level


@pytest.mark.parametrize(
    ("sql", "name"),
    [("SAVEPOINT sp1", "sp1"), ("ROLLBACK TO SAVEPOINT `my``sp`;", "my`sp"), ("release savepoint x$1 ;", "x$1"), ("ROLLBACK WORK TO s", "s")],
)
def test_savepoint_names(sql, name):
    assert savepoint_name(sql) == name


def test_split_top_level_respects_quotes_and_parentheses():
    assert split_top_level(" @a = 1, b = (1,2), c = 'x,\\'y', d = \"q,(\" , e=`a,b`") == [
        " @a = 1", " b = (1,2)", " c = 'x,\\'y'", ' d = "q,(" ', " e=`a,b`",
    ]


def test_megabyte_statements_are_scanned_in_linear_time():
    started = time.perf_counter()
    assert savepoint_name("ROLLBACK TO " + "a" * 4_000_000 + " b") == "b"  # a regex search took forever here
    assert len(split_top_level(" @a = '" + "x," * 2_000_000 + "'")) == 1
    with pytest.raises(SqlError):
        rewrite("GRANT SELECT ON db.* TO " + "x" * 4_000_000, lambda ref: "ab" * 20)
    assert verb_of("GRANT " + "(" * 4_000_000) == "GRANT"
    assert time.perf_counter() - started < 5.0


def test_like_matches_like_mariadb_and_in_bounded_time():
    from minisql.like import like

    for pattern, value, expected in [
        ("t%", "table", True), ("%able", "TABLE", True), ("t_ble", "table", True), ("t\\_b", "t_b", True),
        ("t\\_b", "txb", False), ("%a%b%", "xxaxxbxx", True), ("%a%b%", "xxbxxaxx", False), ("%", "", True), ("_", "", False),
    ]:
        assert like(pattern, value) is expected, (pattern, value)
    started = time.perf_counter()
    assert not like("%a" * 60 + "b", "a" * 64)  # as a regex this backtracks for ages
    assert time.perf_counter() - started < 1.0


def test_scanning_a_huge_unterminated_comment_or_string_costs_no_memory():
    import resource

    from proxy.statements import classify, digest, strip_leading_noise

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    comment = "/*999999 SELECT LENGTH('" + "x" * 4_000_000 + "')"
    assert strip_leading_noise(comment) == comment  # unterminated: not a comment
    with pytest.raises(SqlError):
        classify(comment)
    assert digest("SELECT '" + "y" * 4_000_000 + "'") == "SELECT ?"
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 100, grown_mib  # a `(?:.|\n)*?` scan of that comment took 500 MB


def test_split_statements():
    from proxy.multistatement import split_statements

    assert split_statements("SELECT 1") is None
    assert split_statements("SELECT 1;") is None
    assert split_statements("SELECT 'a;b'; SELECT `c;d`; /* ; */ SELECT 3 -- x;y\n") == ["SELECT 'a;b'", " SELECT `c;d`", " /* ; */ SELECT 3 -- x;y\n"]
    assert split_statements("BEGIN; INSERT INTO t VALUES (1); COMMIT") == ["BEGIN", " INSERT INTO t VALUES (1)", " COMMIT"]
    assert split_statements("/*!40101 SET NAMES utf8 */; SELECT 1") == ["/*!40101 SET NAMES utf8 */", " SELECT 1"]
    # compound statements keep their inner semicolons
    assert split_statements("CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END") is None
    assert split_statements("BEGIN NOT ATOMIC DECLARE x INT; SET x = 1; END") is None
    assert split_statements("IF 1 THEN SELECT 1; END IF") is None


def test_cached_errors_do_not_grow_and_huge_shapes_are_not_cached():
    from proxy.statements import AnalysisCache, Kind

    cache = AnalysisCache()
    depths = []
    for _ in range(5):
        with pytest.raises(SqlError) as info:
            cache.get("UPDATE SET WHERE", Kind.UPDATE)
        tb, depth = info.value.__traceback__, 0
        while tb is not None:
            depth, tb = depth + 1, tb.tb_next
        depths.append(depth)
    assert len(set(depths)) == 1, depths  # a stored exception re-raised grows its traceback forever
    cache.get("SELECT " + ", ".join(f"c{i}" for i in range(5000)) + " FROM t", Kind.SELECT)
    assert all(len(k) <= 16 * 1024 for k in cache._entries)
