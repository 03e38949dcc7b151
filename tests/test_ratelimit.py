"""The pure rate-limit core: rate syntax, GCRA maths, headers and `Limits`.

`decide` takes the clock as an argument, so these tests pass explicit times;
the limiter backend and its mock-clock tests are in test_ratelimit_memory.py.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest

from ratelimit import (
    DAY, HOUR, MAX_COUNT, MINUTE, SECOND, CostExceedsLimit, Decision, Limits, Rate, RateParseError, Scope,
    decide, is_full, parse_rate, rate_limit_headers,
)

T0 = 1000.0
TEN_PER_MINUTE = Rate(10, MINUTE)


def drain(rate: Rate, now: float = T0, state: int | None = None) -> int | None:
    """Take every token of a bucket at `now`; return the empty bucket's state."""
    for _ in range(rate.count):
        decision, state = decide(state, now, rate)
        assert decision.allowed
    return state


# -- rate syntax ---------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("10/minute", Rate(10, MINUTE)),
    ("10/min", Rate(10, MINUTE)),
    ("100/minutes", Rate(100, MINUTE)),
    ("10/s", Rate(10, SECOND)),
    ("10/second", Rate(10, SECOND)),
    ("5/minute", Rate(5, MINUTE)),
    ("3/hour", Rate(3, HOUR)),
    ("3/h", Rate(3, HOUR)),
    ("3/hr", Rate(3, HOUR)),
    ("1/day", Rate(1, DAY)),
    ("5/15min", Rate(5, 15 * MINUTE)),
    ("  10 / 2 Minutes ", Rate(10, 2 * MINUTE)),
    ("1000/second", Rate(1000, SECOND)),
])
def test_parse_rate_accepts(text: str, expected: Rate) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("", "not of the form"),
    ("10", "not of the form"),
    ("10/", "not of the form"),
    ("/minute", "not of the form"),
    ("ten/minute", "not of the form"),
    ("-1/minute", "not of the form"),
    ("1.5/minute", "not of the form"),
    ("10/minute/2", "not of the form"),
    ("１０/minute", "not of the form"),
    ("0/minute", "COUNT must be at least 1"),
    ("10/fortnight", "unknown period 'fortnight'"),
    ("10/m", "unknown period 'm'"),
    ("10/0min", "multiplier must be at least 1"),
    ("2000/second", "faster than one request per 1 ms"),
    ("200000/day", f"at most {MAX_COUNT}"),
    ("1/400d", "at most 366 days"),
    ("9" * 40 + "/s", "number too large"),
])
def test_parse_rate_rejects_garbage_clearly(text: str, reason: str) -> None:
    with pytest.raises(RateParseError) as info:
        parse_rate(text)
    assert info.value.text == text
    assert reason in str(info.value)
    assert "expected COUNT/PERIOD such as 10/minute" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_parse_rate_rejects_non_strings() -> None:
    with pytest.raises(RateParseError):
        parse_rate(10)  # type: ignore[arg-type]


@pytest.mark.parametrize(("count", "period"), [
    (0, MINUTE), (-1, MINUTE), (True, MINUTE), (1.5, MINUTE), (10, 0), (10, -1.0),
    (10, math.inf), (10, math.nan), (10, "60"), (MAX_COUNT + 1, 366 * DAY),
])
def test_rate_validates(count: object, period: object) -> None:
    with pytest.raises(RateParseError):
        Rate(count, period)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["10/minute", "3/hour", "1/day", "5/15minutes", "7/90seconds", "2/second"])
def test_rate_str_round_trips(text: str) -> None:
    rate = parse_rate(text)
    assert str(rate) == text
    assert parse_rate(str(rate)) == rate


def test_rate_is_a_value() -> None:
    assert Rate(10, 60) == Rate(10, 60.0) == TEN_PER_MINUTE
    assert len({Rate(10, 60), TEN_PER_MINUTE}) == 1
    assert TEN_PER_MINUTE.interval == 6.0
    with pytest.raises(AttributeError):
        TEN_PER_MINUTE.count = 11  # type: ignore[misc]


# -- the maths -----------------------------------------------------------------

def test_tenth_passes_eleventh_is_refused_with_retry_after_six_seconds() -> None:
    state = None
    for expected_remaining in range(9, -1, -1):
        decision, state = decide(state, T0, TEN_PER_MINUTE)
        assert decision.allowed
        assert decision.remaining == expected_remaining
        assert decision.limit == 10
        assert decision.retry_after == 0.0
    assert decision.reset_after == 60.0

    refused, after = decide(state, T0, TEN_PER_MINUTE)
    assert not refused.allowed
    assert after == state  # a refusal charges nothing
    assert refused.retry_after == 6.0
    assert refused.reset_after == 60.0
    assert refused.remaining == 0


def test_request_exactly_at_retry_after_succeeds_and_a_bit_earlier_fails() -> None:
    state = drain(TEN_PER_MINUTE)
    refused, _ = decide(state, T0, TEN_PER_MINUTE)
    early, _ = decide(state, T0 + refused.retry_after - 0.001, TEN_PER_MINUTE)
    assert not early.allowed
    on_time, _ = decide(state, T0 + refused.retry_after, TEN_PER_MINUTE)
    assert on_time.allowed
    assert on_time.remaining == 0


def test_tokens_refill_one_every_six_seconds() -> None:
    state = drain(TEN_PER_MINUTE)
    now = T0
    for _ in range(20):
        decision, _ = decide(state, now + 5.999, TEN_PER_MINUTE)
        assert not decision.allowed
        assert decision.retry_after == pytest.approx(0.001)
        now += 6.0
        decision, state = decide(state, now, TEN_PER_MINUTE)
        assert decision.allowed and decision.remaining == 0
        assert not decide(state, now, TEN_PER_MINUTE)[0].allowed


def test_refill_is_continuous_and_burst_equals_count() -> None:
    state = drain(TEN_PER_MINUTE)
    # Half a minute later half the bucket is back.
    assert decide(state, T0 + 30, TEN_PER_MINUTE, cost=0)[0].remaining == 5
    # An hour of idling fills the bucket, and never beyond `count`.
    later = T0 + HOUR
    assert is_full(state, later)
    assert decide(state, later, TEN_PER_MINUTE, cost=0)[0].remaining == 10
    emptied = drain(TEN_PER_MINUTE, later, state)  # exactly ten pass...
    assert not decide(emptied, later, TEN_PER_MINUTE)[0].allowed  # ...and not an eleventh


def test_a_batch_is_charged_whole_or_refused_whole() -> None:
    decision, state = decide(None, T0, TEN_PER_MINUTE, cost=4)
    assert decision.allowed and decision.remaining == 6
    assert decision.reset_after == 24.0

    refused, after = decide(state, T0, TEN_PER_MINUTE, cost=7)
    assert not refused.allowed and after == state
    assert refused.remaining == 6
    assert refused.retry_after == 6.0  # one token short

    decision, state = decide(state, T0, TEN_PER_MINUTE, cost=6)
    assert decision.allowed and decision.remaining == 0

    full_batch, _ = decide(None, T0, TEN_PER_MINUTE, cost=10)
    assert full_batch.allowed and full_batch.remaining == 0


def test_a_cost_above_the_limit_is_reported_distinctly_and_charges_nothing() -> None:
    with pytest.raises(CostExceedsLimit) as info:
        decide(None, T0, TEN_PER_MINUTE, cost=11)
    assert (info.value.cost, info.value.limit) == (11, 10)
    assert "10/minute" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_cost_zero_peeks_and_bad_costs_are_refused() -> None:
    decision, state = decide(None, T0, TEN_PER_MINUTE, cost=0)
    assert decision.allowed and decision.remaining == 10 and state is None
    state = drain(TEN_PER_MINUTE)
    assert decide(state, T0, TEN_PER_MINUTE, cost=0)[1] == state
    with pytest.raises(ValueError):
        decide(None, T0, TEN_PER_MINUTE, cost=-1)
    with pytest.raises(TypeError):
        decide(None, T0, TEN_PER_MINUTE, cost=1.0)  # type: ignore[arg-type]


def test_lowering_a_keys_rate_keeps_its_debt() -> None:
    state = drain(TEN_PER_MINUTE)  # 60 s of debt
    stricter = Rate(2, 20.0)
    refused, after = decide(state, T0, stricter)
    assert not refused.allowed and after == state
    assert refused.remaining == 0
    assert refused.retry_after == 50.0  # debt must fall to 10 s so one 10 s token fits
    assert decide(state, T0 + 50, stricter)[0].allowed


@pytest.mark.parametrize("start", [0.0, 0.1, 12_345.678_9, 98_765.432_1, 1e6 + 0.3, 3.3e7 + 0.7])
@pytest.mark.parametrize("rate", [Rate(7, MINUTE), Rate(3, HOUR), Rate(100, MINUTE), Rate(13, 1.0)])
def test_float_clocks_never_break_exactly_at_retry_after(start: float, rate: Rate) -> None:
    """Any float `now` plus the float `retry_after` lands on an allowed request."""
    rng = random.Random(f"{start}/{rate}")
    state = drain(rate, start)
    now = start
    for _ in range(50):
        refused, _ = decide(state, now, rate)
        assert not refused.allowed and refused.retry_after > 0
        assert not decide(state, now + refused.retry_after - 0.001, rate)[0].allowed
        now = now + refused.retry_after
        decision, state = decide(state, now, rate)
        assert decision.allowed
        now += rng.choice([0.0, 0.0, 0.001, rng.random() * rate.interval / 2])


def test_matches_an_exact_token_bucket() -> None:
    """GCRA agrees with a token bucket computed in exact fractions (whole-ms clock)."""
    rng = random.Random(7)
    for rate in (Rate(10, MINUTE), Rate(5, MINUTE), Rate(3, HOUR), Rate(100, MINUTE), Rate(8, SECOND)):
        state, tokens, last = None, Fraction(rate.count), Fraction(0)
        now_ms = 0
        for _ in range(2000):
            now_ms += rng.choice([0, 0, 1, rng.randrange(int(rate.interval * 2000))])
            cost = rng.choice([1, 1, 1, 2, rate.count // 2 or 1])
            now = Fraction(now_ms, 1000)
            tokens = min(Fraction(rate.count), tokens + (now - last) * rate.count / Fraction(rate.period))
            last = now
            decision, state = decide(state, now_ms / 1000, rate, cost)
            assert decision.allowed == (tokens >= cost)
            if decision.allowed:
                tokens -= cost
            else:
                wait = (cost - tokens) * Fraction(rate.period) / rate.count
                assert decision.retry_after == pytest.approx(float(wait), abs=1e-9)
            assert decision.remaining == math.floor(tokens)


# -- headers -------------------------------------------------------------------

def test_headers_for_an_allowed_request() -> None:
    decision, _ = decide(None, T0, TEN_PER_MINUTE)
    assert rate_limit_headers(decision) == {
        "X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "9", "X-RateLimit-Reset": "6",
    }
    assert decision.retry_after_seconds == 0


def test_headers_for_a_refused_request() -> None:
    refused, _ = decide(drain(TEN_PER_MINUTE), T0, TEN_PER_MINUTE)
    assert rate_limit_headers(refused) == {
        "X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "60",
        "Retry-After": "6",
    }


def test_retry_after_header_rounds_up_and_is_never_zero() -> None:
    rate = Rate(7, MINUTE)  # one token per 8.571428... s
    state = drain(rate)
    refused, _ = decide(state, T0, rate)
    assert refused.retry_after == pytest.approx(60 / 7)
    assert rate_limit_headers(refused)["Retry-After"] == "9"
    assert rate_limit_headers(refused)["X-RateLimit-Reset"] == "60"
    assert not decide(state, T0 + 8, rate)[0].allowed  # the whole second before is too early
    assert decide(state, T0 + 9, rate)[0].allowed  # the advertised whole second is not

    almost, _ = decide(state, T0 + 60 / 7 - 0.3, rate)
    assert not almost.allowed
    assert almost.retry_after_seconds == 1
    assert rate_limit_headers(almost)["Retry-After"] == "1"

    barely = Decision(False, 10, 0, 1e-7, 1e-7)
    assert barely.retry_after_seconds == 1 and barely.reset_seconds == 1


# -- Limits --------------------------------------------------------------------

def test_limits_default_to_the_seed() -> None:
    limits = Limits()
    assert limits.rates() == {
        Scope.SEND: parse_rate("10/minute"), Scope.API: parse_rate("100/minute"),
        Scope.AUTH: parse_rate("5/minute"), Scope.FORGOT: parse_rate("3/hour"),
    }


def test_limits_from_mapping() -> None:
    limits = Limits.from_mapping({"send": "20/minute", "forgot": Rate(1, HOUR)})
    assert limits.rate("send") == Rate(20, MINUTE)
    assert limits.rate(Scope.FORGOT) == Rate(1, HOUR)
    assert limits.rate("api") == Rate(100, MINUTE)
    with pytest.raises(ValueError, match="unknown rate limit scope 'sned'"):
        Limits.from_mapping({"sned": "1/minute"})
    with pytest.raises(RateParseError, match="rate limit 'auth'"):
        Limits.from_mapping({"auth": "5 per minute"})
    with pytest.raises(ValueError):
        Limits().rate("nope")


def test_per_session_override() -> None:
    own = {"vip": Rate(60, MINUTE)}
    limits = Limits(override=lambda scope, subject: own.get(subject) if scope is Scope.SEND else None)
    assert limits.resolve("send", "vip") == ("send:vip", Rate(60, MINUTE))
    assert limits.resolve("send", "other") == ("send:other", Rate(10, MINUTE))
    assert limits.rate("api", "vip") == Rate(100, MINUTE)
    assert Limits().with_override(limits.override).rate("send", "vip") == Rate(60, MINUTE)


def test_keys_are_scoped_and_normalised() -> None:
    limits = Limits()
    assert limits.key("send", "s1") != limits.key("api", "s1")
    assert limits.key("forgot", "  Alice@Example.COM ") == "forgot:alice@example.com"
    assert limits.key("auth", "203.0.113.9") == "auth:203.0.113.9"
    assert limits.key("auth", "::ffff:203.0.113.9") == "auth:203.0.113.9"
    assert limits.key("auth", "2001:db8:1:2:aaaa::1") == limits.key("auth", "2001:db8:1:2:bbbb::9")
    assert limits.key("auth", "2001:db8:1:2::1") == "auth:2001:db8:1:2::/64"
    assert limits.key("auth", "2001:db8:1:3::1") != limits.key("auth", "2001:db8:1:2::1")
    assert limits.key("auth", "unknown") == "auth:unknown"
    long_one, long_two = limits.key("api", "x" * 10_000), limits.key("api", "x" * 9_999 + "y")
    assert long_one != long_two
    assert len(long_one) <= 64 and long_one.startswith("api:#")


def test_refund_ns_undoes_a_charge_and_stops_at_full() -> None:
    from ratelimit import decide_ns, refund_ns

    rate = Rate(4, SECOND)
    second = 1_000_000_000
    now = 10 * second
    _, state = decide_ns(None, now, rate, 3)
    _, after_one = decide_ns(state, now, rate, 1)
    assert refund_ns(after_one, now, rate, 1) == state
    assert refund_ns(state, now, rate, 3) is None  # back to full
    assert refund_ns(state, now, rate, 4) is None  # never fuller than full
    assert refund_ns(None, now, rate, 2) is None
    assert refund_ns(state, now + 2 * second, rate, 1) is None  # it refilled meanwhile
    with pytest.raises(ValueError):
        refund_ns(state, now, rate, -1)
