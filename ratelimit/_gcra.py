"""The limiter's pure maths: GCRA on integer nanoseconds, and the HTTP headers.

GCRA (the generic cell rate algorithm) is a token bucket kept as one number per
key: the *theoretical arrival time* (TAT), the instant at which the bucket
will be full again. `TAT - now` is the bucket's debt: zero when full, the
whole period when empty. A request of `cost` tokens adds `cost` token
intervals to the debt and is allowed when the debt stays within one period.
So a full bucket admits `count` requests at once (the burst), refills
continuously at one token per `period / count`, and a refused request changes
nothing.

Why integers: `trio.current_time()` is a float, and "a request made exactly at
the advertised retry time succeeds" must hold every time, not just usually.
The clock is converted once to whole nanoseconds and every comparison after
that is exact. The one inexact step, the caller adding a float `retry_after`
to a float clock, is absorbed by `TOLERANCE_NS` (1 µs), far below the
shortest token interval `Rate` accepts (1 ms), so the tolerance never grants
an extra token.

Nothing here reads a clock or touches a backend: `decide` takes `now` as an
argument. The memory backend calls it with `trio.current_time()`; a shared
backend must run the same maths against one shared clock (see `_backend.py`).
"""

from __future__ import annotations

import math
from typing import Final, TypeAlias

import msgspec

from ._rate import NS_PER_SECOND, Rate

# Slack forgiven when comparing against the limit, for float rounding of the
# clock (see the module docstring). Retry times are reported without it.
TOLERANCE_NS: Final = 1_000

State: TypeAlias = int
"""A bucket's TAT in integer nanoseconds on the backend's clock; absent means full."""


class CostExceedsLimit(ValueError):
    """Raised when one request costs more tokens than the bucket can ever hold.

    Such a request can never pass however long the client waits, so it must
    not be answered 429 with a Retry-After: the API answers 422 (the batch is
    too large for the limit). Nothing is charged. `cost` and `limit` carry the
    numbers for the error message.
    """

    def __init__(self, cost: int, rate: Rate) -> None:
        self.cost = cost
        self.limit = rate.count
        self.rate = rate
        super().__init__(f"a request costing {cost} can never fit the limit of {rate}")


class Decision(msgspec.Struct, frozen=True, gc=False):
    """The answer to one request against one bucket.

    `retry_after` is 0.0 for an allowed request; for a refused one it is the
    exact wait, in seconds, after which the same request will be allowed.
    `reset_after` is the wait until the bucket is full again. `remaining` is
    how many more single-token requests would pass right now.
    """

    allowed: bool
    limit: int
    remaining: int
    retry_after: float
    reset_after: float

    @property
    def retry_after_seconds(self) -> int:
        """`Retry-After` in whole seconds, rounded up: at least 1 when refused, 0 when allowed."""
        if self.allowed:
            return 0
        return max(1, math.ceil(self.retry_after))

    @property
    def reset_seconds(self) -> int:
        """`X-RateLimit-Reset`: whole seconds until the bucket is full, rounded up."""
        return math.ceil(self.reset_after)


def to_ns(now: float) -> int:
    """A `trio.current_time()` reading as whole nanoseconds."""
    return round(now * NS_PER_SECOND)


def is_full(state: State | None, now: float) -> bool:
    """True when the bucket has refilled completely, so its state can be dropped."""
    return state is None or state <= to_ns(now)


def decide(state: State | None, now: float, rate: Rate, cost: int = 1) -> tuple[Decision, State | None]:
    """Charge `cost` tokens at time `now` (seconds); return the decision and the new state.

    A refused request returns the state unchanged, and so does a cost of 0
    (a peek: report the bucket without charging it). Raises `CostExceedsLimit`
    when `cost > rate.count`, `ValueError` for a negative cost and `TypeError`
    for a cost that is not an int.
    """
    return decide_ns(state, round(now * NS_PER_SECOND), rate, cost)


def decide_ns(state: State | None, now_ns: int, rate: Rate, cost: int = 1) -> tuple[Decision, State | None]:
    """`decide` with the clock already in integer nanoseconds (what a backend's clock gives)."""
    if type(cost) is not int:
        raise TypeError(f"cost must be an int, got {cost!r}")
    if cost > rate.count:
        raise CostExceedsLimit(cost, rate)
    if cost < 0:
        raise ValueError(f"cost must not be negative, got {cost}")
    period_ns = rate.period_ns
    count = rate.count
    tat = now_ns if state is None or state < now_ns else state
    # The cost's share of the period, rounded down once for the whole batch:
    # `count` tokens always sum to at most one period, so a full bucket always
    # admits exactly `count` (`_rate.MAX_COUNT` bounds the rounding's drift).
    new_tat = tat + cost * period_ns // count
    debt = new_tat - now_ns
    if debt <= period_ns + TOLERANCE_NS:
        # In [0, count] with no clamping: 0 <= debt, and TOLERANCE_NS * count
        # is below one period because every token interval is at least 1 ms.
        remaining = (period_ns - debt + TOLERANCE_NS) * count // period_ns
        decision = Decision(True, count, remaining, 0.0, debt / NS_PER_SECOND)
        return decision, (new_tat if cost else state)
    held = tat - now_ns  # may exceed a period if the key's rate was lowered
    remaining = (period_ns - held + TOLERANCE_NS) * count // period_ns
    decision = Decision(False, count, min(max(remaining, 0), count),
                        (debt - period_ns) / NS_PER_SECOND, held / NS_PER_SECOND)
    return decision, state


def refund_ns(state: State | None, now_ns: int, rate: Rate, cost: int = 1) -> State | None:
    """Give back `cost` tokens charged earlier (the request they paid for was not served).

    The debt shrinks by what `decide_ns` added for that cost, never below zero: a
    refund cannot make a bucket fuller than full, and refunding into a bucket that
    refilled meanwhile does nothing. Returns the new state (None: full).
    """
    if type(cost) is not int or cost < 0:
        raise ValueError(f"cost must be a non-negative int, got {cost!r}")
    if state is None:
        return None
    tat = state - cost * rate.period_ns // rate.count
    return tat if tat > now_ns else None


def rate_limit_headers(decision: Decision) -> dict[str, str]:
    """The response headers for a decision: the limit headers, plus `Retry-After` when refused.

    `X-RateLimit-Reset` is seconds until the bucket is full (not an epoch
    timestamp), rounded up like `Retry-After`, so a client that waits that
    long always finds what the header promised.
    """
    headers = {
        "X-RateLimit-Limit": str(decision.limit),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Reset": str(decision.reset_seconds),
    }
    if not decision.allowed:
        headers["Retry-After"] = str(decision.retry_after_seconds)
    return headers
