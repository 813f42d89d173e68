"""Ports handed to test stacks (minisql/processes.py): never from the kernel's
ephemeral range, where an outgoing connection may take one before its server
binds it (a region agent once failed to start on its metrics port so)."""

from __future__ import annotations

from minisql.processes import _outside_ephemeral, free_port_block, free_ports, port_is_free


def test_ports_come_from_outside_the_ephemeral_range_and_are_never_handed_out_twice():
    outside = _outside_ephemeral()
    assert outside is not None  # Linux: /proc/sys/net/ipv4/ip_local_port_range
    ports = free_ports(50)
    assert len(set(ports)) == 50
    assert all(outside[0] <= p <= outside[1] and port_is_free(p) for p in ports)
    base = free_port_block(30)
    block = set(range(base, base + 30))
    assert outside[0] <= base and base + 29 <= outside[1]
    assert not block & set(ports)
    assert not block & set(free_ports(50))
