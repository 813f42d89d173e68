"""Classification, digests and the analysis cache."""

import pytest

from minisql.errors import SqlError
from proxy.statements import AnalysisCache, Kind, classify, digest, substitute_last_insert_id


@pytest.mark.parametrize(
    "sql,kind",
    [
        ("select 1", Kind.SELECT),
        ("  /* hint */ SELECT 1", Kind.SELECT),
        ("-- c\nINSERT INTO t VALUES (1)", Kind.INSERT),
        ("(SELECT 1) UNION (SELECT 2)", Kind.SELECT),
        ("START TRANSACTION READ ONLY", Kind.BEGIN),
        ("begin", Kind.BEGIN),
        ("BEGIN WORK", Kind.BEGIN),
        ("COMMIT", Kind.COMMIT),
        ("rollback", Kind.ROLLBACK),
        ("ROLLBACK TO SAVEPOINT s1", Kind.ROLLBACK_TO),
        ("ROLLBACK WORK TO s1", Kind.ROLLBACK_TO),
        ("SAVEPOINT s1", Kind.SAVEPOINT),
        ("RELEASE SAVEPOINT s1", Kind.RELEASE),
        ("set autocommit=0", Kind.SET),
        ("USE db", Kind.USE),
        ("show tables", Kind.SHOW),
        ("DESC t", Kind.DESCRIBE),
        ("create table t (id int)", Kind.DDL),
        ("TRUNCATE t", Kind.DDL),
        ("LOCK TABLES t WRITE", Kind.LOCK_TABLES),
        ("CREATE TEMPORARY TABLE t (id int)", Kind.TEMPORARY),
    ],
)
def test_classify(sql, kind):
    assert classify(sql) is kind


@pytest.mark.parametrize("sql,errno", [("", 1065), ("   ;", 1065), ("selec 1", 1064), ("!!", 1064)])
def test_classify_errors(sql, errno):
    with pytest.raises(SqlError) as info:
        classify(sql)
    assert info.value.errno == errno


def test_digest_strips_literals_but_keeps_identifiers():
    a = digest("SELECT * FROM `t1` WHERE id = 5 AND name = 'bob' AND x = 1.5e3 AND h = 0x1F")
    b = digest("SELECT * FROM `t1` WHERE id = 77 AND name = 'o''hara' AND x = 2 AND h = 0xAB")
    assert a == b == "SELECT * FROM `t1` WHERE id = ? AND name = ? AND x = ? AND h = ?"
    assert digest("SELECT c2 FROM t2") == "SELECT c2 FROM t2"
    assert digest("select 'a\\'b', 'c'") == "select ?, ?"
    # "..." is an identifier under ANSI_QUOTES: never merged into one shape
    assert digest('SELECT * FROM "a"') != digest('SELECT * FROM "b"')


def test_cache_parses_each_shape_once():
    cache = AnalysisCache()
    for i in range(5):
        a = cache.get(f"SELECT * FROM t WHERE id = {i}", Kind.SELECT)
    assert a.reads[0].name == "t"
    assert (cache.misses, cache.hits) == (1, 4)


def test_cache_caches_errors_too():
    cache = AnalysisCache()
    for _ in range(2):
        with pytest.raises(SqlError):
            cache.get("UPDATE SET WHERE", Kind.UPDATE)
    assert cache.misses == 1


def test_cache_is_bounded():
    cache = AnalysisCache(capacity=3)
    for name in "abcde":
        cache.get(f"SELECT * FROM {name}", Kind.SELECT)
    assert len(cache._entries) == 3


def test_hazards_are_detected():
    cache = AnalysisCache()
    assert cache.get("UPDATE t SET u = UUID()", Kind.UPDATE).nondeterministic == "UUID()"
    assert cache.get("UPDATE t SET u = 'uuid()'", Kind.UPDATE).nondeterministic is None  # inside a string
    assert cache.get("DELETE FROM t LIMIT 3", Kind.DELETE).unordered_limit
    assert not cache.get("DELETE FROM t ORDER BY id LIMIT 3", Kind.DELETE).unordered_limit
    assert cache.get("INSERT INTO t VALUES (RAND())", Kind.INSERT).uses_rand


def test_substitute_last_insert_id_skips_strings():
    out = substitute_last_insert_id("INSERT INTO c VALUES (LAST_INSERT_ID(), 'last_insert_id()')", 42)
    assert out == "INSERT INTO c VALUES (42, 'last_insert_id()')"


def test_executable_comments_are_read_as_mariadb_reads_them():
    from proxy.statements import unwrap_executable_comments as unwrap

    assert unwrap("/*!40101 SET NAMES utf8mb4 */").strip() == "SET NAMES utf8mb4"
    assert unwrap("/*M!999999 sandbox */ /*!40000 ALTER TABLE `t` DISABLE KEYS */").strip() == "ALTER TABLE `t` DISABLE KEYS"
    assert unwrap("SELECT 1 /*! , 2 */ /*!999999 , 3 */").split() == ["SELECT", "1", ",", "2"]
    assert unwrap("SELECT '/*!40101 no */', `/*!x*/`") == "SELECT '/*!40101 no */', `/*!x*/`"  # strings and names untouched
    assert unwrap("CREATE TABLE t (a INT) /*!50100 PARTITION BY HASH (a) */").split()[-4:] == ["PARTITION", "BY", "HASH", "(a)"]
    # MySQL 5.7+ syntax is skipped by MariaDB (PyMySQL's own suite sends this), MariaDB's /*M! is not:
    assert unwrap("geom LINESTRING NOT NULL /*!80003 SRID 0 */,").split() == ["geom", "LINESTRING", "NOT", "NULL", ","]
    assert unwrap("SELECT 1 /*M!50701 , 2 */").split() == ["SELECT", "1", ",", "2"]


@pytest.mark.parametrize("sql, writes, reads", [
    # MariaDB's DELETE FROM <targets> USING <tables>: the targets may be aliases of USING's tables
    ("DELETE FROM m1 USING t1 m1, t1 m2 WHERE m1.a = m2.a", ["t1"], []),
    ("DELETE FROM m1, m2 USING t1 m1 JOIN t2 m2 ON m1.a = m2.a", ["t1", "t2"], []),
    ("DELETE FROM t1 USING t1, t2 WHERE t1.a = t2.a", ["t1"], ["t2"]),
])
def test_delete_using_writes_the_tables_behind_its_aliases(sql, writes, reads):
    from proxy.statements import analyze

    a = analyze(sql, classify(sql), sql)
    assert [r.name for r in a.writes] == writes and [r.name for r in a.reads] == reads
