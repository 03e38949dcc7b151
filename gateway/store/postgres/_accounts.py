"""Users, their personal access tokens, dashboard logins and password resets, on PostgreSQL."""

from __future__ import annotations

from .._records import ApiToken, PasswordReset, User, WebSession
from .._rows import (
    PASSWORD_RESET_COLUMNS, TOKEN_COLUMNS, USER_COLUMNS, WEB_SESSION_COLUMNS, password_reset, password_reset_row, token,
    token_row, user, user_row, web_session, web_session_row,
)
from ._base import ROWS, Conn, PostgresBase


class PostgresAccounts(PostgresBase):
    async def create_user(self, user: User) -> None:
        """The email is unique case-insensitively (the unique index `users_email_lower`)."""
        await self._execute(ROWS.insert("users", USER_COLUMNS), user_row(user))

    async def get_user(self, user_id: str) -> User | None:
        return await self._one(f"SELECT {USER_COLUMNS} FROM users WHERE id = %s", (user_id,), user)

    async def get_user_by_email(self, email: str) -> User | None:
        # The same expression as the unique index `users_email_lower`, so the lookup uses it.
        return await self._one(f"SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower(%s)", (email,), user)

    async def count_users(self) -> int:
        return int(await self._scalar("SELECT COUNT(*) FROM users"))

    async def set_user_password(self, user_id: str, password_hash: str) -> bool:
        return await self._execute("UPDATE users SET password_hash = %s WHERE id = %s", (password_hash, user_id)) > 0

    async def create_token(self, token: ApiToken) -> None:
        await self._execute(ROWS.insert("api_tokens", TOKEN_COLUMNS), token_row(token))

    async def get_token(self, token_id: str) -> ApiToken | None:
        return await self._one(f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = %s", (token_id,), token)

    async def list_tokens(self, user_id: str) -> list[ApiToken]:
        return await self._all(f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE user_id = %s ORDER BY created_at, id",
                               (user_id,), token)

    async def revoke_token(self, token_id: str, at: int) -> bool:
        return await self._execute(
            "UPDATE api_tokens SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL", (at, token_id)) > 0

    async def touch_token(self, token_id: str, at: int) -> None:
        await self._execute(ROWS.touch_token(), (at, token_id, at))

    async def create_web_session(self, s: WebSession) -> None:
        await self._execute(ROWS.insert("web_sessions", WEB_SESSION_COLUMNS), web_session_row(s))

    async def get_web_session(self, id_hash: bytes, now: int) -> WebSession | None:
        return await self._one(
            f"SELECT {WEB_SESSION_COLUMNS} FROM web_sessions WHERE id_hash = %s AND expires_at > %s", (id_hash, now),
            web_session)

    async def touch_web_session(self, id_hash: bytes, *, last_seen_at: int, expires_at: int) -> None:
        await self._execute(ROWS.touch_web_session(), (last_seen_at, expires_at, id_hash, last_seen_at, last_seen_at))

    async def delete_web_session(self, id_hash: bytes) -> bool:
        return await self._execute("DELETE FROM web_sessions WHERE id_hash = %s", (id_hash,)) > 0

    async def delete_user_web_sessions(self, user_id: str, *, keep: bytes | None = None) -> int:
        return await self._execute(*ROWS.end_web_sessions(user_id, keep))

    async def create_password_reset(self, r: PasswordReset) -> None:
        await self._execute(ROWS.insert("password_resets", PASSWORD_RESET_COLUMNS), password_reset_row(r))

    async def use_password_reset(self, token_hash: bytes, now: int) -> PasswordReset | None:
        """One UPDATE: a racing use waits for the row lock, re-checks `used_at IS NULL` and gets nothing."""
        return await self._write_one(ROWS.use_password_reset(), (now, token_hash, now), password_reset)

    async def delete_expired_web_auth(self, now: int) -> int:
        # A sweep: alone (see `_base`), in autocommit, one statement per table.
        def purge(c: Conn) -> int:
            return sum(c.execute(f"DELETE FROM {table} WHERE expires_at <= %s", (now,)).rowcount
                       for table in ("web_sessions", "password_resets"))

        return await self._run(purge)
