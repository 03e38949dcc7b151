"""Storage: one Protocol per domain, `Store` for all of them, one driver per database.

The domains (`_ports`): accounts (users, tokens, dashboard logins, password
resets), sessions, the message queue, contacts, the webhook outbox, cluster
nodes and leases, and the schema's lifecycle. The drivers, `sqlite/` and
`postgres/`, implement each domain in a module of the same name; `_rows` holds
the columns and row mappers they share.
"""

from __future__ import annotations

from ._ports import (
    AccountStore, ClusterStore, ContactStore, MediaRecordStore, MessageStore, OutboxStore, SessionStore, Store,
    StoreConflict, StoreError, StoreLifecycle,
)
from ._records import (
    MESSAGE_STATUS_RANK, SESSION_MUTABLE_FIELDS, ApiToken, ContactRecord, Fence, HeldLease, IdempotencyRecord,
    LeaseOwner, MediaRecord, MessageRecord, MessageStatus, NodeRecord, PasswordReset, QueueDepth, Renewal,
    SessionRecord, StatusEntry, User, WebSession, iso_ms,
)


async def open_store(url: str, *, sqlite_synchronous: str = "normal") -> Store:
    """Open the store a `GATEWAY_DATABASE_URL` names. The caller closes it.

    `sqlite_synchronous` (`GATEWAY_SQLITE_SYNCHRONOUS`: `normal` or `full`) is the
    SQLite store's `PRAGMA synchronous`; PostgreSQL's durability is the server's
    own (`synchronous_commit`, `fsync`).
    """
    if url.startswith("sqlite:///"):
        from .sqlite import SqliteStore

        return await SqliteStore.open(url, synchronous=sqlite_synchronous)
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return await PostgresStore.open(url)
    raise StoreError(f"unsupported database URL {url!r}")


__all__ = [
    "AccountStore", "ClusterStore", "ContactStore", "MediaRecord", "MediaRecordStore", "MessageStore", "OutboxStore",
    "SessionStore", "StoreLifecycle",
    "ContactRecord", "Fence", "HeldLease", "LeaseOwner", "NodeRecord", "Renewal",
    "MESSAGE_STATUS_RANK", "IdempotencyRecord", "MessageRecord", "MessageStatus", "QueueDepth", "StatusEntry",
    "SESSION_MUTABLE_FIELDS", "ApiToken", "PasswordReset", "SessionRecord", "Store",
    "StoreConflict", "StoreError", "User", "WebSession", "iso_ms", "open_store",
]
