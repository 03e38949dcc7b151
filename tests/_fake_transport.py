"""A scriptable in-memory Transport for actor and supervisor tests.

Each call to `run` takes the next step of `script` (the last step repeats):
- "connect": emit Connected, then stay connected until disconnect/logout/drop;
- "qr": emit a QR code, then wait for `scan()` and connect;
- "fail:<reason>": raise ConnectFailed(reason);
- "fatal:<reason>": raise ConnectFailed(reason, retryable=False) (the actor goes to FAILED at once);
- "crash:<text>": raise RuntimeError(text) — an actor crash, not a connect failure;
- "hang": never connect.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from actors import (
    ConnectFailed, Connected, Disconnected, EventSendChannel, LoggedOut, NotConnected, OutboundMessage, QRCode, Receipt,
    RecipientError, SendResult, SessionSpec, TransportError,
)


@dataclass
class FakeTransport:
    spec: SessionSpec
    script: list[str]
    runs: list[float] = field(default_factory=list)
    cancelled_runs: int = 0
    connected: bool = False
    _end: trio.Event = field(default_factory=trio.Event)
    _scan: trio.Event = field(default_factory=trio.Event)
    _events: EventSendChannel | None = None
    _drop_reason: str | None = None
    _logout: bool = False
    paired_phone: str | None = None
    sent: list[OutboundMessage] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    typing: list[str] = field(default_factory=list)
    send_error: str | None = None
    # presence and chat actions, in call order: ("presence", True), ("subscribe", jid),
    # ("chat_presence", chat, state), ("read", chat, ids, sender)
    actions: list[tuple[object, ...]] = field(default_factory=list)
    action_error: Exception | None = None  # raised by the next presence/chat action, once
    media: dict[bytes, bytes] = field(default_factory=dict)  # media_ref → the bytes download_media returns

    async def run(self, events, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.runs.append(trio.current_time())
        step = self.script[min(len(self.runs) - 1, len(self.script) - 1)]
        self._events, self._end, self._drop_reason, self._logout = events, trio.Event(), None, False
        task_status.started()
        try:
            if step.startswith("fail:"):
                raise ConnectFailed(step[5:])
            if step.startswith("fatal:"):
                raise ConnectFailed(step[6:], retryable=False)
            if step.startswith("crash:"):
                raise RuntimeError(step[6:])
            if step == "hang":
                await trio.sleep_forever()
            if step == "qr":
                await events.send(QRCode(code=f"2@qr-{len(self.runs)}"))
                await self._scan.wait()
            self.connected = True
            await events.send(Connected(jid=f"{self.spec.session_id}@s.whatsapp.net",
                                        phone_number=self.spec.phone_number))
            await self._end.wait()
            self.connected = False
            if self._drop_reason is not None:
                raise ConnectFailed(self._drop_reason)
            if self._logout:
                await events.send(LoggedOut(reason="logged out"))
        except trio.Cancelled:
            self.cancelled_runs += 1
            self.connected = False
            raise

    def scan(self) -> None:
        self._scan.set()

    def drop(self, reason: str = "connection lost") -> None:
        self._drop_reason = reason
        self._end.set()

    async def blip(self) -> None:
        """A drop the transport recovers from by itself (whatsmeow style)."""
        assert self._events is not None
        await self._events.send(Disconnected(reason="blip"))
        await self._events.send(Connected(jid=f"{self.spec.session_id}@s.whatsapp.net"))

    async def disconnect(self) -> None:
        self._end.set()

    async def logout(self) -> None:
        self._logout = True
        self._end.set()

    async def pair_phone(self, phone_number: str) -> str:
        if self.connected or self._events is None:
            raise NotConnected("not waiting for pairing")
        self.paired_phone = phone_number
        return "ABCD1234"

    async def send(self, message: OutboundMessage) -> SendResult:
        if not self.connected:
            raise NotConnected()
        if self.send_error is not None:
            raise RecipientError(self.send_error)
        self.sent.append(message)
        self.sent_at.append(trio.current_time())
        return SendResult(message_id=f"WA{len(self.sent):06d}", timestamp_ms=1_700_000_000_000)

    async def receipt(self, wa_ids: list[str], kind: str) -> None:
        assert self._events is not None
        await self._events.send(Receipt(message_ids=wa_ids, chat="x@s.whatsapp.net", type=kind,
                                        timestamp_ms=1_700_000_001_000))

    async def send_typing(self, chat: str, composing: bool) -> None:
        self.typing.append(chat)

    def _act(self, *action: object) -> None:
        if not self.connected:
            raise NotConnected()
        error, self.action_error = self.action_error, None
        if error is not None:
            raise error
        self.actions.append(action)

    async def send_presence(self, available: bool) -> None:
        self._act("presence", available)

    async def subscribe_presence(self, jid: str) -> None:
        self._act("subscribe", jid)

    async def send_chat_presence(self, chat: str, state: str) -> None:
        self._act("chat_presence", chat, state)

    async def mark_read(self, chat: str, message_ids: list[str], sender: str) -> None:
        self._act("read", chat, list(message_ids), sender)

    async def download_media(self, message) -> bytes:
        await trio.lowlevel.checkpoint()
        if message.media_ref not in self.media:
            raise TransportError("media not found")
        return self.media[message.media_ref]

    # actions on messages, recorded in `actions` too: ("react", chat, id, emoji, sender), ("edit", chat, id,
    # text, caption_of), ("revoke", chat, id, sender), ("vote", chat, id, options, sender)
    def _acted(self, *action: object) -> SendResult:
        self._act(*action)
        return SendResult(message_id=f"ACT{len(self.actions):06d}", timestamp_ms=1_700_000_002_000)

    async def react(self, chat: str, message_id: str, emoji: str, *, sender: str | None = None) -> SendResult:
        return self._acted("react", chat, message_id, emoji, sender)

    async def edit_message(self, chat: str, message_id: str, text: str, *,
                           caption_of: str | None = None) -> SendResult:
        return self._acted("edit", chat, message_id, text, caption_of)

    async def revoke_message(self, chat: str, message_id: str, *, sender: str | None = None) -> SendResult:
        return self._acted("revoke", chat, message_id, sender)

    async def vote_poll(self, chat: str, poll_id: str, options: list[str], *,
                        sender: str | None = None) -> SendResult:
        return self._acted("vote", chat, poll_id, list(options), sender)


class FakeFactory:
    def __init__(self, script: list[str] | None = None) -> None:
        self.script = script or ["connect"]
        self.scripts: dict[str, list[str]] = {}
        self.transports: dict[str, FakeTransport] = {}
        self.fail_create = False

    def create(self, spec: SessionSpec) -> FakeTransport:
        if self.fail_create:
            raise OSError("device store cannot be opened")
        t = FakeTransport(spec, list(self.scripts.get(spec.session_id, self.script)))
        self.transports[spec.session_id] = t
        return t

    async def aclose(self) -> None:
        pass


class RecordingHost:
    def __init__(self) -> None:
        self.states: dict[str, list[tuple[str, str | None]]] = {}
        self.events: list[tuple[str, object]] = []
        self.changed = trio.Event()

    async def state_changed(self, session_id, state, reason) -> None:
        self.states.setdefault(session_id, []).append((state.value, reason))
        self.changed.set()
        self.changed = trio.Event()

    async def transport_event(self, session_id, event) -> None:
        self.events.append((session_id, event))

    def last(self, session_id: str) -> str | None:
        return self.states.get(session_id, [(None, None)])[-1][0]

    async def wait_state(self, session_id: str, state: str) -> None:
        while self.last(session_id) != state:
            await self.changed.wait()
