"""Session control: what the API asks of a session's live connection.

`SessionControl` connects (starting the actor and waiting briefly for a QR
code), disconnects, removes, and hands out the QR and pairing codes; at
start-up it brings back every session that was meant to be online. Where
a session runs is `Ownership`'s question: one node runs every session, a
cluster node takes the session's lease before it starts it here.

`LocalGate` is the one-node `SessionGate`: it asks the actor, without I/O.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from actors import (
    Connect,
    Disconnect,
    Logout,
    NotConnected,
    SessionActor,
    SessionSpec,
    SessionState,
    Supervisor,
    Transport,
    TransportError,
)

from ._clock import Clock
from ._limits import RateGuard
from ._ports import Ownership
from .errors import (
    Conflict,
    ConnectionFailed,
    OwnedElsewhere,
    QrNotAvailable,
    SessionNotConnected,
    SessionNotFound,
    TryAgainLater,
    ValidationError,
)
from .store import SessionRecord, Store

log = logging.getLogger("gateway.live")

PAIRING_DEADLINE = 30.0
SHORT_REASON_MAX = 120
_PAIRING_ENDED = (SessionState.CONNECTED, SessionState.FAILED, SessionState.LOGGED_OUT)


def short_reason(raw: str) -> str:
    """The readable head of a transport's error chain (`a: b: c` → `a`), at most SHORT_REASON_MAX characters."""
    head = raw.strip().splitlines()[0] if raw.strip() else raw
    head = head.split(": ", 1)[0] if len(head) > SHORT_REASON_MAX else head
    return head if len(head) <= SHORT_REASON_MAX else head[:SHORT_REASON_MAX - 1] + "…"


class SessionControl:
    def __init__(self, store: Store, supervisor: Supervisor, rates: RateGuard, ownership: Ownership, *,
                 data_dir: str, qr_wait: float, command_timeout: float, clock: Clock) -> None:
        self._store = store
        self._supervisor = supervisor
        self._rates = rates
        self._ownership = ownership
        self._data_dir = data_dir
        self._qr_wait = qr_wait
        self._command_timeout = command_timeout
        self._clock = clock

    def actor(self, session_id: str) -> SessionActor | None:
        return self._supervisor.get(session_id)

    async def start(self, record: SessionRecord, *, resume: bool = False) -> SessionActor:
        """Run the session's actor here, in its persisted state, with its own send rate."""
        self._rates.set_send_rate(record.id, record.send_limit)
        spec = SessionSpec(session_id=record.id, phone_number=record.phone_number, data_dir=self._data_dir)
        return await self._supervisor.start(spec, state=record.status, resume=resume)

    def nudge(self, session_id: str) -> None:
        """Wake the sender of the session's actor here, if it runs here. Never blocks."""
        actor = self.actor(session_id)
        if actor is not None:
            actor.nudge()

    async def stop(self, session_id: str) -> None:
        """Stop the session's actor here (it keeps its persisted state)."""
        await self._supervisor.stop(session_id)

    async def restore(self) -> int:
        """Start an actor, connecting, for every session that was meant to be online (one node)."""
        count = 0
        for record in await self._store.list_sessions_to_connect():
            try:
                await self.start(record, resume=True)
                count += 1
            except Exception:
                log.exception("could not restore session", extra={"fields": {"session": record.id}})
        return count

    def require_connected(self, session_id: str) -> Transport:
        """The live transport of a CONNECTED session, else SessionNotConnected."""
        actor = self.actor(session_id)
        if actor is None or actor.state is not SessionState.CONNECTED:
            state = actor.state.value if actor else "not running"
            raise SessionNotConnected(f"Session is {state}; connect it first (POST .../connect)")
        return actor.transport

    async def connect(self, record: SessionRecord) -> tuple[SessionRecord, str | None]:
        # Wanted online before it is taken: a lease round must never see this node holding a
        # session that nobody wants and nothing runs, and release it under us.
        if not record.connect_on_start:
            await self._store.update_session(record.id, {"connect_on_start": True}, self._clock.now_ms())
        if not self._ownership.holds(record.id) and not await self._ownership.take(record.id):
            raise OwnedElsewhere()
        if record.status is not SessionState.CONNECTED or self.actor(record.id) is None:
            actor = await self.start(record)
            try:
                self._supervisor.send_nowait(record.id, Connect())
            except trio.WouldBlock:
                raise TryAgainLater("The session is busy; try again shortly") from None
            # Wait for this attempt: a QR, or an end reached after the Connect (an actor that starts
            # in its persisted FAILED or LOGGED_OUT state has not tried again yet).
            moved = False
            with trio.move_on_after(self._qr_wait):
                while actor.qr is None and not (moved and actor.state in _PAIRING_ENDED):
                    await actor.qr_changed.wait()
                    moved = True
            if actor.state is SessionState.FAILED:
                raw = actor.reason or "no reason given"
                log.warning("connect failed", extra={"fields": {"session": record.id, "reason": raw}})
                raise ConnectionFailed(short_reason(raw), reason=raw)
        actor = self.actor(record.id)
        return await self._fresh(record.id), actor.qr if actor else None

    async def disconnect(self, record: SessionRecord) -> SessionRecord:
        at = self._clock.now_ms()
        await self._store.update_session(record.id, {"connect_on_start": False}, at)
        if self.actor(record.id) is not None:
            await self._ask(record.id, Disconnect())
        elif record.status in (SessionState.CONNECTED, SessionState.CONNECTING):
            # Persisted as live but no actor here (e.g. it crashed out): make the record honest.
            await self._store.update_session(record.id, {"status": SessionState.DISCONNECTED}, at)
        return await self._fresh(record.id)

    async def logout(self, record: SessionRecord) -> SessionRecord:
        """Unlink this device from WhatsApp. The session stays, LOGGED_OUT; connecting again shows a new QR."""
        await self._store.update_session(record.id, {"connect_on_start": False}, self._clock.now_ms())
        if self.actor(record.id) is None:
            if not self._ownership.holds(record.id) and not await self._ownership.take(record.id):
                raise OwnedElsewhere()
            await self.start(record)  # with its stored device, so that WhatsApp hears of the logout
        await self._ask(record.id, Logout())
        return await self._fresh(record.id)

    async def remove(self, record: SessionRecord) -> None:
        """Log the session out of WhatsApp (best effort) and stop its actor, before deletion."""
        if self.actor(record.id) is not None:
            with trio.move_on_after(self._command_timeout):
                try:
                    await self._supervisor.disconnect(record.id, logout=True)
                except (KeyError, trio.WouldBlock):
                    pass
            await self._supervisor.stop(record.id)
        await self._ownership.release(record.id)

    def qr(self, record: SessionRecord) -> str:
        actor = self.actor(record.id)
        if actor is None or actor.state is not SessionState.CONNECTING or actor.qr is None:
            state = actor.state if actor else record.status
            if state is SessionState.CONNECTED:
                raise QrNotAvailable("Session is CONNECTED: it is paired already, no QR code is needed.")
            if state is SessionState.CONNECTING:
                raise QrNotAvailable("Session is CONNECTING and its QR code has not arrived yet; retry in a moment.")
            reason = (actor.reason if actor else record.status_reason) or ""
            because = f" ({short_reason(reason)})" if reason else ""
            raise QrNotAvailable(f"Session is {state.value}{because}; a QR code exists only while it is "
                                 "CONNECTING and unpaired. Call connect to get one.")
        return actor.qr

    async def pairing_code(self, record: SessionRecord, phone_number: str) -> str:
        actor = self.actor(record.id)
        if actor is None or actor.state is SessionState.CONNECTED or not actor.wants_connection:
            raise Conflict("A pairing code can be requested only while the session is CONNECTING "
                           "and unpaired; call connect first")
        try:
            with trio.fail_after(PAIRING_DEADLINE):
                return await actor.transport.pair_phone(phone_number)
        except trio.TooSlowError:
            raise TryAgainLater("WhatsApp did not answer in time", retry_after=5) from None
        except NotConnected as exc:
            raise Conflict(f"Session is not ready for pairing: {exc.reason}") from None
        except TransportError as exc:  # WhatsApp refused the number: the caller's input is at fault
            raise ValidationError.at("$.phoneNumber", exc.reason) from None

    async def _ask(self, session_id: str, command: Any) -> None:
        try:
            self._supervisor.send_nowait(session_id, command)
        except KeyError:
            return
        except trio.WouldBlock:
            raise TryAgainLater("The session is busy; try again shortly") from None
        with trio.move_on_after(self._command_timeout):
            await command.done.wait()

    async def _fresh(self, session_id: str) -> SessionRecord:
        record = await self._store.get_session(session_id)
        if record is None:
            raise SessionNotFound()
        return record


class LocalGate:
    """One node: the session may send when its actor here is CONNECTED. No I/O."""

    def __init__(self, control: SessionControl) -> None:
        self._control = control

    async def require_sendable(self, session_id: str) -> None:
        self._control.require_connected(session_id)

    def nudge(self, session_id: str) -> None:
        self._control.nudge(session_id)
