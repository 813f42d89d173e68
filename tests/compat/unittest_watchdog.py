"""Run a unittest-based harness with a per-test time limit (used by tests/compat/runner.py).

    python unittest_watchdog.py SECONDS BUDGET script.py [script args...]

Every `unittest.TestCase.run` gets a SIGALRM after SECONDS; its handler raises
`CompatTestTimeoutError` in the test (a blocking socket read is interrupted
too), so the test is reported as an error and the run goes on.  Once BUDGET
seconds have passed, no further test starts: the run stops as if Ctrl-C'd
in unittest's own way (`result.stop()`), so the harness still prints its
failures and its "Ran N tests" for what did run, and the line
"compat watchdog: budget of N s spent, run stopped before TEST" says it was cut.
Nothing else about the harness changes.
"""

import atexit
import runpy
import signal
import sys
import time
import unittest


class CompatTestTimeoutError(Exception):
    pass


def main() -> None:
    limit, budget, script = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    deadline = time.monotonic() + budget
    not_started = []

    def expired(signum, frame):
        raise CompatTestTimeoutError(f"test still running after {limit} s: stopped by the compat runner's watchdog")

    original = unittest.TestCase.run

    def run(self, result=None):
        if time.monotonic() > deadline:
            not_started.append(self.id())
            if result is not None:
                result.stop()
            return result
        previous = signal.signal(signal.SIGALRM, expired)
        signal.alarm(limit)
        try:
            return original(self, result)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)

    @atexit.register
    def report() -> None:
        if not_started:
            print(f"compat watchdog: budget of {budget:.0f} s spent, run stopped before {not_started[0]}", flush=True)

    unittest.TestCase.run = run
    sys.argv = [script, *sys.argv[4:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
