"""One WhatsApp session as a trio actor.

The actor owns its session's state machine, its transport connection and a
bounded mailbox. Everything that changes the session's state goes through the
mailbox (connect, disconnect, logout), so state changes are serialised; calls
that only read or use a live connection (send, on-whatsapp, groups) go to the
transport directly through `require_connected()`.

A connection cycle is one `transport.run()`. When it fails, the actor backs
off (capped, jittered) and runs it again on the same transport object. A
session that has never been connected gives up after `connect_attempts`
consecutive failures and goes to FAILED with the transport's reason; a session
that has been connected keeps trying, shown as DISCONNECTED with the reason.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

import msgspec
import trio

from .._transport import (
    Connected,
    ConnectFailed,
    Disconnected,
    LoggedOut,
    MessageAction,
    MessageReceived,
    NotConnected,
    PairingTimeout,
    QRCode,
    SessionSpec,
    Transport,
    TransportEvent,
)
from ._backoff import Backoff
from ._outbox import OutboundQueue, Pacing, Sender
from ._state import SessionState, check_transition

log = logging.getLogger("actors.session")

DEFAULT_MAILBOX_SIZE: Final = 64
DEFAULT_EVENT_BUFFER: Final = 128
GRACEFUL_TIMEOUT: Final = 5.0


class ActorHost(Protocol):
    """What an actor reports to; the gateway implements it (persistence, events)."""

    async def state_changed(self, session_id: str, state: SessionState, reason: str | None) -> None:
        """Persist the new state. Called in order, one at a time per session."""

    async def transport_event(self, session_id: str, event: TransportEvent) -> None:
        """Everything else the transport reported (QR, messages, receipts, presence, ...)."""

    # Optional: a host may also define
    #     async def message_received(self, session_id: str, event: MessageReceived, transport: Transport) -> None
    # which the actor then calls for received messages instead of `transport_event`, so that the host
    # can download their media through the transport;
    #     async def message_action(self, session_id: str, event: MessageAction, transport: Transport) -> None
    # which it calls likewise for reactions, edits, revokes and votes (a host resolves who acted through
    # the transport); and
    #     async def connected(self, session_id: str, transport: Transport) -> None
    # which the actor runs in a task of its own each time the session becomes CONNECTED (again
    # after every reconnect), to restore what WhatsApp forgets with a connection (presence
    # subscriptions). It runs beside the event pump, so it may call the transport freely.


@dataclass(frozen=True)
class ActorPolicy:
    reconnect: Backoff = Backoff(initial=1.0, maximum=60.0)
    connect_attempts: int = 3
    mailbox_size: int = DEFAULT_MAILBOX_SIZE
    event_buffer: int = DEFAULT_EVENT_BUFFER
    graceful_timeout: float = GRACEFUL_TIMEOUT
    pacing: Pacing = Pacing()


# -- mailbox commands ---------------------------------------------------------

@dataclass(eq=False)
class Command:
    """A request to the actor. `done` is set once it has been carried out."""

    done: trio.Event = field(default_factory=trio.Event)


class Connect(Command):
    pass


class Disconnect(Command):
    pass


class Logout(Command):
    pass


class ActorStatistics(msgspec.Struct, frozen=True):
    session_id: str
    state: SessionState
    connecting: bool
    mailbox_depth: int
    event_backlog: int
    connect_failures: int
    events_handled: int


class SessionActor:
    def __init__(
        self,
        spec: SessionSpec,
        transport: Transport,
        host: ActorHost,
        mailbox: trio.MemoryReceiveChannel[Command],
        *,
        policy: ActorPolicy,
        state: SessionState = SessionState.DISCONNECTED,
        resume: bool = False,
        rng: random.Random | None = None,
        queue: OutboundQueue | None = None,
    ) -> None:
        self.spec = spec
        self.transport = transport
        # A new actor has no live connection, whatever was persisted before.
        live = (SessionState.CONNECTED, SessionState.CONNECTING)
        self.state = SessionState.DISCONNECTED if state in live else state
        self.reason: str | None = None
        self.qr: str | None = None
        self._host = host
        self._mailbox = mailbox
        self._policy = policy
        self._rng = rng or random.Random()
        # A resumed session (it was connected before a restart or a crash) keeps retrying.
        self._ever_connected = resume
        self._resume = resume
        self._state_lock = trio.Lock()
        self._events_send, self._events_recv = trio.open_memory_channel[TransportEvent](policy.event_buffer)
        self._pump_busy = False
        self._pump_drained = trio.Event()  # set (then replaced) whenever the pump has handled all queued events
        self._conn_scope: trio.CancelScope | None = None
        self._conn_done: trio.Event | None = None
        self._nursery: trio.Nursery | None = None
        self._failures = 0
        self._events_handled = 0
        self._cycle_crashed = False
        self.qr_changed = trio.Event()
        self._state_changed = trio.Event()
        self.sender = Sender(spec.session_id, queue, policy.pacing, self._rng) if queue is not None else None

    @property
    def session_id(self) -> str:
        return self.spec.session_id

    @property
    def wants_connection(self) -> bool:
        """True while the session should be online: a connection cycle is running, or
        one was running when the actor crashed (so its successor resumes it)."""
        return self._conn_scope is not None or self._cycle_crashed

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(
            session_id=self.session_id, state=self.state, connecting=self._conn_scope is not None,
            mailbox_depth=self._mailbox.statistics().current_buffer_used,
            event_backlog=self._events_recv.statistics().current_buffer_used,
            connect_failures=self._failures, events_handled=self._events_handled)

    def require_connected(self) -> Transport:
        """The transport, if the session is CONNECTED; else NotConnected."""
        if self.state is not SessionState.CONNECTED:
            raise NotConnected(f"session is {self.state.value}")
        return self.transport

    def nudge(self, due_in: float = 0.0) -> None:
        """A message was queued for this session, due in `due_in` seconds: the sender looks by then."""
        if self.sender is not None:
            self.sender.nudge(due_in)

    async def _wait_connected(self) -> Transport:
        while self.state is not SessionState.CONNECTED:
            await self._state_changed.wait()
        return self.transport

    async def run(self, *, task_status: trio.TaskStatus[SessionActor] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._pump_events)
            if self.sender is not None:
                nursery.start_soon(self.sender.run, self._wait_connected)
            if self._resume:
                await nursery.start(self._connection_loop)
            task_status.started(self)
            async for command in self._mailbox:
                try:
                    await self._handle(command)
                finally:
                    command.done.set()

    # -- commands -------------------------------------------------------------

    async def _handle(self, command: Command) -> None:
        assert self._nursery is not None
        if isinstance(command, Connect):
            if self._conn_scope is None:
                self._failures = 0
                await self._nursery.start(self._connection_loop)
        elif isinstance(command, Disconnect):
            await self._end_connection(logout=False)
            await self._set_state(SessionState.DISCONNECTED, None)
        elif isinstance(command, Logout):
            await self._end_connection(logout=True)
            await self._set_state(SessionState.LOGGED_OUT, "logged out by request")

    async def _end_connection(self, *, logout: bool) -> None:
        scope, done = self._conn_scope, self._conn_done
        if scope is None or done is None:
            if logout:
                # Not connected: nothing to tell WhatsApp now; the device store is dropped by the caller.
                with trio.move_on_after(self._policy.graceful_timeout):
                    try:
                        await self.transport.logout()
                    except Exception as exc:  # noqa: BLE001 - best effort on an idle client
                        log.info("logout without connection", extra={"fields": {
                            "session": self.session_id, "error": repr(exc)}})
            return
        with trio.move_on_after(self._policy.graceful_timeout):
            try:
                await (self.transport.logout() if logout else self.transport.disconnect())
            except Exception as exc:  # noqa: BLE001 - the cancel below ends the cycle anyway
                log.warning("graceful end failed", extra={"fields": {
                    "session": self.session_id, "error": repr(exc)}})
            await done.wait()
        scope.cancel()
        await done.wait()

    # -- the connection cycle -------------------------------------------------

    async def _connection_loop(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        done = trio.Event()
        self._conn_done = done
        try:
            with trio.CancelScope() as scope:
                self._conn_scope = scope
                task_status.started()
                await self._cycle_until_done()
        except Exception:
            self._cycle_crashed = True
            raise
        finally:
            self._conn_scope = None
            self._conn_done = None
            done.set()

    async def _cycle_until_done(self) -> None:
        while True:
            if self.state is not SessionState.CONNECTED:
                await self._set_state(SessionState.CONNECTING, self.reason if self._failures else None)
            try:
                await self.transport.run(self._events_send)
                return  # ended by disconnect/logout, or WhatsApp logged us out
            except PairingTimeout as exc:
                await self._events_settled()
                self.qr = None
                await self._set_state(SessionState.DISCONNECTED, exc.reason)
                return
            except ConnectFailed as exc:
                await self._events_settled()
                if not exc.retryable:
                    await self._set_state(SessionState.FAILED, exc.reason)
                    return
                self._failures += 1
                if not self._ever_connected and self._failures >= self._policy.connect_attempts:
                    await self._set_state(SessionState.FAILED, exc.reason)
                    return
                await self._set_state(SessionState.DISCONNECTED, exc.reason)
                await trio.sleep(self._policy.reconnect.delay(self._failures, self._rng))

    async def _events_settled(self) -> None:
        """Let the pump handle what the transport queued before it failed (a late Connected)."""
        while self._events_recv.statistics().current_buffer_used or self._pump_busy:
            await self._pump_drained.wait()

    # -- events ----------------------------------------------------------------

    async def _pump_events(self) -> None:
        async for event in self._events_recv:
            self._pump_busy = True
            try:
                await self._on_event(event)
            except Exception:
                # A host failure on one event must not kill the session; it is logged with context.
                log.exception("event handling failed", extra={"fields": {
                    "session": self.session_id, "event": type(event).__name__}})
            finally:
                self._pump_busy = False
                self._events_handled += 1
                if not self._events_recv.statistics().current_buffer_used:
                    self._pump_drained.set()
                    self._pump_drained = trio.Event()

    async def _on_event(self, event: TransportEvent) -> None:
        if isinstance(event, QRCode):
            self.qr = event.code
            self.qr_changed.set()
            self.qr_changed = trio.Event()
            if self.state is not SessionState.CONNECTING:
                await self._set_state(SessionState.CONNECTING, None)
        elif isinstance(event, Connected):
            self.qr = None
            self._ever_connected = True
            self._failures = 0
            await self._set_state(SessionState.CONNECTED, None)
            self.qr_changed.set()
            self.qr_changed = trio.Event()
            hook = getattr(self._host, "connected", None)
            if hook is not None and self._nursery is not None:
                self._nursery.start_soon(self._after_connect, hook)
        elif isinstance(event, Disconnected):
            await self._set_state(SessionState.DISCONNECTED, event.reason)
        elif isinstance(event, LoggedOut):
            self.qr = None
            self._ever_connected = False
            await self._set_state(SessionState.LOGGED_OUT, event.reason)
        elif type(event) is MessageReceived:
            on_message = getattr(self._host, "message_received", None)
            if on_message is not None:
                await on_message(self.session_id, event, self.transport)
                return
        elif isinstance(event, MessageAction):
            on_action = getattr(self._host, "message_action", None)
            if on_action is not None:
                await on_action(self.session_id, event, self.transport)
                return
        await self._host.transport_event(self.session_id, event)

    async def _after_connect(self, hook: Callable[[str, Transport], Awaitable[None]]) -> None:
        try:
            await hook(self.session_id, self.transport)
        except Exception:
            # Best effort: a connection that dropped again meanwhile gets its own run of the hook.
            log.exception("after-connect hook failed", extra={"fields": {"session": self.session_id}})

    async def _set_state(self, state: SessionState, reason: str | None) -> None:
        async with self._state_lock:
            if not check_transition(self.state, state) and reason == self.reason:
                return
            self.state, self.reason = state, reason
            self._state_changed.set()
            self._state_changed = trio.Event()
            self.qr_changed.set()  # whoever waits for a QR code also learns that pairing failed or ended
            self.qr_changed = trio.Event()
            await self._host.state_changed(self.session_id, state, reason)
