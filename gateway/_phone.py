"""Phone numbers as the API accepts them.

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

_IGNORED: Final = re.compile(r"[\s\-.()]")
_SHAPE: Final = re.compile(r"\+?[0-9]{7,15}")


class InvalidPhoneNumber(ValueError):
    pass


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


def phone_digits(e164: str) -> str:
    """`+15551234567` → `15551234567`, the user part of a WhatsApp JID."""
    return e164.lstrip("+")
