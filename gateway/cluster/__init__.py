"""Cluster mode: N gateway processes, on one host or many, against one PostgreSQL.

- `LeaseKeeper` (`_keeper`): session ownership through leases with an expiry
  and a fencing epoch, renewed by heartbeat, spread across nodes;
- `Router` (`_router`): live operations are proxied to the session's owner;
- `Notifier` (`_notify`): LISTEN/NOTIFY nudges between nodes;
- `EventRelay` (`_relay`): the live event stream, whichever node a client reached;
- `Cluster` (`_node`): this process as a node;
- `NodeSessions`, `ClusterGate` (`_sessions`): the sessions the keeper drives, and the send gate;
- `serve_workers` (`_workers`): `gateway serve --workers N` on one host.

Cluster mode is on whenever the store is PostgreSQL (one node is a cluster of
one). The README's "Cluster mode" section is the operator's view of it.
"""

from ._keeper import DEFAULT_TTL, KeeperStatistics, LeaseHost, LeaseKeeper
from ._node import Cluster, ClusterStatistics, new_node_id, proxy_client
from ._notify import Notifier
from ._relay import EventRelay
from ._router import FORWARDED_BY, HOP_HEADER, PROXY_TIMEOUT, Router
from ._sessions import ClusterGate, NodeSessions

__all__ = [
    "DEFAULT_TTL", "FORWARDED_BY", "HOP_HEADER", "PROXY_TIMEOUT", "Cluster", "ClusterGate", "ClusterStatistics",
    "EventRelay", "KeeperStatistics", "LeaseHost", "LeaseKeeper", "NodeSessions", "Notifier", "Router",
    "new_node_id", "proxy_client",
]
