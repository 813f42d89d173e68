"""Golden plans: every statement class, planned against one fixed placement, must
give the plan recorded in golden/plans.json (or the recorded error).

The file is data: to add a case, append {"sql": ...} (optionally "session":
{"database", "autocommit", "in_transaction", "named", "connection_id"}) and regenerate with
MINISQL_UPDATE_GOLDEN=1; review the diff like code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from minisql.errors import SqlError
from proxy.planbuilder import plan_statement
from proxy.sessionstate import SessionState
from proxy.statements import AnalysisCache, classify
from proxy.txn import TxState

from .fakecursor import SNAP

GOLDEN = Path(__file__).parent / "golden" / "plans.json"
CASES = json.loads(GOLDEN.read_text())


def plan_case(case: dict) -> dict:
    spec = case.get("session", {})
    state = SessionState(database=spec.get("database", "shop"),
                         tx=TxState(autocommit=spec.get("autocommit", True), active=spec.get("in_transaction", False)),
                         named=dict(spec.get("named", {})), connection_id=spec.get("connection_id", 0),
                         temp_tables={tuple(k.split(".")): r for k, r in spec.get("temp", {}).items()})
    sql = case["sql"]
    try:
        return plan_statement(sql, classify(sql), SNAP, state, AnalysisCache()).describe()
    except SqlError as e:
        return {"error": e.errno}


def test_every_statement_class_is_covered():
    kinds = {classify(case["sql"]).value for case in CASES}
    assert kinds >= {"select", "insert", "update", "delete", "replace", "begin", "commit", "rollback", "savepoint",
                     "rollback_to", "release", "set", "use", "show", "describe", "ddl", "account", "show_grants", "flush",
                     "prepare", "execute", "deallocate", "maintenance", "help", "set_statement", "temporary", "lock_tables",
                     "do", "kill", "routine", "call", "load_data", "trigger", "compound", "xa"}


@pytest.mark.parametrize("case", CASES, ids=[c["sql"][:60] for c in CASES])
def test_golden_plan(case):
    got = plan_case(case)
    if os.environ.get("MINISQL_UPDATE_GOLDEN"):
        case["plan"] = got
        GOLDEN.write_text(json.dumps(CASES, indent=1) + "\n")
        return
    assert got == case["plan"], f"{case['sql']}: got {got}"


def test_drop_table_of_temporary_and_normal_tables_drops_both():
    state = SessionState(database="shop", temp_tables={("shop", "tmp"): "r2"})
    plan = plan_statement("DROP TABLE users, tmp", classify("DROP TABLE users, tmp"), SNAP, state, AnalysisCache())
    assert plan.describe() == {"DropBoth": [{"TempTable": "r2", "drops": ["shop.tmp"]}, {"Ddl": "master"}]}
    assert plan.temporary.sql == "DROP TEMPORARY TABLE `shop`.`tmp`" and plan.normal.sql == "DROP TABLE `shop`.`users`"
