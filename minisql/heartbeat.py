"""Heartbeats: how far behind each region's copies are (seed 004, section 2.1).

Seed 004 measures a MySQL replica's real delay with a heartbeat table: an
agent REPLACEs the current time into it on the primary every second,
replication carries the row to the replica, and the replica's reporter
subtracts the replicated time from its own clock every 3 s and publishes the
difference in ZooKeeper.  A replica whose delay is past a threshold does not
take over writes when its primary dies.

Here the "replication stream" of every copy is the proxies' write path: a
proxy writes each statement to the primary and to every in-sync replica.  So
the heartbeat is written the same way, by every proxy, once a second, to every
live region, over the backend pool that carries client writes
(proxy/heartbeat.py), and only while the proxy holds its write lease (a proxy
that may have missed a failover writes nothing, clients' writes included).
The region agent reads the freshest beat with each load report
(region/load.py) and reports ``delay = now - beat`` in its `RegionLoad`, in
ZooKeeper, and as ``minisql_region_heartbeat_delay_seconds``; the master
ages each report by the time since it was published (`current_delay`), so a
region whose agent stopped reporting falls behind too.

A region whose delay is more than `MAX_PROMOTE_DELAY` past the least-delayed
live region's is *lagging* (`lagging_regions`): the master's failover does not
promote a copy there (master/assignor.py `plan_failover`), the table waits
until the region catches up or another in-sync copy can take over.  Comparing
with the least-delayed region, not with zero, keeps a cluster that has no
proxy running (no beats anywhere, nothing written either) from calling every
region lagging, and cancels out most of a clock difference between the
proxies and the regions.

One row per writer (`proxy<n>`, the proxy's cluster-wide number), so the table
stays as small as the number of proxies; rows of proxies gone for an hour are
deleted by the region agent, and a starting agent empties the table (beats
from before its start do not show that writes reach it now).  The table lives in the `mysql` schema like the
commit decisions (minisql/xa.py): created by the region agent, never placed,
never written by a client.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Protocol

#: the heartbeat table, in the `mysql` schema (never placed, never written by a client)
HEARTBEAT = "mysql.minisql_heartbeat"
CREATE_HEARTBEAT = (
    f"CREATE TABLE IF NOT EXISTS {HEARTBEAT} ("
    " writer VARCHAR(64) NOT NULL PRIMARY KEY,"
    " seq BIGINT UNSIGNED NOT NULL,"
    " beat_at DOUBLE NOT NULL"
    ") ENGINE=InnoDB COMMENT='MiniSQL Cluster: the newest heartbeat of each proxy (seconds since the epoch)'"
)
#: a proxy writes one beat per second
BEAT_INTERVAL = 1.0
#: a copy more than this many seconds behind the freshest region is not promoted
MAX_PROMOTE_DELAY = 5.0
#: rows of writers silent for this long are deleted by the region agent
FORGET_AFTER = 3600.0

READ_BEATS = f"SELECT MAX(beat_at), MIN(beat_at) FROM {HEARTBEAT}"
FORGET_SILENT = f"DELETE FROM {HEARTBEAT} WHERE beat_at < %s"


def beat_sql(writer: str, seq: int, beat_at: float) -> str:
    """The upsert a proxy sends to every region (writer names are ours: `proxy<n>`)."""
    if not writer.replace("-", "").replace("_", "").isalnum() or len(writer) > 64:
        raise ValueError(f"bad heartbeat writer name {writer!r}")
    return (
        f"INSERT INTO {HEARTBEAT} (writer, seq, beat_at) VALUES ('{writer}', {int(seq)}, {beat_at:.6f}) "
        "ON DUPLICATE KEY UPDATE seq = VALUES(seq), beat_at = VALUES(beat_at)"
    )


def delay_of(newest_beat: float | None, now: float) -> float | None:
    """A region's delay: seconds since the freshest beat it holds (None: no beat yet)."""
    if newest_beat is None or newest_beat <= 0:
        return None
    return max(0.0, round(now - newest_beat, 3))


class LoadReport(Protocol):
    delay: float | None
    reported_at: float


def current_delay(load: LoadReport, now: float) -> float | None:
    """A report's delay aged to `now`: a region whose reports stopped (its
    MariaDB hangs, its agent is frozen) falls further behind with every second
    instead of keeping the delay of its last report."""
    if load.delay is None:
        return None
    return load.delay + max(0.0, now - load.reported_at)


def lagging_regions(
    loads: Mapping[str, LoadReport], live: Iterable[str], now: float, max_delay: float = MAX_PROMOTE_DELAY
) -> frozenset[str]:
    """Live regions more than `max_delay` behind the least-delayed live region.

    A live region that reports no delay (no load report yet, or no beat ever
    reached it) is lagging once any other live region reports one: nothing
    shows that it receives writes.  With no delay reported anywhere (no proxy
    has run yet) nobody is lagging.
    """
    live = list(live)
    delays: dict[str, float] = {}
    for region in live:
        load = loads.get(region)
        delay = None if load is None else current_delay(load, now)
        if delay is not None:
            delays[region] = delay
    if not delays:
        return frozenset()
    best = min(delays.values())
    return frozenset(r for r in live if r not in delays or delays[r] - best > max_delay)
