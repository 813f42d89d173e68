"""SQL LIKE matching ('%', '_', backslash escapes) without regular expressions.

Why not translate LIKE into a regex: a client-chosen pattern such as
'%a%a%a%a%...b' becomes `.*a.*a.*a...b`, whose backtracking grows as the
name's length to the power of the number of '%' -- a client could stall the
proxy's event loop with one SHOW TABLES LIKE.  The greedy two-pointer match
below (the classic wildcard algorithm) backtracks only to the last '%', so it
costs at most len(pattern) * len(value) steps.
"""

from __future__ import annotations

_ANY_ONE = object()
_ANY_RUN = object()


def _tokens(pattern: str, escapes: bool) -> list[object]:
    out: list[object] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if escapes and ch == "\\" and i + 1 < len(pattern):
            out.append(pattern[i + 1].casefold())
            i += 2
            continue
        if ch == "%":
            if not out or out[-1] is not _ANY_RUN:  # '%%' is one '%'
                out.append(_ANY_RUN)
        elif ch == "_":
            out.append(_ANY_ONE)
        else:
            out.append(ch.casefold())
        i += 1
    return out


class LikePattern:
    """A compiled LIKE pattern; case-insensitive, as MariaDB's default collations."""

    __slots__ = ("_tokens",)

    def __init__(self, pattern: str, *, escapes: bool = True) -> None:
        self._tokens = _tokens(pattern, escapes)

    def match(self, value: str) -> bool:
        p, text = self._tokens, value.casefold()
        i = j = 0
        star, mark = -1, 0
        while j < len(text):
            if i < len(p) and p[i] is not _ANY_RUN and (p[i] is _ANY_ONE or p[i] == text[j]):
                i += 1
                j += 1
            elif i < len(p) and p[i] is _ANY_RUN:
                star, mark = i, j
                i += 1
            elif star >= 0:
                i, mark = star + 1, mark + 1
                j = mark
            else:
                return False
        while i < len(p) and p[i] is _ANY_RUN:
            i += 1
        return i == len(p)


def like(pattern: str, value: str, *, escapes: bool = True) -> bool:
    return LikePattern(pattern, escapes=escapes).match(value)
