"""Splitting a multi-statement COM_QUERY (CLIENT_MULTI_STATEMENTS) into statements.

Why the proxy splits: each statement of "INSERT ...; SELECT ..." may need a
different route (a write to every copy, a read from one), so they are planned
and run one by one, and each result goes back with SERVER_MORE_RESULTS_EXISTS
until the last, as MariaDB does.  The backends never get multi-statements
(a write hidden behind a read would reach one copy only).

The split is at top-level semicolons, outside quotes and comments (one
tokenising regex: linear, no per-character Python loop).  Compound statements
(stored program bodies, BEGIN NOT ATOMIC, IF/LOOP/WHILE/...) contain
semicolons that are not statement ends; when a fragment looks like one, the
text is not split and goes on as one statement, as before.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(
    r"""'[^'\\]*(?:(?:\\.|'')[^'\\]*)*'?|"[^"\\]*(?:(?:\\.|"")[^"\\]*)*"?|`[^`]*(?:``[^`]*)*`?"""
    r"""|/\*.*?(?:\*/|\Z)|--[ \t][^\n]*|\#[^\n]*|;|[^'"`/;\-#]+|[/\-]""",
    re.S,
)
_FIRST_WORDS = re.compile(r"\s*(?:/\*.*?\*/\s*)*([A-Za-z_]+)(?:\s+([A-Za-z_]+))?(?:\s+([A-Za-z_]+))?", re.S)
_COMPOUND_START = {"declare", "if", "loop", "while", "repeat", "case", "for", "end", "elseif", "else", "until", "when", "then", "leave", "iterate", "return"}
_STORED_PROGRAMS = {"procedure", "function", "trigger", "event"}


def _looks_compound(fragment: str) -> bool:
    m = _FIRST_WORDS.match(fragment)
    if not m:
        return False
    words = [w.lower() for w in m.groups() if w]
    first = words[0]
    if first in _COMPOUND_START:
        return True
    if first == "begin" and len(words) > 1 and words[1] == "not":
        return True
    if first == "create":
        # CREATE [OR REPLACE] [DEFINER = ...] PROCEDURE/FUNCTION/TRIGGER/EVENT: the body has ';'
        return any(w in _STORED_PROGRAMS for w in words[1:]) or "definer" in words[1:] or (
            re.search(r"\b(procedure|function|trigger|event)\b", fragment[:200], re.I) is not None
        )
    return False


def split_statements(sql: str) -> list[str] | None:
    """The statements of `sql` when it holds more than one, else None."""
    if ";" not in sql:
        return None
    parts: list[str] = []
    start = 0
    for m in _TOKEN.finditer(sql):
        if m.group() == ";":
            parts.append(sql[start:m.start()])
            start = m.end()
    parts.append(sql[start:])
    statements = [p for p in parts if p.strip() and not _only_comments(p)]
    if len(statements) < 2:
        return None
    if any(_looks_compound(s) for s in statements):
        return None
    return statements


# Executable comments (/*! ... */, /*M! ... */) are statements, not comments.
_COMMENTS_ONLY = re.compile(r"(?:\s+|/\*(?![!M]).*?\*/|--[ \t][^\n]*|\#[^\n]*)*", re.S)


def _only_comments(text: str) -> bool:
    m = _COMMENTS_ONLY.match(text)
    return m is not None and m.end() == len(text)
