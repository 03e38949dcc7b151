"""What the routes that use a session's live connection share: a deadline on the WhatsApp call."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Final, TypeVar

import trio

from ..errors import SessionNotConnected, Unauthorized, WhatsAppError

T = TypeVar("T")

WHATSAPP_DEADLINE: Final = 30.0
LIVE_ERRORS: Final = [Unauthorized, SessionNotConnected, WhatsAppError]


async def whatsapp(call: Awaitable[T]) -> T:
    """Run a transport call under a deadline (its own failures are answered through the error table)."""
    try:
        with trio.fail_after(WHATSAPP_DEADLINE):
            return await call
    except trio.TooSlowError:
        raise WhatsAppError(f"WhatsApp did not answer within {WHATSAPP_DEADLINE:g} s") from None
