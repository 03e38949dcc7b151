"""Operations a paired session calls, and their dispatch; presence, typing, contacts, lookups and read receipts.

A mixin of `_network.Network`: it shares the registry and delivery helpers.
`call` dispatches every operation: groups to `_groups.GroupsMixin`, contacts
and identity to `_identity.IdentityMixin`, actions on messages to
`_actions.ActionsMixin`. Whether a number is on WhatsApp is `Network.lookup`'s
answer (open world: every well-formed number not unregistered).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors import (
    ChatPresence,
    ChatState,
    ContactInfo,
    OnWhatsApp,
    Presence,
    Receipt,
    SendResult,
    phone_from_jid,
)
from actors.sim import (
    AnyOp,
    BlocklistOp,
    BlockOp,
    ContactsOp,
    CreateGroupOp,
    DownloadMediaOp,
    EditOp,
    GroupInfoOp,
    GroupPictureOp,
    GroupSettingsOp,
    InviteInfoOp,
    InviteLinkOp,
    JoinInviteOp,
    LeaveGroupOp,
    LidForPhoneOp,
    ListGroupsOp,
    LogoutOp,
    MarkReadOp,
    OnWhatsAppOp,
    PairPhoneOp,
    PhoneForLidOp,
    PictureOp,
    ReactOp,
    RevokeOp,
    SendOp,
    SendPresenceOp,
    SubscribePresenceOp,
    TypingOp,
    UpdateParticipantsOp,
    UserInfoOp,
    VoteOp,
)

from ._model import Account, Device, Item, OpError, Outbox, jid_of, normalize_phone, recipient_error

if TYPE_CHECKING:
    from ._network import Network


class SocialMixin:
    def __init__(self) -> None:
        # device id → phones whose presence it follows; like WhatsApp's, a subscription lasts one connection
        self._watching: dict[str, set[str]] = {}

    def call(self: Network, link: Outbox, session_id: str, op: AnyOp) -> object:
        """Run one operation for the session `session_id` on `link`; raises OpError."""
        slot = link.slots.get(session_id)
        if slot is None:
            raise OpError("not_connected", "session is not attached")
        if isinstance(op, PairPhoneOp):
            return self.pair_phone(slot, op.phone)
        if slot.device is None:
            raise OpError("not_connected", "session is not paired")
        device = slot.device
        me = device.account
        match op:
            case SendOp():
                message_id, ts = self.send(me, op, session_id=session_id)
                return SendResult(message_id=message_id, timestamp_ms=ts)
            case OnWhatsAppOp(phones=phones):
                return [self.on_whatsapp(p) for p in phones]
            case ContactsOp():
                return self.contacts(me)
            case ListGroupsOp():
                return [self.group_view(self.groups[g]) for g in sorted(me.groups) if g in self.groups]
            case CreateGroupOp(name=name, participants=participants):
                return self.create_group(me, name, participants)
            case GroupInfoOp(jid=jid):
                return self.group_view(self.member_group(me, jid))
            case UpdateParticipantsOp(jid=jid, participants=participants, action=action):
                return self.update_participants(me, jid, participants, action)
            case LeaveGroupOp(jid=jid):
                self.leave_group(me, jid)
            case SendPresenceOp(available=available):
                self.set_presence(me, available)
            case SubscribePresenceOp(jid=jid):
                self.subscribe(device, jid)
            case TypingOp(chat=chat, state=state):
                self.typing(me, chat, state)
            case MarkReadOp(chat=chat, message_ids=message_ids, sender=sender):
                self.mark_read(me, chat, message_ids, sender)
            case LogoutOp():
                self.revoke(device)
            case DownloadMediaOp(media_id=media_id):
                return self.media.get(media_id, me.jid)
            case ReactOp():
                return self.react(me, op)
            case EditOp():
                return self.edit(me, op)
            case RevokeOp():
                return self.revoke_message(me, op)
            case VoteOp():
                return self.vote(me, op)
            case PictureOp(jid=jid):  # contacts and identity: _identity.IdentityMixin
                return self.picture(me, jid)
            case UserInfoOp(jids=jids):
                return self.user_info(me, jids)
            case BlocklistOp():
                return self.blocklist(me)
            case BlockOp(jid=jid, block=block):
                return self.block(me, jid, block)
            case LidForPhoneOp(jid=jid):
                return self.lid_for_phone(jid)
            case PhoneForLidOp(lid=lid):
                return self.phone_for_lid(lid)
            case GroupSettingsOp(jid=jid, settings=settings):  # group administration: _groups.GroupsMixin
                self.group_settings(me, jid, settings)
            case GroupPictureOp(jid=jid, jpeg=jpeg):
                return self.set_group_picture(me, jid, jpeg)
            case InviteLinkOp(jid=jid, reset=reset):
                return self.invite_link(me, jid, reset)
            case InviteInfoOp(code=code):
                return self.invite_info(code)
            case JoinInviteOp(code=code):
                return self.join_invite(me, code)
            case _:  # pragma: no cover - the op union is closed
                raise OpError("error", f"unsupported operation {type(op).__name__}")
        return None

    # -- lookups --------------------------------------------------------------

    def on_whatsapp(self: Network, asked: str) -> OnWhatsApp:
        phone = normalize_phone(asked)
        if phone is None or not self.is_registered(phone):
            return OnWhatsApp(phone_number=asked, exists=False)
        acc = self.accounts.get(phone)  # a query does not create the account an open world would
        return OnWhatsApp(phone_number=asked, exists=True, jid=jid_of(phone),
                          verified_name=acc.verified_name if acc else None)

    def contacts(self: Network, me: Account) -> list[ContactInfo]:
        out = []
        for jid, full_name in sorted(me.contacts.items()):
            phone = phone_from_jid(jid)
            other = self.accounts.get(phone) if phone else None
            out.append(ContactInfo(jid=jid, phone_number=phone, full_name=full_name,
                                   push_name=other.push_name if other else None,
                                   business_name=other.verified_name if other else None,
                                   lid=self.lid_for_phone(jid)))
        return out

    def add_contact(self: Network, owner: str, phone: str, full_name: str | None = None) -> None:
        me = self.lookup(normalize_phone(owner))
        other = normalize_phone(phone)
        if me is None or other is None:
            raise OpError("error", "unknown owner or invalid phone")
        me.contacts[jid_of(other)] = full_name

    # -- presence -------------------------------------------------------------
    # WhatsApp sends a contact's presence to a subscribed device only while that device's
    # account is itself available, and forgets the subscription when the device goes offline.

    def set_presence(self: Network, me: Account, available: bool) -> None:
        me.available = available
        if not available:
            me.last_seen_ms = self.now_ms()
        event = Presence(jid=me.jid, available=available, last_seen_ms=me.last_seen_ms)
        for device_id in list(me.subscribers):
            watcher = self.devices.get(device_id)
            if watcher is not None:
                self._presence_to(watcher, event)

    def subscribe(self: Network, device: Device, jid: str) -> None:
        target = self.lookup(normalize_phone(jid))
        if target is None:
            raise recipient_error(f"{jid} is not on WhatsApp")
        target.subscribers.add(device.device_id)
        self._watching.setdefault(device.device_id, set()).add(target.phone)
        self._presence_to(device, Presence(jid=target.jid, available=target.available,
                                           last_seen_ms=target.last_seen_ms))

    def _presence_to(self: Network, device: Device, event: Presence) -> None:
        if device.slot is not None and device.account.available:
            self.push(device, Item(event, durable=False))

    def presence_offline(self: Network, device: Device) -> None:
        """The device lost its connection: its subscriptions end, and its account goes unavailable
        when no other device of it is online."""
        for phone in self._watching.pop(device.device_id, ()):
            target = self.accounts.get(phone)
            if target is not None:
                target.subscribers.discard(device.device_id)
        acc = device.account
        if acc.available and not any(d.slot is not None for d in acc.devices.values()):
            self.set_presence(acc, False)

    def typing(self: Network, me: Account, chat: str, state: ChatState) -> None:
        if chat.endswith("@g.us"):
            group = self.member_group(me, chat)
            for jid in group.roles:
                member = self.accounts.get(phone_from_jid(jid) or "")
                if member is not None and member is not me:
                    self.notify(member, ChatPresence(chat=chat, sender=me.jid, state=state))
            return
        peer = self.lookup(normalize_phone(chat))
        if peer is None:
            raise recipient_error(f"{chat} is not on WhatsApp")
        self.notify(peer, ChatPresence(chat=me.jid, sender=me.jid, state=state))

    # -- read receipts ----------------------------------------------------------

    def mark_read(self: Network, me: Account, chat: str, message_ids: list[str], sender: str) -> None:
        """`me` read `sender`'s messages in `chat`: a `read` receipt for the ones `sender` sent goes to
        `sender`'s devices (ids it never sent are ignored, as WhatsApp does)."""
        phone = normalize_phone(sender)
        if not self.is_registered(phone):
            raise recipient_error(f"{sender} is not on WhatsApp")
        author = self.accounts.get(phone or "")
        if author is None:  # on WhatsApp (an open world) but never wrote anything: nothing to read
            return
        is_group = chat.endswith("@g.us")
        if is_group:
            self.member_group(me, chat)
        known = [m for m in dict.fromkeys(message_ids) if (author.jid, m) in self.sent]
        if not known or author is me:
            return
        event = Receipt(message_ids=known, chat=chat if is_group else me.jid, sender=me.jid if is_group else None,
                        type="read", timestamp_ms=self.now_ms())
        self.counters["receipts"] += 1
        for device in list(author.devices.values()):
            self.push(device, Item(event, durable=True))
