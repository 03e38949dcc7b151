"""Where a webhook URL may be posted to: the SSRF guard's checked addresses, cached briefly.

Every address handed to the client has passed `resolve_checked`. The cache
only saves repeated lookups of the same endpoint under load; it holds checked
answers and nothing else, so it cannot let an unchecked address through.
"""

from __future__ import annotations

from typing import Final, Protocol

import trio

from .._netguard import resolve_checked

DEFAULT_TTL: Final = 30.0  # seconds
DEFAULT_MAX_ENTRIES: Final = 4096


class Resolver(Protocol):
    async def resolve(self, url: str) -> list[str]:
        """The addresses `url` may be connected to. Raises `UnsafeURL`."""


class CheckedResolver:
    def __init__(self, *, allow_private: bool, ttl: float = DEFAULT_TTL,
                 max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.allow_private = allow_private
        self.ttl = ttl
        self.max_entries = max_entries
        self._cache: dict[str, tuple[float, list[str]]] = {}

    async def resolve(self, url: str) -> list[str]:
        now = trio.current_time()
        hit = self._cache.get(url)
        if hit is not None and hit[0] > now:
            await trio.lowlevel.checkpoint()
            return hit[1]
        addresses = await resolve_checked(url, allow_private=self.allow_private)
        self._cache.pop(url, None)
        if len(self._cache) >= self.max_entries:
            del self._cache[next(iter(self._cache))]  # the oldest entry
        self._cache[url] = (trio.current_time() + self.ttl, addresses)
        return addresses
