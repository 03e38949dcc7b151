"""Users, their passwords and their Personal Access Tokens.

Password hashing (argon2id) costs tens of milliseconds of CPU, so it runs in
a worker thread, a few at a time, never on the trio loop. A login for an
unknown email verifies against a dummy hash, so the answer takes as long as
for a known one. Password-reset tokens are 256-bit random strings, kept only
as their SHA-256, used at most once (the store marks them used atomically)
and dead after `RESET_TTL_MS`.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from typing import Final

import trio

from ._clock import SYSTEM_CLOCK, Clock
from ._security import CredentialKind, hash_password, new_credential, new_id, verify_password
from .store import ApiToken, PasswordReset, Store, StoreConflict, User

_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MIN_PASSWORD_LENGTH: Final = 8
MAX_PASSWORD_LENGTH: Final = 1024
MAX_TOKEN_DAYS: Final = 3650
_DAY_MS: Final = 86_400_000
RESET_TTL_MS: Final = 3_600_000
_HASHING = trio.CapacityLimiter(4)  # argon2 calls in flight at once: a login flood cannot take every thread


class AccountError(ValueError):
    """A user or token request that cannot be done; the message says why."""


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        raise AccountError(f"not a valid email address: {email!r}")
    return email


def check_password_rules(password: str) -> None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise AccountError(f"password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters")


async def _hash(password: str) -> str:
    return await trio.to_thread.run_sync(hash_password, password, limiter=_HASHING)


async def _verify(password: str, stored: str) -> bool:
    return await trio.to_thread.run_sync(verify_password, password, stored, limiter=_HASHING)


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def reset_token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Accounts:
    def __init__(self, store: Store, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._clock = clock

    async def create_user(self, email: str, password: str) -> User:
        email = normalize_email(email)
        check_password_rules(password)
        user = User(id=new_id(), email=email, password_hash=await _hash(password), created_at=self._clock.now_ms())
        try:
            await self._store.create_user(user)
        except StoreConflict:
            raise AccountError(f"a user with email {email} already exists") from None
        return user

    async def get_user(self, user_id: str) -> User | None:
        return await self._store.get_user(user_id)

    async def check_login(self, email: str, password: str) -> User | None:
        """The user whose email and password these are, or None, in about the same time either way."""
        try:
            user = await self._store.get_user_by_email(normalize_email(email))
        except AccountError:
            user = None
        matched = await _verify(password[:MAX_PASSWORD_LENGTH + 1], user.password_hash if user else _dummy_hash())
        return user if matched and user is not None else None

    async def change_password(self, user_id: str, current: str, new: str) -> None:
        """Set a new password after checking the current one. The caller ends the user's logins."""
        user = await self._store.get_user(user_id)
        if user is None or not await _verify(current[:MAX_PASSWORD_LENGTH + 1], user.password_hash):
            raise AccountError("the current password is not right")
        await self._set_password(user_id, new)

    async def start_reset(self, email: str) -> tuple[User, str] | None:
        """A reset token for the user with this email (None when there is none): the caller mails it."""
        try:
            user = await self._store.get_user_by_email(normalize_email(email))
        except AccountError:
            return None
        if user is None:
            return None
        token = secrets.token_urlsafe(32)
        now = self._clock.now_ms()
        await self._store.create_password_reset(PasswordReset(
            token_hash=reset_token_hash(token), user_id=user.id, created_at=now, expires_at=now + RESET_TTL_MS))
        return user, token

    async def finish_reset(self, token: str, new_password: str) -> User:
        """Use a reset token (once) to set a new password. The caller ends the user's logins."""
        check_password_rules(new_password)
        if not 20 <= len(token) <= 100:
            raise AccountError("this reset link is not valid; ask for a new one")
        reset = await self._store.use_password_reset(reset_token_hash(token), self._clock.now_ms())
        if reset is None:
            raise AccountError("this reset link is not valid, was used already or has expired; ask for a new one")
        await self._set_password(reset.user_id, new_password)
        user = await self._store.get_user(reset.user_id)
        assert user is not None  # deleting a user deletes its resets
        return user

    async def _set_password(self, user_id: str, password: str) -> None:
        check_password_rules(password)
        if not await self._store.set_user_password(user_id, await _hash(password)):
            raise AccountError("no such user")

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
