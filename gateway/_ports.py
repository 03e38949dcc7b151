"""The ports the gateway's services are built with, so one node and a cluster differ only in what is passed.

- `Ownership`: may this node act as a session's owner, and with which fence?
  One node always may, unfenced (`SINGLE_NODE`); a cluster node may while it
  holds the session's lease (`gateway.cluster.LeaseKeeper`).
- `SessionGate`: may a session send now, and how to tell its sender that the
  queue has something new. One node asks its own actor (no I/O); a cluster
  node reads the persisted state, since the session may run elsewhere.
"""

from __future__ import annotations

from typing import Final, Protocol

import trio

from .store import Fence


class Ownership(Protocol):
    def write_fence(self, session_id: str) -> tuple[bool, Fence | None]:
        """(may this node write as the session's owner, the fence its writes carry). Never blocks."""
        ...

    def holds(self, session_id: str) -> bool:
        """True while this node may run the session."""
        ...

    async def wait_owned(self, session_id: str) -> None:
        """Return at once while this node owns the session; else wait until it does."""
        ...

    async def take(self, session_id: str) -> bool:
        """Own the session to run it here (connect); False when another node holds it."""
        ...

    async def release(self, session_id: str) -> None:
        """Stop owning the session (its actor is already stopped)."""
        ...


class SingleNode:
    """The only node: it owns every session, and its writes need no fence."""

    def write_fence(self, session_id: str) -> tuple[bool, Fence | None]:
        return True, None

    def holds(self, session_id: str) -> bool:
        return True

    async def wait_owned(self, session_id: str) -> None:
        return None  # no checkpoint: a sender's loop must not yield here on every message

    async def take(self, session_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        return True

    async def release(self, session_id: str) -> None:
        await trio.lowlevel.checkpoint()


SINGLE_NODE: Final = SingleNode()


class SessionGate(Protocol):
    async def require_sendable(self, session_id: str) -> None:
        """Raise SessionNotConnected (or SessionNotFound) unless the session can send now."""
        ...

    def nudge(self, session_id: str, due_in: float = 0.0) -> None:
        """The session's queue has something new, due in `due_in` seconds (0: now): its sender, wherever it
        runs, looks at the queue by then. Never blocks."""
        ...
