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

from actors import USER_SERVER, split_jid, user_jid

from ._patterns import GROUP_JID_RE, USER_JID_RE
from .errors import ValidationError

_IGNORED: Final = re.compile(r"[ \-.()]")
_SHAPE: Final = re.compile(r"\+?[0-9]{7,15}")
_USER_JID: Final = re.compile(USER_JID_RE)
_GROUP_JID: Final = re.compile(GROUP_JID_RE)


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
    if "@" not in raw:
        return user_jid(normalize_phone(raw))
    if _USER_JID.fullmatch(raw):
        return f"{split_jid(raw)[0]}@{USER_SERVER}"
    if _GROUP_JID.fullmatch(raw):
        return raw
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


def group_jid_at(raw: str, path: str) -> str:
    """A group JID as given (`120363041234567890@g.us`), or the ValidationError naming `path`."""
    if not _GROUP_JID.fullmatch(raw):
        raise ValidationError.at(path, "must be a group JID such as 120363041234567890@g.us")
    return raw
