"""The connection phase: handshake, authentication, and nothing after a failure.

Why not mysql-mimic's `Connection.connection_phase`/`authenticate`: mimic
writes the 1045 packet and *returns*, and the connection goes on into the
command phase, so a client whose login failed could run statements (as the
proxy's backend account).  MariaDB and ProxySQL close the connection after
any authentication error; so does this module: every failure path raises
`LoginFailed` after writing the error, and the edge closes the socket.

The flow (MySQL protocol "connection phase"):

    server: HandshakeV10 (nonce, status flags incl. AUTOCOMMIT)
    client: HandshakeResponse41  (parsed by `inbound`, bounded)
    [server: AuthSwitchRequest -> client: auth data]   when the client used another plugin
    server: OK | ERR (and close)

The status flags matter: PyMySQL reads them and, seeing AUTOCOMMIT off, never
sends its default `autocommit(False)`.  Throttling (`LoginGuard`) delays the
answer on repeated failures; the delay is awaited, never blocking the loop.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from mysql_mimic import packets
from mysql_mimic.charset import CharacterSet
from mysql_mimic.types import Capabilities, ServerStatus
from mysql_mimic.utils import nonce as make_nonce

from . import metrics
from .auth import NATIVE_PLUGIN, Account, Accounts, LoginGuard, verify_native
from .inbound import MalformedPacket, HandshakeResponse, SslRequest, parse_handshake_response
from .stream import BoundedStream

log = logging.getLogger(__name__)

ER_ACCESS_DENIED = 1045
ER_USER_IS_BLOCKED = 4151


class LoginFailed(Exception):
    """Authentication failed; the error packet is already written."""


@dataclass
class LoginContext:
    """What the connection phase needs from the connection and the server."""

    stream: BoundedStream
    capabilities: Capabilities
    server_version: str
    connection_id: int
    status_flags: int
    server_charset: CharacterSet
    accounts: Accounts
    guard: LoginGuard
    client_host: str


@dataclass
class LoginResult:
    response: HandshakeResponse
    account: Account
    nonce: bytes


def _error(errno: int, sqlstate: str, message: str) -> bytes:
    return b"\xff" + errno.to_bytes(2, "little") + b"#" + sqlstate.encode() + message.encode("utf-8", "replace")


def access_denied(user: str, host: str, used_password: bool) -> bytes:
    using = "YES" if used_password else "NO"
    return _error(ER_ACCESS_DENIED, "28000", f"Access denied for user '{user}'@'{host}' (using password: {using})")


async def handshake(ctx: LoginContext) -> LoginResult:
    """Run the connection phase; raise LoginFailed (error written) or MalformedPacket."""
    nonce = make_nonce(20)
    await ctx.stream.write(
        packets.make_handshake_v10(
            capabilities=ctx.capabilities,
            server_charset=ctx.server_charset,
            server_version=ctx.server_version,
            connection_id=ctx.connection_id,
            auth_data=nonce + b"\0",
            status_flags=ServerStatus(ctx.status_flags),
            auth_plugin_name=NATIVE_PLUGIN,
        )
    )
    response = parse_handshake_response(ctx.capabilities, await ctx.stream.read())
    if isinstance(response, SslRequest):
        raise MalformedPacket(1043, "Bad handshake")  # CLIENT_SSL is not offered yet
    account = await authenticate(ctx, response.username, response.auth_response, response.client_plugin, nonce)
    return LoginResult(response, account, nonce)


async def authenticate(ctx: LoginContext, user: str, auth_response: bytes, client_plugin: str | None, nonce: bytes) -> Account:
    """Check one login attempt (handshake or COM_CHANGE_USER); OK written on success."""
    host = ctx.client_host
    if ctx.guard.blocked(host, user):
        metrics.LOGIN_BLOCKED.inc()
        await ctx.stream.write(
            _error(ER_USER_IS_BLOCKED, "HY000", f"User '{user}'@'{host}' is blocked because of too many credential errors; try again later")
        )
        raise LoginFailed(user)
    delay = ctx.guard.delay(host, user)
    if delay:
        metrics.LOGIN_THROTTLED.inc()
        await asyncio.sleep(delay)
    account = ctx.accounts.lookup(user, host)
    if client_plugin not in (None, "", NATIVE_PLUGIN):
        # The client scrambled for another plugin (MySQL 8 clients default to
        # caching_sha2_password): ask again for mysql_native_password.
        await ctx.stream.write(b"\xfe" + NATIVE_PLUGIN.encode() + b"\0" + nonce + b"\0")
        auth_response = await ctx.stream.read()
        if len(auth_response) > 256:
            raise MalformedPacket()
    if account is not None and verify_native(account.native_hash, auth_response, nonce):
        ctx.guard.succeeded(host, user)
        metrics.LOGINS_OK.inc()
        return account
    ctx.guard.failed(host, user)
    metrics.LOGIN_FAILURES.inc()
    log.info("access denied for %r from %s", user[:64], host)
    await ctx.stream.write(access_denied(user, host, bool(auth_response)))
    raise LoginFailed(user)
