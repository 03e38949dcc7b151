"""The embedded SQLite store: `SqliteStore` is every domain of the store on one SQLite file.

The driver mirrors `postgres/`, one module per domain under the same name:
- `_base`: the connection, group commit (`_batch`) and the helpers
  (`_run`, `_write`, `_exclusive`, `_execute`, `_scalar`, `_one`, `_all`);
- `_schema`: migrations; `_accounts`: users and tokens; `_sessions`;
  `_messages`: the outbound queue and idempotency keys; `_contacts`;
  `_outbox`: webhook deliveries; `_cluster`: nodes, leases and fences.

Columns and row mappers come from `.._rows`, shared with PostgreSQL.

Adding a table: append a migration to `_schema.MIGRATIONS` (same version and
name as the PostgreSQL one), write its methods in the domain's module (a
`SqliteBase` subclass; a new domain gets a new module and a place in
`SqliteStore`'s bases), and declare them in `.._ports`.
"""

from __future__ import annotations

from ._accounts import SqliteAccounts
from ._cluster import SqliteCluster
from ._contacts import SqliteContacts
from ._messages import SqliteMessages
from ._outbox import SqliteOutbox
from ._media import SqliteMedia
from ._presence import SqlitePresence
from ._schema import SqliteSchema
from ._sessions import SqliteSessions


class SqliteStore(SqliteSchema, SqliteAccounts, SqliteSessions, SqliteMessages, SqliteContacts, SqliteOutbox,
                  SqliteCluster, SqlitePresence,
                  SqliteMedia):
    """The `Store` on SQLite. Open it with `SqliteStore.open(url)`; close it with `aclose()`."""
