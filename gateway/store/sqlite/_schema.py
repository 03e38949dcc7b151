"""The SQLite schema: versioned migrations, and applying them.

`MIGRATIONS` is append only: never edit a released version. Versions and names
match `postgres._schema.MIGRATIONS` one for one (a test checks it).
"""

from __future__ import annotations

import sqlite3

from ..._clock import now_ms
from ._base import SqliteBase

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "users, tokens, sessions", """
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    phone_number TEXT,
    status TEXT NOT NULL,
    status_reason TEXT,
    connect_on_start INTEGER NOT NULL DEFAULT 0,
    webhook_url TEXT,
    webhook_events TEXT NOT NULL DEFAULT '[]',
    webhook_enabled INTEGER NOT NULL DEFAULT 1,
    webhook_secret TEXT NOT NULL DEFAULT '',
    key_id TEXT NOT NULL UNIQUE,
    key_hash BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id, id);
CREATE INDEX sessions_connect_on_start ON sessions(connect_on_start) WHERE connect_on_start = 1;
"""),
    (2, "messages, status history, idempotency keys", """
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    to_jid TEXT NOT NULL,
    type TEXT NOT NULL,
    modifiers TEXT NOT NULL DEFAULT '[]',
    payload BLOB NOT NULL,
    status TEXT NOT NULL,
    status_reason TEXT,
    wa_id TEXT,
    send_at INTEGER,
    expires_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX messages_queue ON messages(session_id, status, id);
CREATE INDEX messages_wa_id ON messages(session_id, wa_id) WHERE wa_id IS NOT NULL;
CREATE INDEX messages_expiry ON messages(status, expires_at);
CREATE TABLE message_status_history (
    message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    at INTEGER NOT NULL,
    reason TEXT
);
CREATE INDEX message_status_history_message ON message_status_history(message_id);
CREATE TABLE idempotency_keys (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    status_code INTEGER NOT NULL,
    response BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, key)
);
CREATE INDEX idempotency_age ON idempotency_keys(created_at);
ALTER TABLE sessions ADD COLUMN send_limit TEXT;
"""),
    (3, "contacts", """
CREATE TABLE contacts (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    phone_number TEXT NOT NULL,
    name TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, phone_number)
);
"""),
    (4, "webhook outbox", """
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    secret TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    claimed_until INTEGER NOT NULL DEFAULT 0,
    last_status INTEGER,
    last_error TEXT,
    finished_at INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_session ON webhook_deliveries(session_id, id);
CREATE TABLE webhook_attempts (
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    status_code INTEGER,
    error TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id);
"""),
    (5, "cluster: nodes, session leases, rate buckets", """
CREATE TABLE cluster_nodes (
    id TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    token TEXT NOT NULL,
    host TEXT NOT NULL DEFAULT '',
    pid INTEGER NOT NULL DEFAULT 0,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE session_leases (
    session_id TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
    node_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX session_leases_node ON session_leases(node_id);
CREATE TABLE rate_buckets (
    key TEXT PRIMARY KEY,
    tat INTEGER NOT NULL
);
"""),
    (6, "queue lanes: ready and scheduled messages", """
-- The sender's two questions, each one index lookup however long the queue is:
-- the oldest ready message, and the earliest scheduled one.
CREATE INDEX messages_ready ON messages(session_id, id) WHERE status = 'queued' AND send_at IS NULL;
CREATE INDEX messages_scheduled ON messages(session_id, send_at, id) WHERE status = 'queued' AND send_at IS NOT NULL;
"""),
    (7, "token expiry and last use", """
ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;
ALTER TABLE api_tokens ADD COLUMN last_used_at INTEGER;
"""),
    (8, "dashboard logins, password resets, messages by session", """
CREATE TABLE web_sessions (
    id_hash BLOB PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    user_agent TEXT NOT NULL DEFAULT '',
    ip TEXT NOT NULL DEFAULT ''
);
CREATE INDEX web_sessions_user ON web_sessions(user_id);
CREATE TABLE password_resets (
    token_hash BLOB PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX password_resets_user ON password_resets(user_id);
CREATE INDEX messages_by_session ON messages(session_id, id);
"""),
    (9, "messages by recipient, for searching the queue", """
-- GET /messages?to= and ?to=&status=, newest first: one index range each (status alone is messages_queue).
CREATE INDEX messages_by_recipient ON messages(session_id, to_jid, id);
CREATE INDEX messages_by_recipient_status ON messages(session_id, to_jid, status, id);
"""),
    (10, "presence subscriptions", """
-- The contacts whose presence a session follows: it subscribes to each again after every (re)connect.
CREATE TABLE presence_subscriptions (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    jid TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, jid)
);
"""),
    (11, "incoming media", """
-- Media files sessions downloaded (the bytes are in the media store, by id). No foreign key: a deleted
-- session's files are purged with their rows by the retention task, not by a cascade that would orphan them.
CREATE TABLE media (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    mimetype TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    filename TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX media_by_age ON media(created_at, id);
"""),
    (12, "lids and session proxies", """
-- WhatsApp's LID ↔ phone mapping, as a session learned it (from events, or asked of WhatsApp), so
-- that a contact addressed by LID is still the same contact. Kept per session: a session key reaches
-- only what its own session learned.
CREATE TABLE lids (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    lid TEXT NOT NULL,
    phone_jid TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, lid)
);
CREATE INDEX lids_by_phone ON lids (session_id, phone_jid);
-- An HTTP or SOCKS5 proxy the session connects to WhatsApp through (with its password: never echoed).
ALTER TABLE sessions ADD COLUMN proxy_url TEXT;
"""),
)


class SqliteSchema(SqliteBase):
    async def migrate(self) -> list[int]:
        def apply(conn: sqlite3.Connection) -> list[int]:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                         "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)")
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            applied = []
            for version, name, sql in MIGRATIONS:
                if version in done:
                    continue
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _split_sql(sql):
                        conn.execute(statement)
                    conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, now_ms()))
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                applied.append(version)
            return applied

        return await self._exclusive(apply)

    async def schema_version(self) -> int:
        def read(conn: sqlite3.Connection) -> int:
            try:
                row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
            except sqlite3.OperationalError:
                return 0
            return row[0] or 0

        return await self._run(read)


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
