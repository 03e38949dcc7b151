"""The production transport: real WhatsApp through neonize (whatsmeow in Go).

Importing this package does not import neonize; constructing a
`NeonizeTransportFactory` does (see `_transport` on logging).
"""

from ._factory import NeonizeTransportFactory
from ._rwlock import GO_LOCK, RWLock, RWLockStatistics
from ._transport import NeonizeTransport

__all__ = ["GO_LOCK", "NeonizeTransport", "NeonizeTransportFactory", "RWLock", "RWLockStatistics"]
