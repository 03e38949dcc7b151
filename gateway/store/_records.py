"""Records the store keeps. Plain data: no behaviour, no I/O.

Times are integer milliseconds since the Unix epoch (UTC), so both stores
compare and sort them the same way.
"""

from __future__ import annotations

import datetime as dt
import functools
import enum

import msgspec

from actors import SessionState


def iso_ms(ms: int | None) -> str | None:
    """Milliseconds since the epoch → `2026-01-02T03:04:05.678Z` (None stays None)."""
    if ms is None:
        return None
    seconds, milli = divmod(ms, 1000)
    return f"{_iso_second(seconds)}.{milli:03d}Z"


@functools.lru_cache(maxsize=1024)
def _iso_second(seconds: int) -> str:
    """`2026-01-02T03:04:05` for a whole second (answers name the same few seconds again and again)."""
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


class User(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    email: str
    password_hash: str
    created_at: int


class ApiToken(msgspec.Struct, frozen=True, kw_only=True):
    """A Personal Access Token. Only the SHA-256 of its secret part is kept."""

    id: str
    user_id: str
    name: str
    secret_hash: bytes
    created_at: int
    revoked_at: int | None = None
    expires_at: int | None = None  # epoch ms; past it the token is refused
    last_used_at: int | None = None  # epoch ms, to within GATEWAY_AUTH_CACHE_TTL (see `_auth`)


class WebSession(msgspec.Struct, frozen=True, kw_only=True):
    """A dashboard login. Only the SHA-256 of its cookie's secret is kept."""

    id_hash: bytes
    user_id: str
    csrf_token: str
    created_at: int
    expires_at: int  # epoch ms; from it on the login is over (sliding: see `touch_web_session`)
    last_seen_at: int
    user_agent: str = ""
    ip: str = ""


class PasswordReset(msgspec.Struct, frozen=True, kw_only=True):
    """A single-use password-reset token. Only the SHA-256 of its secret is kept."""

    token_hash: bytes
    user_id: str
    created_at: int
    expires_at: int
    used_at: int | None = None


class SessionRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    user_id: str
    name: str
    phone_number: str | None = None
    status: SessionState = SessionState.DISCONNECTED
    status_reason: str | None = None
    # True while the owner wants the session online: after a restart the
    # supervisor reconnects exactly these sessions.
    connect_on_start: bool = False
    webhook_url: str | None = None
    webhook_events: list[str] = []
    webhook_enabled: bool = True
    webhook_secret: str = ""
    key_id: str
    key_hash: bytes
    created_at: int
    updated_at: int
    # this session's own send rate (COUNT/PERIOD), overriding GATEWAY_LIMIT_SEND
    send_limit: str | None = None
    # http://, https:// or socks5:// URL the session reaches WhatsApp through (None: the global default)
    proxy_url: str | None = None


# Columns that `Store.update_session` may change.
SESSION_MUTABLE_FIELDS = frozenset({
    "name", "phone_number", "status", "status_reason", "connect_on_start",
    "webhook_url", "webhook_events", "webhook_enabled", "webhook_secret",
    "key_id", "key_hash", "send_limit", "proxy_url",
})


class MessageStatus(str, enum.Enum):
    """Where an outbound message is. Only moves forward, except `sending → queued`
    when a send could not start (session dropped, gateway restarted). `cancelled` is
    terminal and reached only from `queued` (the sender cancelled it before it was claimed)."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    CANCELLED = "cancelled"


# Forward order, for "only advance" updates (receipts can arrive late or twice).
MESSAGE_STATUS_RANK = {
    MessageStatus.QUEUED: 0, MessageStatus.SENDING: 1, MessageStatus.SENT: 2,
    MessageStatus.DELIVERED: 3, MessageStatus.READ: 4, MessageStatus.FAILED: 5, MessageStatus.CANCELLED: 5,
}


class MessageRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    session_id: str
    user_id: str
    to_jid: str
    type: str
    modifiers: list[str] = []
    # msgpack of the validated request (media bytes included): what the sender needs, durably.
    payload: bytes
    status: MessageStatus = MessageStatus.QUEUED
    status_reason: str | None = None
    wa_id: str | None = None
    send_at: int | None = None
    expires_at: int
    attempts: int = 0
    created_at: int
    updated_at: int


class QueueDepth(msgspec.Struct, frozen=True):
    """A session's waiting messages: `queued` counts every one, `scheduled` those whose send_at is ahead."""

    queued: int = 0
    scheduled: int = 0


class StatusEntry(msgspec.Struct, frozen=True):
    status: MessageStatus
    at: int
    reason: str | None = None


class IdempotencyRecord(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    key: str
    request_hash: bytes
    status_code: int
    response: bytes
    created_at: int


class ContactRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A session's address-book entry, keyed by E.164 phone number."""

    session_id: str
    phone_number: str
    name: str | None = None
    created_at: int
    updated_at: int


# -- cluster mode -------------------------------------------------------------------


class Fence(msgspec.Struct, frozen=True):
    """What a write made on behalf of a session's owner carries: the node and its lease epoch.

    A fenced write applies only while that node still holds that epoch of the
    session's lease, unexpired on the database's clock; otherwise it changes
    nothing (and reports so as "no row"). An epoch only grows, so a node that
    lost a lease can never write with it again, even after winning it back.
    """

    node_id: str
    epoch: int


class NodeRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A gateway process in the `cluster_nodes` table. Times are ms since the epoch (database clock)."""

    id: str
    address: str  # base URL other nodes reach this one at, for routed requests ('' if none)
    token: str  # proves that a routed request comes from another node (X-Gateway-Hop)
    host: str
    pid: int
    started_at: int
    heartbeat_at: int
    expires_at: int
    alive: bool
    leases: int  # live leases it holds


class LeaseOwner(msgspec.Struct, frozen=True, kw_only=True):
    """The live holder of a session's lease, as another node sees it."""

    session_id: str
    node_id: str
    epoch: int
    address: str
    token: str


class HeldLease(msgspec.Struct, frozen=True):
    session_id: str
    epoch: int
    wanted: bool  # the session's connect_on_start


class Renewal(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a node's heartbeat: what it still holds and how big the cluster is."""

    leases: list[HeldLease]  # every lease the node still held, now extended
    live_nodes: int  # nodes whose heartbeat is current, this one included
    wanted: int  # sessions whose owner wants them online (connect_on_start)


class MediaRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An incoming media file a session downloaded; the bytes live in the media store, by `id`."""

    id: str
    session_id: str
    mimetype: str
    size: int  # bytes
    sha256: str  # hex
    filename: str | None = None
    created_at: int
