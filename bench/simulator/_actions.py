"""Actions on earlier messages: reactions, edits, revokes and poll votes, as the network routes them.

A mixin of `_network.Network`. Each action is a message of its own (it gets an
id, which a repeat delivery carries again) addressed to the chat the target
message is in; everyone in that chat but the actor gets the event. The network
checks what WhatsApp's servers and clients would: the target message exists
(from the named author; not for a reaction or a vote, whose ids WhatsApp does
not check), only its author edits it and only within 15 minutes, only its
author (or a group admin) revokes it, and a vote on a known poll names its
options, no more of them than the poll allows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from actors import MessageEdited, MessageRevoked, PollVoted, ReactionReceived, SendResult, TransportEvent
from actors.sim import EditOp, ReactOp, RevokeOp, VoteOp

from ._model import Account, OpError, new_message_id, normalize_phone, not_authorized, recipient_error

if TYPE_CHECKING:
    from ._network import Network

EDIT_WINDOW_MS: Final = 15 * 60 * 1000
ADMIN: Final = 1  # group role: admin or better


class ActionsMixin:
    def __init__(self) -> None:
        # (author jid, poll message id) → (option names, how many a voter may choose; 0: any)
        self.polls: dict[tuple[str, str], tuple[list[str], int]] = {}
        super().__init__()

    def react(self: Network, me: Account, op: ReactOp) -> SendResult:
        # Like WhatsApp's servers, the network does not check the id reacted to: a client shows a reaction
        # only on a message it has.
        return self._act(me, op.chat, lambda eid, chat, ts, group: ReactionReceived(
            event_id=eid, message_id=op.message_id, chat=chat, sender=me.jid, sender_phone=me.phone,
            is_group=group, timestamp_ms=ts, emoji=op.emoji))

    def edit(self: Network, me: Account, op: EditOp) -> SendResult:
        sent_at = self._target(me, op.chat, op.message_id, None)
        if self.now_ms() - sent_at > EDIT_WINDOW_MS:
            raise OpError("error", "the message is older than 15 minutes and can no longer be edited")
        return self._act(me, op.chat, lambda eid, chat, ts, group: MessageEdited(
            event_id=eid, message_id=op.message_id, chat=chat, sender=me.jid, sender_phone=me.phone,
            is_group=group, timestamp_ms=ts, text=op.text))

    def revoke_message(self: Network, me: Account, op: RevokeOp) -> SendResult:
        self._target(me, op.chat, op.message_id, op.sender)
        if self._author(me, op.chat, op.sender) != me.jid:
            group = self.groups.get(op.chat)
            if group is None or group.roles.get(me.jid, 0) < ADMIN:
                raise not_authorized("only a group admin can revoke another member's message")
        return self._act(me, op.chat, lambda eid, chat, ts, group: MessageRevoked(
            event_id=eid, message_id=op.message_id, chat=chat, sender=me.jid, sender_phone=me.phone,
            is_group=group, timestamp_ms=ts))

    def vote(self: Network, me: Account, op: VoteOp) -> SendResult:
        author = self._author(me, op.chat, op.sender)
        # A poll the network never routed is not checked (ids are not, as for a reaction); a known one is.
        options, selectable = self.polls.get((author, op.poll_id), (list(op.options), 0))
        unknown = [o for o in op.options if o not in options]
        if unknown:
            raise OpError("error", f"not options of the poll: {', '.join(unknown)}")
        chosen = list(dict.fromkeys(op.options))
        if selectable and len(chosen) > selectable:
            raise OpError("error", f"the poll allows at most {selectable} option(s)")
        return self._act(me, op.chat, lambda eid, chat, ts, group: PollVoted(
            event_id=eid, poll_id=op.poll_id, chat=chat, sender=me.jid, sender_phone=me.phone,
            is_group=group, timestamp_ms=ts, options=chosen))

    # -- helpers --------------------------------------------------------------------

    def _author(self: Network, me: Account, chat: str, sender: str | None) -> str:
        """The JID of the target's author: `sender` when named, else the caller."""
        if sender is None:
            return me.jid
        phone = normalize_phone(sender)
        if phone is None:
            raise recipient_error(f"invalid sender {sender!r}")
        return self.account(phone).jid

    def _target(self: Network, me: Account, chat: str, message_id: str, sender: str | None) -> int:
        """When the target message was sent; OpError when the network never routed it from its author."""
        author = self._author(me, chat, sender)
        sent_at = self.sent.get((author, message_id))
        if sent_at is None:
            raise OpError("error", f"no message {message_id} from {author}")
        return sent_at

    def _act(self: Network, me: Account, chat: str, build) -> SendResult:  # type: ignore[no-untyped-def]
        """Send the action to everyone in `chat` but `me`; `build(id, chat as they see it, ts, is_group)`."""
        is_group = chat.endswith("@g.us")
        if is_group:
            group = self.member_group(me, chat)
            others = [a for a in (self.accounts.get(normalize_phone(j) or "") for j in group.roles)
                      if a is not None and a is not me]
        else:
            peer = self.lookup(normalize_phone(chat))
            if peer is None:
                raise recipient_error(f"{chat} is not on WhatsApp")
            others = [peer]
        event_id, ts = new_message_id(), self.now_ms()
        for other in others:
            event: TransportEvent = build(event_id, chat if is_group else me.jid, ts, is_group)
            self.deliver(other, event, None)  # type: ignore[arg-type]
        return SendResult(message_id=event_id, timestamp_ms=ts)
