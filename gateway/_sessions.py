"""Sessions as the API sees them: create, read, update, delete, rotate keys.

Visibility is decided here, once: an account token sees its user's sessions,
a session key sees only its own session. Anything else is SESSION_NOT_FOUND,
so a caller cannot learn that someone else's session exists.

What a session key may not change is decided here too: its send rate and its
proxy belong to the account (FORBIDDEN). A proxy URL is checked and
normalized by `parse_proxy_url` (in `_control.py`, which also applies it) and
stored with its password; the HTTP edge only ever shows it masked.
"""

from __future__ import annotations

from typing import Any

from msgspec import UNSET as UNSET_SENTINEL

from actors import SessionState
from ratelimit import RateParseError, parse_rate

from ._auth import AccountPrincipal, Authenticator, Principal, SessionPrincipal
from ._clock import Clock
from ._control import BadProxyURL, SessionControl, parse_proxy_url
from ._limits import RateGuard
from ._netguard import UnsafeURL, check_url_on_save
from ._phone import phone_at
from ._requests import CreateSession, UpdateSession
from ._security import CredentialKind, new_credential, new_id, new_webhook_secret
from .errors import Forbidden, SessionNotFound, ValidationError
from .store import SessionRecord, Store


class Sessions:
    def __init__(self, store: Store, auth: Authenticator, control: SessionControl, rates: RateGuard, *,
                 allow_private_urls: bool, clock: Clock) -> None:
        self._store = store
        self._auth = auth
        self._control = control
        self._rates = rates
        self._allow_private_urls = allow_private_urls
        self._clock = clock

    async def create(self, principal: AccountPrincipal, req: CreateSession) -> tuple[SessionRecord, str]:
        phone = _phone_or_none(req.phone_number)
        _check_rate(req.send_limit)
        proxy = _proxy_or_none(req.proxy_url)
        if req.webhook_url is not None:
            await self._check_webhook_url(req.webhook_url)
        key = new_credential(CredentialKind.SESSION_KEY)
        at = self._clock.now_ms()
        record = SessionRecord(
            id=new_id(), user_id=principal.user_id, name=req.name.strip() or req.name, phone_number=phone,
            webhook_url=req.webhook_url, webhook_events=_dedupe(req.webhook_events),
            webhook_enabled=req.webhook_enabled, webhook_secret=new_webhook_secret(),
            key_id=key.id, key_hash=key.secret_hash, created_at=at, updated_at=at,
            status=SessionState.DISCONNECTED, send_limit=req.send_limit, proxy_url=proxy)
        await self._store.create_session(record)
        return record, key.plaintext

    async def get(self, principal: Principal, session_id: str) -> SessionRecord:
        record = await self._store.get_session(session_id)
        if record is None or not visible_to(principal, record):
            raise SessionNotFound()
        return record

    async def list(self, principal: AccountPrincipal, *, after: str | None, limit: int) -> list[SessionRecord]:
        return await self._store.list_sessions(principal.user_id, after=after, limit=limit)

    async def update(self, principal: Principal, session_id: str, req: UpdateSession) -> SessionRecord:
        """Change what `req` sets. A changed proxy reaches a session online here at once (it reconnects)."""
        before = await self.get(principal, session_id)
        changes: dict[str, Any] = {}
        for field in UpdateSession.__struct_fields__:
            value = getattr(req, field)
            if value is not UNSET_SENTINEL:
                changes[field] = value
        if "phone_number" in changes:
            changes["phone_number"] = _phone_or_none(changes["phone_number"])
        if changes.get("webhook_url") is not None:
            await self._check_webhook_url(changes["webhook_url"])
        if "webhook_events" in changes:
            changes["webhook_events"] = _dedupe(changes["webhook_events"])
        if "send_limit" in changes:
            if not isinstance(principal, AccountPrincipal):
                raise Forbidden("sendLimit can be changed only with the personal access token")
            _check_rate(changes["send_limit"])
        if "proxy_url" in changes:
            if not isinstance(principal, AccountPrincipal):
                raise Forbidden("proxyUrl can be changed only with the personal access token")
            changes["proxy_url"] = _proxy_or_none(changes["proxy_url"])
        if "name" in changes:
            changes["name"] = changes["name"].strip() or changes["name"]
        record = await self._store.update_session(session_id, changes, self._clock.now_ms())
        if record is None:
            raise SessionNotFound()
        if "send_limit" in changes:
            self._rates.set_send_rate(session_id, record.send_limit)
        if record.proxy_url != before.proxy_url:
            await self._control.apply_proxy(record)
        return record

    async def delete(self, principal: Principal, session_id: str) -> SessionRecord:
        record = await self.get(principal, session_id)
        await self._control.remove(record)
        await self._store.delete_session(session_id)
        self._auth.forget(CredentialKind.SESSION_KEY, record.key_id)
        return record

    async def rotate_key(self, principal: AccountPrincipal, session_id: str) -> tuple[SessionRecord, str]:
        old = await self.get(principal, session_id)
        key = new_credential(CredentialKind.SESSION_KEY)
        record = await self._store.update_session(
            session_id, {"key_id": key.id, "key_hash": key.secret_hash}, self._clock.now_ms())
        if record is None:
            raise SessionNotFound()
        self._auth.forget(CredentialKind.SESSION_KEY, old.key_id)
        return record, key.plaintext

    async def _check_webhook_url(self, url: str) -> None:
        try:
            await check_url_on_save(url, allow_private=self._allow_private_urls)
        except UnsafeURL as exc:
            raise ValidationError.at("$.webhookUrl", str(exc)) from None


def visible_to(principal: Principal, record: SessionRecord) -> bool:
    if isinstance(principal, SessionPrincipal):
        return principal.session_id == record.id
    return principal.user_id == record.user_id


def _phone_or_none(raw: str | None) -> str | None:
    if raw is None:
        return None
    return phone_at(raw, "$.phoneNumber")


def _proxy_or_none(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        return parse_proxy_url(raw)
    except BadProxyURL as exc:
        raise ValidationError.at("$.proxyUrl", f"proxy URL {exc}") from None


def _check_rate(raw: str | None) -> None:
    if raw is None:
        return
    try:
        parse_rate(raw)
    except RateParseError as exc:
        raise ValidationError.at("$.sendLimit", str(exc)) from None


def _dedupe(events: list[str]) -> list[str]:
    return list(dict.fromkeys(events))
