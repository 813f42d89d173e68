"""What the leader's DDL handlers answer and share (ddl_service.py and
view_service.py): the result dicts, the system-schema refusal, and the
placement edit that unpublishes dropped tables."""

from __future__ import annotations

from typing import Any, Callable

from minisql.errors import ER_DBACCESS_DENIED, SqlError
from topology import Placement

from .ddl import SYSTEM_SCHEMAS


def note(code: int, message: str) -> dict[str, Any]:
    return {"level": "Note", "code": code, "message": message}


def user_schema(database: str) -> str:
    if database.lower() in SYSTEM_SCHEMAS:
        raise SqlError(ER_DBACCESS_DENIED, f"Access denied: MiniSQL Cluster does not manage system database '{database}'")
    return database


def ok(placement: Placement, affected_rows: int = 0, warnings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"ok": True, "affected_rows": affected_rows, "placement_version": placement.version}
    if warnings:
        result["warnings"] = warnings
    return result


def without_tables(dropped: list[tuple[str, str]]) -> Callable[[Placement], Placement | None]:
    """The placement edit that unpublishes `dropped` (None: nothing to change)."""
    def remove(p: Placement) -> Placement | None:
        result = p
        for db, name in dropped:
            result = result.without_table(db, name)
        return None if result is p else result

    return remove
