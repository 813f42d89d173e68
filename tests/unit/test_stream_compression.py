"""The compressed protocol in BoundedStream: frames split and joined anyhow,
sequence numbers checked, zlib bounded."""

from __future__ import annotations

import asyncio
import zlib

import pytest

from proxy.inbound import MalformedPacket
from proxy.stream import BoundedStream, PacketTooLarge


class _Writer:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None


def packet(payload: bytes, seq: int) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes((seq,)) + payload


def frame(body: bytes, cseq: int, compress: bool = True) -> bytes:
    if compress:
        packed = zlib.compress(body)
        return len(packed).to_bytes(3, "little") + bytes((cseq,)) + len(body).to_bytes(3, "little") + packed
    return len(body).to_bytes(3, "little") + bytes((cseq,)) + b"\0\0\0" + body


def stream_over(data: bytes, limit: int = 1 << 20) -> tuple[BoundedStream, _Writer]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    writer = _Writer()
    stream = BoundedStream(reader, writer, limit=limit, timeout=None)  # type: ignore[arg-type]
    stream.compressed = True
    return stream, writer


def test_packets_split_across_frames_and_several_in_one_frame():
    first = b"\x03" + b"SELECT 'a'" * 20
    second = b"\x03SELECT 2"
    plain = packet(first, 0) + packet(second, 1)
    data = frame(plain[:50], 0) + frame(plain[50:], 1, compress=False)

    async def go():
        stream, _ = stream_over(data)
        assert await stream.read() == first
        assert await stream.read() == second

    asyncio.run(go())


def test_replies_are_framed_with_their_own_sequence():
    async def go():
        stream, writer = stream_over(frame(packet(b"\x03SELECT 1", 0), 0, compress=False))
        await stream.read()
        await stream.write(b"\x00" * 10)  # small: sent as is
        await stream.write(b"y" * 5000)  # big: deflated
        out = bytes(writer.data)
        assert out[3] == 1 and out[4:7] == b"\0\0\0" and out[7:11] == packet(b"\x00" * 10, 1)[:4]
        rest = out[7 + int.from_bytes(out[:3], "little"):]
        assert rest[3] == 2 and int.from_bytes(rest[4:7], "little") == 5004
        assert zlib.decompress(rest[7:]) == packet(b"y" * 5000, 2)

    asyncio.run(go())


def test_a_frame_out_of_order_or_lying_about_its_length_is_refused():
    async def go(data: bytes, error: type[Exception], limit: int = 1 << 20) -> None:
        stream, _ = stream_over(data, limit)
        with pytest.raises(error):
            await stream.read()

    body = packet(b"\x03SELECT 1" * 10, 0)
    asyncio.run(go(frame(body, 5), MalformedPacket))
    packed = zlib.compress(body)
    lying = len(packed).to_bytes(3, "little") + b"\0" + (len(body) - 7).to_bytes(3, "little") + packed
    asyncio.run(go(lying, MalformedPacket))
    bomb = zlib.compress(b"\0" * (4 << 20))  # 4 MiB of zeros in a few KiB
    claim = len(bomb).to_bytes(3, "little") + b"\0" + (4 << 20).to_bytes(3, "little") + bomb
    asyncio.run(go(claim, PacketTooLarge, limit=1 << 20))
