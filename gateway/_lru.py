"""One small bounded cache, for every cache the gateway keeps in memory.

Verified credentials, on-WhatsApp answers and recently seen inbound message
ids all need the same thing: a map that never grows past a fixed number of
entries (it forgets the one stored longest ago first) and, for two of them,
forgets an entry after a time to live on trio's clock (mockable in tests).
The memory bound is `max_entries` × the size of one entry.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

import trio

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """At most `max_entries` entries; with `ttl` (seconds), an entry is gone `ttl` after it was put."""

    def __init__(self, max_entries: int, *, ttl: float | None = None) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self._max = max_entries
        self._ttl = ttl
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The live value for `key`, or None (absent, or expired: then it is dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._ttl is not None and entry[0] <= trio.current_time():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: K, value: V) -> None:
        """Store `value` (as the newest entry), dropping the oldest entries beyond the bound."""
        expires = trio.current_time() + self._ttl if self._ttl is not None else 0.0
        self._entries[key] = (expires, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def add(self, key: K, value: V) -> bool:
        """Store `value` unless `key` has a live entry; True when it was stored (a first sighting)."""
        if self.get(key) is not None:
            return False
        self.put(key, value)
        return True

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
