"""Cluster mode: N gateway processes, on one host or many, against one PostgreSQL.

- `LeaseKeeper` (`_keeper`): session ownership through leases with an expiry
  and a fencing epoch, renewed by heartbeat, spread across nodes;
- `Router` (`_router`): live operations are proxied to the session's owner;
- `Notifier` (`_notify`): LISTEN/NOTIFY nudges between nodes;
- `EventRelay` (`_relay`): the live event stream, whichever node a client reached;
- `open_cluster` (`_node`): this process as a node;
- `serve_workers` (`_workers`): `gateway serve --workers N` on one host.

Cluster mode is on whenever the store is PostgreSQL (one node is a cluster of
one). The README's "Cluster mode" section is the operator's view of it.
"""

from ._keeper import DEFAULT_TTL, KeeperStatistics, LeaseHost, LeaseKeeper, NotOwner
from ._node import Cluster, ClusterStatistics, new_node_id, open_cluster
from ._notify import Notifier
from ._relay import EventRelay
from ._router import FORWARDED_BY, HOP_HEADER, PROXY_TIMEOUT, Router

__all__ = [
    "DEFAULT_TTL", "FORWARDED_BY", "HOP_HEADER", "PROXY_TIMEOUT", "Cluster", "ClusterStatistics", "EventRelay",
    "KeeperStatistics", "LeaseHost", "LeaseKeeper", "NotOwner", "Notifier", "Router", "new_node_id", "open_cluster",
]
