"""BoundedStream's idle timeout (wait_timeout): one watchdog per connection,
a read that waits too long ends with ReadTimeout (1159), reads that get their
bytes in time are never disturbed -- even across many timeout periods."""

from __future__ import annotations

import asyncio
import time

import pytest

from proxy.stream import BoundedStream, ReadTimeout


async def _pair():
    accepted: asyncio.Queue = asyncio.Queue()

    async def on_client(reader, writer):
        await accepted.put((reader, writer))

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client_reader, client_writer = await asyncio.open_connection("127.0.0.1", port)
    reader, writer = await accepted.get()
    return server, BoundedStream(reader, writer, limit=1 << 20, timeout=0.3), client_writer


def _packet(payload: bytes, seq: int) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes((seq,)) + payload


def test_an_idle_client_times_out_and_a_busy_one_never_does():
    async def main():
        server, stream, client = await _pair()
        try:
            # Packets every 0.1 s for 1 s: more than three timeout periods, never idle 0.3 s.
            for i in range(10):
                client.write(_packet(b"\x0e", 0))
                assert await stream.read() == b"\x0e"
                stream.reset_seq()
                await asyncio.sleep(0.1)
            started = time.monotonic()
            with pytest.raises(ReadTimeout) as info:
                await stream.read()
            waited = time.monotonic() - started
            assert info.value.errno == 1159
            assert 0.25 <= waited < 1.0, waited
        finally:
            stream.close_watchdog()
            client.close()
            server.close()

    asyncio.run(main())
