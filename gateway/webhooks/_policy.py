"""The retry policy: pure decisions about one delivery attempt. No I/O.

`RetryPolicy.decide` takes what an attempt produced (an HTTP status, or the
reason there was none) and says: delivered, retry after so many seconds, or
dead (final failure, or the attempt budget is spent).

What is retried:

| outcome of the attempt                          | verdict                    |
|-------------------------------------------------|----------------------------|
| 2xx                                             | delivered                  |
| 408, 429, 5xx                                   | retry (Retry-After honoured) |
| any other 4xx                                   | dead at once (final)       |
| 1xx/3xx (redirects are not followed)            | retry                      |
| connect error, timeout, connection lost, TLS,   | retry                      |
| malformed answer, host does not resolve         |                            |
| URL refused by the SSRF guard, malformed secret | dead at once (final)       |
| unexpected error inside the gateway             | retry                      |

The default schedule (`DEFAULT_WAIT`, `DEFAULT_MAX_ATTEMPTS` = 14) is
tenacity's `wait_exponential(multiplier=5 s, exp_base=3, max=4 h)`, spread by
±10 % jitter so that deliveries failed together do not come back in lockstep:

| attempt | starts at (nominal)            | if it fails, the next comes after |
|---------|--------------------------------|-----------------------------------|
| 1       | 0 (as soon as the event is written) | 5 s                          |
| 2       | 5 s                            | 15 s                              |
| 3       | 20 s                           | 45 s                              |
| 4       | 1 min 5 s                      | 2 min 15 s                        |
| 5       | 3 min 20 s                     | 6 min 45 s                        |
| 6       | 10 min 5 s                     | 20 min 15 s                       |
| 7       | 30 min 20 s                    | 1 h 0 min 45 s                    |
| 8       | 1 h 31 min 5 s                 | 3 h 2 min 15 s                    |
| 9 … 13  | 4 h 33 min 20 s … 20 h 33 min 20 s | 4 h each                      |
| 14      | 24 h 33 min 20 s               | dead letter                       |

So the last attempt comes about 24.5 hours after the first. A receiver's
`Retry-After` (seconds or an HTTP date) is honoured as a floor: the next
attempt is never earlier than it asks, capped at `retry_after_cap` (4 h), and
never earlier than the schedule says either, so a receiver answering
`429 Retry-After: 1` cannot burn the budget in seconds.
"""

from __future__ import annotations

import email.utils
import enum
import random
from dataclasses import dataclass, field
from typing import Final

from tenacity import RetryCallState
from tenacity.wait import wait_base, wait_exponential

SECONDS: Final = 1.0
MINUTES: Final = 60 * SECONDS
HOURS: Final = 60 * MINUTES

DEFAULT_MAX_ATTEMPTS: Final = 14
DEFAULT_RETRY_AFTER_CAP: Final = 4 * HOURS
DEFAULT_JITTER: Final = 0.1
_RETRY_STATUSES: Final = frozenset({408, 429})


class wait_spread(wait_base):
    """Scale another tenacity wait by a random factor in [1 - spread, 1 + spread].

    Tenacity's own jitter is additive and applied before the cap, so every
    capped wait would be exactly the cap; this jitter survives the cap.
    """

    def __init__(self, inner: wait_base, spread: float, rng: random.Random | None = None) -> None:
        if not 0.0 <= spread < 1.0:
            raise ValueError("spread must be in [0, 1)")
        self.inner = inner
        self.spread = spread
        self.rng = rng or random.Random()

    def __call__(self, retry_state: RetryCallState) -> float:
        factor = 1.0 + self.spread * (2.0 * self.rng.random() - 1.0)
        return self.inner(retry_state) * factor


NOMINAL_WAIT: Final = wait_exponential(multiplier=5 * SECONDS, exp_base=3, max=4 * HOURS)
DEFAULT_WAIT: Final = wait_spread(NOMINAL_WAIT, DEFAULT_JITTER)


class Failure(enum.Enum):
    """Why an attempt got no HTTP answer."""

    CONNECT = "connect"           # no connection (refused, unreachable, connect timeout)
    TLS = "tls"                   # handshake or certificate check failed
    TIMEOUT = "timeout"           # connected, but no complete answer in time
    CONNECTION_LOST = "connection_lost"  # the peer closed or reset the connection mid-request
    PROTOCOL = "protocol"         # the answer was not valid HTTP/1.1
    DNS = "dns"                   # the host does not resolve (now)
    BLOCKED = "blocked"           # the SSRF guard refused the URL: final
    INVALID = "invalid"           # the delivery cannot be sent as stored (e.g. a malformed secret): final
    INTERNAL = "internal"         # an unexpected error in the gateway itself


class Verdict(enum.Enum):
    """What one attempt's result means, before the budget is considered."""

    DELIVERED = "delivered"
    RETRY = "retry"
    FINAL = "final"


class Decision(enum.Enum):
    """What happens to the delivery next. The values are the delivery statuses."""

    DELIVERED = "delivered"
    RETRY = "pending"
    DEAD = "dead"


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt produced: an HTTP status, or a `failure` and no status."""

    status: int | None = None
    failure: Failure | None = None
    retry_after: str | None = None  # the receiver's Retry-After header, raw
    detail: str = ""

    def __post_init__(self) -> None:
        if (self.status is None) == (self.failure is None):
            raise ValueError("an attempt has either a status or a failure")

    @property
    def label(self) -> str:
        """A short, low-cardinality name for statistics: `2xx`, `429`, `timeout`..."""
        if self.failure is not None:
            return self.failure.value
        assert self.status is not None
        return str(self.status) if self.status in _RETRY_STATUSES else f"{self.status // 100}xx"


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    delay: float | None  # seconds until the next attempt, for RETRY
    reason: str


_FINAL_FAILURES: Final = frozenset({Failure.BLOCKED, Failure.INVALID})


def classify(result: AttemptResult) -> Verdict:
    if result.failure is not None:
        return Verdict.FINAL if result.failure in _FINAL_FAILURES else Verdict.RETRY
    status = result.status or 0
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if 400 <= status < 500 and status not in _RETRY_STATUSES:
        return Verdict.FINAL
    return Verdict.RETRY


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a Retry-After value (delta seconds or HTTP date); None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often to retry. See the module docstring for the default schedule."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    wait: wait_base = field(default=DEFAULT_WAIT)
    retry_after_cap: float = DEFAULT_RETRY_AFTER_CAP

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based), from the wait strategy."""
        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = attempt
        return max(0.0, float(self.wait(state)))

    def decide(self, attempt: int, result: AttemptResult, *, now: float) -> Outcome:
        """The fate of a delivery after its attempt number `attempt` gave `result`.

        `now` is wall-clock Unix seconds, used only to read an HTTP-date Retry-After.
        """
        verdict = classify(result)
        reason = _describe(result)
        if verdict is Verdict.DELIVERED:
            return Outcome(Decision.DELIVERED, None, reason)
        if verdict is Verdict.FINAL:
            return Outcome(Decision.DEAD, None, f"{reason} (not retried)")
        if attempt >= self.max_attempts:
            return Outcome(Decision.DEAD, None, f"{reason} (gave up after {attempt} attempts)")
        delay = self.backoff(attempt)
        asked = parse_retry_after(result.retry_after, now=now)
        if asked is not None:
            delay = max(delay, min(asked, self.retry_after_cap))
        return Outcome(Decision.RETRY, delay, reason)

    def nominal_schedule(self) -> list[float]:
        """The waits after attempts 1 … max_attempts-1 (with jitter, if the strategy has it)."""
        return [self.backoff(n) for n in range(1, self.max_attempts)]


def _describe(result: AttemptResult) -> str:
    if result.failure is not None:
        text = result.failure.value
    else:
        text = f"HTTP {result.status}"
    if result.detail:
        text = f"{text}: {result.detail}"
    return text[:500]
