"""The regular expressions the API enforces, in one place.

msgspec checks request fields against them (`_requests.py`), the phone parser
uses the same rules (`_phone.py`), and the OpenAPI document states them, so
the schema says exactly what the server accepts. They use only ASCII classes,
so a JSON Schema (ECMA-262) reader and Python's `re` agree on them.
"""

from __future__ import annotations

from typing import Final


def whole(body: str) -> str:
    """A pattern that matches all of a string. msgspec *searches* with Python's `re`, whose `$` also
    matches before a final newline; the lookahead refuses that, and is a no-op for ECMA-262."""
    return f"^(?:{body})$(?!\\n)"


# A phone number: 7 to 15 digits, an optional leading +, and spaces, dashes,
# dots and parentheses anywhere.
_SEP: Final = r"[ ().\-]*"
PHONE_RE: Final = rf"{_SEP}\+?(?:{_SEP}[0-9]){{7,15}}{_SEP}"
USER_JID_RE: Final = r"[0-9]{7,15}(?::[0-9]{1,3})?@s\.whatsapp\.net"
GROUP_JID_RE: Final = r"-*[0-9][0-9\-]*@g\.us"
PHONE_PATTERN: Final = whole(PHONE_RE)
PERSON_PATTERN: Final = whole(f"{PHONE_RE}|{USER_JID_RE}")
RECIPIENT_PATTERN: Final = whole(f"{PHONE_RE}|{USER_JID_RE}|{GROUP_JID_RE}")
GROUP_JID_PATTERN: Final = whole(GROUP_JID_RE)
# A proxy URL's shape (the rest, a host and a port, is checked by `_control.parse_proxy_url`)
PROXY_URL_PATTERN: Final = whole(r"(?:[Hh][Tt][Tt][Pp][Ss]?|[Ss][Oo][Cc][Kk][Ss]5)://[^\s/?#]+/?")
# A group invite code: what follows https://chat.whatsapp.com/
INVITE_CODE_RE: Final = r"[A-Za-z0-9]{16,32}"
INVITE_CODE_PATTERN: Final = whole(INVITE_CODE_RE)
# Some character `str.strip` keeps: the class lists exactly the characters
# `str.isspace` accepts (spelled out, as Python's and ECMA's `\s` differ).
NOT_BLANK_PATTERN: Final = r"[^ \t\n\r\f\v\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
# A page cursor: unpadded base64url of at most 200 bytes (268 characters).
CURSOR_RE: Final = r"(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?"
CURSOR_MAX_LENGTH: Final = 268
HTTP_URL_PATTERN: Final = r"^[Hh][Tt][Tt][Pp][Ss]?://"
MIME_TYPE_PATTERN: Final = whole(r"[A-Za-z0-9_.+-]+/[A-Za-z0-9_.+-]+")
# A per-session send limit, in the one form the API takes; the counts keep every
# rate within `ratelimit`'s bounds (at most 1000/second, COUNT at most 100 000).
SEND_LIMIT_PATTERN: Final = whole(r"(?:[1-9][0-9]{0,2}|1000)/second|(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|60000)/minute"
                                  r"|(?:[1-9][0-9]{0,4}|100000)/(?:hour|day)")
