"""The TLS upgrade (`proxy.tls.upgrade`) and the local CA (`minisql.certs`), on loopback.

No cluster: a tiny asyncio server reads the SSLRequest with `BoundedStream`,
upgrades, and echoes one packet over TLS.  The client glues its ClientHello
to the SSLRequest in one send, the case that lost bytes in mysql-mimic.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import stat

import pytest

from minisql.certs import ensure_local_tls
from proxy.stream import BoundedStream
from proxy.tls import server_context, upgrade
from tests.integration.rawclient import frame
from tests.integration.tlsclient import TlsRaw, ssl_request


@pytest.fixture(scope="module")
def local_tls(tmp_path_factory):
    return ensure_local_tls(tmp_path_factory.mktemp("tls") / "tls")


def test_local_ca_files_are_private_and_reused(local_tls):
    for key in (local_tls.key, local_tls.rsa_key, local_tls.ca.with_name("ca-key.pem")):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    before = (local_tls.ca.read_bytes(), local_tls.cert.read_bytes())
    again = ensure_local_tls(local_tls.ca.parent)
    assert (again.ca.read_bytes(), again.cert.read_bytes()) == before
    local_tls.cert.unlink()  # a half-written set is completed
    third = ensure_local_tls(local_tls.ca.parent)
    assert third.cert.exists() and third.ca.read_bytes() == before[0]


async def _serve(context: ssl.SSLContext):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream = BoundedStream(reader, writer, limit=1 << 16, timeout=10)
        stream.seq = 1
        try:
            request = await stream.read()
            assert len(request) == 32
            await upgrade(stream, context)
            payload = await stream.read()
            await stream.write(payload[::-1])
        except Exception:  # noqa: BLE001 - the client sees the failure
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def _client(port: int, cafile: str, hostname: str) -> bytes:
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        tls = TlsRaw(sock, context, frame(ssl_request(), 1), server_hostname=hostname)
        tls.send(b"hello over tls", 2)
        return tls.read_packet()[1]


def test_upgrade_loses_no_byte_when_the_client_hello_is_already_buffered(local_tls):
    async def main() -> list[bytes]:
        server = await _serve(server_context(local_tls.cert, local_tls.key))
        port = server.sockets[0].getsockname()[1]
        try:
            out = []
            for i in range(100):
                host = "localhost" if i % 2 else "127.0.0.1"  # both names are in the certificate
                out.append(await asyncio.wait_for(asyncio.to_thread(_client, port, str(local_tls.ca), host), 10))
            return out
        finally:
            server.close()

    answers = asyncio.run(main())
    assert answers == [b"slt revo olleh"] * 100


def test_a_client_trusting_another_ca_refuses_the_certificate(local_tls, tmp_path):
    other = ensure_local_tls(tmp_path / "other")

    async def main() -> None:
        server = await _serve(server_context(local_tls.cert, local_tls.key))
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(ssl.SSLCertVerificationError):
                await asyncio.to_thread(_client, port, str(other.ca), "127.0.0.1")
        finally:
            server.close()

    asyncio.run(main())
