"""WhatsApp JIDs as strings: `<digits>@s.whatsapp.net` for users, `<id>@g.us` for groups."""

from __future__ import annotations

from typing import Final

USER_SERVER: Final = "s.whatsapp.net"
GROUP_SERVER: Final = "g.us"
LID_SERVER: Final = "lid"


def user_jid(phone_e164: str) -> str:
    digits = phone_e164.lstrip("+")
    if not digits.isdigit():
        raise ValueError(f"not a phone number: {phone_e164!r}")
    return f"{digits}@{USER_SERVER}"


def split_jid(jid: str) -> tuple[str, str]:
    """`15551234567:12@s.whatsapp.net` → (`15551234567`, `s.whatsapp.net`): device suffix dropped."""
    user, sep, server = jid.partition("@")
    if not sep or not user or not server:
        raise ValueError(f"not a JID: {jid!r}")
    return user.split(":", 1)[0], server


def is_group_jid(jid: str) -> bool:
    return jid.endswith("@" + GROUP_SERVER)


def phone_from_jid(jid: str) -> str | None:
    """E.164 for a user JID, None for groups, LIDs and anything else."""
    try:
        user, server = split_jid(jid)
    except ValueError:
        return None
    if server != USER_SERVER or not user.isdigit():
        return None
    return "+" + user
