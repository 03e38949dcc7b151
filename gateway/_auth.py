"""Authentication: turning a presented credential into a principal.

Verified credentials are cached per process for `auth_cache_ttl` seconds
(trio's clock), so the hot path does one SHA-256 and no I/O. The cache holds
only credentials that verified; unknown ones are never cached, so a flood of
garbage cannot grow it. It is bounded, dropping the oldest entry when full.

A token's expiry is checked on every request, cached or not. Its
`last_used_at` is written when the token is loaded into the cache and its
secret matched, so it is exact to within `auth_cache_ttl` and costs one write
per token per process per TTL, never one per request.
"""

from __future__ import annotations

from typing import Final

import msgspec

from ._clock import SYSTEM_CLOCK, Clock
from ._lru import LruCache
from ._security import CredentialKind, parse_credential, secret_matches
from .errors import Unauthorized
from .store import Store

_CACHE_MAX: Final = 100_000


class AccountPrincipal(msgspec.Struct, frozen=True):
    """A caller holding a Personal Access Token."""

    user_id: str
    token_id: str


class SessionPrincipal(msgspec.Struct, frozen=True):
    """A caller holding a session API key: it reaches only `session_id`."""

    user_id: str
    session_id: str
    key_id: str


Principal = AccountPrincipal | SessionPrincipal


class _Entry(msgspec.Struct):
    secret_hash: bytes
    principal: Principal
    expires_at: int | None = None  # epoch ms (tokens only)


class Authenticator:
    def __init__(self, store: Store, *, ttl: float, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._clock = clock
        self._cache: LruCache[str, _Entry] = LruCache(_CACHE_MAX, ttl=ttl)

    async def authenticate(self, credential: str) -> Principal:
        parsed = parse_credential(credential)
        if parsed is None:
            raise Unauthorized("Malformed credential: expected a wgp_ token or a wgs_ session key")
        cache_key = parsed.kind.value + parsed.id
        entry = self._cache.get(cache_key)
        loaded = entry is None
        if entry is None:
            entry = await self._load(parsed.kind, parsed.id)
            if entry is None:
                raise Unauthorized("Invalid credential")
            self._cache.put(cache_key, entry)
        if not secret_matches(parsed.secret, entry.secret_hash):
            raise Unauthorized("Invalid credential")
        now = self._clock.now_ms()
        if entry.expires_at is not None and now >= entry.expires_at:
            raise Unauthorized("This token has expired")
        if loaded and isinstance(entry.principal, AccountPrincipal):
            await self._store.touch_token(entry.principal.token_id, now)
        return entry.principal

    def forget(self, kind: CredentialKind, credential_id: str) -> None:
        """Drop a cached credential at once (revoked token, rotated or deleted key)."""
        self._cache.pop(kind.value + credential_id)

    async def _load(self, kind: CredentialKind, credential_id: str) -> _Entry | None:
        if kind is CredentialKind.PAT:
            token = await self._store.get_token(credential_id)
            if token is None or token.revoked_at is not None:
                return None
            return _Entry(token.secret_hash, AccountPrincipal(token.user_id, token.id), token.expires_at)
        session = await self._store.get_session_by_key_id(credential_id)
        if session is None:
            return None
        return _Entry(session.key_hash, SessionPrincipal(session.user_id, session.id, session.key_id))
