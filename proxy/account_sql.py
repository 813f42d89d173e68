"""Account statements: parse what they change, rewrite their passwords.

CREATE/ALTER/DROP/RENAME USER, GRANT, REVOKE and SET PASSWORD run on every
region *as the client* (so MariaDB decides whether the client may run them),
but with every password replaced by the account's region password (see
minisql/accounts.py): the regions never hold a client's password or hash, and
the client-facing hashes go to ZooKeeper instead.  This module is pure text
work -- a small tokenizer (sqlglot parses none of these beyond a generic
Command) and the rewrite -- so it is unit-tested without servers.

`rewrite(sql, region_hash)` returns the statement for the regions plus an
`AccountChange` saying which accounts to create, update, drop or rename in
ZooKeeper and with which client-facing hashes.  REQUIRE clauses are enforced
by the proxy (TLS ends there) and removed from the regions' copy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from minisql.accounts import native_hash, sha2_hash
from minisql.errors import SqlError, unsupported

from .plugins import ed25519_public_key

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|/\*(?!!).*?\*/|--[ \t][^\n]*|\#[^\n]*)
  | (?P<str>'[^'\\]*(?:(?:\\.|'')[^'\\]*)*'|"[^"\\]*(?:(?:\\.|"")[^"\\]*)*")
  | (?P<qid>`[^`]*(?:``[^`]*)*`)
  | (?P<word>[A-Za-z0-9_$.*]+)
  | (?P<sym>\(\)|[@=,;()])
  | (?P<other>.)
    """,
    re.X | re.S,
)


@dataclass
class Token:
    kind: str  # str | qid | word | sym | other
    text: str
    start: int
    end: int

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else ""


MAX_ACCOUNT_STATEMENT = 64 * 1024  # no real account statement is longer; tokenising megabytes would stall the loop


def tokenize(sql: str, limit: int | None = None) -> list[Token]:
    """Tokens of `sql` (at most `limit` of them)."""
    out: list[Token] = []
    for m in _TOKEN.finditer(sql):
        if limit is not None and len(out) >= limit:
            break
        kind = m.lastgroup or "other"
        if kind == "ws":
            continue
        out.append(Token(kind, m.group(), m.start(), m.end()))
    return out


def unquote(tok: Token) -> str:
    text = tok.text
    if tok.kind == "qid":
        return text[1:-1].replace("``", "`")
    if tok.kind == "str":
        q = text[0]
        body = text[1:-1].replace(q + q, q)
        return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "0": "\0", "r": "\r"}.get(m.group(1), m.group(1)), body)
    return text


@dataclass(frozen=True)
class UserRef:
    user: str
    host: str  # "%" when not given
    current: bool = False  # CURRENT_USER

    def sql(self) -> str:
        return "'" + self.user.replace("\\", "\\\\").replace("'", "''") + "'@'" + self.host.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass
class AccountSpec:
    """One account named by the statement, and the password it is given (if any)."""

    ref: UserRef
    native_hash: str | None = None  # None: password not changed by this statement
    sha2_hash: str | None = None
    plugin: str = ""  # the account's plugin when the password changes ("" = mysql_native_password)
    ed25519_key: str = ""


@dataclass
class AccountChange:
    verb: str  # CREATE USER | ALTER USER | DROP USER | RENAME USER | GRANT | REVOKE | SET PASSWORD
    accounts: list[AccountSpec] = field(default_factory=list)
    renames: list[tuple[UserRef, UserRef]] = field(default_factory=list)
    require_ssl: bool | None = None  # None: REQUIRE not mentioned
    if_not_exists: bool = False
    or_replace: bool = False
    if_exists: bool = False


class _Parser:
    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.toks = tokenize(sql)
        self.i = 0
        self.edits: list[tuple[int, int, str]] = []  # (start, end, replacement) in sql

    def peek(self, k: int = 0) -> Token | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def at(self, *words: str) -> bool:
        for k, w in enumerate(words):
            t = self.peek(k)
            if t is None or (t.upper != w and t.text != w):
                return False
        return True

    def take(self, *words: str) -> bool:
        if self.at(*words):
            self.i += len(words)
            return True
        return False

    def next(self) -> Token:
        t = self.peek()
        if t is None:
            raise _syntax(self.sql)
        self.i += 1
        return t

    def user(self) -> UserRef:
        t = self.next()
        if t.upper in ("CURRENT_USER", "CURRENT_USER()"):
            self.take("()")
            return UserRef("", "", current=True)
        if t.kind not in ("str", "qid", "word"):
            raise _syntax(self.sql, t)
        host = "%"
        if self.take("@"):
            h = self.next()
            if h.kind not in ("str", "qid", "word"):
                raise _syntax(self.sql, h)
            host = unquote(h)
        return UserRef(unquote(t), host)

    def password_clause(self, spec: AccountSpec, region_hash: Callable[[UserRef], str], *, creating: bool = False) -> None:
        """After a user: IDENTIFIED BY [PASSWORD] '...' | IDENTIFIED VIA/WITH plugin [USING|AS ...].

        A new account without one still gets its region password on the regions
        (and no password for the client, as in MariaDB)."""
        if not self.at("IDENTIFIED"):
            if creating:
                spec.native_hash, spec.sha2_hash = "", ""
                at = self.toks[self.i - 1].end
                self.edits.append((at, at, f" IDENTIFIED BY PASSWORD '*{region_hash(spec.ref).upper()}'"))
            return
        start = self.peek().start  # type: ignore[union-attr]
        self.next()
        if self.take("BY"):
            hashed = self.take("PASSWORD")
            value = self.next()
            if value.kind != "str":
                raise _syntax(self.sql, value)
            self._set_password(spec, unquote(value), hashed)
        elif self.take("VIA") or self.take("WITH"):
            while True:
                plugin = unquote(self.next()).lower()
                if plugin not in ("mysql_native_password", "caching_sha2_password", "ed25519"):
                    raise unsupported(
                        f"accounts IDENTIFIED VIA {plugin} through the gateway "
                        "(mysql_native_password, caching_sha2_password and ed25519 are)"
                    )
                if self.take("USING") or self.take("AS") or self.take("BY"):
                    if self.take("PASSWORD"):
                        self.take("(")
                        value = self.next()
                        self.take(")")
                        self._set_password(spec, unquote(value), hashed=False)
                        if plugin == "ed25519":
                            spec.ed25519_key = ed25519_public_key(unquote(value).encode()) if unquote(value) else ""
                    elif plugin == "ed25519":  # USING '<base64 public key>' (MariaDB's auth string)
                        spec.native_hash, spec.sha2_hash, spec.ed25519_key = "", "", unquote(self.next())
                    else:
                        value = self.next()
                        self._set_password(spec, unquote(value), hashed=plugin == "mysql_native_password")
                else:
                    self._set_password(spec, "", hashed=False)
                spec.plugin = "" if plugin == "mysql_native_password" else plugin
                if not self.take("OR"):
                    break
        else:
            raise _syntax(self.sql, self.peek())
        end = self.toks[self.i - 1].end
        self.edits.append((start, end, f"IDENTIFIED BY PASSWORD '*{region_hash(spec.ref).upper()}'"))

    def _set_password(self, spec: AccountSpec, value: str, hashed: bool) -> None:
        if hashed:
            text = value.strip()
            if text.startswith("*"):
                text = text[1:]
            if text and not re.fullmatch(r"[0-9A-Fa-f]{40}", text):
                raise SqlError(1372, "Password hash should be a 41-digit hexadecimal number", "HY000")
            spec.native_hash, spec.sha2_hash = text.lower(), ""
        else:
            spec.native_hash, spec.sha2_hash = native_hash(value), sha2_hash(value)

    def require_clause(self, change: AccountChange) -> None:
        """REQUIRE NONE | SSL | X509 | ISSUER/SUBJECT/CIPHER '...' [AND ...]: the proxy's job."""
        if not self.at("REQUIRE"):
            return
        start = self.next().start
        words = []
        while True:
            t = self.peek()
            if t is None or t.upper in ("WITH", "PASSWORD", "ACCOUNT") or t.text == ";":
                break
            words.append(t.upper)
            self.i += 1
        change.require_ssl = words != ["NONE"]
        self.edits.append((start, self.toks[self.i - 1].end, ""))

    def rewritten(self) -> str:
        out, pos = [], 0
        for start, end, text in sorted(self.edits):
            out.append(self.sql[pos:start])
            out.append(text)
            pos = end
        out.append(self.sql[pos:])
        return "".join(out)


def _syntax(sql: str, tok: Token | None = None) -> SqlError:
    near = sql[tok.start:tok.start + 40] if tok is not None else ""
    return SqlError(1064, f"You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to use near '{near}'", "42000")


VERBS = ("CREATE USER", "ALTER USER", "DROP USER", "RENAME USER", "GRANT", "REVOKE", "SET PASSWORD")


def verb_of(sql: str) -> str | None:
    toks = tokenize(sql, limit=4)
    words = [t.upper for t in toks]
    if words[:2] == ["CREATE", "OR"] and len(words) >= 4 and words[3] == "USER":
        return "CREATE USER"
    for verb in VERBS:
        parts = verb.split()
        if words[: len(parts)] == parts:
            return verb
    return None


def rewrite(sql: str, region_hash: Callable[[UserRef], str]) -> tuple[str, AccountChange]:
    """(statement for the regions, what changes in ZooKeeper); see module docstring.

    `region_hash(ref)` gives the native hash of `ref`'s region password.
    """
    if len(sql) > MAX_ACCOUNT_STATEMENT:
        raise unsupported(f"account statements longer than {MAX_ACCOUNT_STATEMENT} bytes")
    verb = verb_of(sql)
    if verb is None:
        raise _syntax(sql)
    if re.search(r"/\*M?!", sql):
        # What MariaDB runs inside one could set a region password the proxy does not know.
        raise unsupported("executable comments (/*! ... */) in account statements")
    p = _Parser(sql)
    change = AccountChange(verb)
    if verb in ("CREATE USER", "ALTER USER", "DROP USER", "RENAME USER"):
        p.take("CREATE") or p.take("ALTER") or p.take("DROP") or p.take("RENAME")
        change.or_replace = p.take("OR", "REPLACE")
        p.take("USER")
        change.if_not_exists = p.take("IF", "NOT", "EXISTS")
        change.if_exists = p.take("IF", "EXISTS")
        while True:
            ref = p.user()
            if verb == "RENAME USER":
                if not p.take("TO"):
                    raise _syntax(sql, p.peek())
                change.renames.append((ref, p.user()))
            else:
                spec = AccountSpec(ref)
                if verb in ("CREATE USER", "ALTER USER"):
                    p.password_clause(spec, region_hash, creating=verb == "CREATE USER")
                change.accounts.append(spec)
            if not p.take(","):
                break
        p.require_clause(change)
    elif verb in ("GRANT", "REVOKE"):
        p.next()
        depth = 0
        keyword = "TO" if verb == "GRANT" else "FROM"
        while True:  # privileges and object: up to TO/FROM outside parentheses
            t = p.next()
            if t.text == "(":
                depth += 1
            elif t.text == ")":
                depth -= 1
            elif depth == 0 and t.upper == keyword:
                break
        while True:
            spec = AccountSpec(p.user())
            p.password_clause(spec, region_hash)
            change.accounts.append(spec)
            if not p.take(","):
                break
        p.require_clause(change)
    else:  # SET PASSWORD [FOR user] = PASSWORD('x') | OLD_PASSWORD('x') | 'hash'
        p.take("SET")
        p.take("PASSWORD")
        ref = p.user() if p.take("FOR") else UserRef("", "", current=True)
        if not p.take("="):
            raise _syntax(sql, p.peek())
        start = p.peek().start if p.peek() else len(sql)
        spec = AccountSpec(ref)
        if p.at("PASSWORD") or p.at("OLD_PASSWORD"):
            if p.next().upper == "OLD_PASSWORD":
                raise unsupported("OLD_PASSWORD()")
            p.take("(")
            p._set_password(spec, unquote(p.next()), hashed=False)
            p.take(")")
        else:
            value = p.next()
            if value.kind != "str":
                raise _syntax(sql, value)
            p._set_password(spec, unquote(value), hashed=True)
        p.edits.append((start, p.toks[p.i - 1].end, f"'*{region_hash(ref).upper()}'"))
        change.accounts.append(spec)
    return p.rewritten(), change
