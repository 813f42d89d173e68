"""Hostile-load figures for the proxy's edge (docs/security.md): password guessing
and idle pre-login connections, against a running proxy.

    python bench/edge_flood.py --port 6033 --metrics-port 9200 [--guesses 10000] [--idle 2000]

Guessing: `--concurrency` connections keep trying wrong passwords for one user
until `--guesses` answers came back; prints answers by error code, guesses per
second, and the proxy's login metrics before/after.  Idle: opens `--idle`
sockets that never log in, then reports how long until the proxy's connect
timeout has closed them all.  Meanwhile a well-behaved client (`--user`,
`--password`) measures its own login + SELECT 1 latency.  Only loopback
addresses are used; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import struct
import time
import urllib.request
from collections import Counter


def scramble(password: str, nonce: bytes) -> bytes:
    if not password:
        return b""
    stage1 = hashlib.sha1(password.encode()).digest()
    mask = hashlib.sha1(nonce + hashlib.sha1(stage1).digest()).digest()
    return bytes(a ^ b for a, b in zip(stage1, mask))


async def read_packet(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(4)
    return await reader.readexactly(header[0] | header[1] << 8 | header[2] << 16)


async def login(host: str, port: int, user: str, password: str) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        hs = await read_packet(reader)
        pos = hs.index(b"\0", 1) + 1 + 4
        nonce = hs[pos:pos + 8] + hs[pos + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10:][:12]
        auth = scramble(password, nonce)
        body = struct.pack("<IIB", 0x200 | 0x8000 | 0x80000, 1 << 24, 45) + bytes(23)
        body += user.encode() + b"\0" + bytes((len(auth),)) + auth + b"mysql_native_password\0"
        writer.write(struct.pack("<I", len(body))[:3] + b"\x01" + body)
        await writer.drain()
        answer = await read_packet(reader)
        if answer[:1] == b"\x00":
            writer.write(b"\x09\x00\x00\x00\x03SELECT 1")
            await writer.drain()
            await read_packet(reader)
        return answer
    finally:
        writer.close()


def errno(answer: bytes) -> int:
    return struct.unpack("<H", answer[1:3])[0] if answer[:1] == b"\xff" else 0


def metrics(port: int) -> dict[str, float]:
    out: dict[str, float] = {}
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in body.splitlines():
        if line.startswith(("minisql_proxy_logins_total", "minisql_proxy_login_throttled_total",
                            "minisql_proxy_connections_rejected_total", "minisql_proxy_client_connections")):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


async def steady(args: argparse.Namespace, stop: asyncio.Event, samples: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        answer = await login(args.host, args.port, args.user, args.password)
        assert answer[:1] == b"\x00", answer
        samples.append(time.perf_counter() - started)
        await asyncio.sleep(0.05)


async def guessing(args: argparse.Namespace) -> dict[str, object]:
    codes: Counter[int] = Counter()
    remaining = args.guesses
    started = time.perf_counter()
    deadline = started + args.max_seconds

    async def worker(i: int) -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            try:
                codes[errno(await login(args.host, args.port, args.victim, f"guess-{i}-{remaining}"))] += 1
            except (ConnectionError, asyncio.IncompleteReadError):
                codes[-1] += 1

    await asyncio.gather(*(worker(i) for i in range(args.concurrency)))
    elapsed = time.perf_counter() - started
    return {"answers": dict(codes), "seconds": round(elapsed, 1), "guesses_per_second": round(sum(codes.values()) / elapsed, 1)}


async def idle(args: argparse.Namespace) -> dict[str, object]:
    socks = []
    for _ in range(args.idle):
        socks.append(await asyncio.open_connection(args.host, args.port))
    opened = time.perf_counter()
    closed = 0
    for reader, _ in socks:
        try:
            async with asyncio.timeout(args.max_seconds):
                while await reader.read(65536):
                    pass
            closed += 1
        except TimeoutError:
            break
    freed_after = time.perf_counter() - opened
    for _, writer in socks:
        writer.close()
    return {"idle_connections": args.idle, "closed_by_proxy": closed, "all_closed_after_seconds": round(freed_after, 1)}


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6033)
    p.add_argument("--metrics-port", type=int, default=9200)
    p.add_argument("--user", default="root")
    p.add_argument("--password", default="")
    p.add_argument("--victim", default="admin", help="the account whose password is guessed (need not exist)")
    p.add_argument("--guesses", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--idle", type=int, default=2000)
    p.add_argument("--max-seconds", type=float, default=120.0)
    args = p.parse_args()
    assert args.host.startswith("127.") or args.host in ("localhost", "::1"), "loopback only"
    before = metrics(args.metrics_port)
    stop, samples = asyncio.Event(), []
    steady_task = asyncio.create_task(steady(args, stop, samples))
    result = {"guessing": await guessing(args)}
    if args.idle:
        result["idle"] = await idle(args)
    stop.set()
    await steady_task
    samples.sort()
    result["steady_client_login_plus_select_ms"] = {
        "n": len(samples), "p50": round(samples[len(samples) // 2] * 1000, 1), "max": round(samples[-1] * 1000, 1),
    } if samples else {}
    after = metrics(args.metrics_port)
    result["metrics_delta"] = {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
