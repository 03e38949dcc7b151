"""WhatsApp's LID ↔ phone mapping, as each session learns it.

WhatsApp names some people by a LID (`<digits>@lid`, a number that is not
their phone number) instead of their phone JID. A session learns which phone
a LID stands for from what it receives (a message that carries both), from
its contact list and user lookups, and by asking WhatsApp. `LidBook` keeps
those pairs in the store, per session: a session key reaches only what its
own session learned.

A busy session hears from the same people again and again, so a bounded cache
sits in front of the store: a pair already known is not written again, and
an answer (a miss too) is read from the store at most once per `CACHE_TTL`
(nodes of a cluster learn apart; a cached miss must not hide for long what
another node learned). A transport, when a call is given one, is asked on a
store miss, and what it answers is learned; its errors reach the caller.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from actors import Transport, phone_from_jid, user_jid

from ._clock import Clock
from ._lru import LruCache
from ._patterns import whole
from .store import Store

LID_RE: Final = r"[0-9]{1,20}@lid"
LID_PATTERN: Final = whole(LID_RE)
MAX_LID_LENGTH: Final = 24  # 20 digits and `@lid`
CACHE_ENTRIES: Final = 100_000  # per direction, across sessions: a few MB at most
CACHE_TTL: Final = 600.0  # seconds on trio's clock

_LID: Final = re.compile(LID_RE)
_DEVICE_LID: Final = re.compile(r"([0-9]{1,20})(?::[0-9]{1,3})?@lid")  # a LID as events may name one device of it
_UNKNOWN: Final = ""  # cached: the store has no pair for this key


def is_lid(jid: str | None) -> bool:
    """Whether `jid` is a LID (`<digits>@lid`; a device suffix is not part of one)."""
    return jid is not None and len(jid) <= MAX_LID_LENGTH and _LID.fullmatch(jid) is not None


def bare_lid(jid: str | None) -> str | None:
    """The LID of a LID JID, a device suffix (`:12`) dropped; None for anything else."""
    m = _DEVICE_LID.fullmatch(jid) if jid and len(jid) <= MAX_LID_LENGTH + 4 else None
    return f"{m[1]}@lid" if m else None


def phone_jid(jid: str | None) -> str | None:
    """The bare phone JID (device suffix dropped) of a user JID, else None."""
    phone = phone_from_jid(jid) if jid else None
    return user_jid(phone) if phone is not None else None


class LidBook:
    def __init__(self, store: Store, clock: Clock, *, max_entries: int = CACHE_ENTRIES,
                 ttl: float = CACHE_TTL) -> None:
        self._store = store
        self._clock = clock
        self._phones: LruCache[tuple[str, str], str] = LruCache(max_entries, ttl=ttl)  # (session, lid) → phone JID
        self._lids: LruCache[tuple[str, str], str] = LruCache(max_entries, ttl=ttl)  # (session, phone JID) → lid

    async def learn(self, session_id: str, pairs: Iterable[tuple[str, str]]) -> None:
        """Remember (lid, phone JID) pairs; malformed ones are left out, known ones are not written again."""
        fresh: dict[str, str] = {}
        for lid, jid in pairs:
            phone = phone_jid(jid)
            if is_lid(lid) and phone is not None and self._phones.get((session_id, lid)) != phone:
                fresh[lid] = phone
        if not fresh:
            return
        await self._store.put_lids(session_id, list(fresh.items()), self._clock.now_ms())
        for lid, phone in fresh.items():
            old = self._phones.get((session_id, lid))
            if old:
                self._lids.pop((session_id, old))
            self._phones.put((session_id, lid), phone)
            self._lids.put((session_id, phone), lid)

    async def phone_for(self, session_id: str, lid: str, transport: Transport | None = None) -> str | None:
        """The phone JID of `lid`: what the session learned, else (with `transport`) what WhatsApp says."""
        if not is_lid(lid):
            return None
        key = (session_id, lid)
        known = self._phones.get(key)
        if known is None:
            known = await self._store.phone_for_lid(session_id, lid) or _UNKNOWN
            self._phones.put(key, known)
        if known or transport is None:
            return known or None
        phone = phone_jid(await transport.phone_for_lid(lid))
        if phone is not None:
            await self.learn(session_id, [(lid, phone)])
        return phone

    async def lid_for(self, session_id: str, jid: str, transport: Transport | None = None) -> str | None:
        """The LID of a phone JID: what the session learned, else (with `transport`) what WhatsApp says."""
        phone = phone_jid(jid)
        if phone is None:
            return None
        key = (session_id, phone)
        known = self._lids.get(key)
        if known is None:
            known = await self._store.lid_for_phone(session_id, phone) or _UNKNOWN
            self._lids.put(key, known)
        if known or transport is None:
            return known or None
        lid = await transport.lid_for_phone(phone)
        if lid is None or not is_lid(lid):
            return None
        await self.learn(session_id, [(lid, phone)])
        return lid


__all__ = ["LID_PATTERN", "LID_RE", "MAX_LID_LENGTH", "LidBook", "bare_lid", "is_lid", "phone_jid"]
