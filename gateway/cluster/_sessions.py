"""This node's side of the sessions in cluster mode: the keeper's `LeaseHost` and the send gate.

`NodeSessions` carries out what the lease keeper decides (start a session
here as its new owner, stop it, say whether it is idle or cheap to move).
`ClusterGate` is the cluster's `SessionGate`: the session may run on another
node, so whether it can send is read from its persisted state (which its
owner keeps current), and a nudge for a session held elsewhere is sent to
the other nodes.
"""

from __future__ import annotations

import logging

from actors import SessionState

from .._clock import Clock
from .._control import SessionControl
from .._host import DOWN_STATES
from .._limits import RateGuard
from ..errors import SessionNotConnected, SessionNotFound
from ..store import Store
from ._keeper import LeaseKeeper
from ._notify import Notifier

log = logging.getLogger("gateway.cluster")


class NodeSessions:
    def __init__(self, store: Store, control: SessionControl, *, node_id: str, clock: Clock) -> None:
        self._store = store
        self._control = control
        self._node_id = node_id
        self._clock = clock

    async def resume(self, session_id: str) -> bool:
        """Start the session here as its new owner: what its last owner left mid-send is queued again."""
        record = await self._store.get_session(session_id)
        if record is None or not record.connect_on_start:
            return False
        requeued = await self._store.requeue_interrupted([session_id], self._clock.now_ms(), node_id=self._node_id)
        if requeued:
            log.warning("requeued interrupted sends", extra={"fields": {"session": session_id, "count": requeued}})
        await self._control.start(record, resume=True)
        return True

    async def stop(self, session_id: str) -> None:
        await self._control.stop(session_id)

    def idle(self, session_id: str) -> bool:
        actor = self._control.actor(session_id)
        return actor is None or (not actor.wants_connection and actor.state in DOWN_STATES)

    def movable(self, session_id: str) -> bool:
        actor = self._control.actor(session_id)
        return actor is not None and actor.state is SessionState.CONNECTED

    def nudge(self, session_id: str, due_in: float = 0.0) -> None:
        self._control.nudge(session_id, due_in)


class ClusterGate:
    def __init__(self, store: Store, rates: RateGuard, keeper: LeaseKeeper, notifier: Notifier,
                 control: SessionControl) -> None:
        self._store = store
        self._rates = rates
        self._keeper = keeper
        self._notifier = notifier
        self._control = control

    async def require_sendable(self, session_id: str) -> None:
        """Read the persisted state, and refresh the session's own send rate from the same record."""
        record = await self._store.get_session(session_id)
        if record is None:
            raise SessionNotFound()
        self._rates.set_send_rate(session_id, record.send_limit)
        if record.status is not SessionState.CONNECTED:
            raise SessionNotConnected(f"Session is {record.status.value}; connect it first (POST .../connect)")

    def nudge(self, session_id: str, due_in: float = 0.0) -> None:
        if not self._keeper.holds(session_id):
            self._notifier.publish_nowait(session_id)  # its owner looks now, and waits on for a later time
        else:
            self._control.nudge(session_id, due_in)
