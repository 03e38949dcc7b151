"""Dashboard logins: server-side sessions behind an HttpOnly cookie, and CSRF tokens.

The cookie holds a 256-bit random secret; the store keeps only its SHA-256,
so a leaked database cannot be replayed as cookies. A login lasts
`login_ttl` seconds after its last use (extended at most once a minute, so
a page that polls does not write on every request), and ends at once on
logout or on a password change or reset, which end all of the user's logins.
Expired logins and reset tokens are purged hourly (`purge_loop`).

Each login has its own CSRF token (the synchronizer-token pattern): every
form carries it and every state-changing request must present it, as a form
field or as the `X-CSRF-Token` header. Forms shown before login (log in,
sign up, forgot, reset) use a double-submit cookie instead.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from typing import Final

import trio

from ._clock import SYSTEM_CLOCK, Clock
from .store import Store, WebSession

log = logging.getLogger("gateway.logins")

LOGIN_COOKIE: Final = "gateway_login"
ANON_CSRF_COOKIE: Final = "gateway_csrf"
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "X-CSRF-Token"
_TOUCH_EVERY_MS: Final = 60_000
_SECRET: Final = re.compile(r"[A-Za-z0-9_-]{32,64}")


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def well_formed(secret: str | None) -> bool:
    return secret is not None and _SECRET.fullmatch(secret) is not None


def tokens_match(presented: str | None, expected: str | None) -> bool:
    """Constant-time comparison of two CSRF tokens; a missing one never matches."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class Logins:
    def __init__(self, store: Store, *, ttl: float, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._ttl_ms = int(ttl * 1000)
        self._clock = clock

    @property
    def ttl_seconds(self) -> int:
        return self._ttl_ms // 1000

    async def start(self, user_id: str, *, ip: str = "", user_agent: str = "") -> tuple[str, WebSession]:
        """A new login: the cookie value (shown to the browser only) and its record."""
        secret = new_secret()
        now = self._clock.now_ms()
        login = WebSession(id_hash=_digest(secret), user_id=user_id, csrf_token=new_secret(), created_at=now,
                           expires_at=now + self._ttl_ms, last_seen_at=now, user_agent=user_agent[:200], ip=ip)
        await self._store.create_web_session(login)
        return secret, login

    async def resolve(self, secret: str | None) -> WebSession | None:
        """The live login behind a cookie value, extended by this use; None for anything else."""
        if not well_formed(secret):
            return None
        assert secret is not None
        now = self._clock.now_ms()
        login = await self._store.get_web_session(_digest(secret), now)
        if login is not None and now - login.last_seen_at >= _TOUCH_EVERY_MS:
            await self._store.touch_web_session(login.id_hash, last_seen_at=now, expires_at=now + self._ttl_ms)
        return login

    async def end(self, secret: str | None) -> None:
        if well_formed(secret):
            assert secret is not None
            await self._store.delete_web_session(_digest(secret))

    async def end_all(self, user_id: str) -> int:
        return await self._store.delete_user_web_sessions(user_id)

    async def purge_loop(self, interval: float = 3600.0) -> None:
        """Forget ended logins and dead reset tokens, every `interval` seconds (trio's clock)."""
        while True:
            try:
                removed = await self._store.delete_expired_web_auth(self._clock.now_ms())
                if removed:
                    log.info("expired logins and reset tokens purged", extra={"fields": {"count": removed}})
            except Exception:
                log.exception("login housekeeping failed")
            await trio.sleep(interval)
