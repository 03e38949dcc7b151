"""Users and their personal access tokens, on SQLite."""

from __future__ import annotations

from .._records import ApiToken, User
from .._rows import TOKEN_COLUMNS, USER_COLUMNS, token, token_row, user, user_row
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
