"""The PostgreSQL store: `PostgresStore` is every domain of the store on one database, the engine of cluster mode.

The driver mirrors `sqlite/`, one module per domain under the same name, each
a `PostgresBase` subclass:
- `_base`: the pool, the thread gate sized to it, and the helpers
  (`_write`, `_execute`, `_write_one` and `_scalar`, `_one`, `_all`, batched;
  `_run`, `_tx`, `_execute_alone`, alone); its docstring says which calls run
  alone and why;
- `_batch`: group commit, which batches concurrent writes into one
  transaction (and reads into one round trip) on one connection;
- `_schema`: migrations, safe to run from several nodes at once;
- `_accounts`: users and tokens; `_sessions`; `_messages`: the outbound queue
  and idempotency keys; `_contacts`; `_outbox`: webhook deliveries;
  `_cluster`: the node registry, session leases and fences.

Columns and row mappers come from `.._rows`, shared with SQLite.

Adding a table: append a migration to `_schema.MIGRATIONS` (same version and
name as the SQLite one), write its methods in the domain's module (a new
domain gets a new module and a place in `PostgresStore`'s bases), and declare
them in `.._ports`.
"""

from __future__ import annotations

from ._accounts import PostgresAccounts
from ._cluster import PostgresCluster
from ._contacts import PostgresContacts
from ._media import PostgresMedia
from ._messages import PostgresMessages
from ._outbox import PostgresOutbox
from ._presence import PostgresPresence
from ._schema import PostgresSchema
from ._sessions import PostgresSessions


class PostgresStore(PostgresSchema, PostgresAccounts, PostgresSessions, PostgresMessages, PostgresContacts,
                    PostgresOutbox, PostgresCluster, PostgresPresence,
                    PostgresMedia):
    """The `Store` on PostgreSQL. Open it with `PostgresStore.open(url)`; close it with `aclose()`."""
