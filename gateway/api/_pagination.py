"""Cursor pagination: `?limit=N&cursor=C` in, `{"data": [...], "nextCursor": C|null}` out.

A cursor is an opaque token naming the last item of the previous page, so
pages stay stable while items are added.
"""

from __future__ import annotations

import base64
import re
from typing import Final

from .._patterns import CURSOR_MAX_LENGTH, CURSOR_RE, whole
from ..errors import ValidationError
from ._routing import Param

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 100

PAGE_PARAMS: Final = [
    Param("limit", f"Items per page, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}).",
          {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}),
    Param("cursor", "`nextCursor` from the previous page.",
          {"type": "string", "pattern": whole(CURSOR_RE), "maxLength": CURSOR_MAX_LENGTH}),
]
# Any text of the cursor's shape names a position (pages are keyset pages), so it is accepted.
_CURSOR: Final = re.compile(CURSOR_RE)
_LIMIT: Final = re.compile(r"[0-9]{1,3}")


def encode_cursor(last_key: str) -> str:
    return base64.urlsafe_b64encode(last_key.encode()).decode().rstrip("=")


def read_page(query: dict[str, str]) -> tuple[str | None, int]:
    """Return (after_key, limit) from the query, or raise 422 naming the parameter."""
    raw_limit = query.get("limit", str(DEFAULT_LIMIT))
    if not _LIMIT.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise ValidationError.at("query.limit", f"must be an integer from 1 to {MAX_LIMIT}")
    cursor = query.get("cursor")
    after = None
    if cursor:
        if len(cursor) > CURSOR_MAX_LENGTH or not _CURSOR.fullmatch(cursor):
            raise ValidationError.at("query.cursor", "is not a cursor this API returned")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        after = raw.decode(errors="replace").replace("\x00", "") or None
    return after, int(raw_limit)


def next_cursor(keys: list[str], limit: int) -> str | None:
    """A cursor when the page is full (there may be more), else None."""
    return encode_cursor(keys[-1]) if keys and len(keys) == limit else None
