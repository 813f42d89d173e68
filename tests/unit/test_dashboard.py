"""The Grafana dashboard is generated (grafana/gen_dashboard.py) and every
series it queries is one the code exports (grafana/check_dashboard.py)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_dashboard_is_the_generated_one():
    spec = importlib.util.spec_from_file_location("gen_dashboard", ROOT / "grafana" / "gen_dashboard.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    committed = json.loads((ROOT / "grafana" / "dashboards" / "minisql.json").read_text())
    assert committed == gen.build(), "run: python3 grafana/gen_dashboard.py"


def test_every_dashboard_query_names_an_exported_metric():
    done = subprocess.run([sys.executable, str(ROOT / "grafana" / "check_dashboard.py")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "error:" not in done.stdout + done.stderr
