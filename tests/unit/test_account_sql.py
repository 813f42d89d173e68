"""Pure tests of account statements' rewriting and MariaDB's host matching."""

from __future__ import annotations

import pytest

from minisql.accounts import best_match, host_matches, native_hash, region_password
from minisql.errors import SqlError
from proxy.account_sql import rewrite, verb_of
from proxy.statements import Kind, classify

REGION = "ab" * 20


def region_hash(ref):
    return REGION


@pytest.mark.parametrize(
    ("sql", "region_sql"),
    [
        ("CREATE USER 'bob'@'%' IDENTIFIED BY 'pw'", "CREATE USER 'bob'@'%' IDENTIFIED BY PASSWORD '*" + REGION.upper() + "'"),
        ("CREATE USER bob", "CREATE USER bob IDENTIFIED BY PASSWORD '*" + REGION.upper() + "'"),
        ("CREATE USER bob REQUIRE SSL", "CREATE USER bob IDENTIFIED BY PASSWORD '*" + REGION.upper() + "' "),
        ("GRANT SELECT ON db.* TO bob", "GRANT SELECT ON db.* TO bob"),
        ("SET PASSWORD FOR bob = PASSWORD('x')", "SET PASSWORD FOR bob = '*" + REGION.upper() + "'"),
        ("DROP USER IF EXISTS bob, al@'10.%'", "DROP USER IF EXISTS bob, al@'10.%'"),
    ],
)
def test_regions_never_see_the_clients_password(sql, region_sql):
    out, change = rewrite(sql, region_hash)
    assert out == region_sql
    assert "'pw'" not in out and "PASSWORD('x')" not in out


def test_what_changes_in_zookeeper():
    _, change = rewrite("CREATE USER IF NOT EXISTS a@h IDENTIFIED BY 'pw', b REQUIRE SSL", region_hash)
    assert change.if_not_exists and change.require_ssl is True
    assert [(s.ref.user, s.ref.host, s.native_hash) for s in change.accounts] == [("a", "h", native_hash("pw")), ("b", "%", "")]
    _, change = rewrite("GRANT SELECT (a, b), INSERT ON db.t TO x, y@'10.%' WITH GRANT OPTION", region_hash)
    assert [(s.ref.user, s.ref.host, s.native_hash) for s in change.accounts] == [("x", "%", None), ("y", "10.%", None)]
    _, change = rewrite("RENAME USER a TO b, c@h TO d@h", region_hash)
    assert [(o.user, n.user, n.host) for o, n in change.renames] == [("a", "b", "%"), ("c", "d", "h")]
    _, change = rewrite("ALTER USER CURRENT_USER() IDENTIFIED BY PASSWORD '*" + "A" * 40 + "'", region_hash)
    assert change.accounts[0].ref.current and change.accounts[0].native_hash == "a" * 40


@pytest.mark.parametrize(
    "sql",
    [
        "GRANT ALL ON *.* TO x /*! IDENTIFIED BY 'pw' */",  # would set a region password we do not know
        "CREATE USER x IDENTIFIED VIA unix_socket",
        "SET PASSWORD = 'not-a-hash'",
        "CREATE USER",
    ],
)
def test_refused_forms(sql):
    with pytest.raises(SqlError):
        rewrite(sql, region_hash)


def test_classification():
    for sql in ("GRANT SELECT ON a.* TO b", "CREATE USER x", "create or replace user x", "DROP USER x", "REVOKE ALL ON *.* FROM x", "SET PASSWORD = PASSWORD('x')"):
        assert classify(sql) is Kind.ACCOUNT, sql
        assert verb_of(sql) is not None
    assert classify("SHOW GRANTS FOR x") is Kind.SHOW_GRANTS
    assert classify("CREATE OR REPLACE TABLE t (a INT)") is Kind.DDL
    assert classify("SET @a = 1") is Kind.SET


def test_host_matching_follows_mariadb():
    assert host_matches("%", "10.1.2.3")
    assert host_matches("localhost", "127.0.0.1") and not host_matches("localhost", "10.0.0.1")
    assert host_matches("10.0.%", "10.0.7.1") and not host_matches("10.0.%", "10.1.7.1")
    assert host_matches("10.0.0.0/255.255.255.0", "10.0.0.9") and not host_matches("10.0.0.0/255.255.255.0", "10.0.1.9")
    candidates = [("app", "%", "any"), ("app", "10.0.%", "net"), ("app", "10.0.0.5", "exact"), ("", "localhost", "anon")]
    assert best_match(candidates, "app", "10.0.0.5") == "exact"
    assert best_match(candidates, "app", "10.0.0.6") == "net"
    assert best_match(candidates, "app", "192.168.1.1") == "any"
    assert best_match(candidates, "app", "127.0.0.1") == "anon"  # MariaDB's famous ''@localhost rule
    assert best_match(candidates, "other", "192.168.1.1") is None


def test_region_passwords_differ_per_account_and_secret():
    a = region_password("s1", "bob", "%")
    assert a != region_password("s1", "bob", "localhost") != region_password("s2", "bob", "%")
    assert region_password("s1", "bob", "LOCALHOST") == region_password("s1", "bob", "localhost")
