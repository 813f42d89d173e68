"""Run a unittest-based harness with a per-test time limit (used by tests/compat/runner.py).

    python unittest_watchdog.py SECONDS script.py [script args...]

Every `unittest.TestCase.run` gets a SIGALRM after SECONDS; its handler raises
`CompatTestTimeoutError` in the test (a blocking socket read is interrupted
too), so the test is reported as an error and the run goes on.  Nothing else
about the harness changes.
"""

import runpy
import signal
import sys
import unittest


class CompatTestTimeoutError(Exception):
    pass


def main() -> None:
    limit, script = int(sys.argv[1]), sys.argv[2]

    def expired(signum, frame):
        raise CompatTestTimeoutError(f"test still running after {limit} s: stopped by the compat runner's watchdog")

    original = unittest.TestCase.run

    def run(self, result=None):
        previous = signal.signal(signal.SIGALRM, expired)
        signal.alarm(limit)
        try:
            return original(self, result)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)

    unittest.TestCase.run = run
    sys.argv = [script, *sys.argv[3:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
