"""The one error catalogue: MySQL error number, SQLSTATE, and whether retrying can help.

Every error a client sees -- from the proxy itself, relayed from a region's
MariaDB, or from the master's DDL -- is a `SqlError` carrying these three
facts, so the wire layer can write a correct ERR packet and the executor can
decide whether a retry is safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class ErrorKind:
    errno: int
    sqlstate: str
    retriable: bool = False


# errno -> (SQLSTATE, retriable).  SQLSTATEs from MariaDB's sql_state.h; only
# errors a gateway client can plausibly see are listed, the rest map to HY000.
_CATALOGUE: dict[int, tuple[str, bool]] = {
    1005: ("HY000", False),  # ER_CANT_CREATE_TABLE
    1007: ("HY000", False),  # ER_DB_CREATE_EXISTS
    1008: ("HY000", False),  # ER_DB_DROP_EXISTS
    1040: ("08004", True),  # ER_CON_COUNT_ERROR
    1044: ("42000", False),  # ER_DBACCESS_DENIED_ERROR
    1045: ("28000", False),  # ER_ACCESS_DENIED_ERROR
    1046: ("3D000", False),  # ER_NO_DB_ERROR
    1047: ("08S01", False),  # ER_UNKNOWN_COM_ERROR
    1048: ("23000", False),  # ER_BAD_NULL_ERROR
    1049: ("42000", False),  # ER_BAD_DB_ERROR
    1050: ("42S01", False),  # ER_TABLE_EXISTS_ERROR
    1051: ("42S02", False),  # ER_BAD_TABLE_ERROR
    1052: ("23000", False),  # ER_NON_UNIQ_ERROR
    1054: ("42S22", False),  # ER_BAD_FIELD_ERROR
    1058: ("21S01", False),  # ER_WRONG_VALUE_COUNT
    1060: ("42S21", False),  # ER_DUP_FIELDNAME
    1061: ("42000", False),  # ER_DUP_KEYNAME
    1062: ("23000", False),  # ER_DUP_ENTRY
    1064: ("42000", False),  # ER_PARSE_ERROR
    1065: ("42000", False),  # ER_EMPTY_QUERY
    1091: ("42000", False),  # ER_CANT_DROP_FIELD_OR_KEY
    1105: ("HY000", False),  # ER_UNKNOWN_ERROR
    1136: ("21S01", False),  # ER_WRONG_VALUE_COUNT_ON_ROW
    1146: ("42S02", False),  # ER_NO_SUCH_TABLE
    1149: ("42000", False),  # ER_SYNTAX_ERROR
    1100: ("HY000", False),  # ER_TABLE_NOT_LOCKED
    1158: ("08S01", True),  # ER_NET_READ_ERROR
    1159: ("08S01", True),  # ER_NET_READ_INTERRUPTED
    1169: ("23000", False),  # ER_DUP_UNIQUE
    1193: ("HY000", False),  # ER_UNKNOWN_SYSTEM_VARIABLE
    1205: ("HY000", True),  # ER_LOCK_WAIT_TIMEOUT
    1213: ("40001", True),  # ER_LOCK_DEADLOCK
    1216: ("23000", False),  # ER_NO_REFERENCED_ROW
    1217: ("23000", False),  # ER_ROW_IS_REFERENCED
    1227: ("42000", False),  # ER_SPECIFIC_ACCESS_DENIED_ERROR
    1231: ("42000", False),  # ER_WRONG_VALUE_FOR_VAR
    1232: ("42000", False),  # ER_WRONG_TYPE_FOR_VAR
    1235: ("42000", False),  # ER_NOT_SUPPORTED_YET
    1264: ("22003", False),  # ER_WARN_DATA_OUT_OF_RANGE
    1292: ("22007", False),  # ER_TRUNCATED_WRONG_VALUE
    1364: ("HY000", False),  # ER_NO_DEFAULT_FOR_FIELD
    1366: ("22007", False),  # ER_TRUNCATED_WRONG_VALUE_FOR_FIELD
    1406: ("22001", False),  # ER_DATA_TOO_LONG
    1451: ("23000", False),  # ER_ROW_IS_REFERENCED_2
    1452: ("23000", False),  # ER_NO_REFERENCED_ROW_2
    1690: ("22003", False),  # ER_DATA_OUT_OF_RANGE
    1402: ("XA100", False),  # ER_XA_RBROLLBACK (the resolver aborted the transaction first)
    1792: ("25006", False),  # ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
    1835: ("HY000", False),  # ER_MALFORMED_PACKET
    2002: ("HY000", True),  # CR_CONNECTION_ERROR (client side)
    2003: ("HY000", True),  # CR_CONN_HOST_ERROR (client side)
    2006: ("HY000", True),  # CR_SERVER_GONE_ERROR (client side)
    2013: ("HY000", True),  # CR_SERVER_LOST (client side)
    4031: ("HY000", True),  # ER_CLIENT_INTERACTION_TIMEOUT
}

# Errors the gateway itself raises, by name, so call sites read as prose.
ER_DBACCESS_DENIED = 1044
ER_ACCESS_DENIED = 1045
ER_NO_DB = 1046
ER_BAD_DB = 1049
ER_TABLE_EXISTS = 1050
ER_BAD_TABLE = 1051
ER_TABLE_NOT_LOCKED = 1100
ER_PARSE = 1064
ER_EMPTY_QUERY = 1065
ER_UNKNOWN = 1105
ER_NO_SUCH_TABLE = 1146
ER_UNKNOWN_SYSTEM_VARIABLE = 1193
ER_LOCK_WAIT_TIMEOUT = 1205
ER_LOCK_DEADLOCK = 1213  # MariaDB rolls the whole transaction back
ER_NOT_SUPPORTED_YET = 1235
ER_QUERY_INTERRUPTED = 1317
ER_XA_RBROLLBACK = 1402
ER_CONNECTION_KILLED = 1927  # the answer to KILL of one's own connection, which then closes
ER_DB_CREATE_EXISTS = 1007
ER_DB_DROP_EXISTS = 1008
CR_CONN_HOST_ERROR = 2003
CR_SERVER_LOST = 2013


def kind_of(errno: int) -> ErrorKind:
    sqlstate, retriable = _CATALOGUE.get(errno, ("HY000", False))
    return ErrorKind(errno, sqlstate, retriable)


class SqlError(Exception):
    """A MySQL error as the client will see it."""

    def __init__(self, errno: int, message: str, sqlstate: str | None = None) -> None:
        kind = kind_of(errno)
        super().__init__(f"({errno}, {sqlstate or kind.sqlstate}) {message}")
        self.errno = errno
        self.message = message
        self.sqlstate = sqlstate or kind.sqlstate
        self.retriable = kind.retriable

    def to_dict(self) -> dict[str, Any]:
        return {"errno": self.errno, "sqlstate": self.sqlstate, "message": self.message}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SqlError":
        return cls(int(data["errno"]), str(data["message"]), data.get("sqlstate"))


def unsupported(what: str) -> SqlError:
    """The error for anything the gateway cannot route yet: never a wrong answer."""
    return SqlError(ER_NOT_SUPPORTED_YET, f"MiniSQL Cluster does not support {what} yet")
