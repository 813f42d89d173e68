"""tests/fault/partition.py really cuts a port: a connect to a listening
socket behind the cut times out (no RST), and works again once healed.
Runs as root on the real loopback (the fault harness needs exactly this)."""

from __future__ import annotations

import socket

from minisql.processes import free_port
from tests.fault.partition import Blackhole


def _connects(port: int, timeout: float) -> bool:
    with socket.socket() as client:
        client.settimeout(timeout)
        try:
            client.connect(("127.0.0.1", port))
        except (TimeoutError, OSError):
            return False
        return True


def test_a_cut_port_drops_packets_silently_until_healed():
    port, other = free_port(), free_port()
    hole = Blackhole()
    with socket.socket() as server, socket.socket() as bystander:
        server.bind(("127.0.0.1", port))
        server.listen()
        bystander.bind(("127.0.0.1", other))
        bystander.listen()
        try:
            hole.cut(port)
            assert not _connects(port, 1.0)
            assert _connects(other, 1.0)  # only that port is cut
            assert hole.dropped_packets() >= 1
        finally:
            hole.heal()
        assert _connects(port, 2.0)
        assert hole.dropped_packets() == 0
