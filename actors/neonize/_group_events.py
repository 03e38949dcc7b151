"""neonize → transport: group events (`JoinedGroupEv`, `GroupInfoEv`, `PictureEv`). Pure functions, no I/O.

What whatsmeow reports, read from its group notification parser and
neonize's encoder: `GroupInfo` carries a group's changes one notification at
a time: members that joined, left, were promoted or demoted (JIDs, LIDs in a
LID-addressed group), and settings that changed (name, description, announce,
locked), each present only when it changed. Its `Sender` is who acted
(absent when the server did), and `Timestamp` is in seconds. `JoinedGroup` is
this account being added to a group, joining one or creating one; it carries
the group's info, `Sender`/`SenderPN`, and no timestamp. `Picture` is a user's
or group's picture set or removed, `Timestamp` in seconds.

neonize 0.5.2 encodes no `SenderPN` on `GroupInfo` (whatsmeow has one): `by` is
then the sender as given, a LID in a LID-addressed group. A later neonize that
adds the field is read without a change here.

Importing this module imports neonize (see `_transport` on logging).
"""

from __future__ import annotations

from typing import Any

from neonize.proto import Neonize_pb2 as pb

from .._jid import GROUP_SERVER
from .._transport import GroupEvent, GroupJoined, GroupLeft, GroupParticipantsChanged, GroupUpdated
from ._events import _pn_first, jid_str


def own_jids(me: pb.Device) -> frozenset[str]:
    """This account's JIDs (phone and LID, without device), to recognise it in group changes."""
    return frozenset(j for j in (jid_str(me.JID), jid_str(me.LID)) if j)


def _optional_jid(ev: Any, field: str) -> str | None:
    if field not in ev.DESCRIPTOR.fields_by_name or not ev.HasField(field):
        return None
    return jid_str(getattr(ev, field))


def _by(ev: Any) -> str | None:
    """Who acted: the phone JID when whatsmeow gives it, else the sender as given."""
    return _pn_first(_optional_jid(ev, "Sender"), _optional_jid(ev, "SenderPN"))


def _ms(seconds: int, now_ms: int) -> int:
    return seconds * 1000 if seconds > 0 else now_ms  # Go's zero time is negative


def joined_group(ev: pb.JoinedGroup, now_ms: int) -> GroupJoined | None:
    """This account is in a new group (added, joined by invite, or created it); stamped `now_ms`."""
    group = jid_str(ev.GroupInfo.JID)
    if group is None:
        return None
    return GroupJoined(group=group, by=_by(ev), timestamp_ms=now_ms, name=ev.GroupInfo.GroupName.Name or None)


_ACTIONS = (("Join", "add"), ("Leave", "remove"), ("Promote", "promote"), ("Demote", "demote"))


def group_changes(ev: pb.GroupInfoEvent, me: frozenset[str], now_ms: int) -> list[GroupEvent]:
    """A `GroupInfo` notification as events: the settings that changed (one GroupUpdated), one
    GroupParticipantsChanged per member action, and GroupLeft when this account (`me`) left or was removed."""
    group = jid_str(ev.JID)
    if group is None:
        return []
    common: dict[str, Any] = {"group": group, "by": _by(ev), "timestamp_ms": _ms(ev.Timestamp, now_ms)}
    out: list[GroupEvent] = []
    settings: dict[str, Any] = {}
    if ev.HasField("Name"):
        settings["name"] = ev.Name.Name
    if ev.HasField("Topic"):
        settings["topic"] = "" if ev.Topic.TopicDeleted else ev.Topic.Topic
    if ev.HasField("Announce"):
        settings["announce"] = ev.Announce.IsAnnounce
    if ev.HasField("Locked"):
        settings["locked"] = ev.Locked.isLocked
    if settings:
        out.append(GroupUpdated(**common, **settings))
    for field, action in _ACTIONS:
        members = [j for j in map(jid_str, getattr(ev, field)) if j]
        if members:
            out.append(GroupParticipantsChanged(**common, action=action, participants=members))  # type: ignore[arg-type]
    left = {j for j in map(jid_str, ev.Leave) if j}
    if left & me:
        acted = {_optional_jid(ev, "Sender"), _optional_jid(ev, "SenderPN")}
        out.append(GroupLeft(**common, reason="left" if acted & me else "removed"))
    return out


def picture_changed(ev: pb.Picture, now_ms: int) -> GroupUpdated | None:
    """A group's picture was set or removed; None for a user's picture (no event of ours)."""
    jid = jid_str(ev.JID)
    if jid is None or not jid.endswith("@" + GROUP_SERVER):
        return None
    return GroupUpdated(group=jid, by=jid_str(ev.Author), timestamp_ms=_ms(ev.Timestamp, now_ms),
                        picture_changed=True)
