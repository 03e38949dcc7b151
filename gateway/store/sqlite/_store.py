"""The embedded SQLite store.

One connection in WAL mode, used from worker threads one batch of calls at a
time (group commit, `_batch`), so the trio loop never blocks on disk and
SQLite never sees two writers. Calls are not cancellable once started: a write
either happens whole or not at all.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec
import trio

from actors import SessionState

from .._records import (
    SESSION_MUTABLE_FIELDS, ApiToken, ContactRecord, Fence, IdempotencyRecord, MessageRecord, MessageStatus,
    SessionRecord, SessionState, StatusEntry, User,
)
from ..._clock import now_ms
from .._ports import EventsOf, StoreConflict
from ._batch import GroupCommit
from ._cluster import SqliteCluster, fence_holds
from ._outbox import SqliteOutbox, write_events
from ._schema import MIGRATIONS

T = TypeVar("T")

_SESSION_COLUMNS = (
    "id, user_id, name, phone_number, status, status_reason, connect_on_start, webhook_url, "
    "webhook_events, webhook_enabled, webhook_secret, key_id, key_hash, created_at, updated_at, send_limit"
)


def path_from_url(url: str) -> str:
    """`sqlite:///./data/x.db` → `./data/x.db`; `sqlite:////abs/x.db` → `/abs/x.db`."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite URL: {url!r}")
    return url[len("sqlite:///"):] or ":memory:"


class SqliteStore(SqliteOutbox, SqliteCluster):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._calls = GroupCommit(conn)
        self._closed = False

    @classmethod
    async def open(cls, url: str) -> SqliteStore:
        path = path_from_url(url)

        def connect() -> sqlite3.Connection:
            if path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            return conn

        return cls(await trio.to_thread.run_sync(connect))

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("store is closed")

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A read (or anything that needs no transaction of its own), batched with other calls."""
        self._check_open()
        return await self._calls.read(fn)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A write: atomic on its own, durable when this returns (group commit, see `_batch`)."""
        self._check_open()
        try:
            return await self._calls.write(fn)
        except sqlite3.IntegrityError as exc:
            raise StoreConflict(str(exc)) from None

    async def _exclusive(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self._check_open()
        return await self._calls.exclusive(fn)

    async def aclose(self) -> None:
        if not self._closed:
            await self._exclusive(lambda c: c.close())
            self._closed = True

    # -- migrations ---------------------------------------------------------

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

    # -- users --------------------------------------------------------------

    async def create_user(self, user: User) -> None:
        await self._write(lambda c: c.execute(
            "INSERT INTO users (id, email, password_hash, created_at) VALUES (?, ?, ?, ?)",
            (user.id, user.email, user.password_hash, user.created_at)))

    async def get_user(self, user_id: str) -> User | None:
        return await self._one("SELECT id, email, password_hash, created_at FROM users WHERE id = ?",
                               (user_id,), _user)

    async def get_user_by_email(self, email: str) -> User | None:
        return await self._one("SELECT id, email, password_hash, created_at FROM users WHERE email = ?",
                               (email,), _user)

    async def count_users(self) -> int:
        return await self._run(lambda c: c.execute("SELECT COUNT(*) FROM users").fetchone()[0])

    # -- tokens -------------------------------------------------------------

    async def create_token(self, token: ApiToken) -> None:
        await self._write(lambda c: c.execute(
            "INSERT INTO api_tokens (id, user_id, name, secret_hash, created_at, revoked_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (token.id, token.user_id, token.name, token.secret_hash, token.created_at, token.revoked_at)))

    async def get_token(self, token_id: str) -> ApiToken | None:
        return await self._one(
            "SELECT id, user_id, name, secret_hash, created_at, revoked_at FROM api_tokens WHERE id = ?",
            (token_id,), _token)

    async def list_tokens(self, user_id: str) -> list[ApiToken]:
        return await self._all(
            "SELECT id, user_id, name, secret_hash, created_at, revoked_at FROM api_tokens "
            "WHERE user_id = ? ORDER BY id", (user_id,), _token)

    async def revoke_token(self, token_id: str, at: int) -> bool:
        cur = await self._write(lambda c: c.execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (at, token_id)))
        return cur.rowcount > 0

    # -- sessions -----------------------------------------------------------

    async def create_session(self, session: SessionRecord) -> None:
        row = _session_row(session)
        await self._write(lambda c: c.execute(
            f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES ({', '.join('?' * len(row))})", row))

    async def get_session(self, session_id: str) -> SessionRecord | None:
        return await self._one(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?",
                               (session_id,), _session)

    async def get_session_by_key_id(self, key_id: str) -> SessionRecord | None:
        return await self._one(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE key_id = ?",
                               (key_id,), _session)

    async def list_sessions(self, user_id: str, *, after: str | None, limit: int) -> list[SessionRecord]:
        return await self._all(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE user_id = ? AND id > ? ORDER BY id LIMIT ?",
            (user_id, after or "", limit), _session)

    async def list_sessions_to_connect(self) -> list[SessionRecord]:
        return await self._all(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE connect_on_start = 1 ORDER BY id", (), _session)

    async def update_session(self, session_id: str, changes: dict[str, Any], at: int, *,
                             events: EventsOf[SessionRecord] | None = None,
                             fence: Fence | None = None) -> SessionRecord | None:
        unknown = set(changes) - SESSION_MUTABLE_FIELDS
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        values = {k: _to_sql(k, v) for k, v in changes.items()}
        values["updated_at"] = at
        assignments = ", ".join(f"{k} = ?" for k in values)

        def tx(conn: sqlite3.Connection) -> SessionRecord | None:
            if not fence_holds(conn, session_id, fence):
                return None
            conn.execute(f"UPDATE sessions SET {assignments} WHERE id = ?", (*values.values(), session_id))
            row = conn.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)).fetchone()
            record = _session(row) if row else None
            if record is not None and events is not None:
                write_events(conn, events(record), at)
            return record

        return await self._write(tx)

    async def delete_session(self, session_id: str) -> bool:
        cur = await self._write(lambda c: c.execute("DELETE FROM sessions WHERE id = ?", (session_id,)))
        return cur.rowcount > 0

    # -- messages -----------------------------------------------------------

    async def create_messages(self, messages: list[MessageRecord],
                              idempotency: IdempotencyRecord | None = None) -> IdempotencyRecord | None:
        def tx(conn: sqlite3.Connection) -> IdempotencyRecord | None:
            if idempotency is not None:
                row = conn.execute(f"SELECT {_IDEM_COLUMNS} FROM idempotency_keys WHERE session_id = ? AND key = ?",
                                   (idempotency.session_id, idempotency.key)).fetchone()
                if row is not None:
                    return _idem(row)
                conn.execute(f"INSERT INTO idempotency_keys ({_IDEM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                             (idempotency.session_id, idempotency.key, idempotency.request_hash,
                              idempotency.status_code, idempotency.response, idempotency.created_at))
            conn.executemany(
                f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES ({', '.join('?' * 15)})",
                [_message_row(m) for m in messages])
            conn.executemany(
                "INSERT INTO message_status_history (message_id, status, at, reason) VALUES (?, ?, ?, ?)",
                [(m.id, m.status.value, m.created_at, m.status_reason) for m in messages])
            return None

        return await self._write(tx)

    async def get_idempotency(self, session_id: str, key: str) -> IdempotencyRecord | None:
        return await self._one(f"SELECT {_IDEM_COLUMNS} FROM idempotency_keys WHERE session_id = ? AND key = ?",
                               (session_id, key), _idem)

    async def purge_idempotency(self, older_than: int) -> int:
        cur = await self._write(lambda c: c.execute("DELETE FROM idempotency_keys WHERE created_at < ?",
                                                    (older_than,)))
        return cur.rowcount

    async def get_message(self, message_id: str) -> MessageRecord | None:
        return await self._one(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,), _message)

    async def get_message_history(self, message_id: str) -> list[StatusEntry]:
        return await self._all("SELECT status, at, reason FROM message_status_history WHERE message_id = ? "
                               "ORDER BY rowid", (message_id,),
                               lambda r: StatusEntry(MessageStatus(r[0]), r[1], r[2]))

    async def find_message_by_wa_id(self, session_id: str, wa_id: str) -> MessageRecord | None:
        return await self._one(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE session_id = ? AND wa_id = ?",
                               (session_id, wa_id), _message)

    async def claim_next_message(self, session_id: str, now: int, *,
                                 fence: Fence | None = None) -> MessageRecord | None:
        def tx(conn: sqlite3.Connection) -> MessageRecord | None:
            if not fence_holds(conn, session_id, fence):
                return None
            # Two lanes, one index lookup each: the oldest ready message, the earliest due scheduled one.
            ready = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages INDEXED BY messages_ready WHERE session_id = ? "
                "AND status = 'queued' AND send_at IS NULL AND expires_at > ? ORDER BY id LIMIT 1",
                (session_id, now)).fetchone()
            due = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages INDEXED BY messages_scheduled WHERE session_id = ? "
                "AND status = 'queued' AND send_at IS NOT NULL AND send_at <= ? AND expires_at > ? "
                "ORDER BY send_at, id LIMIT 1", (session_id, now, now)).fetchone()
            row = min((r for r in (ready, due) if r is not None), key=lambda r: r[0], default=None)
            if row is None:
                return None
            message = _message(row)
            _move(conn, message.id, MessageStatus.SENDING, now, None, None, attempts=True)
            return msgspec.structs.replace(message, status=MessageStatus.SENDING, attempts=message.attempts + 1,
                                           updated_at=now)

        return await self._write(tx)

    async def next_scheduled_at(self, session_id: str) -> int | None:
        return await self._run(lambda c: c.execute(
            "SELECT MIN(send_at) FROM messages INDEXED BY messages_scheduled WHERE session_id = ? "
            "AND status = 'queued' AND send_at IS NOT NULL", (session_id,)).fetchone()[0])

    async def set_message_status(self, message_id: str, status: MessageStatus, at: int, *,
                                 reason: str | None = None, wa_id: str | None = None,
                                 only_from: frozenset[MessageStatus] | None = None,
                                 events: EventsOf[MessageRecord] | None = None,
                                 fence: Fence | None = None) -> MessageRecord | None:
        def tx(conn: sqlite3.Connection) -> MessageRecord | None:
            row = conn.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                return None
            message = _message(row)
            if only_from is not None and message.status not in only_from:
                return None
            if not fence_holds(conn, message.session_id, fence):
                return None
            _move(conn, message_id, status, at, reason, wa_id)
            moved = msgspec.structs.replace(message, status=status, status_reason=reason,
                                            wa_id=wa_id or message.wa_id, updated_at=at)
            if events is not None:
                write_events(conn, events(moved), at)
            return moved

        return await self._write(tx)

    async def requeue_interrupted(self, session_ids: list[str] | None, at: int, *,
                                  node_id: str | None = None) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            owned = ""
            params: tuple[Any, ...] = ()
            if node_id is not None:
                owned = (" AND EXISTS (SELECT 1 FROM session_leases f WHERE f.session_id = messages.session_id "
                         "AND f.node_id = ? AND f.expires_at > ?)")
                params = (node_id, now_ms())
            if session_ids is None:
                ids = [r[0] for r in conn.execute("SELECT id FROM messages WHERE status = 'sending'" + owned, params)]
            else:
                ids = []
                for sid in session_ids:
                    ids += [r[0] for r in conn.execute(
                        "SELECT id FROM messages WHERE session_id = ? AND status = 'sending'" + owned, (sid, *params))]
            for mid in ids:
                _move(conn, mid, MessageStatus.QUEUED, at, "interrupted before the send was confirmed", None)
            return len(ids)

        return await self._write(tx)

    async def expire_messages(self, now: int, *,
                              events: EventsOf[MessageRecord] | None = None) -> list[MessageRecord]:
        def tx(conn: sqlite3.Connection) -> list[MessageRecord]:
            rows = conn.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE status = 'queued' "
                                "AND expires_at <= ?", (now,)).fetchall()
            expired = [_message(r) for r in rows]
            for m in expired:
                _move(conn, m.id, MessageStatus.FAILED, now, "expired in the queue", None)
            failed = [msgspec.structs.replace(m, status=MessageStatus.FAILED, status_reason="expired in the queue",
                                              updated_at=now) for m in expired]
            if events is not None:
                write_events(conn, [e for m in failed for e in events(m)], now)
            return failed

        return await self._write(tx)

    async def count_messages(self, session_id: str, status: MessageStatus) -> int:
        return await self._run(lambda c: c.execute(
            "SELECT COUNT(*) FROM messages WHERE session_id = ? AND status = ?",
            (session_id, status.value)).fetchone()[0])

    async def queue_depths(self) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            rows = dict(conn.execute("SELECT status, COUNT(*) FROM messages INDEXED BY messages_expiry "
                                     "WHERE status IN ('queued', 'sending') GROUP BY status").fetchall())
            pending = conn.execute("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'").fetchone()[0]
            return {"messages_queued": rows.get("queued", 0), "messages_sending": rows.get("sending", 0),
                    "webhooks_pending": pending}

        return await self._run(read)

    # -- contacts -----------------------------------------------------------

    async def upsert_contact(self, contact: ContactRecord) -> ContactRecord:
        def tx(conn: sqlite3.Connection) -> ContactRecord:
            conn.execute(
                "INSERT INTO contacts (session_id, phone_number, name, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (session_id, phone_number) DO UPDATE SET name = excluded.name, "
                "updated_at = excluded.updated_at",
                (contact.session_id, contact.phone_number, contact.name, contact.created_at, contact.updated_at))
            return _contact(conn.execute(f"SELECT {_CONTACT_COLUMNS} FROM contacts WHERE session_id = ? "
                                         "AND phone_number = ?", (contact.session_id, contact.phone_number)).fetchone())

        return await self._write(tx)

    async def get_contact(self, session_id: str, phone_number: str) -> ContactRecord | None:
        return await self._one(f"SELECT {_CONTACT_COLUMNS} FROM contacts WHERE session_id = ? AND phone_number = ?",
                               (session_id, phone_number), _contact)

    async def list_contacts(self, session_id: str, *, after: str | None, limit: int) -> list[ContactRecord]:
        return await self._all(f"SELECT {_CONTACT_COLUMNS} FROM contacts WHERE session_id = ? AND phone_number > ? "
                               "ORDER BY phone_number LIMIT ?", (session_id, after or "", limit), _contact)

    # -- cluster ------------------------------------------------------------

    async def query_one(self, query: str, params: Sequence[Any] = ()) -> Any:
        """A write, as the statements the cluster's components run may change rows (see ClusterStore)."""
        return await self._write(lambda c: c.execute(query, params).fetchone())

    # -- helpers ------------------------------------------------------------

    async def _one(self, sql: str, params: tuple[Any, ...], convert: Callable[[Any], T]) -> T | None:
        row = await self._run(lambda c: c.execute(sql, params).fetchone())
        return convert(row) if row else None

    async def _all(self, sql: str, params: tuple[Any, ...], convert: Callable[[Any], T]) -> list[T]:
        rows = await self._run(lambda c: c.execute(sql, params).fetchall())
        return [convert(r) for r in rows]


_MESSAGE_COLUMNS = ("id, session_id, user_id, to_jid, type, modifiers, payload, status, status_reason, wa_id, "
                    "send_at, expires_at, attempts, created_at, updated_at")
_IDEM_COLUMNS = "session_id, key, request_hash, status_code, response, created_at"


_CONTACT_COLUMNS = "session_id, phone_number, name, created_at, updated_at"


def _contact(r: Any) -> ContactRecord:
    return ContactRecord(session_id=r[0], phone_number=r[1], name=r[2], created_at=r[3], updated_at=r[4])


def _message_row(m: MessageRecord) -> tuple[Any, ...]:
    return (m.id, m.session_id, m.user_id, m.to_jid, m.type, msgspec.json.encode(m.modifiers).decode(), m.payload,
            m.status.value, m.status_reason, m.wa_id, m.send_at, m.expires_at, m.attempts, m.created_at,
            m.updated_at)


def _message(r: Any) -> MessageRecord:
    return MessageRecord(id=r[0], session_id=r[1], user_id=r[2], to_jid=r[3], type=r[4],
                         modifiers=msgspec.json.decode(r[5]), payload=bytes(r[6]), status=MessageStatus(r[7]),
                         status_reason=r[8], wa_id=r[9], send_at=r[10], expires_at=r[11], attempts=r[12],
                         created_at=r[13], updated_at=r[14])


def _idem(r: Any) -> IdempotencyRecord:
    return IdempotencyRecord(session_id=r[0], key=r[1], request_hash=bytes(r[2]), status_code=r[3],
                             response=bytes(r[4]), created_at=r[5])


def _move(conn: sqlite3.Connection, message_id: str, status: MessageStatus, at: int, reason: str | None,
          wa_id: str | None, *, attempts: bool = False) -> None:
    conn.execute(
        "UPDATE messages SET status = ?, status_reason = ?, wa_id = COALESCE(?, wa_id), updated_at = ?"
        + (", attempts = attempts + 1" if attempts else "") + " WHERE id = ?",
        (status.value, reason, wa_id, at, message_id))
    conn.execute("INSERT INTO message_status_history (message_id, status, at, reason) VALUES (?, ?, ?, ?)",
                 (message_id, status.value, at, reason))


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _user(row: Any) -> User:
    return User(id=row[0], email=row[1], password_hash=row[2], created_at=row[3])


def _token(row: Any) -> ApiToken:
    return ApiToken(id=row[0], user_id=row[1], name=row[2], secret_hash=bytes(row[3]),
                    created_at=row[4], revoked_at=row[5])


def _to_sql(key: str, value: Any) -> Any:
    if key == "webhook_events":
        return msgspec.json.encode(list(value)).decode()
    if isinstance(value, SessionState):
        return value.value
    if isinstance(value, bool):
        return int(value)
    return value


def _session_row(s: SessionRecord) -> tuple[Any, ...]:
    return (s.id, s.user_id, s.name, s.phone_number, s.status.value, s.status_reason,
            int(s.connect_on_start), s.webhook_url, _to_sql("webhook_events", s.webhook_events),
            int(s.webhook_enabled), s.webhook_secret, s.key_id, s.key_hash, s.created_at, s.updated_at,
            s.send_limit)


def _session(row: Any) -> SessionRecord:
    return SessionRecord(
        id=row[0], user_id=row[1], name=row[2], phone_number=row[3], status=SessionState(row[4]),
        status_reason=row[5], connect_on_start=bool(row[6]), webhook_url=row[7],
        webhook_events=msgspec.json.decode(row[8]), webhook_enabled=bool(row[9]),
        webhook_secret=row[10], key_id=row[11], key_hash=bytes(row[12]),
        created_at=row[13], updated_at=row[14], send_limit=row[15])
