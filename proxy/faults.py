"""Fault points: where a test may kill the proxy (after FoundationDB's BUGGIFY
and Vitess's failpoints, in their simplest form).

A proxy started with ``MINISQL_FAULT=<point>`` kills itself with SIGKILL --
no cleanup, no goodbye to its backends, as a crash would -- the first time
it reaches `<point>`; ``<point>:<n>`` waits for the n-th time.  Without the
variable every `reached()` is one test of a module global.  The points are
named where they are placed (proxy/commit.py: ``commit:prepared``,
``commit:decided_once`` (on the decider, not yet on the backup),
``commit:decided``, ``commit:partly_committed``).
"""

from __future__ import annotations

import os
import signal

def _parse(spec: str) -> tuple[str, int]:
    """"point" or "point:n" (point names contain colons themselves)."""
    head, _, tail = spec.rpartition(":")
    if head and tail.isdigit() and int(tail) > 0:
        return head, int(tail)
    return spec, 1


_POINT, _LEFT = _parse(os.environ.get("MINISQL_FAULT", ""))
ARMED = bool(_POINT)


def reached(point: str) -> None:
    """Kill this process here if the fault point `point` is armed and due."""
    global _LEFT
    if not ARMED or point != _POINT:
        return
    _LEFT -= 1
    if _LEFT <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
