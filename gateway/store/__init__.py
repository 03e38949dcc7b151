"""Storage: one narrow interface, one driver per database."""

from __future__ import annotations

from ._ports import Store, StoreConflict, StoreError
from ._records import (
    MESSAGE_STATUS_RANK, SESSION_MUTABLE_FIELDS, ApiToken, ContactRecord, Fence, HeldLease, IdempotencyRecord,
    LeaseOwner, MessageRecord, MessageStatus, NodeRecord, Renewal, SessionRecord, SessionState, StatusEntry, User,
    iso_ms,
)


async def open_store(url: str) -> Store:
    """Open the store a `GATEWAY_DATABASE_URL` names. The caller closes it."""
    if url.startswith("sqlite:///"):
        from .sqlite import SqliteStore

        return await SqliteStore.open(url)
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return await PostgresStore.open(url)
    raise StoreError(f"unsupported database URL {url!r}")


__all__ = [
    "ContactRecord", "Fence", "HeldLease", "LeaseOwner", "NodeRecord", "Renewal",
    "MESSAGE_STATUS_RANK", "IdempotencyRecord", "MessageRecord", "MessageStatus", "StatusEntry",
    "SESSION_MUTABLE_FIELDS", "ApiToken", "SessionRecord", "Store",
    "StoreConflict", "StoreError", "User", "iso_ms", "open_store",
]
