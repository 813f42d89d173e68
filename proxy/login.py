"""The connection phase: handshake, authentication, and nothing after a failure.

Why not mysql-mimic's `Connection.connection_phase`/`authenticate`: mimic
writes the 1045 packet and *returns*, and the connection goes on into the
command phase, so a client whose login failed could run statements (as the
proxy's backend account).  MariaDB and ProxySQL close the connection after
any authentication error; so does this module: every failure path raises
`LoginFailed` after writing the error, and the edge closes the socket.

The flow (MySQL protocol "connection phase"):

    server: HandshakeV10 (nonce, status flags incl. AUTOCOMMIT; CLIENT_SSL when configured)
    [client: SSLRequest -> TLS handshake (`tls.upgrade`)]
    client: HandshakeResponse41  (parsed by `inbound`, bounded)
    [server: AuthSwitchRequest -> client: auth data]   when the client used another plugin
    [server: AuthMoreData <-> client ...]               caching_sha2_password's fast/full paths
    server: OK | ERR (and close)

Plugins: the handshake announces mysql_native_password.  The account's
plugin decides what is checked (`plugins.account_plugin`): a client that
answered with another plugin's data is switched to it.  Exceptions, for
MySQL 8 clients that answer with caching_sha2_password data to a
mysql_native_password account: the scramble is verified directly when the
proxy knows the account's sha2 verifier (stored, or cached by an earlier full
authentication); over TLS an unknown verifier is learned by a full
authentication (the clear password, checked against the native hash); over
plain TCP the client is switched to mysql_native_password.  REQUIRE SSL is
checked after the credentials, and a plain-TCP login of such an account gets
the same 1045 as a wrong password (as in MariaDB).

The status flags matter: PyMySQL reads them and, seeing AUTOCOMMIT off, never
sends its default `autocommit(False)`.  Throttling (`LoginGuard`) delays the
answer on repeated failures; the delay is awaited, never blocking the loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from dataclasses import dataclass, field

from mysql_mimic import packets
from mysql_mimic.charset import CharacterSet
from mysql_mimic.types import Capabilities, ServerStatus
from mysql_mimic.utils import nonce as make_nonce

from . import metrics
from .auth import NATIVE_PLUGIN, Account, Accounts, LoginGuard, verify_native
from .inbound import MalformedPacket, HandshakeResponse, SslRequest, parse_handshake_response
from .plugins import (
    ED25519_PLUGIN, FAST_AUTH_SUCCESS, MAX_PASSWORD_BYTES, PERFORM_FULL_AUTHENTICATION, REQUEST_PUBLIC_KEY, SHA2_PLUGIN,
    RsaKeyPair, VerifierCache, account_plugin, verify_clear, verify_ed25519, verify_sha2,
)
from .stream import BoundedStream
from .tls import upgrade

log = logging.getLogger(__name__)

ER_ACCESS_DENIED = 1045
ER_USER_IS_BLOCKED = 4151
MAX_AUTH_PACKET = 1024  # the largest auth data a client sends (an RSA-4096 ciphertext is 512 bytes)
NEEDS_SECURE = "; caching_sha2_password needs TLS, or the RSA public key (request it from the server), to send the password"


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
    tls: ssl.SSLContext | None = None  # offered (CLIENT_SSL) when set
    secure: bool = False  # the connection runs over TLS
    rsa: RsaKeyPair | None = None  # caching_sha2_password full authentication over plain TCP
    verifiers: VerifierCache = field(default_factory=VerifierCache)


@dataclass
class LoginResult:
    response: HandshakeResponse
    account: Account
    nonce: bytes
    secure: bool = False


def _error(errno: int, sqlstate: str, message: str) -> bytes:
    return b"\xff" + errno.to_bytes(2, "little") + b"#" + sqlstate.encode() + message.encode("utf-8", "replace")


def access_denied(user: str, host: str, used_password: bool, note: str = "") -> bytes:
    using = "YES" if used_password else "NO"
    return _error(ER_ACCESS_DENIED, "28000", f"Access denied for user '{user}'@'{host}' (using password: {using}){note}")


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
        if ctx.tls is None:  # cannot happen: inbound returns SslRequest only when CLIENT_SSL is offered
            raise MalformedPacket(1043, "Bad handshake")
        await upgrade(ctx.stream, ctx.tls)
        ctx.secure = True
        response = parse_handshake_response(ctx.capabilities, await ctx.stream.read())
        if isinstance(response, SslRequest):
            raise MalformedPacket(1043, "Bad handshake")
    elif Capabilities.CLIENT_SSL in response.capabilities:
        response.capabilities &= ~Capabilities.CLIENT_SSL  # claimed, but the connection is plain
    account = await authenticate(ctx, response.username, response.auth_response, response.client_plugin, nonce)
    return LoginResult(response, account, nonce, ctx.secure)


async def authenticate(ctx: LoginContext, user: str, auth_response: bytes, client_plugin: str | None, nonce: bytes) -> Account:
    """Check one login attempt (handshake or COM_CHANGE_USER); the caller writes OK on success."""
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
    attempt = _Attempt(ctx, account, nonce, auth_response)
    ok = await attempt.run(client_plugin or NATIVE_PLUGIN)
    if ok and account is not None and account.require_ssl and not ctx.secure:
        ok = False  # REQUIRE SSL: the same 1045 as a wrong password, like MariaDB
        log.info("refused %r from %s: the account requires TLS", user[:64], host)
    if ok and account is not None:
        ctx.guard.succeeded(host, user)
        metrics.LOGINS_OK.inc()
        return account
    ctx.guard.failed(host, user)
    metrics.LOGIN_FAILURES.inc()
    log.info("access denied for %r from %s", user[:64], host)
    await ctx.stream.write(access_denied(user, host, attempt.used_password, attempt.note))
    raise LoginFailed(user)


class _Attempt:
    """One login attempt's plugin exchange: switch, fast path, full authentication."""

    def __init__(self, ctx: LoginContext, account: Account | None, nonce: bytes, auth_response: bytes) -> None:
        self.ctx = ctx
        self.account = account
        self.nonce = nonce
        self.data = auth_response
        self.used_password = bool(auth_response)
        self.note = ""  # appended to the 1045 message: why, when it is not the password

    async def _exchange(self, payload: bytes) -> bytes:
        await self.ctx.stream.write(payload)
        data = await self.ctx.stream.read()
        if len(data) > MAX_AUTH_PACKET:
            raise MalformedPacket()
        return data

    async def run(self, client_plugin: str) -> bool:
        account = self.account
        if account is not None:
            target = account_plugin(account)
        else:  # an unknown user goes through the motions of a known one
            target = client_plugin if client_plugin == SHA2_PLUGIN else NATIVE_PLUGIN
        if account is not None and not account.has_password and not self.data and client_plugin in (NATIVE_PLUGIN, SHA2_PLUGIN):
            return True  # the empty password: both plugins send nothing, no switch needed
        if account is not None and client_plugin == SHA2_PLUGIN and target == NATIVE_PLUGIN and len(self.data) == 32:
            verifier = self.ctx.verifiers.get(account)
            if verifier and verify_sha2(verifier, self.data, self.nonce):
                await self.ctx.stream.write(bytes((1, FAST_AUTH_SUCCESS)))
                return True
            if self.ctx.secure:
                # Over TLS the full authentication costs what a switch would, and it
                # teaches the cache the verifier: the next login takes the fast path.
                # Never over plain TCP: some clients would send the password in clear.
                return await self._caching_sha2()
        if target == ED25519_PLUGIN:
            challenge = os.urandom(32)  # client_ed25519 signs a 32-byte nonce of its own
            self.data = await self._exchange(b"\xfe" + ED25519_PLUGIN.encode() + b"\0" + challenge)
            self.used_password = True
            return account is not None and verify_ed25519(account.ed25519_key, self.data, challenge)
        if client_plugin != target:
            self.data = await self._exchange(b"\xfe" + target.encode() + b"\0" + self.nonce + b"\0")
            self.used_password = bool(self.data)
        if target == SHA2_PLUGIN:
            return await self._caching_sha2()
        if account is None:
            return False
        if not account.native_hash and account.has_password:
            return False  # a password this plugin cannot check
        return verify_native(account.native_hash, self.data, self.nonce)

    async def _caching_sha2(self) -> bool:
        """caching_sha2_password after the client's scramble (module docstring of `plugins`)."""
        account, ctx = self.account, self.ctx
        if not self.data:  # the empty password
            return account is not None and not account.has_password
        if len(self.data) != 32:
            return False
        verifier = ctx.verifiers.get(account) if account is not None else ""
        if verifier and verify_sha2(verifier, self.data, self.nonce):
            await ctx.stream.write(bytes((1, FAST_AUTH_SUCCESS)))
            return True
        reply = await self._exchange(bytes((1, PERFORM_FULL_AUTHENTICATION)))
        if ctx.secure:
            password: bytes | None = reply[:-1] if reply.endswith(b"\0") else reply
        else:
            if reply == bytes((REQUEST_PUBLIC_KEY,)) and ctx.rsa is not None:
                reply = await self._exchange(b"\x01" + ctx.rsa.public_pem)
            password = ctx.rsa.decrypt_password(reply, self.nonce) if ctx.rsa is not None else None
            if password is None:
                # MySQL does the same: a clear password over plain TCP is refused.
                self.note = NEEDS_SECURE
                return False
        if account is None or len(password) > MAX_PASSWORD_BYTES or not verify_clear(account, password):
            return False
        ctx.verifiers.put(account, password)
        return True
