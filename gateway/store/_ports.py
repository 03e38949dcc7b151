"""The store's interface, one Protocol per domain, and `Store`, which is all of them.

Each domain Protocol is what one part of the gateway needs: the accounts
service needs `AccountStore`, the webhook routes `OutboxStore`, the lease
keeper `ClusterStore`. Both drivers (`sqlite/`, `postgres/`) implement every
one, each domain in a module of the same name, and the contract suites
(`tests/store_contract.py`, `tests/test_cluster_store.py`) run unchanged
against both.

Every method is a cancel point only before the work starts: once a write is
under way it runs to completion, so a cancelled request never leaves half a
change behind.

Writes that a session's owner makes (claims, status changes, state changes)
take an optional `fence`: with one, the write applies only while that node
holds that epoch of the session's lease (see `Fence`); without one (a single
node, or an API request) it applies as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ._records import (
    ApiToken, ContactRecord, Fence, IdempotencyRecord, LeaseOwner, MediaRecord, MessageRecord, MessageStatus,
    NodeRecord, PasswordReset, QueueDepth, Renewal, SessionRecord, StatusEntry, User, WebSession,
)

if TYPE_CHECKING:
    # Types only: gateway.webhooks imports gateway._events, which imports this package.
    from .._events import GatewayEvent
    from ..webhooks import AttemptRecord, Delivery, DeliveryStatus

R = TypeVar("R")
# Given the record a write produced, the events it causes. Called inside the write's
# transaction (in a worker thread), so it must be pure: the events become webhook
# deliveries atomically with the change.
EventsOf = Callable[[R], "list[GatewayEvent]"]


class StoreError(Exception):
    """Base of the store's own errors."""


class StoreConflict(StoreError):
    """A uniqueness rule was broken (an email or key id already exists)."""


class StoreLifecycle(Protocol):
    async def migrate(self) -> list[int]:
        """Apply pending migrations; return the versions applied now."""

    async def schema_version(self) -> int: ...

    async def aclose(self) -> None: ...


class AccountStore(Protocol):
    """Users, their personal access tokens, dashboard logins and password resets."""

    async def create_user(self, user: User) -> None:
        """Raises StoreConflict when the email is taken (case-insensitively)."""

    async def get_user(self, user_id: str) -> User | None: ...

    async def get_user_by_email(self, email: str) -> User | None: ...

    async def count_users(self) -> int: ...

    async def set_user_password(self, user_id: str, password_hash: str) -> bool:
        """Replace the user's password hash; False if there is no such user."""

    async def create_token(self, token: ApiToken) -> None: ...

    async def get_token(self, token_id: str) -> ApiToken | None: ...

    async def list_tokens(self, user_id: str) -> list[ApiToken]: ...

    async def revoke_token(self, token_id: str, at: int) -> bool: ...

    async def touch_token(self, token_id: str, at: int) -> None:
        """Record a use of the token at `at` (never moves `last_used_at` back)."""

    async def create_web_session(self, s: WebSession) -> None:
        """Raises StoreConflict when the id is taken or there is no such user."""

    async def get_web_session(self, id_hash: bytes, now: int) -> WebSession | None:
        """The login, or None if there is none or it expired (`expires_at <= now`)."""

    async def touch_web_session(self, id_hash: bytes, *, last_seen_at: int, expires_at: int) -> None:
        """Slide a live login's expiry (never moves `last_seen_at` back, never revives an expired login)."""

    async def delete_web_session(self, id_hash: bytes) -> bool:
        """End one login; False if there was none."""

    async def delete_user_web_sessions(self, user_id: str, *, keep: bytes | None = None) -> int:
        """End every login of the user except `keep`; returns how many."""

    async def create_password_reset(self, r: PasswordReset) -> None:
        """Raises StoreConflict when the token is taken or there is no such user."""

    async def use_password_reset(self, token_hash: bytes, now: int) -> PasswordReset | None:
        """Mark an unused, unexpired token used at `now`, atomically (one caller wins); None otherwise."""

    async def delete_expired_web_auth(self, now: int) -> int:
        """Purge logins and reset tokens expired by `now`; returns how many rows went."""


class SessionStore(Protocol):
    """WhatsApp sessions: their settings, keys and last known state."""

    async def create_session(self, session: SessionRecord) -> None: ...

    async def get_session(self, session_id: str) -> SessionRecord | None: ...

    async def get_session_by_key_id(self, key_id: str) -> SessionRecord | None: ...

    async def list_sessions(self, user_id: str, *, after: str | None, limit: int) -> list[SessionRecord]:
        """Sessions of one user ordered by id, starting after `after`."""

    async def list_sessions_to_connect(self) -> list[SessionRecord]:
        """Every session whose owner wants it online (`connect_on_start`)."""

    async def update_session(self, session_id: str, changes: dict[str, Any], at: int, *,
                             events: EventsOf[SessionRecord] | None = None,
                             fence: Fence | None = None) -> SessionRecord | None:
        """Apply `changes` (keys from SESSION_MUTABLE_FIELDS); None if no such session (or the fence failed)."""

    async def delete_session(self, session_id: str) -> bool: ...


class MessageStore(Protocol):
    """The outbound message queue: messages, their status history, and idempotency keys."""

    async def create_messages(self, messages: list[MessageRecord],
                              idempotency: IdempotencyRecord | None = None) -> IdempotencyRecord | None:
        """Insert messages (status queued, with a history entry) in one transaction.

        With `idempotency`, the key is claimed in the same transaction. If the
        session already holds that key, nothing is inserted and the existing
        record is returned instead.
        """

    async def get_idempotency(self, session_id: str, key: str) -> IdempotencyRecord | None: ...

    async def purge_idempotency(self, older_than: int) -> int: ...

    async def get_message(self, message_id: str) -> MessageRecord | None: ...

    async def get_message_history(self, message_id: str) -> list[StatusEntry]: ...

    async def list_messages(self, session_id: str, *, before: str | None, limit: int,
                            status: MessageStatus | None = None, to_jid: str | None = None,
                            since: int | None = None, until: int | None = None) -> list[MessageRecord]:
        """A session's messages, newest (greatest id) first, starting before `before`.

        Optional filters: one status, one recipient JID, and `since <= created_at < until`. Status and
        recipient are served by indexes (session, status, id), (session, to_jid, id) and
        (session, to_jid, status, id); the time bounds filter the rows those indexes yield."""

    async def cancel_message(self, message_id: str, at: int, *, reason: str,
                             events: EventsOf[MessageRecord] | None = None) -> MessageRecord | None:
        """Move a `queued` message to `cancelled` in one conditional write (recording history); None if it
        was not queued. It races `claim_next_message` safely: exactly one of them moves the message."""

    async def cancel_queued_messages(self, session_id: str, at: int, *, reason: str,
                                     events: EventsOf[MessageRecord] | None = None) -> int:
        """Cancel every `queued` message of the session in one statement; returns how many."""

    async def reschedule_message(self, message_id: str, send_at: int, expires_at: int,
                                 at: int) -> MessageRecord | None:
        """Move a queued, scheduled message's `send_at` (and its expiry); None if it is not queued with a
        `send_at` any more (claimed, cancelled, or never scheduled)."""

    async def session_queue_depths(self, session_ids: list[str], now: int) -> dict[str, QueueDepth]:
        """Per session (every one asked for, zeros included), its queued and still-scheduled messages;
        one query for all of them."""

    async def find_message_by_wa_id(self, session_id: str, wa_id: str) -> MessageRecord | None: ...

    async def claim_next_message(self, session_id: str, now: int, *,
                                 fence: Fence | None = None) -> MessageRecord | None:
        """Take the session's oldest due queued message and mark it `sending` (attempts + 1).

        Two callers never get the same message (PostgreSQL: `FOR UPDATE SKIP LOCKED`)."""

    async def next_scheduled_at(self, session_id: str) -> int | None:
        """The earliest `send_at` of the session's queued messages that are not due yet."""

    async def sessions_with_due_messages(self, session_ids: list[str], now: int) -> list[str]:
        """Which of these sessions have a queued message due now (cluster mode's notification fallback)."""

    async def set_message_status(self, message_id: str, status: MessageStatus, at: int, *,
                                 reason: str | None = None, wa_id: str | None = None,
                                 only_from: frozenset[MessageStatus] | None = None,
                                 events: EventsOf[MessageRecord] | None = None,
                                 fence: Fence | None = None) -> MessageRecord | None:
        """Move a message to `status` (recording history); None if it was not in `only_from`
        (or the fence on its session failed)."""

    async def set_status_by_wa_id(self, session_id: str, wa_id: str, status: MessageStatus, at: int, *,
                                  only_from: frozenset[MessageStatus] | None = None,
                                  events: EventsOf[MessageRecord] | None = None,
                                  fence: Fence | None = None) -> MessageRecord | None:
        """`set_message_status` of the session's message that WhatsApp knows as `wa_id` (a receipt names
        it so), in one call; None when the session has none (or as `set_message_status`)."""

    async def requeue_interrupted(self, session_ids: list[str] | None, at: int, *,
                                  node_id: str | None = None) -> int:
        """Put `sending` messages back to `queued` (after a crash or restart); returns how many.

        With `node_id`, only messages of sessions whose live lease that node holds."""

    async def expire_messages(self, now: int, *,
                              events: EventsOf[MessageRecord] | None = None) -> list[MessageRecord]:
        """Fail queued messages past `expires_at`; returns them."""

    async def count_messages(self, session_id: str, status: MessageStatus) -> int: ...

    async def queue_depths(self) -> dict[str, int]:
        """Durable backlogs, store-wide: `messages_queued`, `messages_sending`, `webhooks_pending`."""


class ContactStore(Protocol):
    """A session's address book."""

    async def upsert_contact(self, contact: ContactRecord) -> ContactRecord:
        """Insert or update by (session, phone); keeps the original created_at; returns the stored row."""

    async def get_contact(self, session_id: str, phone_number: str) -> ContactRecord | None: ...

    async def list_contacts(self, session_id: str, *, after: str | None, limit: int) -> list[ContactRecord]:
        """Ordered by phone number, starting after `after`."""


class OutboxStore(Protocol):
    """The webhook outbox: deliveries and their attempts.

    Deliveries are also written by the other domains' writes (`events=`), in
    the same transaction as the change. `claim_due`, `record_attempt`,
    `next_due_at` and `expedite` are `gateway.webhooks.DeliveryStore`, the
    dispatcher's contract, documented there (it cannot be a base class here
    without an import cycle; mypy checks that `Store` satisfies it where the
    gateway hands the store to the dispatcher).
    """

    async def record_events(self, events: list[GatewayEvent], now_ms: int) -> list[Delivery]:
        """Write deliveries for events that change no other state (received messages, presence, QR);
        returns the deliveries written."""

    async def insert_deliveries(self, deliveries: list[Delivery]) -> None: ...

    async def claim_due(self, now_ms: int, *, limit: int, room: Mapping[str, int], default_room: int,
                        lease_until_ms: int) -> list[Delivery]: ...

    async def record_attempt(self, record: AttemptRecord) -> bool: ...

    async def next_due_at(self, *, room: Mapping[str, int], default_room: int) -> int | None: ...

    async def expedite(self, endpoint: str, now_ms: int) -> int: ...

    async def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    async def list_deliveries(self, session_id: str, *, status: DeliveryStatus | None, before: str | None,
                              limit: int) -> list[Delivery]:
        """A session's deliveries, newest (greatest id) first, starting before `before`; all, or one status."""

    async def list_attempts(self, delivery_id: str) -> list[AttemptRecord]:
        """A delivery's attempts, oldest first."""

    async def redeliver(self, delivery_id: str, now_ms: int) -> Delivery | None:
        """Make a delivered or dead delivery pending again, due now, with a fresh retry budget
        (a pending one is left as it is); None if there is no such delivery."""

    async def count_deliveries(self, status: DeliveryStatus) -> int: ...


class ClusterStore(Protocol):
    """Cluster mode: nodes and session leases. Lease times use the database's clock."""

    async def register_node(self, node_id: str, *, address: str, token: str, host: str, pid: int,
                            ttl: float) -> None:
        """Insert or refresh this node's row; it is alive for `ttl` seconds."""

    async def renew_node(self, node_id: str, ttl: float) -> Renewal:
        """The heartbeat, in one transaction: extend the node's row and every lease it still
        holds (not expired) by `ttl` seconds; count live nodes and wanted sessions.

        A lease that expired is never extended: it is lost, even if nobody took it yet."""

    async def acquire_leases(self, node_id: str, ttl: float, *, limit: int = 0,
                             session_ids: list[str] | None = None) -> dict[str, int]:
        """Take leases that are free (never held, or expired): up to `limit` sessions that want
        to be online, or exactly `session_ids` (wanted or not). Each taken lease's epoch is the
        previous one + 1. Returns session id → epoch for what was taken."""

    async def release_leases(self, node_id: str, session_ids: list[str] | None = None) -> int:
        """Expire this node's leases now (all, or the listed ones) so another node can take them."""

    async def leave_cluster(self, node_id: str) -> None:
        """Graceful exit: release every lease of the node and mark it dead."""

    async def lease_owner(self, session_id: str) -> LeaseOwner | None:
        """The live node holding the session's lease, or None."""

    async def list_nodes(self) -> list[NodeRecord]:
        """Every node row (live and recently dead), oldest first."""

    async def forget_nodes(self, dead_for: float) -> int:
        """Delete rows of nodes dead for more than `dead_for` seconds."""

    async def query_one(self, query: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement, in the driver's own SQL and placeholders; its first row (a tuple), or None.

        For the cluster's components that keep their own tables or use the
        server's own functions in this database (the shared rate limiter,
        `pg_notify`)."""


class PresenceStore(Protocol):
    """The contacts whose presence each session follows (re-subscribed after every reconnect)."""

    async def add_presence_subscription(self, session_id: str, jid: str, at: int) -> bool:
        """Remember that the session follows `jid`; False if it already did."""

    async def list_presence_subscriptions(self, session_id: str) -> list[str]:
        """The JIDs the session follows, in order."""

    # WhatsApp's LID ↔ phone mapping, as each session learned it.

    async def put_lids(self, session_id: str, pairs: list[tuple[str, str]], at: int) -> None:
        """Remember (lid, phone JID) pairs for the session; a LID seen again takes its newest phone."""

    async def phone_for_lid(self, session_id: str, lid: str) -> str | None: ...

    async def lid_for_phone(self, session_id: str, phone_jid: str) -> str | None:
        """The newest LID learned for the phone JID."""


class MediaRecordStore(Protocol):
    """What the gateway knows of each incoming media file (its bytes are in the `MediaStore`)."""

    async def add_media(self, record: MediaRecord) -> None: ...

    async def get_media(self, media_id: str) -> MediaRecord | None: ...

    async def delete_media(self, media_id: str) -> bool:
        """Forget one file's record; False if there was none."""

    async def delete_media_before(self, before: int, limit: int) -> list[MediaRecord]:
        """Forget up to `limit` records created before `before` (ms), oldest first; return them."""


class Store(StoreLifecycle, AccountStore, SessionStore, MessageStore, ContactStore, OutboxStore, ClusterStore,
            PresenceStore, MediaRecordStore, Protocol):
    """The whole store: the one type the rest of the gateway holds."""
