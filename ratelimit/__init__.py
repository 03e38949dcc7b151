"""Rate limiting: GCRA buckets (pure maths) and limiter backends.

Per request the HTTP layer asks `Limits.resolve(scope, subject)` for a key and
a rate, calls `await limiter.hit(key, rate, cost)` (or `hit_nowait` on the
memory backend), answers 429 with `rate_limit_headers(decision)` when the
decision is not allowed, and 422 on `CostExceedsLimit`.
"""

from ._backend import Limiter, LimiterStatistics
from ._gcra import (
    TOLERANCE_NS, CostExceedsLimit, Decision, State, decide, decide_ns, is_full, rate_limit_headers, refund_ns, to_ns,
)
from ._limits import (
    DEFAULT_API, DEFAULT_AUTH, DEFAULT_FORGOT, DEFAULT_SEND, MAX_SUBJECT_LENGTH, Limits, Override, Scope,
)
from ._memory import DEFAULT_MAX_KEYS, DEFAULT_SWEEP_PER_HIT, MemoryLimiter
from ._postgres import PostgresLimiter
from ._rate import (
    DAY, HOUR, MAX_COUNT, MAX_PERIOD, MIN_INTERVAL, MINUTE, SECOND, Rate, RateParseError, parse_rate,
)

__all__ = [
    "DAY", "DEFAULT_API", "DEFAULT_AUTH", "DEFAULT_FORGOT", "DEFAULT_MAX_KEYS", "DEFAULT_SEND",
    "DEFAULT_SWEEP_PER_HIT", "HOUR", "MAX_COUNT", "MAX_PERIOD", "MAX_SUBJECT_LENGTH", "MINUTE", "MIN_INTERVAL",
    "SECOND", "TOLERANCE_NS", "CostExceedsLimit", "Decision", "Limiter", "LimiterStatistics", "Limits",
    "MemoryLimiter", "Override", "PostgresLimiter", "Rate", "RateParseError", "Scope", "State", "decide",
    "decide_ns", "is_full", "parse_rate", "rate_limit_headers", "refund_ns", "to_ns",
]
