"""The supervisor: owns every session actor, restarts crashed ones, isolates failures.

It keeps `session_id → entry (cancel scope, done event, mailbox, current actor)`.
- `start` uses `nursery.start`, so an actor that fails while starting raises in
  the caller instead of dying unseen.
- A crash (any exception out of a running actor) is logged and the actor is
  restarted after a capped, jittered exponential backoff, with a fresh actor on
  the same transport and mailbox: pending commands survive, and a session that
  wanted a connection reconnects.
- `max_crashes` crashes within `crash_window` seconds is a crash loop: the
  session is marked FAILED with the last error as its reason and supervision of
  it ends. A new `start` begins afresh.
- `stop` is cancel-and-wait: `cancel_scope.cancel(); await done.wait()`.
Nothing a session does can raise into the supervisor's nursery, so one
session's crash never touches another.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

import msgspec
import trio

from .._transport import SessionSpec, Transport, TransportFactory
from ._actor import ActorHost, ActorPolicy, Command, Disconnect, Logout, SessionActor
from ._backoff import Backoff, CrashWindow
from ._outbox import OutboundQueue
from ._state import SessionState

log = logging.getLogger("actors.supervisor")


@dataclass
class _Entry:
    spec: SessionSpec
    transport: Transport
    mailbox_send: trio.MemorySendChannel[Command]
    mailbox_recv: trio.MemoryReceiveChannel[Command]
    crashes: CrashWindow
    cancel_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)
    actor: SessionActor | None = None
    restarts: int = 0


class SupervisorStatistics(msgspec.Struct, frozen=True):
    sessions: int
    by_state: dict[str, int]
    restarts: int
    crash_loops: int


class Supervisor:
    def __init__(
        self,
        factory: TransportFactory,
        host: ActorHost,
        *,
        policy: ActorPolicy | None = None,
        restart_backoff: Backoff = Backoff(initial=0.5, maximum=30.0),
        max_crashes: int = 5,
        crash_window: float = 60.0,
        rng: random.Random | None = None,
        queue: OutboundQueue | None = None,
    ) -> None:
        self._queue = queue
        self._factory = factory
        self._host = host
        self._policy = policy or ActorPolicy()
        self._restart_backoff = restart_backoff
        self._max_crashes = max_crashes
        self._crash_window = crash_window
        self._rng = rng or random.Random()
        self._entries: dict[str, _Entry] = {}
        self._nursery: trio.Nursery | None = None
        self._restarts = 0
        self._crash_loops = 0

    async def run(self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the actors' nursery until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started(self)
            await trio.sleep_forever()

    # -- lifecycle --------------------------------------------------------------

    def get(self, session_id: str) -> SessionActor | None:
        entry = self._entries.get(session_id)
        return entry.actor if entry else None

    async def start(self, spec: SessionSpec, *, state: SessionState = SessionState.DISCONNECTED,
                    resume: bool = False) -> SessionActor:
        """Start supervising a session (no-op if it is already running); return its actor.

        With `resume`, the actor starts connecting at once (a session that was
        connected before the gateway restarted).
        """
        entry = self._entries.get(spec.session_id)
        if entry is not None and entry.actor is not None:
            return entry.actor
        if self._nursery is None:
            raise RuntimeError("supervisor is not running")
        return await self._nursery.start(self._supervise, spec, state, resume)

    async def stop(self, session_id: str) -> None:
        """Cancel the session's actor and wait until it is gone. No-op if not running."""
        entry = self._entries.get(session_id)
        if entry is None:
            return
        entry.cancel_scope.cancel()
        await entry.done.wait()

    async def stop_all(self) -> None:
        for session_id in list(self._entries):
            await self.stop(session_id)

    def send_nowait(self, session_id: str, command: Command) -> None:
        """Hand a command to a running actor. Raises KeyError if none, trio.WouldBlock if its mailbox is full."""
        self._entries[session_id].mailbox_send.send_nowait(command)

    async def disconnect(self, session_id: str, *, logout: bool = False) -> None:
        """Ask the actor to disconnect (or log out) and wait until it has."""
        command: Command = Logout() if logout else Disconnect()
        self.send_nowait(session_id, command)
        await command.done.wait()

    def statistics(self) -> SupervisorStatistics:
        by_state: dict[str, int] = {}
        for entry in self._entries.values():
            if entry.actor is not None:
                by_state[entry.actor.state.value] = by_state.get(entry.actor.state.value, 0) + 1
        return SupervisorStatistics(sessions=len(self._entries), by_state=by_state,
                                    restarts=self._restarts, crash_loops=self._crash_loops)

    # -- supervision ------------------------------------------------------------

    async def _supervise(self, spec: SessionSpec, state: SessionState, resume: bool, *,
                         task_status: trio.TaskStatus[SessionActor] = trio.TASK_STATUS_IGNORED) -> None:
        send, recv = trio.open_memory_channel[Command](self._policy.mailbox_size)
        entry = _Entry(spec=spec, transport=self._factory.create(spec), mailbox_send=send, mailbox_recv=recv,
                       crashes=CrashWindow(self._max_crashes, self._crash_window))
        self._entries[spec.session_id] = entry
        started = False
        try:
            with entry.cancel_scope:
                while True:
                    actor = SessionActor(spec, entry.transport, self._host, recv, policy=self._policy,
                                         state=state, resume=resume, rng=self._rng, queue=self._queue)
                    entry.actor = actor
                    try:
                        async with trio.open_nursery() as nursery:
                            await nursery.start(actor.run)
                            if not started:
                                started = True
                                task_status.started(actor)
                        return  # the actor ended by itself (its mailbox closed)
                    except Exception as exc:
                        if not started:
                            raise
                        if await self._crashed(entry, actor, exc):
                            return
                    resume = actor.wants_connection or actor.state is SessionState.CONNECTED
                    state = actor.state
        finally:
            if self._entries.get(spec.session_id) is entry:
                del self._entries[spec.session_id]
            entry.actor = None
            entry.done.set()

    async def _crashed(self, entry: _Entry, actor: SessionActor, exc: Exception) -> bool:
        """Handle a crash; True if it was a crash loop and supervision ends."""
        session_id = entry.spec.session_id
        log.error("session actor crashed", exc_info=exc, extra={"fields": {"session": session_id}})
        if entry.crashes.record(trio.current_time()):
            self._crash_loops += 1
            leaf = _innermost(exc)
            reason = (f"crash loop: {entry.crashes.recent} crashes within {self._crash_window:g}s; "
                      f"last error: {type(leaf).__name__}: {leaf}")
            actor.state, actor.reason = SessionState.FAILED, reason
            try:
                await self._host.state_changed(session_id, SessionState.FAILED, reason)
            except Exception:
                log.exception("could not record crash loop", extra={"fields": {"session": session_id}})
            return True
        entry.restarts += 1
        self._restarts += 1
        await trio.sleep(self._restart_backoff.delay(entry.crashes.recent, self._rng))
        return False


def _innermost(exc: BaseException) -> BaseException:
    """The first real error inside nested exception groups (nurseries wrap crashes)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
