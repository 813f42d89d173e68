"""TLS at the client edge: the server context and the in-place upgrade after SSLRequest.

The MySQL protocol upgrades a plain TCP connection: the client sends a
32-byte SSLRequest and, without waiting for an answer, its TLS ClientHello.
asyncio's `StreamReader` reads from the socket in large chunks, so when the
SSLRequest has been parsed the ClientHello (or part of it) may already sit
in the reader's buffer.  `loop.start_tls` only sees bytes that arrive on the
socket *after* it swaps the protocol, so those buffered bytes are lost and
the handshake hangs until a timeout -- mysql-mimic's race (6 of 20 PyMySQL
TLS connects failed or hung).

`upgrade` closes that gap:

1. reading is paused on the raw transport, so from here on no byte can reach
   the plain `StreamReader`;
2. whatever the reader already buffered is taken out of it;
3. `StreamWriter.start_tls` starts; as soon as it has installed its
   `SSLProtocol` (one event-loop step, before it resumes reading), the
   taken bytes are handed to that protocol first, exactly as the transport
   would have delivered them (`get_buffer`/`buffer_updated`, the public
   buffered-protocol interface), so TLS sees the client's bytes in order.

The only private access is `StreamReader._buffer` (read and cleared while
reading is paused); it has been there since asyncio's first release.

Error handling: a handshake that fails or times out closes the transport
(asyncio does); the caller treats it like a client that went away.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from .stream import BoundedStream

if TYPE_CHECKING:
    from .plugins import RsaKeyPair

# A ClientHello is at most one TLS record (16 KiB + header) plus change; anything
# bigger buffered before the handshake is not a TLS client.
MAX_EARLY_BYTES = 64 * 1024


class TlsUpgradeFailed(ConnectionError):
    """The TLS handshake with the client failed (bad hello, no common cipher, timeout)."""


def server_context(cert: str | Path, key: str | Path, ca: str | Path | None = None) -> ssl.SSLContext:
    """The proxy's TLS context (MariaDB's --ssl-cert/--ssl-key/--ssl-ca).

    TLS 1.2 or newer.  With a CA, client certificates are requested and verified
    when presented (MariaDB's REQUIRE X509 is not implemented, so they stay optional).
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    if ca:
        context.load_verify_locations(cafile=str(ca))
        context.verify_mode = ssl.CERT_OPTIONAL
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def _take_buffered(reader: asyncio.StreamReader) -> bytes:
    buffer: bytearray = reader._buffer  # noqa: SLF001 - see the module docstring
    data = bytes(buffer)
    buffer.clear()
    return data


def _feed(protocol: asyncio.BaseProtocol, data: bytes) -> None:
    """Deliver bytes to a protocol the way a transport does (uvloop's SSLProtocol
    is buffered without deriving from asyncio.BufferedProtocol)."""
    if hasattr(protocol, "get_buffer"):
        view = memoryview(data)
        while view:
            buf = protocol.get_buffer(len(view))  # type: ignore[attr-defined]
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            protocol.buffer_updated(n)  # type: ignore[attr-defined]
            view = view[n:]
    else:
        protocol.data_received(data)  # type: ignore[attr-defined]


async def upgrade(stream: BoundedStream, context: ssl.SSLContext, handshake_timeout: float = 10.0) -> None:
    """Turn the plain connection under `stream` into TLS, losing no byte (module docstring)."""
    reader, writer = stream.reader, stream.writer
    await stream.drain()
    transport = writer.transport
    plain_protocol = transport.get_protocol()
    transport.pause_reading()  # type: ignore[attr-defined]
    early = _take_buffered(reader)
    if len(early) > MAX_EARLY_BYTES:
        raise TlsUpgradeFailed("too many bytes before the TLS handshake")
    task = asyncio.ensure_future(writer.start_tls(context, ssl_handshake_timeout=handshake_timeout))
    try:
        # start_tls swaps the transport's protocol in its first step and resumes
        # reading in a later callback: feed the early bytes in between.
        while transport.get_protocol() is plain_protocol and not task.done():
            await asyncio.sleep(0)
        if early and not task.done():
            _feed(transport.get_protocol(), early)
        await task
    except (ssl.SSLError, ConnectionError, TimeoutError) as e:
        raise TlsUpgradeFailed(str(e)) from e
    finally:
        if not task.done():
            task.cancel()


def describe(writer: asyncio.StreamWriter) -> str:
    """'TLSv1.3 TLS_AES_256_GCM_SHA384' for logs, "" on a plain connection."""
    obj = writer.get_extra_info("ssl_object")
    if obj is None:
        return ""
    cipher = obj.cipher()
    return f"{obj.version()} {cipher[0] if cipher else ''}".strip()


# -- command line (`minisql proxy`) ---------------------------------------------------
def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TLS and authentication (MariaDB's option names)")
    group.add_argument("--ssl-cert", help="server certificate (PEM); with --ssl-key, clients may connect with TLS")
    group.add_argument("--ssl-key", help="private key of --ssl-cert (PEM)")
    group.add_argument("--ssl-ca", help="CA bundle to verify client certificates with, when clients present one")
    group.add_argument(
        "--rsa-private-key",
        help="RSA private key (PEM) for caching_sha2_password's password exchange without TLS "
        "(MySQL's caching_sha2_password_private_key_path); default: a new 2048-bit key at each start",
    )


def edge_crypto(args: argparse.Namespace) -> tuple[ssl.SSLContext | None, "RsaKeyPair"]:
    """The TLS context (None without --ssl-cert) and the RSA key; ConfigError on bad files."""
    from minisql.config import ConfigError

    from .plugins import RsaKeyPair

    context = None
    cert, key, ca = getattr(args, "ssl_cert", None), getattr(args, "ssl_key", None), getattr(args, "ssl_ca", None)
    if bool(cert) != bool(key):
        raise ConfigError("--ssl-cert and --ssl-key go together")
    if cert:
        try:
            context = server_context(cert, key, ca)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"cannot load the TLS certificate/key ({cert}, {key}): {e}") from e
    rsa_path = getattr(args, "rsa_private_key", None)
    try:
        rsa = RsaKeyPair.load(rsa_path) if rsa_path else RsaKeyPair.generate()
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load the RSA private key {rsa_path}: {e}") from e
    return context, rsa
