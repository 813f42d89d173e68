"""Table-driven tests of the master's DDL analysis (master/ddl.py)."""

from __future__ import annotations

import pytest

from master.ddl import DdlKind, DdlStatement, TableRef, analyze_ddl
from minisql.errors import SqlError

K = DdlKind


def t(name: str) -> TableRef:
    db, _, table = name.rpartition(".")
    return TableRef(db or None, table)


CASES = [
    # (sql, expected DdlStatement)
    ("CREATE DATABASE d", DdlStatement(K.CREATE_DATABASE, database="d")),
    ("create schema if not exists d", DdlStatement(K.CREATE_DATABASE, database="d", if_not_exists=True)),
    ("CREATE DATABASE `we``ird` CHARACTER SET utf8mb4", DdlStatement(K.CREATE_DATABASE, database="we`ird")),
    ("DROP DATABASE d", DdlStatement(K.DROP_DATABASE, database="d")),
    ("DROP SCHEMA IF EXISTS d", DdlStatement(K.DROP_DATABASE, database="d", if_exists=True)),
    ("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10)) ENGINE=InnoDB",
     DdlStatement(K.CREATE_TABLE, tables=(t("t"),))),
    ("CREATE TABLE IF NOT EXISTS d.t (id INT);", DdlStatement(K.CREATE_TABLE, tables=(t("d.t"),), if_not_exists=True)),
    ("CREATE TABLE `My Db`.`T-1` (a int)", DdlStatement(K.CREATE_TABLE, tables=(TableRef("My Db", "T-1"),))),
    ("CREATE TABLE t (a int, g int AS (a+1) VIRTUAL) DEFAULT CHARSET=utf8mb4",
     DdlStatement(K.CREATE_TABLE, tables=(t("t"),))),
    # sqlglot gives up on these; the token-level head reader takes over
    ("CREATE TABLE p (a int) PARTITION BY HASH(a) PARTITIONS 4", DdlStatement(K.CREATE_TABLE, tables=(t("p"),))),
    ("CREATE TABLE IF NOT EXISTS d.p (a int) COMMENT 'as' PARTITION BY HASH(a)",
     DdlStatement(K.CREATE_TABLE, tables=(t("d.p"),), if_not_exists=True)),
    ("CREATE FULLTEXT INDEX ft ON d.t (body)", DdlStatement(K.CREATE_INDEX, tables=(t("d.t"),))),
    ("ALTER TABLE t ADD PARTITION (PARTITION p1 VALUES LESS THAN (10))",
     DdlStatement(K.ALTER_TABLE, tables=(t("t"),))),
    ("DROP TABLE t", DdlStatement(K.DROP_TABLE, tables=(t("t"),))),
    ("DROP TABLE IF EXISTS a, other.b", DdlStatement(K.DROP_TABLE, tables=(t("a"), t("other.b")), if_exists=True)),
    ("ALTER TABLE d.t ADD COLUMN c INT", DdlStatement(K.ALTER_TABLE, tables=(t("d.t"),))),
    ("ALTER TABLE IF EXISTS t DROP COLUMN c", DdlStatement(K.ALTER_TABLE, tables=(t("t"),), if_exists=True)),
    ("ALTER TABLE t RENAME COLUMN a TO b", DdlStatement(K.ALTER_TABLE, tables=(t("t"),))),
    ("ALTER TABLE t RENAME INDEX a TO b", DdlStatement(K.ALTER_TABLE, tables=(t("t"),))),
    ("ALTER TABLE t RENAME TO u", DdlStatement(K.ALTER_TABLE, tables=(t("t"),), renames=((t("t"), t("u")),))),
    ("ALTER TABLE t ADD c INT, RENAME d.u", DdlStatement(K.ALTER_TABLE, tables=(t("t"),), renames=((t("t"), t("d.u")),))),
    ("ALTER TABLE d.t RENAME AS e.u", DdlStatement(K.ALTER_TABLE, tables=(t("d.t"),), renames=((t("d.t"), t("e.u")),))),
    ("RENAME TABLE a TO b, d.c TO e.c", DdlStatement(K.RENAME_TABLE, tables=(t("a"), t("d.c")),
                                                     renames=((t("a"), t("b")), (t("d.c"), t("e.c"))))),
    ("/* x */ rename tables if exists a nowait to b", DdlStatement(K.RENAME_TABLE, tables=(t("a"),), if_exists=True,
                                                                    renames=((t("a"), t("b")),))),
    ("RENAME TABLE a WAIT 5 TO b;", DdlStatement(K.RENAME_TABLE, tables=(t("a"),), renames=((t("a"), t("b")),))),
    ("CREATE OR REPLACE ALGORITHM=MERGE DEFINER=`u`@`%` SQL SECURITY INVOKER VIEW d.v (x) AS "
     "WITH c AS (SELECT 1) SELECT a FROM t JOIN c JOIN e.u JOIN mysql.user WITH CHECK OPTION",
     DdlStatement(K.CREATE_VIEW, tables=(t("d.v"),), or_replace=True, references=(t("t"), t("e.u")))),
    ("CREATE VIEW IF NOT EXISTS v AS SELECT a FROM t WHERE a IN (SELECT b FROM u)",
     DdlStatement(K.CREATE_VIEW, tables=(t("v"),), if_not_exists=True, references=(t("t"), t("u")))),
    ("ALTER VIEW v AS SELECT 1", DdlStatement(K.ALTER_VIEW, tables=(t("v"),))),
    ("DROP VIEW IF EXISTS v, d.w CASCADE", DdlStatement(K.DROP_VIEW, tables=(t("v"), t("d.w")), if_exists=True)),
    ("CREATE INDEX i ON t (a)", DdlStatement(K.CREATE_INDEX, tables=(t("t"),))),
    ("CREATE UNIQUE INDEX i ON d.t (a)", DdlStatement(K.CREATE_INDEX, tables=(t("d.t"),))),
    ("DROP INDEX i ON d.t", DdlStatement(K.DROP_INDEX, tables=(t("d.t"),))),
    ("TRUNCATE TABLE t", DdlStatement(K.TRUNCATE_TABLE, tables=(t("t"),))),
    ("truncate d.t", DdlStatement(K.TRUNCATE_TABLE, tables=(t("d.t"),))),
]


@pytest.mark.parametrize("sql, expected", CASES, ids=[c[0][:50] for c in CASES])
def test_analyze(sql, expected):
    assert analyze_ddl(sql) == expected


ERROR_CASES = [
    # (sql, errno, text that must be in the message)
    ("", 1065, "Query was empty"),
    ("-- only a comment", 1065, "Query was empty"),
    ("CREATE TABLE (", 1064, "error in your SQL syntax"),
    ("foo bar", 1064, "error in your SQL syntax"),
    ("CREATE TABLE t AS SELECT 1", 1235, "CREATE TABLE ... SELECT"),
    ("CREATE TABLE t SELECT * FROM u", 1235, "CREATE TABLE ... SELECT"),
    ("CREATE TABLE t LIKE u", 1235, "CREATE TABLE ... LIKE"),
    ("CREATE TABLE t (LIKE u)", 1235, "CREATE TABLE ... LIKE"),
    ("CREATE TEMPORARY TABLE t (a int)", 1235, "CREATE TEMPORARY TABLE"),
    ("CREATE OR REPLACE TABLE t (a int)", 1235, "CREATE OR REPLACE TABLE"),
    ("DROP TEMPORARY TABLE t", 1235, "DROP TEMPORARY TABLE"),
    ("RENAME TABLE a b", 1064, "error in your SQL syntax"),
    ("RENAME TABLE a TO b c TO d", 1064, "error in your SQL syntax"),
    ("CREATE VIEW v", 1064, "error in your SQL syntax"),
    ("DROP VIEW", 1064, "error in your SQL syntax"),
    ("CREATE PROCEDURE p() BEGIN END", 1235, "CREATE PROCEDURE"),
    ("CREATE TRIGGER x BEFORE INSERT ON t FOR EACH ROW SET @a=1", 1235, "CREATE TRIGGER"),
    ("CREATE USER u", 1235, "CREATE USER"),
    ("GRANT ALL ON *.* TO u", 1235, "GRANT"),
    ("ALTER DATABASE d CHARACTER SET utf8", 1235, "ALTER DATABASE"),
    ("TRUNCATE TABLE a, b", 1235, "TRUNCATE of several tables"),
    ("CREATE TABLE t (a int); DROP TABLE u", 1235, "several statements"),
    ("SELECT 1", 1235, "SELECT"),
]


@pytest.mark.parametrize("sql, errno, text", ERROR_CASES, ids=[c[0][:50] or "empty" for c in ERROR_CASES])
def test_analyze_errors(sql, errno, text):
    with pytest.raises(SqlError) as info:
        analyze_ddl(sql)
    assert info.value.errno == errno
    assert text in info.value.message
    assert info.value.sqlstate == "42000"


RESOLVE_CASES = [
    (TableRef("d", "t"), None, ("d", "t")),
    (TableRef("d", "t"), "s", ("d", "t")),
    (TableRef(None, "t"), "s", ("s", "t")),
]


@pytest.mark.parametrize("ref, session_db, expected", RESOLVE_CASES)
def test_resolve(ref, session_db, expected):
    assert ref.resolve(session_db) == expected


def test_resolve_without_database_is_1046():
    with pytest.raises(SqlError) as info:
        TableRef(None, "t").resolve(None)
    assert (info.value.errno, info.value.sqlstate) == (1046, "3D000")
