"""The `sim` transport: sessions on the simulated WhatsApp network (`gateway simulator`).

    async with open_sim_transport_factory("ws://127.0.0.1:8765", data_dir="./data") as factory:
        transport = factory.create(SessionSpec(session_id="s1"))
        await nursery.start(transport.run, events_send_channel)

The factory owns one websocket link to the simulator for all its sessions and
a task that keeps it up (`open_sim_transport_factory` runs that task; or start
`factory.run` in a nursery you own and call `aclose()` at the end). Each
`SimTransport` follows the `Transport` protocol: `run` waits for the link (its
next connection attempt, at most `connect_timeout`), attaches the session,
forwards its events, and raises `ConnectFailed` when the simulator cannot be
reached or the link or the session is dropped. The actor then calls `run`
again on the same object, which resumes the same account.

Pairing credentials live in `<data_dir>/sim/<session_id>.json` (a few hundred
bytes, written once per pairing; deleted on logout or LoggedOut). Presenting
them resumes the account without a scan, even across simulator restarts.

Events go straight into `run`'s channel with `send_nowait` when it has room;
otherwise they wait, in order, in a per-session buffer that the simulator's
credit window bounds (`window` events), and `run` forwards them. So one slow
session never stalls the link, and the common case costs no task switch. `send` uses a
`message_id` attribute of the message when it has one, so a retried send is
deduplicated by the network.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import trio

from .._messages import OutboundMessage, SendResult
from .._transport import (
    ChatState, Connected, ConnectFailed, ContactInfo, EventSendChannel, GroupInfo, GroupSettings, MessageReceived,
    NotConnected, OnWhatsApp, PairingTimeout, ParticipantAction, ParticipantResult, ProfilePicture, QRCode,
    SessionSpec, TransportError, UserInfo,
)
from ._link import SimLink, SimLinkStatistics
from ._protocol import (
    CONTROL_MARGIN, DEFAULT_WINDOW, Attach, ContactsOp, CreateGroupOp, Creds, Detach, EditOp, End, GroupInfoOp,
    LeaveGroupOp, ListGroupsOp, LogoutOp, MarkReadOp, OnWhatsAppOp, Paired, PairPhoneOp, Push, ReactOp, RevokeOp,
    SendOp, SendPresenceOp, ServerFrame, SubscribePresenceOp, TypingOp, UpdateParticipantsOp, VoteOp,
    DownloadMediaOp, BlocklistOp, BlockOp, GroupPictureOp, GroupSettingsOp, InviteInfoOp, InviteLinkOp, JoinInviteOp,
    LidForPhoneOp, PhoneForLidOp, PictureOp, UserInfoOp,
)
from ._store import SimDeviceStore

log = logging.getLogger("actors.sim")

DEFAULT_PAIRING_DEADLINE: Final = 120.0
DEFAULT_CONNECT_TIMEOUT: Final = 30.0
DEFAULT_CALL_TIMEOUT: Final = 30.0

class SimTransportFactory:
    """Makes `SimTransport`s that share one link to the simulator at `url`."""

    def __init__(self, url: str, *, data_dir: str, pairing_deadline: float = DEFAULT_PAIRING_DEADLINE,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, call_timeout: float = DEFAULT_CALL_TIMEOUT,
                 backoff_initial: float = 0.1, backoff_max: float = 5.0, window: int = DEFAULT_WINDOW,
                 name: str = "") -> None:
        self.url = url
        self.pairing_deadline = pairing_deadline
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        self.window = window
        self.link = SimLink(url, window=window, backoff_initial=backoff_initial, backoff_max=backoff_max, name=name)
        self.store = SimDeviceStore(Path(data_dir) / "sim")

    @property
    def closed(self) -> bool:
        return self.link.closed

    def create(self, spec: SessionSpec) -> SimTransport:
        return SimTransport(self, spec)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The link task: connects on first use, reconnects with backoff, until `aclose()`."""
        await self.link.run(task_status=task_status)

    async def aclose(self) -> None:
        """End every session's `run` (ConnectFailed, not retryable) and stop the link task."""
        self.link.close()
        for session in list(self.link.sessions.values()):
            session.link_lost("the sim transport factory closed")
        await trio.lowlevel.checkpoint()

    def statistics(self) -> SimLinkStatistics:
        return self.link.statistics()

    def creds_path(self, session_id: str) -> Path:
        """Where the session's device credentials live (`<data_dir>/sim/<session_id>.json`)."""
        return self.store.path(session_id)


@asynccontextmanager
async def open_sim_transport_factory(url: str, *, data_dir: str, **options: float | int | str
                                     ) -> AsyncIterator[SimTransportFactory]:
    """A `SimTransportFactory` whose link task runs for the duration of the block."""
    factory = SimTransportFactory(url, data_dir=data_dir, **options)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(factory.run)
        try:
            yield factory
        finally:
            await factory.aclose()
            nursery.cancel_scope.cancel()


class SimTransport:
    """One session on the simulator; see the module docstring and `actors._transport.Transport`."""

    __slots__ = ("_factory", "_link", "_spec", "_creds", "_creds_loaded", "_running", "_connected", "_end",
                 "_send", "_events", "_buffered", "_generation", "_wait_scope", "_pairing_scope")

    def __init__(self, factory: SimTransportFactory, spec: SessionSpec) -> None:
        self._factory = factory
        self._link = factory.link
        self._spec = spec
        self._creds: Creds | None = None
        self._creds_loaded = False
        self._running = False
        self._connected = False
        self._end: tuple[str, str] | None = None  # (kind, reason) once this run is over
        self._send: trio.MemorySendChannel[ServerFrame] | None = None
        self._events: EventSendChannel | None = None
        self._buffered = False  # frames wait in `_send` for `run` to forward: keep order, go through it
        self._generation = -1
        self._wait_scope: trio.CancelScope | None = None
        self._pairing_scope: trio.CancelScope | None = None

    @property
    def session_id(self) -> str:
        return self._spec.session_id

    # -- lifecycle ------------------------------------------------------------------

    async def run(self, events: EventSendChannel, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._running:
            raise RuntimeError(f"run is already running for session {self.session_id}")
        if self._factory.closed:
            raise ConnectFailed("the sim transport factory is closed", retryable=False)
        self._running, self._end = True, None
        try:
            task_status.started()
            await self._run(events)
        finally:
            self._running = self._connected = False
            self._send = None

    async def _run(self, events: EventSendChannel) -> None:
        link = self._link
        link.want()
        with trio.move_on_after(self._factory.connect_timeout) as self._wait_scope:
            await link.wait_up()
        self._wait_scope = None
        if self._end is not None:
            return await self._finished()
        if self._factory.closed:
            raise ConnectFailed("the sim transport factory is closed", retryable=False)
        if not link.connected:
            raise ConnectFailed(f"cannot reach the simulator at {link.url}: {link.last_error}")
        creds = self._load_creds()
        send, receive = trio.open_memory_channel[ServerFrame](self._factory.window + CONTROL_MARGIN)
        generation = self._generation = link.generation
        self._send, self._events, self._buffered = send, events, False
        deadline = math.inf if creds is not None else trio.current_time() + self._factory.pairing_deadline
        self._pairing_scope = pairing = trio.CancelScope(deadline=deadline)
        link.sessions[self.session_id] = self
        try:
            try:
                await link.put(Attach(session=self.session_id, phone=self._spec.phone_number, creds=creds,
                                      proxy=self._spec.proxy_url), generation)
            except NotConnected as exc:
                raise ConnectFailed(exc.reason) from exc
            with pairing:
                # Only frames that found `events` full come through here; `deliver` hands over the rest.
                async for frame in receive:
                    if self._end is not None:
                        break
                    if type(frame) is Push:
                        await events.send(frame.event)
                        self._forwarded(frame.event)
                    elif type(frame) is Paired:
                        self._paired(frame.creds)
                    elif type(frame) is End:
                        self._finish(frame.kind, frame.reason)
                        break
                    if not receive.statistics().current_buffer_used:
                        self._buffered = False
            if pairing.cancelled_caught and self._end is None:
                self._finish("pairing_timeout", "not paired before the pairing deadline")
                raise PairingTimeout()
            await self._finished()
        finally:
            self._connected = False
            self._events = self._pairing_scope = None
            if link.sessions.get(self.session_id) is self:
                del link.sessions[self.session_id]
            link.flush_acks(self.session_id, generation)  # so the network does not deliver them again
            link.put_nowait(Detach(session=self.session_id), generation)
            send.close()

    async def _finished(self) -> None:
        """Map how the run ended to the Transport contract: return, or raise ConnectFailed."""
        await trio.lowlevel.checkpoint()
        kind, reason = self._end or ("dropped", "the session ended")
        if kind == "logged_out":
            self._forget_creds()
        elif kind == "factory":
            raise ConnectFailed(reason, retryable=False)
        elif kind != "closed":
            raise ConnectFailed(reason)

    def _finish(self, kind: str, reason: str) -> None:
        if self._end is None:
            self._end = (kind, reason)
        self._connected = False
        if self._send is not None:
            self._send.close()
        if self._wait_scope is not None:
            self._wait_scope.cancel()

    def _forwarded(self, event: object) -> None:
        if type(event) is Connected:
            self._connected = True
            if self._pairing_scope is not None:
                self._pairing_scope.deadline = math.inf
        if type(event) is not QRCode:  # QR codes travel outside the credit window
            self._link.ack(self.session_id, self._generation)

    def _paired(self, creds: Creds) -> None:
        self._creds, self._creds_loaded = creds, True
        self._factory.store.save(self.session_id, creds)

    # LinkSession: called by the link's reader, never blocks
    def deliver(self, frame: ServerFrame) -> None:
        if self._end is not None:
            return
        if not self._buffered:  # the common case: straight into the actor's channel, no task switch
            kind = type(frame)
            if kind is Push:
                try:
                    self._events.send_nowait(frame.event)  # type: ignore[union-attr]
                except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # `run` forwards it (and meets the error, if any)
                else:
                    self._forwarded(frame.event)
                    return
            elif kind is Paired:
                self._paired(frame.creds)  # type: ignore[union-attr]
                return
            elif kind is End:
                self._finish(frame.kind, frame.reason)  # type: ignore[union-attr]
                return
        self._buffered = True
        try:
            self._send.send_nowait(frame)  # type: ignore[union-attr]
        except trio.WouldBlock:
            self._finish("dropped", "event buffer overflow")
        except (trio.ClosedResourceError, trio.BrokenResourceError, AttributeError):
            pass

    def link_lost(self, reason: str) -> None:
        if self._factory.closed:
            self._finish("factory", reason)
        else:
            self._finish("dropped", f"lost the link to the simulator: {reason}")

    async def disconnect(self) -> None:
        if self._running:
            self._finish("closed", "disconnect")
        await trio.lowlevel.checkpoint()

    async def logout(self) -> None:
        if self._running and self._connected:
            try:
                await self._link.call(self.session_id, LogoutOp(), None, self._factory.call_timeout)
            except TransportError as exc:  # the device store goes anyway; the network forgets it on its side
                log.warning("session %s: simulator logout failed: %s", self.session_id, exc.reason)
        self._forget_creds()
        if self._running:
            self._finish("closed", "logout")
        await trio.lowlevel.checkpoint()

    # -- device credentials -----------------------------------------------------------

    def _load_creds(self) -> Creds | None:
        if not self._creds_loaded:  # once per transport: later runs reuse what pairing gave us
            self._creds, self._creds_loaded = self._factory.store.load(self.session_id), True
        return self._creds

    def _forget_creds(self) -> None:
        self._creds, self._creds_loaded = None, True
        self._factory.store.forget(self.session_id)

    # -- calls --------------------------------------------------------------------------

    async def _call(self, op: object, result_type: type | None) -> object:
        if not self._connected:
            raise NotConnected()
        return await self._link.call(self.session_id, op, result_type, self._factory.call_timeout)

    async def pair_phone(self, phone_number: str) -> str:
        if not self._running or self._send is None or not self._link.connected:
            raise NotConnected()
        if self._connected:
            raise TransportError("the session is already paired")
        return await self._link.call(self.session_id, PairPhoneOp(phone=phone_number), str,  # type: ignore[return-value]
                                     self._factory.call_timeout)

    async def send(self, message: OutboundMessage) -> SendResult:
        op = SendOp(message=message, message_id=message.id_hint)
        return await self._call(op, SendResult)  # type: ignore[return-value]

    async def is_on_whatsapp(self, phone_numbers: list[str]) -> list[OnWhatsApp]:
        return await self._call(OnWhatsAppOp(phones=list(phone_numbers)), list[OnWhatsApp])  # type: ignore[return-value]

    async def get_contacts(self) -> list[ContactInfo]:
        return await self._call(ContactsOp(), list[ContactInfo])  # type: ignore[return-value]

    async def list_groups(self) -> list[GroupInfo]:
        return await self._call(ListGroupsOp(), list[GroupInfo])  # type: ignore[return-value]

    async def create_group(self, name: str, participants: list[str]) -> GroupInfo:
        return await self._call(CreateGroupOp(name=name, participants=list(participants)),  # type: ignore[return-value]
                                GroupInfo)

    async def group_info(self, group_jid: str) -> GroupInfo:
        return await self._call(GroupInfoOp(jid=group_jid), GroupInfo)  # type: ignore[return-value]

    async def update_participants(self, group_jid: str, participants: list[str],
                                  action: ParticipantAction) -> list[ParticipantResult]:
        op = UpdateParticipantsOp(jid=group_jid, participants=list(participants), action=action)
        return await self._call(op, list[ParticipantResult])  # type: ignore[return-value]

    async def leave_group(self, group_jid: str) -> None:
        await self._call(LeaveGroupOp(jid=group_jid), None)

    async def send_presence(self, available: bool) -> None:
        await self._call(SendPresenceOp(available=available), None)

    async def subscribe_presence(self, jid: str) -> None:
        await self._call(SubscribePresenceOp(jid=jid), None)

    async def send_typing(self, chat: str, composing: bool) -> None:
        await self.send_chat_presence(chat, "composing" if composing else "paused")

    async def send_chat_presence(self, chat: str, state: ChatState) -> None:
        await self._call(TypingOp(chat=chat, state=state), None)

    async def mark_read(self, chat: str, message_ids: list[str], sender: str) -> None:
        await self._call(MarkReadOp(chat=chat, message_ids=list(message_ids), sender=sender), None)

    async def react(self, chat: str, message_id: str, emoji: str, *, sender: str | None = None) -> SendResult:
        op = ReactOp(chat=chat, message_id=message_id, emoji=emoji, sender=sender)
        return await self._call(op, SendResult)  # type: ignore[return-value]

    async def edit_message(self, chat: str, message_id: str, text: str, *,
                           caption_of: str | None = None) -> SendResult:
        return await self._call(EditOp(chat=chat, message_id=message_id, text=text), SendResult)  # type: ignore[return-value]

    async def revoke_message(self, chat: str, message_id: str, *, sender: str | None = None) -> SendResult:
        op = RevokeOp(chat=chat, message_id=message_id, sender=sender)
        return await self._call(op, SendResult)  # type: ignore[return-value]

    async def vote_poll(self, chat: str, poll_id: str, options: list[str], *,
                        sender: str | None = None) -> SendResult:
        op = VoteOp(chat=chat, poll_id=poll_id, options=list(options), sender=sender)
        return await self._call(op, SendResult)  # type: ignore[return-value]

    async def download_media(self, message: MessageReceived) -> bytes:
        if message.media_ref is None:
            raise TransportError("the message carries no media to download")
        op = DownloadMediaOp(media_id=message.media_ref.decode("ascii", "replace"))
        return await self._call(op, bytes)  # type: ignore[return-value]

    # -- contacts and identity ----------------------------------------------------------

    async def get_picture(self, jid: str) -> ProfilePicture:
        return await self._call(PictureOp(jid=jid), ProfilePicture)  # type: ignore[return-value]

    async def get_user_info(self, jids: list[str]) -> list[UserInfo]:
        return await self._call(UserInfoOp(jids=list(jids)), list[UserInfo])  # type: ignore[return-value]

    async def get_blocklist(self) -> list[str]:
        return await self._call(BlocklistOp(), list[str])  # type: ignore[return-value]

    async def update_blocklist(self, jid: str, block: bool) -> list[str]:
        return await self._call(BlockOp(jid=jid, block=block), list[str])  # type: ignore[return-value]

    async def lid_for_phone(self, jid: str) -> str | None:
        return await self._call(LidForPhoneOp(jid=jid), str | None)  # type: ignore[return-value]

    async def phone_for_lid(self, lid: str) -> str | None:
        return await self._call(PhoneForLidOp(lid=lid), str | None)  # type: ignore[return-value]

    # -- group administration -----------------------------------------------------------

    async def update_group_settings(self, group_jid: str, settings: GroupSettings) -> None:
        await self._call(GroupSettingsOp(jid=group_jid, settings=settings), None)

    async def set_group_picture(self, group_jid: str, jpeg: bytes | None) -> str | None:
        return await self._call(GroupPictureOp(jid=group_jid, jpeg=jpeg), str | None)  # type: ignore[return-value]

    async def group_invite_link(self, group_jid: str, *, reset: bool = False) -> str:
        return await self._call(InviteLinkOp(jid=group_jid, reset=reset), str)  # type: ignore[return-value]

    async def group_info_from_invite(self, code: str) -> GroupInfo:
        return await self._call(InviteInfoOp(code=code), GroupInfo)  # type: ignore[return-value]

    async def join_group_with_invite(self, code: str) -> str:
        return await self._call(JoinInviteOp(code=code), str)  # type: ignore[return-value]


__all__ = ["DEFAULT_CALL_TIMEOUT", "DEFAULT_CONNECT_TIMEOUT", "DEFAULT_PAIRING_DEADLINE", "SimDeviceStore",
           "SimLinkStatistics", "SimTransport", "SimTransportFactory", "open_sim_transport_factory"]
