"""Groups on the simulated network: members and roles, settings, pictures, invite links, and the notifications
each change sends.

A mixin of `_network.Network` (`_social.SocialMixin.call` dispatches the operations here). The rules are
WhatsApp's:
- a group you are not in is one you cannot see: every call naming it answers `group_not_found`;
- roles are 0 member, 1 admin, 2 super admin (the creator). Only admins add, remove, promote and demote,
  change who may send (`announce`) and who may edit the group's info (`locked`), and get or reset the
  invite link; nobody but the creator demotes or removes the creator;
- in an announce-only group only admins send; in a locked group only admins change the name, the
  description and the picture;
- when the last admin goes, the longest-standing member becomes one; the group goes with its last
  member, and its invite code with it.
A refusal is a recipient error (`not-authorized: ...`, `bad-request: ...`, `not-acceptable: ...`, as
WhatsApp's IQ errors read); per-participant results use WhatsApp's codes: "not-authorized" when the caller
is not an admin (or names the creator), "404" for a number not on WhatsApp (add) or not in the group,
"409" for someone already in it.

Every change is pushed, durable, to the devices of the accounts it concerns (`_tell`), with one clock
reading: GroupJoined to whoever is now in the group (added, joined by a link, or created it), GroupLeft to
whoever is out of it, GroupParticipantsChanged to the other members, GroupUpdated to every member with
only the fields that changed.
"""

from __future__ import annotations

import random
import secrets
import string
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from actors import (
    GroupInfo,
    GroupJoined,
    GroupLeft,
    GroupParticipant,
    GroupParticipantsChanged,
    GroupSettings,
    GroupUpdated,
    ParticipantResult,
    TransportEvent,
    phone_from_jid,
)

from ._model import Account, Group, Item, OpError, jid_of, normalize_phone, not_authorized, recipient_error

if TYPE_CHECKING:
    from ._network import Network

MEMBER: Final = 0
ADMIN: Final = 1
SUPER_ADMIN: Final = 2
MAX_GROUP_NAME: Final = 100  # characters, as WhatsApp's group subject
MAX_GROUP_TOPIC: Final = 2048  # characters, as WhatsApp's group description
# WhatsApp shows a group picture at 640×640 and its clients send a small JPEG; 1 MiB leaves room for that
# and refuses a photo straight off a camera.
MAX_PICTURE_BYTES: Final = 1024 * 1024
JPEG_MAGIC: Final = b"\xff\xd8\xff"
INVITE_LINK: Final = "https://chat.whatsapp.com/"
INVITE_CODE_LENGTH: Final = 22
INVITE_ALPHABET: Final = string.ascii_letters + string.digits


class GroupsMixin:
    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}
        self._group_seq = random.randrange(10**11)
        self._invites: dict[str, str] = {}  # invite code → group JID (a group's current code only)
        self._group_picture_seq = 0
        super().__init__()

    # -- reading ------------------------------------------------------------------

    def group_view(self, group: Group) -> GroupInfo:
        return GroupInfo(jid=group.jid, name=group.name, topic=group.topic, owner=group.owner,
                         created_at_ms=group.created_at_ms, announce=group.announce, locked=group.locked,
                         participants=[GroupParticipant(jid=jid, phone_number=phone_from_jid(jid),
                                                        is_admin=role >= ADMIN, is_super_admin=role == SUPER_ADMIN)
                                       for jid, role in group.roles.items()])

    def member_group(self, me: Account, jid: str) -> Group:
        group = self.groups.get(jid)
        if group is None or me.jid not in group.roles:
            # WhatsApp answers both the same way: a group you are not in is one you cannot see.
            raise OpError("group_not_found", f"group {jid} not found, or this account is not in it")
        return group

    # -- members ----------------------------------------------------------------------

    def create_group(self: Network, me: Account, name: str, participants: list[str]) -> GroupInfo:
        _check_name(name)
        self._group_seq += 1
        ts = self.now_ms()
        group = Group(jid=f"120363{self._group_seq:012d}@g.us", name=name, owner=me.jid, created_at_ms=ts,
                      roles={me.jid: SUPER_ADMIN})
        me.groups.add(group.jid)
        for asked in participants:  # numbers not on WhatsApp are left out, as WhatsApp does
            phone = normalize_phone(asked)
            member = self.lookup(phone) if phone != me.phone else None
            if member is not None:
                group.roles[member.jid] = MEMBER
                member.groups.add(group.jid)
        self.groups[group.jid] = group
        self._tell(group.roles, GroupJoined(group=group.jid, by=me.jid, timestamp_ms=ts, name=name))
        return self.group_view(group)

    def update_participants(self: Network, me: Account, jid: str, participants: list[str],
                            action: str) -> list[ParticipantResult]:
        group = self.member_group(me, jid)
        allowed = group.roles[me.jid] >= ADMIN
        results, changed = [], []
        for asked in participants:
            phone = normalize_phone(asked)
            pjid = jid_of(phone) if phone else asked
            error, done = ("not-authorized", False) if not allowed else self._change(me, group, pjid, phone, action)
            results.append(ParticipantResult(jid=pjid, ok=error is None, error=error))
            if done:
                changed.append(pjid)
        if changed:
            ts = self.now_ms()
            if action == "add":
                self._tell(changed, GroupJoined(group=jid, by=me.jid, timestamp_ms=ts, name=group.name))
            elif action == "remove":
                self._tell(changed, GroupLeft(group=jid, by=me.jid, timestamp_ms=ts, reason="removed"))
            others = [m for m in group.roles if action != "add" or m not in changed]
            self._tell(others, GroupParticipantsChanged(group=jid, by=me.jid, timestamp_ms=ts,
                                                        action=action, participants=changed))  # type: ignore[arg-type]
            self._promote_if_no_admin(group, ts)
        return results

    def _change(self: Network, me: Account, group: Group, pjid: str, phone: str | None,
                action: str) -> tuple[str | None, bool]:
        """One participant's (error, whether anything changed) for an admin's `action`."""
        role = group.roles.get(pjid)
        if action == "add":
            member = self.lookup(phone)
            if member is None:
                return "404", False
            if role is not None:
                return "409", False
            group.roles[pjid] = MEMBER
            member.groups.add(group.jid)
            return None, True
        if role is None:
            return "404", False
        if role == SUPER_ADMIN and pjid != me.jid and action in ("remove", "demote"):
            return "not-authorized", False  # the creator stays, and stays an admin
        if action == "remove":
            self._drop_member(group, pjid)
            return None, True
        if action == "promote":
            group.roles[pjid] = max(role, ADMIN)
            return None, role < ADMIN
        if action == "demote":
            group.roles[pjid] = MEMBER
            return None, role > MEMBER
        raise OpError("error", f"unknown participant action {action!r}")

    def leave_group(self: Network, me: Account, jid: str) -> None:
        group = self.member_group(me, jid)
        ts = self.now_ms()
        self._drop_member(group, me.jid)
        self._tell([me.jid], GroupLeft(group=jid, by=me.jid, timestamp_ms=ts, reason="left"))
        self._tell(group.roles, GroupParticipantsChanged(group=jid, by=me.jid, timestamp_ms=ts, action="remove",
                                                         participants=[me.jid]))
        self._promote_if_no_admin(group, ts)

    def _remove_member(self: Network, group: Group, jid: str) -> None:
        """Take `jid` out of `group` without telling anyone (its number left WhatsApp)."""
        self._drop_member(group, jid)
        self._keep_an_admin(group)

    def _drop_member(self: Network, group: Group, jid: str) -> None:
        del group.roles[jid]
        member = self.accounts.get(phone_from_jid(jid) or "")
        if member is not None:
            member.groups.discard(group.jid)
        if not group.roles:
            del self.groups[group.jid]
            if group.invite_code is not None:
                self._invites.pop(group.invite_code, None)

    def _keep_an_admin(self, group: Group) -> str | None:
        """Promote the longest-standing member of a group left without an admin (as WhatsApp does); its JID."""
        if not group.roles or any(role >= ADMIN for role in group.roles.values()):
            return None
        first = next(iter(group.roles))
        group.roles[first] = ADMIN
        return first

    def _promote_if_no_admin(self: Network, group: Group, ts: int) -> None:
        promoted = self._keep_an_admin(group)
        if promoted is not None:  # the server did it: no `by`
            self._tell(group.roles, GroupParticipantsChanged(group=group.jid, timestamp_ms=ts, action="promote",
                                                             participants=[promoted]))

    # -- settings and picture ---------------------------------------------------------

    def group_settings(self: Network, me: Account, jid: str, settings: GroupSettings) -> None:
        group = self.member_group(me, jid)
        if settings.name is not None:
            _check_name(settings.name)
        if settings.topic is not None and len(settings.topic) > MAX_GROUP_TOPIC:
            raise recipient_error(f"bad-request: a group description is at most {MAX_GROUP_TOPIC} characters")
        admin = group.roles[me.jid] >= ADMIN
        if not admin and (settings.announce is not None or settings.locked is not None):
            raise not_authorized("only admins may change who sends and who edits the group's info")
        if not admin and group.locked and (settings.name is not None or settings.topic is not None):
            raise not_authorized("only admins may edit this group's info")
        changed: dict[str, object] = {}
        if settings.name is not None and settings.name != group.name:
            group.name = changed["name"] = settings.name  # type: ignore[assignment]
        if settings.topic is not None and (settings.topic or None) != group.topic:
            group.topic = settings.topic or None
            changed["topic"] = settings.topic  # "" in the event: removed
        if settings.announce is not None and settings.announce != group.announce:
            group.announce = changed["announce"] = settings.announce  # type: ignore[assignment]
        if settings.locked is not None and settings.locked != group.locked:
            group.locked = changed["locked"] = settings.locked  # type: ignore[assignment]
        if changed:
            self._tell(group.roles, GroupUpdated(group=jid, by=me.jid, timestamp_ms=self.now_ms(),
                                                 **changed))  # type: ignore[arg-type]

    def set_group_picture(self: Network, me: Account, jid: str, jpeg: bytes | None) -> str | None:
        """Put up `jpeg` as the group's picture (None takes it down); returns the new picture id."""
        group = self.member_group(me, jid)
        if group.locked and group.roles[me.jid] < ADMIN:
            raise not_authorized("only admins may edit this group's info")
        if jpeg is None:
            if group.picture_id is None:
                return None
            group.picture_id = None
        else:
            if len(jpeg) > MAX_PICTURE_BYTES:
                raise recipient_error(f"not-acceptable: the picture is {len(jpeg)} bytes; a group picture is at "
                                      f"most {MAX_PICTURE_BYTES} bytes")
            if not jpeg.startswith(JPEG_MAGIC):
                raise recipient_error("not-acceptable: a group picture must be a JPEG image")
            self._group_picture_seq += 1
            group.picture_id = f"{self.rng.randrange(10**9, 10**10)}{self._group_picture_seq:04d}"
        self._tell(group.roles, GroupUpdated(group=jid, by=me.jid, timestamp_ms=self.now_ms(),
                                             picture_changed=True))
        return group.picture_id

    # -- invite links -------------------------------------------------------------------

    def invite_link(self: Network, me: Account, jid: str, reset: bool) -> str:
        """The group's invite link, the same until an admin resets it (which revokes the old code)."""
        group = self.member_group(me, jid)
        if group.roles[me.jid] < ADMIN:
            raise not_authorized("only admins may see or reset the invite link")
        if reset or group.invite_code is None:
            if group.invite_code is not None:
                self._invites.pop(group.invite_code, None)
            code = _new_invite_code()
            while code in self._invites:
                code = _new_invite_code()
            group.invite_code = code
            self._invites[code] = group.jid
        return INVITE_LINK + group.invite_code

    def invite_info(self: Network, code: str) -> GroupInfo:
        return self.group_view(self._invited_group(code))

    def join_invite(self: Network, me: Account, code: str) -> str:
        """Join the group `code` leads to (a member already: nothing changes); its JID."""
        group = self._invited_group(code)
        if me.jid in group.roles:
            return group.jid
        ts = self.now_ms()
        others = list(group.roles)
        group.roles[me.jid] = MEMBER
        me.groups.add(group.jid)
        self._tell([me.jid], GroupJoined(group=group.jid, timestamp_ms=ts, name=group.name))  # by a link: no `by`
        self._tell(others, GroupParticipantsChanged(group=group.jid, by=me.jid, timestamp_ms=ts, action="add",
                                                    participants=[me.jid]))
        return group.jid

    def _invited_group(self: Network, code: str) -> Group:
        code = code.removeprefix(INVITE_LINK)
        group = self.groups.get(self._invites.get(code, ""))
        if group is None or group.invite_code != code:
            raise OpError("group_not_found", "the invite code is not valid: unknown, or revoked")
        return group

    # -- sending ----------------------------------------------------------------------

    def check_group_send(self: Network, sender: Account, group: Group) -> None:
        """Raise OpError when `sender` may not send to `group` (announce-only and not an admin)."""
        if group.announce and group.roles.get(sender.jid, MEMBER) < ADMIN:
            raise not_authorized("only admins may send messages to this group")

    # -- notifications ------------------------------------------------------------------

    def _tell(self: Network, jids: Iterable[str], event: TransportEvent) -> None:
        """Push a group notification, durable, to every device of these accounts."""
        for jid in list(jids):
            account = self.accounts.get(phone_from_jid(jid) or "")
            for device in list(account.devices.values()) if account is not None else ():
                self.push(device, Item(event, durable=True))


def _check_name(name: str) -> None:
    if not name.strip() or len(name) > MAX_GROUP_NAME:
        raise recipient_error(f"bad-request: a group name is 1 to {MAX_GROUP_NAME} characters, not all spaces")


def _new_invite_code() -> str:
    return "".join(secrets.choice(INVITE_ALPHABET) for _ in range(INVITE_CODE_LENGTH))
