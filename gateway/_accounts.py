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

    async def create_token(self, email: str, name: str) -> tuple[ApiToken, str]:
        """Create a PAT for the user; returns the record and the plaintext, shown once."""
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise AccountError("token name must be 1 to 100 characters")
        user = await self._store.get_user_by_email(normalize_email(email))
        if user is None:
            raise AccountError(f"no user with email {email}")
        cred = new_credential(CredentialKind.PAT)
        token = ApiToken(id=cred.id, user_id=user.id, name=name, secret_hash=cred.secret_hash, created_at=self._clock.now_ms())
        await self._store.create_token(token)
        return token, cred.plaintext
