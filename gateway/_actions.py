"""Actions on messages already in a chat: react, edit, revoke, vote on a poll.

A message is named as `replyTo` names it: the gateway's `messageId` of a
message this session sent, or a WhatsApp id. A WhatsApp id that is not one of
the session's own sent messages is a received message; the gateway does not
store those, so the caller says which chat it is in (and, in a group, who
wrote it). Edits and revokes apply to the session's own sent messages only.

Each action goes out at once over the live connection (the routes run on the
session's owner). Edits and revokes are noted in the message's history (its
status stays, with the reason `edited` or `revoked for everyone`), so a GET
shows them and a second revoke is refused. The edit window is WhatsApp's: 15
minutes after the message was sent, on the gateway's clock.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple, Protocol

import trio

from actors import SendResult, Transport, is_group_jid

from ._auth import SessionPrincipal
from ._clock import Clock
from ._payload import poll_content
from ._phone import recipient_at
from .errors import Conflict, NotFound, ValidationError, WhatsAppError
from .store import MessageRecord, MessageStatus, Store

EDIT_WINDOW_MS: Final = 15 * 60 * 1000
MAX_EMOJI_CODE_POINTS: Final = 10  # a family or flag sequence with modifiers and joiners fits
# Emoji-ish code points: the symbol blocks emoji live in, joiners, variation selectors, skin tones, the tags of
# subdivision flags, and keycaps (1️⃣). No letters, digits or spaces. The request schema carries it too.
EMOJI_PATTERN: Final = ("^(?:[#*0-9]\ufe0f?\u20e3|[\u00a9\u00ae\u203c-\u2bff\u3030\u303d\u3297\u3299"
                        "\U0001f000-\U0001faff\u200d\ufe0f\U000e0020-\U000e007f])*$")
_EMOJI: Final = re.compile(EMOJI_PATTERN)
CALL_TIMEOUT: Final = 30.0  # seconds a WhatsApp call may take before the answer is 502
EDITED: Final = "edited"
REVOKED: Final = "revoked for everyone"
SENT_STATES: Final = frozenset({MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ})
CAPTIONED: Final = frozenset({"image", "video", "document"})


class Target(NamedTuple):
    """Where a message is: its chat, its WhatsApp id, its author (None: this session), our record of it."""

    chat: str
    wa_id: str
    sender: str | None
    record: MessageRecord | None


class Connection(Protocol):
    """What the actions need of the session's live connection (`SessionControl` has it)."""

    def require_connected(self, session_id: str) -> Transport:
        """The transport of a CONNECTED session, else SessionNotConnected."""
        ...


def check_emoji(emoji: str, path: str = "$.emoji") -> str:
    """An emoji reaction: empty (remove) or at most a few emoji code points (`EMOJI_PATTERN`)."""
    if len(emoji) > MAX_EMOJI_CODE_POINTS or not _EMOJI.fullmatch(emoji):
        raise ValidationError.at(path, f"must be one emoji (at most {MAX_EMOJI_CODE_POINTS} code points), or "
                                       "empty to remove the reaction")
    return emoji


def check_edit_window(sent_at: int | None, now_ms: int) -> None:
    """Refuse an edit more than 15 minutes after the send (WhatsApp's own limit)."""
    if sent_at is None:
        return
    if now_ms - sent_at > EDIT_WINDOW_MS:
        minutes = (now_ms - sent_at) // 60_000
        raise ValidationError.at("path.message_id", f"can no longer be edited: WhatsApp allows edits for 15 "
                                                    f"minutes after the send, and it was sent {minutes} minutes ago")


class MessageActions:
    def __init__(self, store: Store, connection: Connection, *, clock: Clock) -> None:
        self._store = store
        self._connection = connection
        self._clock = clock

    async def find_own(self, who: SessionPrincipal, ref: str) -> MessageRecord | None:
        """The session's own message by gateway id or WhatsApp id, or None."""
        record = await self._store.get_message(ref)
        if record is not None and record.session_id == who.session_id:
            return record
        return await self._store.find_message_by_wa_id(who.session_id, ref)

    async def target(self, who: SessionPrincipal, ref: str, chat: str | None, sender: str | None) -> Target:
        """Where the message `ref` is: one this session sent, or a received one in `chat`."""
        own = await self.find_own(who, ref)
        if own is not None:
            if own.wa_id is None:
                raise Conflict(f"The message has not been sent yet (status {own.status.value})")
            return Target(own.to_jid, own.wa_id, None, own)
        if chat is None:  # then the id must be one of ours, and it is not
            raise NotFound("No message with that id was sent by this session; for a received message, give "
                           "its WhatsApp id and the chat it is in (`chat`)")
        chat_jid = recipient_at(chat, "$.chat")
        if not is_group_jid(chat_jid):
            return Target(chat_jid, ref, chat_jid, None)  # in a one-to-one chat the peer wrote it
        if sender is None:
            raise ValidationError.at("$.sender", "is required in a group chat: who wrote the message")
        return Target(chat_jid, ref, recipient_at(sender, "$.sender"), None)

    async def react(self, who: SessionPrincipal, ref: str, emoji: str, *, chat: str | None = None,
                    sender: str | None = None) -> tuple[Target, SendResult]:
        check_emoji(emoji)
        t = await self.target(who, ref, chat, sender)
        transport = self._connection.require_connected(who.session_id)
        return t, await _whatsapp(transport.react(t.chat, t.wa_id, emoji, sender=t.sender))

    async def edit(self, who: SessionPrincipal, ref: str, text: str) -> tuple[MessageRecord, SendResult]:
        record = await self._sent_own(who, ref, "edited")
        if record.type != "text" and record.type not in CAPTIONED:
            raise Conflict(f"Only a text or the caption of an image, video or document can be edited; this "
                           f"message is a {record.type}")
        history = await self._store.get_message_history(record.id)
        now = self._clock.now_ms()
        check_edit_window(next((h.at for h in history if h.status is MessageStatus.SENT), None), now)
        transport = self._connection.require_connected(who.session_id)
        assert record.wa_id is not None
        result = await _whatsapp(transport.edit_message(
            record.to_jid, record.wa_id, text, caption_of=None if record.type == "text" else record.type))
        return await self._note(record, EDITED, now), result

    async def revoke(self, who: SessionPrincipal, record: MessageRecord) -> MessageRecord:
        """Delete a sent message for everyone; Conflict if it is not sent or already revoked."""
        record = await self._sent_own(who, record.id, "revoked")
        transport = self._connection.require_connected(who.session_id)
        assert record.wa_id is not None
        await _whatsapp(transport.revoke_message(record.to_jid, record.wa_id))
        return await self._note(record, REVOKED, self._clock.now_ms())

    async def vote(self, who: SessionPrincipal, ref: str, options: list[str], *, chat: str | None = None,
                   sender: str | None = None) -> tuple[Target, SendResult]:
        t = await self.target(who, ref, chat, sender)
        if t.record is not None:
            poll = poll_content(t.record.payload)
            if poll is None:
                raise Conflict(f"The message is a {t.record.type}, not a poll: it cannot be voted on")
            unknown = [o for o in options if o not in poll.options]
            if unknown:
                raise ValidationError.at("$.options", f"not options of the poll: {', '.join(unknown)}")
            if poll.selectable_count and len(set(options)) > poll.selectable_count:
                raise ValidationError.at("$.options", f"the poll allows at most {poll.selectable_count} option(s)")
        transport = self._connection.require_connected(who.session_id)
        return t, await _whatsapp(transport.vote_poll(t.chat, t.wa_id, list(dict.fromkeys(options)),
                                                      sender=t.sender))

    async def _sent_own(self, who: SessionPrincipal, ref: str, what: str) -> MessageRecord:
        record = await self.find_own(who, ref)
        if record is None:
            raise NotFound("No message with that id was sent by this session")
        if record.status not in SENT_STATES or record.wa_id is None:
            raise Conflict(f"The message is not sent (status {record.status.value}), so it cannot be {what}")
        if any(h.reason == REVOKED for h in await self._store.get_message_history(record.id)):
            raise Conflict(f"The message was revoked for everyone and can no longer be {what}")
        return record

    async def _note(self, record: MessageRecord, reason: str, at: int) -> MessageRecord:
        """A history entry for the action; the status stays (guarded: a receipt may move it meanwhile)."""
        for _ in range(3):
            noted = await self._store.set_message_status(record.id, record.status, at, reason=reason,
                                                         only_from=frozenset({record.status}))
            if noted is not None:
                return noted
            current = await self._store.get_message(record.id)
            if current is None:
                break
            record = current
        return record


async def _whatsapp(call):  # type: ignore[no-untyped-def]
    """A transport call under a deadline (its own failures are answered through the error table)."""
    try:
        with trio.fail_after(CALL_TIMEOUT):
            return await call
    except trio.TooSlowError:
        raise WhatsAppError(f"WhatsApp did not answer within {CALL_TIMEOUT:g} s") from None
