"""How the topology package names and encodes what it stores in znodes.

Shared by `service`, `election` and `queues`, which each write JSON nodes and
read sequential ones: one compact, key-sorted encoding means equal documents
are equal bytes (so "unchanged" checks compare bytes), and one parser of the
sequence suffix means every reader orders candidates and requests the same way.
"""

from __future__ import annotations

import json
from typing import Any


def sequence_number(name: str) -> int:
    """The sequence number ZooKeeper appended to a sequential node's name."""
    digits = name[-10:]
    return int(digits) if digits.isdigit() else -1


def dump_json(doc: Any) -> bytes:
    """`doc` as compact, key-sorted JSON bytes (the encoding of every node we write)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
