"""Backoff and crash-loop detection. Pure: callers pass the time and the randomness."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with full jitter on the upper half.

    attempt 1 waits about `initial`, each further attempt `multiplier` times
    more, never more than `maximum`. Jitter spreads the delay over
    [delay * (1 - jitter), delay], so many sessions dropped at once (a network
    blip, a simulator restart) do not reconnect in lockstep.
    """

    initial: float = 1.0
    maximum: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        if attempt < 1:
            return 0.0
        base = min(self.maximum, self.initial * self.multiplier ** min(attempt - 1, 64))
        r = (rng or random).random()
        return base * (1.0 - self.jitter * r)


@dataclass
class CrashWindow:
    """Counts crashes inside a sliding window: `max_crashes` within `window` seconds is a loop."""

    max_crashes: int = 5
    window: float = 60.0
    _times: deque[float] = field(default_factory=deque)

    def record(self, now: float) -> bool:
        """Record a crash at `now`; True if this makes a crash loop."""
        self._times.append(now)
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        return len(self._times) >= self.max_crashes

    @property
    def recent(self) -> int:
        return len(self._times)
