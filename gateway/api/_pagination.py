"""Cursor pagination: `?limit=N&cursor=C` in, `{"data": [...], "nextCursor": C|null}` out.

A cursor is an opaque token naming the last item of the previous page, so
pages stay stable while items are added.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from ..errors import ValidationError
from ._routing import Param

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 100

PAGE_PARAMS: Final = [
    Param("limit", f"Items per page, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}).",
          {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}),
    Param("cursor", "`nextCursor` from the previous page.", {"type": "string"}),
]


def encode_cursor(last_key: str) -> str:
    return base64.urlsafe_b64encode(last_key.encode()).decode().rstrip("=")


def read_page(query: dict[str, str]) -> tuple[str | None, int]:
    """Return (after_key, limit) from the query, or raise 422 naming the parameter."""
    raw_limit = query.get("limit", str(DEFAULT_LIMIT))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise ValidationError.at("query.limit", f"must be an integer from 1 to {MAX_LIMIT}")
    cursor = query.get("cursor")
    after = None
    if cursor:
        try:
            after = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ValidationError.at("query.cursor", "is not a cursor this API returned") from None
        if not after or len(after) > 200:
            raise ValidationError.at("query.cursor", "is not a cursor this API returned")
    return after, int(raw_limit)


def next_cursor(keys: list[str], limit: int) -> str | None:
    """A cursor when the page is full (there may be more), else None."""
    return encode_cursor(keys[-1]) if keys and len(keys) == limit else None
