"""A seeded SQL fuzzer: valid statements on the fuzz table, then mutations.

The proxy classifies statements with regexes, digests them, parses DML shapes
with sqlglot and forwards the client's own text, so the interesting inputs are
the ones that confuse those layers: MariaDB executable comments (`/*! ... */`,
`/*M!100000 ... */`) that hide the real verb, deep nesting (parser recursion),
huge literals (digest and parse cost), NULs, odd control bytes, invalid UTF-8,
unterminated quotes and comments, multi-statements.

Safety: everything it writes names only the fuzz database's tables (`fz`,
`fz_tmp<n>`); it never emits GLOBAL settings, accounts, SHUTDOWN, KILL, FLUSH,
file I/O or SLEEP, because the MariaDB servers are shared by the whole test
session and the canary database must stay untouched by design.
"""

from __future__ import annotations

import random

TABLE = "fz"
CREATE_TABLE = f"CREATE TABLE {TABLE} (id INT PRIMARY KEY, a INT, b VARCHAR(64), c TEXT)"

COLUMNS = ("id", "a", "b", "c", "`a`", '"b"', "fz.a", "nope")
FUNCS = ("ABS", "LENGTH", "UPPER", "CONCAT", "COALESCE", "IFNULL", "HEX", "MD5", "LAST_INSERT_ID", "RAND", "NOW",
         "UUID", "SYSDATE", "CHAR_LENGTH", "REVERSE", "FOUND_ROWS", "DATABASE", "VERSION")
OPS = ("=", "<>", "<", ">=", "<=>", "LIKE", "REGEXP", "+", "-", "*", "/", "DIV", "%", "AND", "OR", "XOR", "||", "&&", "|", "&", "<<")
TOKENS = ("SELECT", "FROM", "WHERE", "INSERT", "UPDATE", "DELETE", "REPLACE", "INTO", "VALUES", "SET", "ORDER BY", "LIMIT",
          "GROUP BY", "HAVING", "UNION", "JOIN", "ON", "FOR UPDATE", "LOCK IN SHARE MODE", "(", ")", ",", ";", "'", '"', "`",
          "/*", "*/", "/*!", "/*M!100000", "--", "#", "\\", "?", "@", "@@", "NULL", "0x", "x'", "b'", "_utf8mb4", "COLLATE",
          "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "START TRANSACTION", "USE", "SHOW", "DESCRIBE", "EXPLAIN",
          "WITH", "AS", "CASE", "WHEN", "THEN", "END", "IN", "EXISTS", "NOT", "BETWEEN", "IS", "INTERVAL", "DUAL")
VERSIONS = ("", "50000", "100000", "100100", "999999", "1")


class SqlGen:
    """`next()` -> (sql bytes, note).  Roughly: 40% valid, 60% mutated or extreme."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.tmp = 0

    # -- valid fragments ---------------------------------------------------------------
    def literal(self) -> str:
        r = self.rng
        return r.choice((str(r.randint(-5, 50)), str(r.getrandbits(70)), f"'{r.choice(('a', 'bob', 'ü', '', 'x y'))}'",
                         "NULL", "0x41", "1e308", "-0.0", "TRUE", "'2024-01-01'", "_utf8mb4'é'", "x'ff'", "b'101'"))

    def expr(self, depth: int = 0) -> str:
        r = self.rng
        k = r.randrange(6 if depth < 3 else 2)
        if k == 0:
            return self.literal()
        if k == 1:
            return r.choice(COLUMNS[:4])
        if k == 2:
            return f"{self.expr(depth + 1)} {r.choice(OPS)} {self.expr(depth + 1)}"
        if k == 3:
            return f"{r.choice(FUNCS[:8])}({self.expr(depth + 1)})"
        if k == 4:
            return f"({self.expr(depth + 1)})"
        return f"(SELECT {r.choice(('a', 'MAX(id)', 'COUNT(*)'))} FROM {TABLE} LIMIT 1)"

    def where(self) -> str:
        return f" WHERE {self.expr()}" if self.rng.random() < 0.7 else ""

    def valid(self) -> str:
        r = self.rng
        k = r.randrange(16)
        row_id = r.randint(1, 40)
        if k == 0:
            return f"SELECT {self.expr()}, {r.choice(COLUMNS[:4])} FROM {TABLE}{self.where()} ORDER BY id LIMIT {r.randint(0, 5)}"
        if k == 1:
            return f"SELECT {self.expr()}"
        if k == 2:
            return f"INSERT INTO {TABLE} (id, a, b) VALUES ({row_id}, {r.randint(0, 9)}, 'v{r.randint(0, 99)}')"
        if k == 3:
            return f"REPLACE INTO {TABLE} VALUES ({row_id}, {r.randint(0, 9)}, 'r', NULL)"
        if k == 4:
            return f"UPDATE {TABLE} SET a = a + 1{self.where()}"
        if k == 5:
            return f"DELETE FROM {TABLE} WHERE id = {row_id}"
        if k == 6:
            return f"SELECT COUNT(*) FROM {TABLE} t1 JOIN {TABLE} t2 ON t1.id = t2.a{self.where()}"
        if k == 7:
            return r.choice(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT s1", "ROLLBACK TO SAVEPOINT s1", "RELEASE SAVEPOINT s1",
                             "START TRANSACTION READ ONLY", "SET autocommit=1", "SET autocommit=0"))
        if k == 8:
            return r.choice(("SHOW TABLES", f"SHOW COLUMNS FROM {TABLE}", f"DESCRIBE {TABLE}", "SHOW DATABASES",
                             f"SHOW CREATE TABLE {TABLE}", f"SHOW TABLE STATUS LIKE '{TABLE}'", f"EXPLAIN SELECT * FROM {TABLE}"))
        if k == 9:
            return r.choice(("SET NAMES utf8mb4", "SET NAMES latin1", "SET NAMES nonsense", "SET sql_mode='ANSI_QUOTES'",
                             "SET sql_mode=DEFAULT", "SET @v = 1", "SET SESSION wait_timeout=100", "SET @@session.sql_mode=''"))
        if k == 10:
            return r.choice(("USE fuzzdb", "USE no_such_db", "USE `fuzzdb`", "USE"))
        if k == 11:
            return f"SELECT * FROM {TABLE} WHERE id IN ({', '.join(str(r.randint(0, 50)) for _ in range(r.randint(1, 20)))}) FOR UPDATE"
        if k == 12:
            self.tmp += 1
            return r.choice((f"CREATE TABLE fz_tmp{self.tmp % 3} (id INT)", f"DROP TABLE fz_tmp{self.tmp % 3}",
                             f"CREATE TABLE IF NOT EXISTS fz_tmp{self.tmp % 3} (x TEXT)", f"TRUNCATE TABLE fz_tmp{self.tmp % 3}"))
        if k == 13:
            return f"UPDATE {TABLE} SET b = 'u' ORDER BY id LIMIT {r.randint(1, 3)}"
        if k == 14:
            return f"INSERT INTO {TABLE} (id, a) SELECT id + 100, a FROM {TABLE} WHERE id < {r.randint(0, 5)} ON DUPLICATE KEY UPDATE a = a"
        return f"SELECT {', '.join(self.expr() for _ in range(r.randint(1, 4)))} FROM {TABLE} GROUP BY a HAVING COUNT(*) > 0"

    # -- mutations and extremes ----------------------------------------------------------
    def mutate(self, sql: str) -> tuple[bytes, str]:
        r = self.rng
        k = r.randrange(12)
        data = sql.encode()
        if k == 0:
            cut = r.randrange(len(data) + 1)
            return data[:cut], "truncated"
        if k == 1:
            words = sql.split(" ")
            words.insert(r.randrange(len(words) + 1), r.choice(TOKENS))
            return " ".join(words).encode(), "token inserted"
        if k == 2:
            words = sql.split(" ")
            del words[r.randrange(len(words))]
            return " ".join(words).encode(), "word deleted"
        if k == 3:
            version = r.choice(VERSIONS)
            bang = r.choice(("/*!", "/*M!", "/*!", "/*"))
            if r.random() < 0.5:
                return f"{bang}{version} {sql} */".encode(), "executable comment around the statement"
            return f"{bang}{version} {self.valid()} */ {sql}".encode(), "executable comment before the statement"
        if k == 4:
            depth = r.choice((50, 200, 1000, 3000))
            return f"SELECT {'(' * depth}1{')' * depth}".encode(), f"nesting depth {depth}"
        if k == 5:
            size = r.choice((1 << 10, 64 << 10, 1 << 20))  # 4 MiB: the sql.huge family
            return f"SELECT LENGTH('{'x' * size}')".encode(), f"{size}-byte string literal"
        if k == 6:
            size = r.choice((1000, 100_000))
            return f"SELECT {'9' * size} + 1".encode(), f"{size}-digit number"
        if k == 7:
            pos = r.randrange(len(data) + 1)
            odd = r.choice((b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x1a", b"\r", b"\x7f", b"\xef\xbb\xbf"))
            return data[:pos] + odd + data[pos:], f"odd bytes {odd.hex()} at {pos}"
        if k == 8:
            n = r.randint(2, 30)
            return ";".join([sql] * n).encode(), f"{n} statements in one COM_QUERY"
        if k == 9:
            return (sql + r.choice((" '", ' "', " /*", " `", " -- ", " #", "\\"))).encode(), "unterminated quote/comment"
        if k == 10:
            n = r.choice((100, 2000))
            return f"SELECT {' UNION SELECT '.join(str(i) for i in range(n))}".encode(), f"UNION of {n}"
        return bytes(b ^ (1 << r.randrange(8)) if r.random() < 0.05 else b for b in data), "bit flips"

    def next(self) -> tuple[bytes, str]:
        sql = self.valid()
        if self.rng.random() < 0.4:
            return sql.encode(), "valid"
        data, note = self.mutate(sql)
        if self.rng.random() < 0.2:
            data, note2 = self.mutate(data.decode("utf-8", "replace"))
            note = f"{note}; {note2}"
        return data, note

    def huge(self) -> tuple[bytes, str]:
        """A 4 MiB string literal, plain or in a mutated statement (the `sql.huge` family)."""
        literal = "x" * (4 << 20)
        k = self.rng.randrange(4)
        if k == 0:
            return f"SELECT LENGTH('{literal}')".encode(), "4 MiB string literal"
        if k == 1:
            return f"UPDATE {TABLE} SET c = '{literal}' WHERE id = {self.rng.randint(1, 20)}".encode(), "4 MiB literal in an UPDATE"
        if k == 2:
            return f"SELECT * FROM {TABLE} WHERE b = '{literal}'".encode(), "4 MiB literal in a WHERE"
        data, note = self.mutate(f"SELECT LENGTH('{literal}')")
        return data, f"4 MiB string literal; {note}"
