"""The PostgreSQL schema: versioned migrations, and applying them safely from several processes.

`MIGRATIONS` is append only: never edit a released version. Versions and
names match `sqlite._schema.MIGRATIONS` one for one (a test checks it), so
"schema version N" means the same tables on either database.

Each script runs whole in one transaction (PostgreSQL DDL is transactional), so
it may hold several statements, including `$$`-quoted function bodies.

Types differ from SQLite on purpose:
- identifiers are `COLLATE "C"`: ids are compared and ordered byte by byte, as
  SQLite and Python do, whatever the database's default collation is, so
  cursor pagination (`id > $after ORDER BY id`) means the same on both stores;
- emails are unique case-insensitively through a unique index on `lower(email)`
  (lookups use the same expression, so they hit that index);
- timestamps are BIGINT milliseconds, hashes BYTEA, flags BOOLEAN, and the
  webhook event filter and message modifiers JSONB.
"""

from __future__ import annotations

from typing import Any, Final

from ..._clock import now_ms
from ._base import Conn, PostgresBase

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

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "users, tokens, sessions", """
CREATE TABLE users (
    id TEXT COLLATE "C" PRIMARY KEY,
    email TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_email_lower ON users (lower(email));
CREATE TABLE api_tokens (
    id TEXT COLLATE "C" PRIMARY KEY,
    user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    secret_hash BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);
CREATE TABLE sessions (
    id TEXT COLLATE "C" PRIMARY KEY,
    user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    phone_number TEXT,
    status TEXT NOT NULL,
    status_reason TEXT,
    connect_on_start BOOLEAN NOT NULL DEFAULT FALSE,
    webhook_url TEXT,
    webhook_events JSONB NOT NULL DEFAULT '[]',
    webhook_enabled BOOLEAN NOT NULL DEFAULT TRUE,
    webhook_secret TEXT NOT NULL DEFAULT '',
    key_id TEXT COLLATE "C" NOT NULL UNIQUE,
    key_hash BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id, id);
CREATE INDEX sessions_connect_on_start ON sessions (id) WHERE connect_on_start;
"""),
    (2, "messages, status history, idempotency keys", """
CREATE TABLE messages (
    id TEXT COLLATE "C" PRIMARY KEY,
    session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    user_id TEXT COLLATE "C" NOT NULL,
    to_jid TEXT NOT NULL,
    type TEXT NOT NULL,
    modifiers JSONB NOT NULL DEFAULT '[]',
    payload BYTEA NOT NULL,
    status TEXT NOT NULL,
    status_reason TEXT,
    wa_id TEXT,
    send_at BIGINT,
    expires_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX messages_queue ON messages (session_id, status, id);
CREATE INDEX messages_wa_id ON messages (session_id, wa_id) WHERE wa_id IS NOT NULL;
CREATE INDEX messages_expiry ON messages (status, expires_at);
-- `seq` keeps the order entries were written in (SQLite uses its rowid).
CREATE TABLE message_status_history (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id TEXT COLLATE "C" NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    at BIGINT NOT NULL,
    reason TEXT
);
CREATE INDEX message_status_history_message ON message_status_history (message_id, seq);
CREATE TABLE idempotency_keys (
    session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    key TEXT COLLATE "C" NOT NULL,
    request_hash BYTEA NOT NULL,
    status_code INTEGER NOT NULL,
    response BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (session_id, key)
);
CREATE INDEX idempotency_age ON idempotency_keys (created_at);
ALTER TABLE sessions ADD COLUMN send_limit TEXT;
"""),
    (3, "contacts", """
CREATE TABLE contacts (
    session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    phone_number TEXT COLLATE "C" NOT NULL,
    name TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (session_id, phone_number)
);
"""),
    (4, "webhook outbox", """
CREATE TABLE webhook_deliveries (
    id TEXT COLLATE "C" PRIMARY KEY,
    session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    secret TEXT NOT NULL,
    payload BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    claimed_until BIGINT NOT NULL DEFAULT 0,
    last_status BIGINT,
    last_error TEXT,
    finished_at BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_session ON webhook_deliveries(session_id, id);
CREATE TABLE webhook_attempts (
    seq BIGSERIAL PRIMARY KEY,
    delivery_id TEXT COLLATE "C" NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempt BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    status_code BIGINT,
    error TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id);
"""),
    (5, "cluster: nodes, session leases, rate buckets", """
-- Times here are the database server's clock (now()), so nodes need no synced clocks.
CREATE TABLE cluster_nodes (
    id TEXT COLLATE "C" PRIMARY KEY,
    address TEXT NOT NULL,
    token TEXT NOT NULL,
    host TEXT NOT NULL DEFAULT '',
    pid INTEGER NOT NULL DEFAULT 0,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL
);
-- One row per session ever owned; `epoch` only grows (a row is never deleted while
-- its session exists), so a fence taken under an old epoch can never match again.
CREATE TABLE session_leases (
    session_id TEXT COLLATE "C" PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
    node_id TEXT COLLATE "C" NOT NULL,
    epoch BIGINT NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX session_leases_node ON session_leases (node_id);
-- GCRA buckets shared by every node: the TAT in integer nanoseconds of the server's clock.
CREATE TABLE rate_buckets (
    key TEXT COLLATE "C" PRIMARY KEY,
    tat BIGINT NOT NULL
);
CREATE INDEX rate_buckets_tat ON rate_buckets (tat);
-- One hit, atomically (see ratelimit/_postgres.py). The upsert takes the row lock and
-- re-checks its WHERE against the newest version, so two nodes can never both take a
-- key's last token. A refused hit changes nothing and reads the TAT that refused it.
CREATE FUNCTION gateway_rate_hit(p_key TEXT, p_inc BIGINT, p_limit BIGINT,
                                 OUT now_ns BIGINT, OUT tat BIGINT, OUT allowed BOOLEAN)
LANGUAGE plpgsql AS $$
BEGIN
    now_ns := (extract(epoch FROM clock_timestamp()) * 1000000000)::BIGINT;
    INSERT INTO rate_buckets AS b (key, tat) VALUES (p_key, now_ns + p_inc)
    ON CONFLICT (key) DO UPDATE SET tat = greatest(b.tat, now_ns) + p_inc
        WHERE greatest(b.tat, now_ns) + p_inc - now_ns <= p_limit
    RETURNING b.tat INTO tat;
    IF FOUND THEN
        allowed := TRUE;
        RETURN;
    END IF;
    allowed := FALSE;
    SELECT b.tat INTO tat FROM rate_buckets b WHERE b.key = p_key;
END
$$;
"""),
    (6, "queue lanes: ready and scheduled messages", """
-- The sender's two questions, each one index lookup however long the queue is:
-- the oldest ready message, and the earliest scheduled one.
CREATE INDEX messages_ready ON messages (session_id, id) WHERE status = 'queued' AND send_at IS NULL;
CREATE INDEX messages_scheduled ON messages (session_id, send_at, id) WHERE status = 'queued' AND send_at IS NOT NULL;
"""),
    (7, "token expiry and last use", """
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN last_used_at BIGINT;
"""),
    (8, "dashboard logins, password resets, messages by session", """
CREATE TABLE web_sessions (
    id_hash BYTEA PRIMARY KEY,
    user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    user_agent TEXT NOT NULL DEFAULT '',
    ip TEXT NOT NULL DEFAULT ''
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);
CREATE TABLE password_resets (
    token_hash BYTEA PRIMARY KEY,
    user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX password_resets_user ON password_resets (user_id);
CREATE INDEX messages_by_session ON messages (session_id, id);
"""),
    (9, "messages by recipient, for searching the queue", """
-- GET /messages?to= and ?to=&status=, newest first: one index range each (status alone is messages_queue).
CREATE INDEX messages_by_recipient ON messages (session_id, to_jid, id);
CREATE INDEX messages_by_recipient_status ON messages (session_id, to_jid, status, id);
"""),
    (10, "presence subscriptions", """
-- The contacts whose presence a session follows; it subscribes to each again after every (re)connect.
CREATE TABLE presence_subscriptions (
    session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    jid TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (session_id, jid)
);
"""),
    (11, "incoming media", """
-- Media files sessions downloaded (the bytes are in the media store, by id). No foreign key: a deleted
-- session's files are purged with their rows by the retention task, not by a cascade that would orphan them.
CREATE TABLE media (
    id TEXT COLLATE "C" PRIMARY KEY,
    session_id TEXT COLLATE "C" NOT NULL,
    mimetype TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    filename TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX media_by_age ON media (created_at, id);
"""),
    (12, "lids and session proxies", """
-- WhatsApp's LID ↔ phone mapping, as a session learned it (from events, or asked of WhatsApp), so
-- that a contact addressed by LID is still the same contact. Kept per session: a session key reaches
-- only what its own session learned.
CREATE TABLE lids (
    session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    lid TEXT COLLATE "C" NOT NULL,
    phone_jid TEXT COLLATE "C" NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (session_id, lid)
);
CREATE INDEX lids_by_phone ON lids (session_id, phone_jid);
-- An HTTP or SOCKS5 proxy the session connects to WhatsApp through (with its password: never echoed).
ALTER TABLE sessions ADD COLUMN proxy_url TEXT;
"""),
)


class PostgresSchema(PostgresBase):
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
            if _first(conn, "SELECT to_regclass('schema_migrations')") is None:
                return 0
            return _first(conn, "SELECT MAX(version) FROM schema_migrations") or 0

        return await self._run(read)


def _first(conn: Conn, query: str) -> Any:
    """The first column of a one-row answer."""
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]
