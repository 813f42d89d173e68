"""Topology errors: the only exceptions proxy, master and region ever see from ZooKeeper.

The ZooKeeper backend translates kazoo's exceptions into these exactly once
(see zk.py); the memory backend raises them directly.
"""


class TopologyError(Exception):
    """Base class of every topology failure."""


class NoNodeError(TopologyError):
    """The node does not exist."""


class NodeExistsError(TopologyError):
    """A create found the node already there."""


class BadVersionError(TopologyError):
    """A compare-and-set lost: the node changed since it was read."""


class NotEmptyError(TopologyError):
    """A non-recursive delete found children."""


class TopologyUnavailable(TopologyError):
    """ZooKeeper cannot be reached (connection loss, session expiry, timeout).

    Retriable: the caller may try again once the session is back.
    """


class NotAuthorizedError(TopologyError):
    """ZooKeeper refused the operation (NoAuth / AuthFailed): this process's
    identity lacks the permission the znode's ACL demands.

    Not retriable: it is a configuration error (wrong or missing ZooKeeper
    credentials, or a read-only identity trying to write).
    """


class ConflictError(TopologyError):
    """A versioned read-modify-write kept losing races and gave up."""


class CallTimeout(TopologyError):
    """A queued request got no answer in time (is a master / the region alive?)."""


class FencedError(TopologyError):
    """A leader-only write from a process that is not (or no longer) the
    leader: its election node is gone, so another master may lead.  The
    write was not applied (ZooKeeper checked the node in the same multi-op)."""
