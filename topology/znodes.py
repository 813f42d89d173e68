"""How the topology package names and encodes what it stores in znodes.

Shared by `service`, `election` and `queues`, which each write JSON nodes and
read sequential ones: one compact, key-sorted encoding means equal documents
are equal bytes (so "unchanged" checks compare bytes), and one parser of the
sequence suffix means every reader orders candidates and requests the same way.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any, Awaitable, Callable, Protocol, TypeVar


def sequence_number(name: str) -> int:
    """The sequence number ZooKeeper appended to a sequential node's name."""
    digits = name[-10:]
    return int(digits) if digits.isdigit() else -1


def dump_json(doc: Any) -> bytes:
    """`doc` as compact, key-sorted JSON bytes (the encoding of every node we write)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


class VersionedDoc(Protocol):
    """A document read from one znode, carrying that znode's version (-1: absent)."""

    version: int

    def to_json(self) -> bytes: ...


D = TypeVar("D", bound=VersionedDoc)


async def update_document(
    backend: Any, path: str, read: Callable[[], Awaitable[D]], mutate: Callable[[D], D | None],
    parse: Callable[[bytes, int], D], what: str, attempts: int = 20, fence: Callable[[], str] | None = None,
) -> D:
    """Versioned read-modify-write of a one-znode document (the placement, the
    accounts): `mutate` is pure and may run several times; None means "no
    change" and returns the current document.  Creates the znode when absent.
    Raises ConflictError after `attempts` lost races.  `fence` (the leader's
    election node, asked before each attempt) makes every write conditional
    on that node existing (FencedError otherwise)."""
    from .errors import BadVersionError, ConflictError, NodeExistsError, NoNodeError

    for attempt in range(attempts):
        current = await read()
        new = mutate(current)
        if new is None:
            return current
        data = new.to_json()
        try:
            if fence is not None:  # the writer's election node, checked in the same multi-op
                version = await backend.set_fenced(path, data, current.version, fence())
                if current.version == -1:
                    version = 0
            elif current.version == -1:
                await backend.create(path, data, makepath=True)
                version = 0
            else:
                version = await backend.set(path, data, current.version)
        except (BadVersionError, NodeExistsError, NoNodeError):
            # Another writer got there first (or deleted/created the node):
            # re-read and re-apply, with a little jitter against livelock.
            if attempt + 1 < attempts:
                await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
            continue
        return parse(data, version)
    raise ConflictError(f"{what} update lost {attempts} races in a row")
