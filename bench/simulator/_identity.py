"""Contacts and identity on the simulated network: profile pictures, about texts, blocking, LIDs.

A mixin of `_network.Network`. Every number gets a LID (`<15 digits>@lid`) the
first time anything needs it; it stays the number's for the whole run, through
an `unregister` and a new registration. `lid_of(account)` is the one place that
hands them out, so the map LID → number here always covers every LID the
network ever showed.

What a recipient gets of a message or an action is decided in `inbound`, which
`Network.deliver` calls for each recipient:
- it blocked the sender: nothing (None). The send succeeds and never gets a
  delivered or read receipt, as on WhatsApp;
- the sender is in LID addressing (control `set_addressing`): mode "lid"
  keeps the phone JID as `sender` and adds `sender_lid` (whatsmeow reports the
  phone as SenderAlt); mode "lid-only" names the sender by LID alone (`sender`,
  `sender_lid`, and the `chat` of a 1:1 message) with no `sender_phone`, which
  the receiving gateway must resolve.
Someone who blocked you also hides their picture and about text from you.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec

from actors import (
    MessageAction,
    MessageReceived,
    ProfilePicture,
    TransportEvent,
    UserInfo,
    is_group_jid,
    phone_from_jid,
)

from ._model import Account, OpError, jid_of, normalize_phone, recipient_error

if TYPE_CHECKING:
    from ._network import Network

LID_DIGITS: Final = 15
PICTURE_URL: Final = "https://pps.whatsapp.sim/v/t61/{id}.jpg"
ADDRESSING_MODES: Final = ("off", "lid", "lid-only")
MAX_ABOUT: Final = 139  # characters, as WhatsApp's about text


def picture_url(picture_id: str | None) -> str | None:
    return PICTURE_URL.format(id=picture_id) if picture_id is not None else None


class IdentityMixin:
    def __init__(self) -> None:
        self._lid_by_phone: dict[str, str] = {}  # E.164 → `digits@lid`
        self._phone_by_lid: dict[str, str] = {}  # `digits@lid` → E.164
        self._picture_seq = 0
        super().__init__()

    # -- LIDs ---------------------------------------------------------------------

    def lid_of(self: Network, acc: Account) -> str:
        """The account's LID, given on first use (and kept for its number for the rest of the run)."""
        if not acc.lid:
            acc.lid = self._lid_for(acc.phone)
        return acc.lid

    def _lid_for(self: Network, phone: str) -> str:
        lid = self._lid_by_phone.get(phone)
        if lid is None:
            while True:
                lid = str(self.rng.randrange(10 ** (LID_DIGITS - 1), 10 ** LID_DIGITS)) + "@lid"
                if lid not in self._phone_by_lid:
                    break
            self._lid_by_phone[phone] = lid
            self._phone_by_lid[lid] = phone
        return lid

    def lid_for_phone(self: Network, jid: str) -> str | None:
        """The LID of a phone JID (or number) on WhatsApp; None for anything else."""
        phone = None if jid.endswith("@lid") else normalize_phone(jid)
        if phone is None or not self.is_registered(phone):
            return None
        acc = self.accounts.get(phone)  # asking does not make the account an open world would
        return self.lid_of(acc) if acc is not None else self._lid_for(phone)

    def phone_for_lid(self: Network, lid: str) -> str | None:
        """The phone JID of a LID the network gave out, while its number is on WhatsApp; else None."""
        phone = self._phone_by_lid.get(lid)
        return jid_of(phone) if phone is not None and self.is_registered(phone) else None

    def _phone_of(self: Network, jid: str) -> str:
        """The E.164 number of a user JID, number or LID the network gave out; else a recipient error."""
        if jid.endswith("@lid"):
            phone = self._phone_by_lid.get(jid)
            if phone is None:
                raise recipient_error(f"{jid} is not on WhatsApp")
            return phone
        phone = normalize_phone(jid)
        if phone is None:
            raise recipient_error(f"invalid user {jid!r}")
        return phone

    def _person(self: Network, jid: str) -> tuple[str, Account | None]:
        """(E.164, its account if made) of a user on WhatsApp; else a recipient error."""
        phone = self._phone_of(jid)
        if not self.is_registered(phone):
            raise recipient_error(f"{jid} is not on WhatsApp")
        return phone, self.accounts.get(phone)

    # -- profiles -----------------------------------------------------------------

    def picture(self: Network, me: Account, jid: str) -> ProfilePicture:
        if is_group_jid(jid):
            group = self.member_group(me, jid)
            return ProfilePicture(jid=jid, url=picture_url(group.picture_id), id=group.picture_id)
        phone, acc = self._person(jid)
        if acc is None or acc.picture_id is None or me.jid in acc.blocked:
            return ProfilePicture(jid=jid_of(phone))
        return ProfilePicture(jid=acc.jid, url=picture_url(acc.picture_id), id=acc.picture_id)

    def user_info(self: Network, me: Account, jids: list[str]) -> list[UserInfo]:
        out = []
        for jid in dict.fromkeys(jids):
            try:
                phone, acc = self._person(jid)
            except OpError:
                continue  # WhatsApp answers only for the accounts it has
            lid = self.lid_of(acc) if acc is not None else self._lid_for(phone)
            if acc is None or me.jid in acc.blocked:
                out.append(UserInfo(jid=jid_of(phone), lid=lid,
                                    verified_name=acc.verified_name if acc is not None else None))
            else:
                out.append(UserInfo(jid=acc.jid, lid=lid, about=acc.about, picture_id=acc.picture_id,
                                    verified_name=acc.verified_name))
        return out

    def set_profile(self: Network, acc: Account, *, about: str | None = None, picture: bool | None = None) -> None:
        """Set the about text ("" clears it) and put up a new picture (True) or take it down (False);
        None leaves either as it is."""
        if about is not None:
            if len(about) > MAX_ABOUT:
                raise OpError("error", f"about must be at most {MAX_ABOUT} characters")
            acc.about = about or None
        if picture is not None:
            self._picture_seq += 1
            acc.picture_id = f"{self.rng.randrange(10 ** 9, 10 ** 10)}{self._picture_seq:04d}" if picture else None

    def set_addressing(self: Network, acc: Account, mode: str) -> None:
        if mode not in ADDRESSING_MODES:
            raise OpError("error", f"addressing must be one of {', '.join(ADDRESSING_MODES)}, not {mode!r}")
        self.lid_of(acc)
        acc.addressing = mode

    # -- blocking -----------------------------------------------------------------

    def blocklist(self: Network, me: Account) -> list[str]:
        return sorted(me.blocked)

    def block(self: Network, me: Account, jid: str, block: bool) -> list[str]:
        phone = self._phone_of(jid)
        target = jid_of(phone)
        if block or target not in me.blocked:  # a number that left WhatsApp can still be unblocked
            if not self.is_registered(phone):
                raise recipient_error(f"{jid} is not on WhatsApp")
            if phone == me.phone:
                raise recipient_error("an account cannot block itself")
        if block:
            me.blocked.add(target)
        else:
            me.blocked.discard(target)
        return self.blocklist(me)

    # -- what a recipient gets --------------------------------------------------------

    def inbound(self: Network, recipient: Account, event: TransportEvent) -> TransportEvent | None:
        """What `recipient` gets of a message or action addressed to it: None when it blocked the sender,
        else the event as WhatsApp would address it (by LID when the sender is in LID addressing)."""
        if not isinstance(event, MessageReceived | MessageAction):
            return event
        if event.sender in recipient.blocked:
            return None
        sender = self.accounts.get(phone_from_jid(event.sender) or "")
        if sender is None or sender.addressing == "off":
            return event
        lid = self.lid_of(sender)
        if sender.addressing == "lid":
            return msgspec.structs.replace(event, sender_lid=lid)
        chat = event.chat if event.is_group else lid
        return msgspec.structs.replace(event, sender=lid, sender_phone=None, sender_lid=lid, chat=chat)
