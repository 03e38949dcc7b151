"""Session states and the transitions between them. Pure: no I/O."""

from __future__ import annotations

import enum
from typing import Final


class SessionState(str, enum.Enum):
    """A session's connection state, as persisted and shown in the API.

    It exists so that every layer (actor, store, API, webhooks) speaks of a
    session's condition with the same five words.

    DISCONNECTED: not connected; either idle, or waiting to reconnect after a drop.
    CONNECTING: a connection attempt is under way, or a QR / pairing code is waiting.
    CONNECTED: logged in and online; messages can be sent.
    LOGGED_OUT: WhatsApp ended the pairing; a new QR scan is needed.
    FAILED: the gateway gave up (crash loop, or a connect that kept failing);
        the reason is kept, and a new connect request starts afresh.
    """

    DISCONNECTED = "DISCONNECTED"
    CONNECTING = "CONNECTING"
    CONNECTED = "CONNECTED"
    LOGGED_OUT = "LOGGED_OUT"
    FAILED = "FAILED"


S = SessionState
# DISCONNECTED → CONNECTED happens when a transport reconnects by itself (whatsmeow does).
_ALLOWED: Final[dict[SessionState, frozenset[SessionState]]] = {
    S.DISCONNECTED: frozenset({S.CONNECTING, S.CONNECTED, S.FAILED, S.LOGGED_OUT}),
    S.CONNECTING: frozenset({S.CONNECTED, S.DISCONNECTED, S.LOGGED_OUT, S.FAILED}),
    S.CONNECTED: frozenset({S.DISCONNECTED, S.CONNECTING, S.LOGGED_OUT, S.FAILED}),
    S.LOGGED_OUT: frozenset({S.CONNECTING, S.DISCONNECTED, S.FAILED}),
    S.FAILED: frozenset({S.CONNECTING, S.DISCONNECTED, S.LOGGED_OUT}),
}


class InvalidTransition(RuntimeError):
    """Raised when code asks for a state change the machine does not allow (a bug)."""


def check_transition(old: SessionState, new: SessionState) -> bool:
    """True if the state changes; False if it stays; raises on a forbidden change."""
    if old is new:
        return False
    if new not in _ALLOWED[old]:
        raise InvalidTransition(f"{old.value} → {new.value}")
    return True
