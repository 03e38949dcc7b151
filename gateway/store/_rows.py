"""Records ↔ rows: the column lists and row mappers both drivers share.

A column list and its mapper are a pair: the mapper reads a row in the
list's order, and the `*_row` function gives a record's values in that order
for an INSERT. Both drivers select and insert through these, so a new column
is one change here (plus a migration for each driver).

What differs between the drivers is carried by `Rows`, one instance per
driver: the parameter placeholder (`?` for sqlite3, `%s` for psycopg) and how
a JSON column is passed and read back (TEXT on SQLite, JSONB on PostgreSQL).
Flags need nothing: sqlite3 stores a bool as 1 or 0, psycopg as a BOOLEAN, and
`bool()` reads either.

Only the drivers import this module (`open_store` imports them when it opens
one), so it may import `gateway.webhooks`, which `_ports` must not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from actors import SessionState

from ..webhooks import AttemptRecord, Delivery, DeliveryStatus
from ._records import (
    ApiToken, ContactRecord, HeldLease, IdempotencyRecord, LeaseOwner, MediaRecord, MessageRecord, MessageStatus,
    NodeRecord, PasswordReset, SESSION_MUTABLE_FIELDS, SessionRecord, StatusEntry, User, WebSession,
)

USER_COLUMNS: Final = "id, email, password_hash, created_at"
TOKEN_COLUMNS: Final = "id, user_id, name, secret_hash, created_at, revoked_at, expires_at, last_used_at"
WEB_SESSION_COLUMNS: Final = "id_hash, user_id, csrf_token, created_at, expires_at, last_seen_at, user_agent, ip"
PASSWORD_RESET_COLUMNS: Final = "token_hash, user_id, created_at, expires_at, used_at"
SESSION_COLUMNS: Final = (
    "id, user_id, name, phone_number, status, status_reason, connect_on_start, webhook_url, "
    "webhook_events, webhook_enabled, webhook_secret, key_id, key_hash, created_at, updated_at, send_limit, "
    "proxy_url")
# What an event's delivery needs from its session (see `_outbox_rules.deliveries_for`).
WEBHOOK_TARGET_COLUMNS: Final = "webhook_url, webhook_events, webhook_enabled, webhook_secret"
MESSAGE_COLUMNS: Final = (
    "id, session_id, user_id, to_jid, type, modifiers, payload, status, status_reason, wa_id, "
    "send_at, expires_at, attempts, created_at, updated_at")
HISTORY_COLUMNS: Final = "message_id, status, at, reason"
STATUS_COLUMNS: Final = "status, at, reason"
IDEMPOTENCY_COLUMNS: Final = "session_id, key, request_hash, status_code, response, created_at"
CONTACT_COLUMNS: Final = "session_id, phone_number, name, created_at, updated_at"
DELIVERY_COLUMNS: Final = (
    "id, session_id, event, endpoint, secret, payload, created_at, next_attempt_at, attempts, status, "
    "claimed_until, last_status, last_error, finished_at")
ATTEMPT_COLUMNS: Final = "attempt, started_at, finished_at, outcome, status_code, error"
LEASE_OWNER_COLUMNS: Final = "l.session_id, l.node_id, l.epoch, n.address, n.token"
MEDIA_COLUMNS: Final = "id, session_id, mimetype, size, sha256, filename, created_at"

# The reasons the store itself writes into a message's history.
INTERRUPTED: Final = "interrupted before the send was confirmed"
EXPIRED: Final = "expired in the queue"


def count(columns: str) -> int:
    return columns.count(",") + 1


def qualified(columns: str, alias: str) -> str:
    """`a, b` → `m.a, m.b`: the same columns, of the table aliased `alias`."""
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


@dataclass(frozen=True)
class Rows:
    """One driver's placeholders and JSON values, and the mappers that depend on them."""

    mark: str  # the parameter placeholder
    json_param: Callable[[list[str]], Any]  # a list of strings, as a JSON column's parameter
    json_list: Callable[[Any], list[str]]  # a JSON column's value, read back as a list

    def marks(self, n: int) -> str:
        return ", ".join([self.mark] * n)

    def touch_token(self) -> str:
        """Record a token's use (at, id, at): `last_used_at` only moves forward, as uses race."""
        m = self.mark
        return (f"UPDATE api_tokens SET last_used_at = {m} "
                f"WHERE id = {m} AND (last_used_at IS NULL OR last_used_at < {m})")

    def touch_web_session(self) -> str:
        """Slide a login (seen, expires, id, seen, seen): only forward, and only while it is live."""
        m = self.mark
        return (f"UPDATE web_sessions SET last_seen_at = {m}, expires_at = {m} "
                f"WHERE id_hash = {m} AND last_seen_at < {m} AND expires_at > {m}")

    def end_web_sessions(self, user_id: str, keep: bytes | None) -> tuple[str, tuple[Any, ...]]:
        """Delete every login of the user but `keep`: the statement and its parameters."""
        m = self.mark
        if keep is None:
            return f"DELETE FROM web_sessions WHERE user_id = {m}", (user_id,)
        return f"DELETE FROM web_sessions WHERE user_id = {m} AND id_hash <> {m}", (user_id, keep)

    def use_password_reset(self) -> str:
        """Take a reset token (now, hash, now) in one statement, so of racing uses exactly one gets the row."""
        m = self.mark
        return (f"UPDATE password_resets SET used_at = {m} "
                f"WHERE token_hash = {m} AND used_at IS NULL AND expires_at > {m} "
                f"RETURNING {PASSWORD_RESET_COLUMNS}")

    def insert(self, table: str, columns: str) -> str:
        """`INSERT INTO table (columns) VALUES (...)`, one placeholder per column."""
        return f"INSERT INTO {table} ({columns}) VALUES ({self.marks(count(columns))})"

    def session_changes(self, changes: dict[str, Any], at: int) -> dict[str, Any]:
        """`update_session`'s SET values, column by column, stamped `at`; unknown fields are a ValueError."""
        unknown = set(changes) - SESSION_MUTABLE_FIELDS
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        values = {k: self.session_value(k, v) for k, v in changes.items()}
        values["updated_at"] = at
        return values

    def session_value(self, key: str, value: Any) -> Any:
        """A value for `update_session`'s SET (`key` from SESSION_MUTABLE_FIELDS)."""
        if key == "webhook_events":
            return self.json_param(list(value))
        if isinstance(value, SessionState):
            # Explicit: psycopg would dump an Enum by its name, not its value.
            return value.value
        return value

    def session_row(self, s: SessionRecord) -> tuple[Any, ...]:
        return (s.id, s.user_id, s.name, s.phone_number, s.status.value, s.status_reason, s.connect_on_start,
                s.webhook_url, self.json_param(list(s.webhook_events)), s.webhook_enabled, s.webhook_secret,
                s.key_id, s.key_hash, s.created_at, s.updated_at, s.send_limit, s.proxy_url)

    def session(self, r: Any) -> SessionRecord:
        return SessionRecord(
            id=r[0], user_id=r[1], name=r[2], phone_number=r[3], status=SessionState(r[4]), status_reason=r[5],
            connect_on_start=bool(r[6]), webhook_url=r[7], webhook_events=self.json_list(r[8]),
            webhook_enabled=bool(r[9]), webhook_secret=r[10], key_id=r[11], key_hash=bytes(r[12]),
            created_at=r[13], updated_at=r[14], send_limit=r[15], proxy_url=r[16])

    def webhook_target(self, r: Any) -> tuple[str | None, list[str], bool, str]:
        """A WEBHOOK_TARGET_COLUMNS row as `deliveries_for` takes it: url, events, enabled, secret."""
        return r[0], self.json_list(r[1]), bool(r[2]), r[3]

    def message_row(self, m: MessageRecord) -> tuple[Any, ...]:
        return (m.id, m.session_id, m.user_id, m.to_jid, m.type, self.json_param(list(m.modifiers)), m.payload,
                m.status.value, m.status_reason, m.wa_id, m.send_at, m.expires_at, m.attempts, m.created_at,
                m.updated_at)

    def messages_page(self, session_id: str, before: str | None, limit: int, status: MessageStatus | None,
                      to_jid: str | None, since: int | None, until: int | None) -> tuple[str, tuple[Any, ...]]:
        """`list_messages`' query and parameters: only the filters given, so each shape meets its index."""
        m = self.mark
        where, params = [f"session_id = {m}", f"id < {m}"], [session_id, before or "\uffff"]
        for clause, value in ((f"status = {m}", None if status is None else status.value),
                              (f"to_jid = {m}", to_jid), (f"created_at >= {m}", since), (f"created_at < {m}", until)):
            if value is not None:
                where.append(clause)
                params.append(value)
        return (f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT {m}",
                (*params, limit))

    def reschedule(self) -> str:
        """Move a queued, scheduled message (send_at, expires_at, updated_at, id), returning it; one statement,
        guarded by its status, so a message claimed meanwhile is left alone."""
        m = self.mark
        return (f"UPDATE messages SET send_at = {m}, expires_at = {m}, updated_at = {m} WHERE id = {m} "
                f"AND status = 'queued' AND send_at IS NOT NULL RETURNING {MESSAGE_COLUMNS}")

    def queue_depths_of(self, n: int) -> str:
        """(now, *session_ids): per session with queued messages, (session_id, queued, scheduled)."""
        return (f"SELECT session_id, COUNT(*), COUNT(*) FILTER (WHERE send_at > {self.mark}) FROM messages "
                f"WHERE status = 'queued' AND session_id IN ({self.marks(n)}) GROUP BY session_id")

    def message(self, r: Any) -> MessageRecord:
        return MessageRecord(id=r[0], session_id=r[1], user_id=r[2], to_jid=r[3], type=r[4],
                             modifiers=self.json_list(r[5]), payload=bytes(r[6]), status=MessageStatus(r[7]),
                             status_reason=r[8], wa_id=r[9], send_at=r[10], expires_at=r[11], attempts=r[12],
                             created_at=r[13], updated_at=r[14])


# -- the mappers that are the same on both drivers ---------------------------------------


def user_row(u: User) -> tuple[Any, ...]:
    return (u.id, u.email, u.password_hash, u.created_at)


def user(r: Any) -> User:
    return User(id=r[0], email=r[1], password_hash=r[2], created_at=r[3])


def token_row(t: ApiToken) -> tuple[Any, ...]:
    return (t.id, t.user_id, t.name, t.secret_hash, t.created_at, t.revoked_at, t.expires_at, t.last_used_at)


def token(r: Any) -> ApiToken:
    return ApiToken(id=r[0], user_id=r[1], name=r[2], secret_hash=bytes(r[3]), created_at=r[4], revoked_at=r[5],
                    expires_at=r[6], last_used_at=r[7])


def web_session_row(s: WebSession) -> tuple[Any, ...]:
    return (s.id_hash, s.user_id, s.csrf_token, s.created_at, s.expires_at, s.last_seen_at, s.user_agent, s.ip)


def web_session(r: Any) -> WebSession:
    return WebSession(id_hash=bytes(r[0]), user_id=r[1], csrf_token=r[2], created_at=r[3], expires_at=r[4],
                      last_seen_at=r[5], user_agent=r[6], ip=r[7])


def password_reset_row(p: PasswordReset) -> tuple[Any, ...]:
    return (p.token_hash, p.user_id, p.created_at, p.expires_at, p.used_at)


def password_reset(r: Any) -> PasswordReset:
    return PasswordReset(token_hash=bytes(r[0]), user_id=r[1], created_at=r[2], expires_at=r[3], used_at=r[4])


def history_row(m: MessageRecord) -> tuple[Any, ...]:
    """A new message's first history entry (HISTORY_COLUMNS)."""
    return (m.id, m.status.value, m.created_at, m.status_reason)


def status_entry(r: Any) -> StatusEntry:
    return StatusEntry(MessageStatus(r[0]), r[1], r[2])


def idempotency_row(i: IdempotencyRecord) -> tuple[Any, ...]:
    return (i.session_id, i.key, i.request_hash, i.status_code, i.response, i.created_at)


def idempotency(r: Any) -> IdempotencyRecord:
    return IdempotencyRecord(session_id=r[0], key=r[1], request_hash=bytes(r[2]), status_code=r[3],
                             response=bytes(r[4]), created_at=r[5])


def contact_row(c: ContactRecord) -> tuple[Any, ...]:
    return (c.session_id, c.phone_number, c.name, c.created_at, c.updated_at)


def contact(r: Any) -> ContactRecord:
    return ContactRecord(session_id=r[0], phone_number=r[1], name=r[2], created_at=r[3], updated_at=r[4])


def delivery_row(d: Delivery) -> tuple[Any, ...]:
    return (d.id, d.session_id, d.event, d.endpoint, d.secret, d.payload, d.created_at, d.next_attempt_at,
            d.attempts, d.status.value, d.claimed_until, d.last_status, d.last_error, d.finished_at)


def delivery(r: Any) -> Delivery:
    return Delivery(id=r[0], session_id=r[1], event=r[2], endpoint=r[3], secret=r[4], payload=bytes(r[5]),
                    created_at=r[6], next_attempt_at=r[7], attempts=r[8], status=DeliveryStatus(r[9]),
                    claimed_until=r[10], last_status=r[11], last_error=r[12], finished_at=r[13])


def attempt(delivery_id: str, r: Any) -> AttemptRecord:
    """A stored attempt (ATTEMPT_COLUMNS) as the history the API shows."""
    return AttemptRecord(delivery_id=delivery_id, attempt=r[0], claimed_until=0, started_at=r[1], finished_at=r[2],
                         outcome=DeliveryStatus(r[3]), next_attempt_at=None, status_code=r[4], error=r[5])


def node_columns(ms: Callable[[str], str], now: str) -> str:
    """NodeRecord's columns, from `cluster_nodes n`: `ms` turns a stored time into milliseconds,
    `now` is the SQL for the current time (each driver keeps its own clock, see `*/_cluster.py`)."""
    return (f"n.id, n.address, n.token, n.host, n.pid, {ms('n.started_at')}, {ms('n.heartbeat_at')}, "
            f"{ms('n.expires_at')}, n.expires_at > {now}, "
            f"(SELECT COUNT(*) FROM session_leases l WHERE l.node_id = n.id AND l.expires_at > {now})")


def node(r: Any) -> NodeRecord:
    return NodeRecord(id=r[0], address=r[1], token=r[2], host=r[3], pid=r[4], started_at=r[5], heartbeat_at=r[6],
                      expires_at=r[7], alive=bool(r[8]), leases=r[9])


def lease_owner(r: Any) -> LeaseOwner:
    return LeaseOwner(session_id=r[0], node_id=r[1], epoch=r[2], address=r[3], token=r[4])


def held_lease(r: Any) -> HeldLease:
    """A renewed lease: session id, epoch, and its session's connect_on_start."""
    return HeldLease(r[0], r[1], bool(r[2]))


def media_row(r: Any) -> MediaRecord:
    return MediaRecord(id=r[0], session_id=r[1], mimetype=r[2], size=r[3], sha256=r[4], filename=r[5],
                       created_at=r[6])
