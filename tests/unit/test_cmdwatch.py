"""The command sweeper (proxy/cmdwatch.py): a long command gets its client-gone
watch after WATCH_AFTER, a short one never does, and the sweeper stops with its
last connection."""

from __future__ import annotations

import asyncio

from proxy.cmdwatch import WATCH_AFTER, sweeper


class FakeConnection:
    def __init__(self) -> None:
        self.command: bytes | None = None
        self.command_since = 0.0
        self.armed = 0

    def watch_if_long(self, now: float) -> None:
        if self.command is not None and now - self.command_since >= WATCH_AFTER:
            self.armed += 1
            self.command = None  # as the real one: armed once per command


def test_only_a_long_command_is_watched():
    async def scenario():
        loop = asyncio.get_running_loop()
        watched = sweeper()
        long, short = FakeConnection(), FakeConnection()
        watched.add(long)
        watched.add(short)
        long.command, long.command_since = b"\x03SELECT SLEEP(1)", loop.time()
        for _ in range(20):  # short commands, each done well within WATCH_AFTER
            short.command, short.command_since = b"\x03SELECT 1", loop.time()
            await asyncio.sleep(WATCH_AFTER / 10)
            short.command = None
        await asyncio.sleep(WATCH_AFTER)
        assert long.armed == 1 and short.armed == 0
        watched.discard(long)
        watched.discard(short)
        await asyncio.sleep(WATCH_AFTER)
        assert watched._task is not None and watched._task.done()  # nothing left to sweep

    asyncio.run(scenario())
