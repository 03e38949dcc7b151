"""Users, their personal access tokens, dashboard logins and password resets, on SQLite."""

from __future__ import annotations

import sqlite3

from .._records import ApiToken, PasswordReset, User, WebSession
from .._rows import (
    PASSWORD_RESET_COLUMNS, TOKEN_COLUMNS, USER_COLUMNS, WEB_SESSION_COLUMNS, password_reset, password_reset_row, token,
    token_row, user, user_row, web_session, web_session_row,
)
from ._base import ROWS, SqliteBase


class SqliteAccounts(SqliteBase):
    async def create_user(self, user: User) -> None:
        """The email is unique case-insensitively (`COLLATE NOCASE`)."""
        row = user_row(user)
        await self._write(lambda c: c.execute(ROWS.insert("users", USER_COLUMNS), row))

    async def get_user(self, user_id: str) -> User | None:
        return await self._one(f"SELECT {USER_COLUMNS} FROM users WHERE id = ?", (user_id,), user)

    async def get_user_by_email(self, email: str) -> User | None:
        return await self._one(f"SELECT {USER_COLUMNS} FROM users WHERE email = ?", (email,), user)

    async def count_users(self) -> int:
        return int(await self._scalar("SELECT COUNT(*) FROM users"))

    async def set_user_password(self, user_id: str, password_hash: str) -> bool:
        return await self._execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id)) > 0

    async def create_token(self, token: ApiToken) -> None:
        row = token_row(token)
        await self._write(lambda c: c.execute(ROWS.insert("api_tokens", TOKEN_COLUMNS), row))

    async def get_token(self, token_id: str) -> ApiToken | None:
        return await self._one(f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?", (token_id,), token)

    async def list_tokens(self, user_id: str) -> list[ApiToken]:
        return await self._all(f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE user_id = ? ORDER BY created_at, id",
                               (user_id,), token)

    async def revoke_token(self, token_id: str, at: int) -> bool:
        return await self._execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                                   (at, token_id)) > 0

    async def touch_token(self, token_id: str, at: int) -> None:
        await self._execute(ROWS.touch_token(), (at, token_id, at))

    async def create_web_session(self, s: WebSession) -> None:
        row = web_session_row(s)
        await self._write(lambda c: c.execute(ROWS.insert("web_sessions", WEB_SESSION_COLUMNS), row))

    async def get_web_session(self, id_hash: bytes, now: int) -> WebSession | None:
        return await self._one(f"SELECT {WEB_SESSION_COLUMNS} FROM web_sessions WHERE id_hash = ? AND expires_at > ?",
                               (id_hash, now), web_session)

    async def touch_web_session(self, id_hash: bytes, *, last_seen_at: int, expires_at: int) -> None:
        await self._execute(ROWS.touch_web_session(), (last_seen_at, expires_at, id_hash, last_seen_at, last_seen_at))

    async def delete_web_session(self, id_hash: bytes) -> bool:
        return await self._execute("DELETE FROM web_sessions WHERE id_hash = ?", (id_hash,)) > 0

    async def delete_user_web_sessions(self, user_id: str, *, keep: bytes | None = None) -> int:
        return await self._execute(*ROWS.end_web_sessions(user_id, keep))

    async def create_password_reset(self, r: PasswordReset) -> None:
        row = password_reset_row(r)
        await self._write(lambda c: c.execute(ROWS.insert("password_resets", PASSWORD_RESET_COLUMNS), row))

    async def use_password_reset(self, token_hash: bytes, now: int) -> PasswordReset | None:
        # UPDATE ... RETURNING needs SQLite 3.35; every row is fetched so the statement is done before COMMIT.
        rows = await self._write(lambda c: c.execute(ROWS.use_password_reset(), (now, token_hash, now)).fetchall())
        return password_reset(rows[0]) if rows else None

    async def delete_expired_web_auth(self, now: int) -> int:
        def purge(c: sqlite3.Connection) -> int:
            return sum(c.execute(f"DELETE FROM {table} WHERE expires_at <= ?", (now,)).rowcount
                       for table in ("web_sessions", "password_resets"))

        return await self._write(purge)
