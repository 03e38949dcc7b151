"""neonize → transport: the answers of the identity and group-administration calls. Pure, no I/O.

What whatsmeow answers, read from its source (the version neonize 0.5.2 ships):
- `GetProfilePictureInfo` fails with "that user or group does not have a
  profile picture" (404) or "the user has hidden their profile picture from
  you" (401) where the transport reports no picture, and answers an empty
  info when the picture did not change.
- `GetUserInfo` answers a map, so in no order, only for the accounts WhatsApp
  knows. neonize's `UserInfo` has no LID, but whatsmeow stores every LID the
  answer carries in the device store's LID map, where `get_lid_from_pn` reads it.
- The LID map (`get_lid_from_pn` / `get_pn_from_lid`) answers an empty JID
  for a number it does not know.
- Invite links are `https://chat.whatsapp.com/<code>`; `GetGroupInfoFromLink`
  and `JoinGroupWithLink` take the code or the whole link.

Importing this module imports neonize (see `_transport` on logging).
"""

from __future__ import annotations

import re
from typing import Any, Final

from neonize.proto import Neonize_pb2 as pb

from .._jid import LID_SERVER, USER_SERVER
from .._transport import GroupNotFound, ProfilePicture, RecipientError, UserInfo
from ._events import jid_str, parse_jid

INVITE_PREFIX: Final = "https://chat.whatsapp.com/"
_INVITE_CODE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_PICTURE_ABSENT = ("does not have a profile picture", "has hidden their profile picture")
JPEG_MAGIC: Final = b"\xff\xd8\xff"


def user_jid(text: str) -> pb.JID:
    """A user's JID (phone or LID) without device part, for calls about the account. Raises RecipientError."""
    jid = parse_jid(text)
    if jid.Server not in (USER_SERVER, LID_SERVER):
        raise RecipientError(f"not a user JID: {text!r}")
    jid.Device = jid.RawAgent = 0
    return jid


def picture_absent(go_text: str) -> bool:
    """Whether a `get_profile_picture` error only says there is no picture to show this account."""
    low = go_text.lower()
    return any(n in low for n in _PICTURE_ABSENT)


def profile_picture(jid: str, info: pb.ProfilePictureInfo | None) -> ProfilePicture:
    if info is None:
        return ProfilePicture(jid=jid)
    return ProfilePicture(jid=jid, url=info.URL or None, id=info.ID or None)


def store_jid(answer: pb.JID | None, server: str) -> str | None:
    """A LID-map answer on `server`; None when the map has none (an empty JID)."""
    if answer is None or not answer.User or answer.Server != server:
        return None
    return jid_str(answer)


def user_infos(asked: list[str], found: Any, lids: dict[str, str | None]) -> list[UserInfo]:
    """One UserInfo per account WhatsApp answered for, in the order asked (any other answer after).

    `lids` maps an answered phone JID to its LID (from the store, filled by the same call).
    """
    out: dict[str, UserInfo] = {}
    for item in found:
        jid = jid_str(item.JID)
        if jid is None:
            continue
        info = item.UserInfo
        name = info.VerifiedName.Details.verifiedName if info.HasField("VerifiedName") else ""
        lid = jid if jid.endswith("@" + LID_SERVER) else lids.get(jid)
        out[jid] = UserInfo(jid=jid, about=info.Status or None, lid=lid, verified_name=name or None,
                            picture_id=info.PictureID or None)
    order = [jid_str(user_jid(a)) for a in asked]
    return [out.pop(j) for j in dict.fromkeys(order) if j in out] + list(out.values())


def blocklist(answer: pb.Blocklist | None) -> list[str]:
    if answer is None:
        return []
    return [j for j in map(jid_str, answer.JIDs) if j]


def invite_code(text: str) -> str:
    """The code of an invite link (`https://chat.whatsapp.com/<code>`, or the code alone).

    Raises GroupNotFound for anything that cannot be a code (it leads to no group).
    """
    code = text.strip()
    for prefix in (INVITE_PREFIX, "http://chat.whatsapp.com/", "chat.whatsapp.com/"):
        if code.startswith(prefix):
            code = code[len(prefix):]
            break
    code = re.split(r"[?#]", code, maxsplit=1)[0].rstrip("/")
    if not _INVITE_CODE.fullmatch(code):
        raise GroupNotFound(f"not a WhatsApp invite code: {text!r}")
    return code


def is_jpeg(data: bytes) -> bool:
    return data.startswith(JPEG_MAGIC)
