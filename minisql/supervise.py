"""When `minisql up` restarts a child that died: exponential backoff.

A dead region's MariaDB is exactly the failure the cluster exists to
survive (the master promotes its tables' replicas elsewhere), so the local
supervisor does not tear the stack down when one child exits: it restarts
that child, as systemd's `Restart=always` or Kubernetes' CrashLoopBackOff
would, and keeps everything else running.  Only Ctrl-C / SIGTERM stops the
stack.

The delays double from `initial` up to `cap` while a child keeps dying, and
start again from `initial` once it stayed up `stable` seconds.  Pure (the
clock is passed in), so the policy is unit-tested without processes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Backoff:
    """One child's restart schedule."""

    initial: float = 1.0
    cap: float = 30.0
    stable: float = 60.0
    started_at: float = 0.0  # when the current run was launched
    failures: int = 0  # deaths in a row, each within `stable` of its launch
    restarts: int = 0  # restarts so far (for the log)
    due: float | None = None  # when the pending restart is due; None: running

    def died(self, now: float) -> float:
        """The child exited (or its restart failed) at `now`: the delay before
        the next attempt, which becomes due then."""
        if now - self.started_at >= self.stable:
            self.failures = 0
        delay = min(self.cap, self.initial * (2 ** self.failures))
        self.failures += 1
        self.due = now + delay
        return delay

    def ready(self, now: float) -> bool:
        """True if a restart is pending and due."""
        return self.due is not None and now >= self.due

    def launched(self, now: float) -> None:
        self.due = None
        self.started_at = now
        self.restarts += 1
