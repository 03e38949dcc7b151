"""Users and their Personal Access Tokens."""

from __future__ import annotations

import re
from typing import Final

from ._security import CredentialKind, hash_password, new_credential, new_id
from ._clock import SYSTEM_CLOCK, Clock
from .store import ApiToken, Store, StoreConflict, User

_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MIN_PASSWORD_LENGTH: Final = 8
MAX_PASSWORD_LENGTH: Final = 1024
MAX_TOKEN_DAYS: Final = 3650
_DAY_MS: Final = 86_400_000


class AccountError(ValueError):
    """A user or token request that cannot be done; the message says why."""


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        raise AccountError(f"not a valid email address: {email!r}")
    return email


class Accounts:
    def __init__(self, store: Store, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._clock = clock

    async def create_user(self, email: str, password: str) -> User:
        email = normalize_email(email)
        if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
            raise AccountError(f"password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters")
        user = User(id=new_id(), email=email, password_hash=hash_password(password), created_at=self._clock.now_ms())
        try:
            await self._store.create_user(user)
        except StoreConflict:
            raise AccountError(f"a user with email {email} already exists") from None
        return user

    async def create_token(self, email: str, name: str, *, expires_in_days: int | None = None
                           ) -> tuple[ApiToken, str]:
        """Create a PAT for the user with `email` (the CLI); see `issue_token`."""
        return await self.issue_token((await self._user_by_email(email)).id, name, expires_in_days=expires_in_days)

    async def issue_token(self, user_id: str, name: str, *, expires_in_days: int | None = None
                          ) -> tuple[ApiToken, str]:
        """Create a PAT; returns the record and the plaintext, which is shown once and never stored."""
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise AccountError("token name must be 1 to 100 characters")
        if expires_in_days is not None and not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
            raise AccountError(f"a token expires in 1 to {MAX_TOKEN_DAYS} days")
        now = self._clock.now_ms()
        cred = new_credential(CredentialKind.PAT)
        token = ApiToken(id=cred.id, user_id=user_id, name=name, secret_hash=cred.secret_hash, created_at=now,
                         expires_at=None if expires_in_days is None else now + expires_in_days * _DAY_MS)
        await self._store.create_token(token)
        return token, cred.plaintext

    async def list_tokens(self, user_id: str) -> list[ApiToken]:
        """Every token of the user, oldest first, revoked and expired ones included."""
        return await self._store.list_tokens(user_id)

    async def list_tokens_by_email(self, email: str) -> list[ApiToken]:
        return await self.list_tokens((await self._user_by_email(email)).id)

    async def revoke_token(self, token_id: str, *, owner: str | None = None) -> ApiToken | None:
        """Revoke a token (of `owner` only, when given). None when there is no such token for the
        caller; revoking a revoked token changes nothing. The caller drops it from the auth cache."""
        token = await self._store.get_token(token_id)
        if token is None or (owner is not None and token.user_id != owner):
            return None
        if token.revoked_at is None:
            await self._store.revoke_token(token_id, self._clock.now_ms())
        return await self._store.get_token(token_id)

    async def _user_by_email(self, email: str) -> User:
        user = await self._store.get_user_by_email(normalize_email(email))
        if user is None:
            raise AccountError(f"no user with email {email}")
        return user
