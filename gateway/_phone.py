"""Phone numbers and recipients as the API accepts them: the gateway's one parser.

A number is 7 to 15 digits with an optional leading `+`; spaces, dashes, dots
and parentheses are ignored. We never reject a number because a metadata
library thinks it is unassigned: whether a number exists is the on-whatsapp
check's question. `phonenumbers` only normalises what it understands.
"""

from __future__ import annotations

import functools
import re
from typing import Final

import phonenumbers

from actors import GROUP_SERVER, USER_SERVER, split_jid, user_jid

from .errors import ValidationError

_IGNORED: Final = re.compile(r"[\s\-.()]")
_SHAPE: Final = re.compile(r"\+?[0-9]{7,15}")


class InvalidRecipient(ValueError):
    """Not a phone number, a user JID or a group JID; the message says what is expected."""


class InvalidPhoneNumber(InvalidRecipient):
    """Not 7 to 15 digits (with an optional `+` and ignorable punctuation)."""


def normalize_phone(raw: str) -> str:
    """Return the number in E.164 form (`+` then digits) or raise InvalidPhoneNumber."""
    cleaned = _IGNORED.sub("", raw)
    if not _SHAPE.fullmatch(cleaned):
        raise InvalidPhoneNumber(
            "must be 7 to 15 digits with an optional leading +; spaces, dashes, dots and parentheses are ignored")
    return _canonical(cleaned.lstrip("+"))


@functools.lru_cache(maxsize=8192)
def _canonical(digits: str) -> str:
    """E.164 for `digits` (cached: parsing with phonenumbers costs more than the rest of a send)."""
    try:
        parsed = phonenumbers.parse("+" + digits)
    except phonenumbers.NumberParseException:
        return "+" + digits
    if phonenumbers.is_possible_number(parsed):
        e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        if _SHAPE.fullmatch(e164):
            return e164
    return "+" + digits


def parse_recipient(raw: str) -> str:
    """A phone number, a user JID or a group JID, as the JID a message goes to; else InvalidRecipient."""
    raw = raw.strip()
    if "@" not in raw:
        return user_jid(normalize_phone(raw))
    try:
        user, server = split_jid(raw)
    except ValueError:
        user, server = "", ""
    if server == USER_SERVER and user.isdigit() and 7 <= len(user) <= 15:
        return f"{user}@{USER_SERVER}"
    if server == GROUP_SERVER and user.replace("-", "").isdigit():
        return f"{user}@{GROUP_SERVER}"
    raise InvalidRecipient("must be a phone number, a user JID (digits@s.whatsapp.net) or a group JID (...@g.us)")


def phone_at(raw: str, path: str) -> str:
    """`normalize_phone`, or the ValidationError naming `path`."""
    try:
        return normalize_phone(raw)
    except InvalidPhoneNumber as exc:
        raise ValidationError.at(path, str(exc)) from None


def recipient_at(raw: str, path: str) -> str:
    """`parse_recipient`, or the ValidationError naming `path`."""
    try:
        return parse_recipient(raw)
    except InvalidRecipient as exc:
        raise ValidationError.at(path, str(exc)) from None
