"""The PostgreSQL store: the engine of cluster mode.

The driver is split by concern, each part a `PostgresBase` subclass:
- `_base`: the pool, the thread gate sized to it, and the helpers
  (`_run`, `_tx`, `_execute`, `_scalar`, `_one`, `_all`); its docstring says why
  it is built that way;
- `_messages`: the outbound message queue and idempotency keys;
- `_cluster`: cluster mode's node registry and session leases;
- this module: migrations, users, tokens and sessions, and `PostgresStore`,
  which mixes the parts together.

Adding a table: append a migration to `_schema.MIGRATIONS` (same
version and name as the SQLite one), write its methods in a new
`_<domain>.py` subclass of `PostgresBase`, and add that class to
`PostgresStore`'s bases.
"""

from __future__ import annotations

from typing import Any, Final

from psycopg import sql
from psycopg.types.json import Jsonb

from actors import SessionState

from .._ports import EventsOf
from ._base import DEFAULT_MAX_SIZE, DEFAULT_MIN_SIZE, DEFAULT_OPEN_TIMEOUT, Conn, PoolStatistics
from ._cluster import PostgresCluster, fence_clause
from ._contacts import PostgresContacts
from ._messages import PostgresMessages
from ._outbox import PostgresOutbox, write_events
from ._schema import MIGRATIONS
from .._records import SESSION_MUTABLE_FIELDS, ApiToken, Fence, SessionRecord, User
from ..._clock import now_ms

__all__ = ["DEFAULT_MAX_SIZE", "DEFAULT_MIN_SIZE", "DEFAULT_OPEN_TIMEOUT", "PoolStatistics", "PostgresStore"]

_SESSION_COLUMNS: Final = (
    "id, user_id, name, phone_number, status, status_reason, connect_on_start, webhook_url, "
    "webhook_events, webhook_enabled, webhook_secret, key_id, key_hash, created_at, updated_at, send_limit"
)
_USER_COLUMNS: Final = "id, email, password_hash, created_at"
_TOKEN_COLUMNS: Final = "id, user_id, name, secret_hash, created_at, revoked_at"

# Several processes may run `migrate()` at once (every node of a cluster at
# start-up, or a release step racing a node). A transaction-scoped advisory lock
# serialises them, and is released by COMMIT or ROLLBACK even if the process
# dies. It is keyed by schema so that deployments sharing one database in
# different schemas (and parallel test schemas) do not wait on each other.
_LOCK_MIGRATIONS: Final = (
    "SELECT pg_advisory_xact_lock(hashtextextended("
    "'trio-whatsapp-gateway.migrate:' || coalesce(current_schema(), ''), 0))"
)
_CREATE_VERSION_TABLE: Final = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
)


class PostgresStore(PostgresMessages, PostgresContacts, PostgresOutbox, PostgresCluster):
    # -- migrations ---------------------------------------------------------

    async def migrate(self) -> list[int]:
        def apply(conn: Conn) -> list[int]:
            applied = []
            for version, name, script in MIGRATIONS:
                # One transaction per version, each under the lock: a process
                # that waited re-reads the table and finds the version done.
                with conn.transaction():
                    conn.execute(_LOCK_MIGRATIONS)
                    conn.execute(_CREATE_VERSION_TABLE)
                    if conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (version,)).fetchone():
                        continue
                    # No parameters, so psycopg sends the whole script at once.
                    conn.execute(script, prepare=False)
                    conn.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                                 (version, name, now_ms()))
                applied.append(version)
            return applied

        return await self._run(apply)

    async def schema_version(self) -> int:
        def read(conn: Conn) -> int:
            # A table that does not exist is a parse error even in a dead branch, so ask first.
            if conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None:
                return 0
            return conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] or 0

        return await self._run(read)

    # -- users --------------------------------------------------------------

    async def create_user(self, user: User) -> None:
        await self._execute(f"INSERT INTO users ({_USER_COLUMNS}) VALUES (%s, %s, %s, %s)",
                            (user.id, user.email, user.password_hash, user.created_at))

    async def get_user(self, user_id: str) -> User | None:
        return await self._one(f"SELECT {_USER_COLUMNS} FROM users WHERE id = %s", (user_id,), _user)

    async def get_user_by_email(self, email: str) -> User | None:
        # The same expression as the unique index `users_email_lower`, so the lookup uses it.
        return await self._one(f"SELECT {_USER_COLUMNS} FROM users WHERE lower(email) = lower(%s)",
                               (email,), _user)

    async def count_users(self) -> int:
        return await self._scalar("SELECT COUNT(*) FROM users")

    # -- tokens -------------------------------------------------------------

    async def create_token(self, token: ApiToken) -> None:
        await self._execute(
            f"INSERT INTO api_tokens ({_TOKEN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)",
            (token.id, token.user_id, token.name, token.secret_hash, token.created_at, token.revoked_at))

    async def get_token(self, token_id: str) -> ApiToken | None:
        return await self._one(f"SELECT {_TOKEN_COLUMNS} FROM api_tokens WHERE id = %s", (token_id,), _token)

    async def list_tokens(self, user_id: str) -> list[ApiToken]:
        return await self._all(f"SELECT {_TOKEN_COLUMNS} FROM api_tokens WHERE user_id = %s ORDER BY id",
                               (user_id,), _token)

    async def revoke_token(self, token_id: str, at: int) -> bool:
        return await self._execute(
            "UPDATE api_tokens SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL", (at, token_id)) > 0

    # -- sessions -----------------------------------------------------------

    async def create_session(self, session: SessionRecord) -> None:
        row = _session_row(session)
        await self._execute(
            f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES ({', '.join(['%s'] * len(row))})", row)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        return await self._one(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = %s",
                               (session_id,), _session)

    async def get_session_by_key_id(self, key_id: str) -> SessionRecord | None:
        return await self._one(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE key_id = %s",
                               (key_id,), _session)

    async def list_sessions(self, user_id: str, *, after: str | None, limit: int) -> list[SessionRecord]:
        return await self._all(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE user_id = %s AND id > %s ORDER BY id LIMIT %s",
            (user_id, after or "", limit), _session)

    async def list_sessions_to_connect(self) -> list[SessionRecord]:
        return await self._all(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE connect_on_start ORDER BY id", (), _session)

    async def update_session(self, session_id: str, changes: dict[str, Any], at: int, *,
                             events: EventsOf[SessionRecord] | None = None,
                             fence: Fence | None = None) -> SessionRecord | None:
        unknown = set(changes) - SESSION_MUTABLE_FIELDS
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        values = {k: _to_sql(k, v) for k, v in changes.items()}
        values["updated_at"] = at
        fenced, fence_params = fence_clause("sessions.id", fence)
        # One statement: the change and the record it produced are read atomically.
        query = sql.SQL("UPDATE sessions SET {} WHERE id = %s{} RETURNING {}").format(
            sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in values),
            sql.SQL(fenced), sql.SQL(_SESSION_COLUMNS))

        def tx(conn: Conn) -> SessionRecord | None:
            row = conn.execute(query, (*values.values(), session_id, *fence_params)).fetchone()
            record = _session(row) if row else None
            if record is not None and events is not None:
                write_events(conn, events(record), at)
            return record

        return await self._tx(tx)

    async def delete_session(self, session_id: str) -> bool:
        return await self._execute("DELETE FROM sessions WHERE id = %s", (session_id,)) > 0


def _user(row: Any) -> User:
    return User(id=row[0], email=row[1], password_hash=row[2], created_at=row[3])


def _token(row: Any) -> ApiToken:
    return ApiToken(id=row[0], user_id=row[1], name=row[2], secret_hash=bytes(row[3]),
                    created_at=row[4], revoked_at=row[5])


def _to_sql(key: str, value: Any) -> Any:
    if key == "webhook_events":
        return Jsonb(list(value))
    if isinstance(value, SessionState):
        # Explicit: psycopg would dump an Enum by its name, not its value.
        return value.value
    return value


def _session_row(s: SessionRecord) -> tuple[Any, ...]:
    return (s.id, s.user_id, s.name, s.phone_number, s.status.value, s.status_reason,
            s.connect_on_start, s.webhook_url, _to_sql("webhook_events", s.webhook_events),
            s.webhook_enabled, s.webhook_secret, s.key_id, s.key_hash, s.created_at, s.updated_at,
            s.send_limit)


def _session(row: Any) -> SessionRecord:
    return SessionRecord(
        id=row[0], user_id=row[1], name=row[2], phone_number=row[3], status=SessionState(row[4]),
        status_reason=row[5], connect_on_start=row[6], webhook_url=row[7],
        webhook_events=list(row[8]), webhook_enabled=row[9], webhook_secret=row[10],
        key_id=row[11], key_hash=bytes(row[12]), created_at=row[13], updated_at=row[14], send_limit=row[15])
