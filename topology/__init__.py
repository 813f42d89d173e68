"""Topology: the one package that knows ZooKeeper (paths, JSON, kazoo).

proxy, master and region import only from here; none of them imports kazoo.
"""

from .errors import (
    BadVersionError,
    CallTimeout,
    ConflictError,
    FencedError,
    NodeExistsError,
    NoNodeError,
    NotAuthorizedError,
    NotEmptyError,
    TopologyError,
    TopologyUnavailable,
)
from .auth import ZooKeeperAuth
from .model import EMPTY_PLACEMENT, LeaderInfo, Placement, RegionInfo, RegionLoad, ReplicaState, TablePlacement
from .service import Leadership, Topology

__all__ = [
    "BadVersionError",
    "CallTimeout",
    "ConflictError",
    "EMPTY_PLACEMENT",
    "FencedError",
    "LeaderInfo",
    "Leadership",
    "NoNodeError",
    "NodeExistsError",
    "NotAuthorizedError",
    "NotEmptyError",
    "Placement",
    "RegionInfo",
    "RegionLoad",
    "ReplicaState",
    "TablePlacement",
    "Topology",
    "TopologyError",
    "TopologyUnavailable",
    "ZooKeeperAuth",
]
