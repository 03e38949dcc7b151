"""Users and their personal access tokens, on PostgreSQL."""

from __future__ import annotations

from .._records import ApiToken, User
from .._rows import TOKEN_COLUMNS, USER_COLUMNS, token, token_row, user, user_row
from ._base import ROWS, PostgresBase


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
