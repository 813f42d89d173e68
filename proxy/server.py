"""The listening side of the gateway: accept, limit, and hand over to a connection.

mysql-mimic's `MysqlServer` accepts every connection, reads without bounds
and has no limits; this server keeps only mimic's connection-id `Control`
and adds what MariaDB and ProxySQL have:

* `max_connections` for the whole proxy (pre-login connections included),
  answered with 1040 like MariaDB; `max_user_connections` per account (1226);
* a connect timeout: a client that has not finished logging in within
  `connect_timeout` seconds is dropped (2,000 idle pre-auth sockets cost
  nothing for long);
* packet bounds: small packets before login, `max_allowed_packet` after
  (see `stream.BoundedStream`);
* the soft file-descriptor limit raised to the hard one at start, so the
  connection limit is what refuses clients, not EMFILE.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from mysql_mimic.control import LocalControl
from mysql_mimic.types import Capabilities

from minisql.errors import SqlError

from . import metrics
from .auth import Account, Accounts, LoginGuard
from .plugins import RsaKeyPair, VerifierCache
from .stream import BoundedStream
from .wire import CAPABILITIES, ProxyConnection, make_error

log = logging.getLogger(__name__)

MIB = 1 << 20


@dataclass
class EdgeConfig:
    """Limits and identity sources of the client edge (`minisql proxy --help`)."""

    accounts: Accounts
    guard: LoginGuard = field(default_factory=LoginGuard)
    capabilities: Capabilities = CAPABILITIES
    max_connections: int = 2048
    max_user_connections: int = 0  # 0: no per-user limit (MariaDB's default)
    connect_timeout: float = 10.0  # MariaDB's connect_timeout
    wait_timeout: float | None = 28800.0  # MariaDB's wait_timeout
    max_allowed_packet: int = 16 * MIB  # MariaDB 10.11's default
    preauth_packet_limit: int = 64 * 1024 + 1024  # connect attributes are capped at 64 KiB
    tls: ssl.SSLContext | None = None  # --ssl-cert/--ssl-key: CLIENT_SSL is offered when set
    rsa: RsaKeyPair | None = None  # caching_sha2_password's key for full authentication without TLS
    verifiers: VerifierCache = field(default_factory=VerifierCache)  # caching_sha2_password's cache

    def __post_init__(self) -> None:
        if self.tls is not None:
            self.capabilities |= Capabilities.CLIENT_SSL


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


class ProxyServer:
    """Accepts clients and runs one `ProxyConnection` each (see module docstring)."""

    def __init__(self, session_factory: Callable[[], Any], edge: EdgeConfig, control: Any = None) -> None:
        self.session_factory = session_factory
        self.edge = edge
        # Issues connection ids and finds a connection by id: cluster.ClusterSessions
        # in the proxy (ids unique across proxies); mimic's LocalControl otherwise.
        self.control = control if control is not None else LocalControl()
        self._open = 0
        self._per_user: Counter[tuple[str, str]] = Counter()
        self._server: asyncio.base_events.Server | None = None

    async def start_server(self, host: str, port: int, **kwargs: Any) -> None:
        raise_fd_limit()
        # A backlog as deep as the connection limit (the kernel caps it at somaxconn),
        # so a burst of connects is refused by the limit with 1040, not by SYN drops.
        kwargs.setdefault("backlog", max(128, self.edge.max_connections))
        self._server = await asyncio.start_server(self._client_connected, host=host, port=port, **kwargs)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()

    async def _client_connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        edge = self.edge
        stream = BoundedStream(reader, writer, limit=edge.preauth_packet_limit, timeout=None)
        self._open += 1
        metrics.CLIENT_CONNECTIONS.inc()
        metrics.CLIENT_STATUS.accepted()
        user_key: list[tuple[str, str]] = []  # the account this connection counts against, once logged in
        try:
            if self._open > edge.max_connections:
                metrics.REJECTED_MAX_CONNECTIONS.inc()
                metrics.CLIENT_STATUS.aborted_connects += 1
                await stream.write(make_error(1040, "08004", "Too many connections"))
                return
            peer = writer.get_extra_info("peername")
            client_host = str(peer[0]) if isinstance(peer, tuple) and peer else "localhost"
            try:
                session = self.session_factory()
            except Exception:  # noqa: BLE001 - never let one client's failure reach the server
                log.exception("failed to create a session")
                await stream.write(make_error(1105, "HY000", "Proxy cannot accept connections now"))
                return

            async def admit(account: Account) -> SqlError | None:
                key = (account.user, account.host)
                limit = edge.max_user_connections
                if limit and self._per_user[key] >= limit and (not user_key or user_key[0] != key):
                    metrics.REJECTED_USER_CONNECTIONS.inc()
                    return SqlError(1226, f"User '{account.user}' has exceeded the 'max_user_connections' resource (current value: {limit})", "42000")
                if user_key:
                    self._release(user_key.pop())
                self._per_user[key] += 1
                user_key.append(key)
                return None

            connection = ProxyConnection(
                stream=stream, session=session, control=self.control, edge=edge, client_host=client_host, admit=admit,
            )
            connection.connection_id = await self.control.add(connection)
            try:
                await connection.start()
            finally:
                await self.control.remove(connection.connection_id)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:  # noqa: BLE001
            log.exception("connection ended with an internal error")
        finally:
            self._open -= 1
            metrics.CLIENT_CONNECTIONS.dec()
            metrics.CLIENT_STATUS.closed()
            if user_key:
                self._release(user_key.pop())
            stream.close_watchdog()
            writer.close()

    def _release(self, key: tuple[str, str]) -> None:
        self._per_user[key] -= 1
        if self._per_user[key] <= 0:
            del self._per_user[key]
