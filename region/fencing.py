"""The leader epoch a region serves, kept in its own MariaDB across restarts.

Fencing (docs/architecture.md, "Fenced"): the leading master stamps every
region task with its leader epoch (its election node's sequence number), and
a region refuses a task stamped lower than one it has already served
(region/tasks.py), so a deposed master that wakes up cannot act after its
successor.  Held only in memory, that rule forgets everything when the agent
restarts: a deposed leader's queued task could then run on a fresh agent.
So the highest epoch is also written here, in the same MariaDB the tasks
change, *before* the first task of a higher epoch runs, and read back when
the agent starts.

One row in `mysql.minisql_region_state`, named by the cluster's id
(`Topology.cluster_id`): election sequence numbers start again at 0 in a
ZooKeeper tree that was wiped, or under another cluster's root sharing this
MariaDB, and an epoch of a cluster that no longer exists must not fence
the new one.  GREATEST keeps it monotonic when two queues (region-<id>,
region-<id>-copy) raise it at once.  The table lives
in the `mysql` schema like the commit decisions: never placed, never written
by a client.

Error handling: a failed write fails the task that raised the epoch (the
leader retries it); a failed read at start is retried by the agent before it
serves anything.
"""

from __future__ import annotations

from typing import Any

STATE = "mysql.minisql_region_state"
CREATE_STATE = (
    f"CREATE TABLE IF NOT EXISTS {STATE} ("
    " name VARCHAR(64) NOT NULL PRIMARY KEY,"
    " value BIGINT NOT NULL"
    ") ENGINE=InnoDB COMMENT='MiniSQL Cluster: what this region must remember across agent restarts'"
)


def epoch_name(cluster_id: str) -> str:
    return f"leader_epoch:{cluster_id}"[:64]


async def load_leader_epoch(pool: Any, cluster_id: str) -> int:
    """The highest leader epoch this region served in this cluster (0: none), creating the table if needed."""
    async with pool.acquire() as conn:
        async with conn.cursor() as cur:
            await cur.execute(CREATE_STATE)
            await cur.execute(f"SELECT value FROM {STATE} WHERE name = %s", (epoch_name(cluster_id),))
            row = await cur.fetchone()
    return int(row[0]) if row else 0


def epoch_keeper(pool: Any, cluster_id: str):  # noqa: ANN201 - a coroutine function for RegionTasks
    """`remember_epoch` for RegionTasks: store `epoch` unless a higher one is stored."""

    async def remember(epoch: int) -> None:
        async with pool.acquire() as conn:
            async with conn.cursor() as cur:
                await cur.execute(
                    f"INSERT INTO {STATE} (name, value) VALUES (%s, %s) "
                    "ON DUPLICATE KEY UPDATE value = GREATEST(value, VALUES(value))",
                    (epoch_name(cluster_id), int(epoch)),
                )

    return remember
