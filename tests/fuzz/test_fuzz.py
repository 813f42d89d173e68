"""The proxy under a bounded, seeded protocol and SQL fuzzer, against a real cluster.

Why: the proxy is the only thing between the network and every region, and it
runs all clients on one asyncio event loop.  One malformed packet that makes
that loop spin, or a failed login that still gets a session, takes the whole
gateway down or opens it.  The default run fuzzes for a small budget (about
30 s) with a fixed seed, so the same inputs run on every CI run; `make fuzz`
runs the same generators for 10 minutes and writes the report.

Environment:
  MINISQL_FUZZ_SEED      the seed (default fixed)
  MINISQL_FUZZ_BUDGET    seconds of fuzzing (default 30)
  MINISQL_FUZZ_INPUTS    maximum number of inputs (default 100000)
  MINISQL_FUZZ_DEADLINE  steady client's SELECT 1 bound in seconds (default 2)
  MINISQL_FUZZ_MAX_RSS_MB  bound on the proxy's RSS (default 512)
  MINISQL_FUZZ_OVERSIZED_MB  size of the oversized packets (default 48)
  MINISQL_FUZZ_FAMILIES  comma-separated families, or `all` (default: all but PENDING)
  MINISQL_FUZZ_REPORT    also write the JSON report to this path
"""

from __future__ import annotations

import json
import os
import time

from .conftest import canary_problems
from .harness import FuzzConfig, Runner

# Families that still find an unfixed proxy bug.  They are excluded from the
# default run only (so `make test` stays green), and run by `make fuzz`, which
# selects every family.  Empty the set as the fixes land.  (sql.huge -- a 4 MiB
# string literal took the proxy to ~600 MiB and blocked its loop -- was fixed by
# analysing big statements off the event loop, proxy/offload.py.)
PENDING: set[str] = set()


def test_proxy_survives_seeded_fuzzing(fuzz_cluster, tmp_path):
    cfg = FuzzConfig.from_env(budget=30.0, exclude=sorted(PENDING))
    runner = Runner(fuzz_cluster, cfg)
    report = runner.run()
    time.sleep(0.5)  # let the proxy finish rolling back the fuzz sessions it just lost
    problems = canary_problems(fuzz_cluster)
    report.canary_ok = not any(p.startswith("canary") for p in problems)
    report.copies_consistent = not any("diverged" in p for p in problems)
    for p in problems:
        report.add_failure("canary" if p.startswith("canary") else "copies", None, p)
    report.write(tmp_path / "fuzz-report.json", os.environ.get("MINISQL_FUZZ_REPORT"))
    print("\n" + report.summary())
    print(f"report: {tmp_path / 'fuzz-report.json'}")

    failures = json.dumps(report.failures, indent=1)[:6000]
    assert report.inputs > 0
    assert report.crashes == 0, f"the proxy died:\n{failures}"
    assert report.hangs == 0, f"the steady client missed its {cfg.deadline}s deadline:\n{failures}"
    assert report.unauth_answers == 0, f"unauthenticated connections got answers:\n{failures}"
    assert report.valid_unanswered == 0, f"valid (split) inputs went unanswered:\n{failures}"
    assert report.rss_over_bound == 0, f"proxy RSS went over {cfg.max_rss_mb} MiB:\n{failures}"
    assert report.peak_rss_mb <= cfg.max_rss_mb
    assert not problems, "\n".join(problems)
