"""The retry policy: pure decisions, no clock and no I/O."""

from __future__ import annotations

import email.utils
import random

import pytest
from tenacity.wait import wait_exponential

from gateway.webhooks import (
    DEFAULT_MAX_ATTEMPTS, NOMINAL_WAIT, AttemptResult, Decision, Failure, RetryPolicy, Verdict, classify,
    parse_retry_after, wait_spread,
)

HOUR = 3600.0
NOW = 1_800_000_000.0


@pytest.mark.parametrize(("status", "verdict"), [
    (200, Verdict.DELIVERED), (201, Verdict.DELIVERED), (204, Verdict.DELIVERED), (299, Verdict.DELIVERED),
    (400, Verdict.FINAL), (401, Verdict.FINAL), (403, Verdict.FINAL), (404, Verdict.FINAL), (410, Verdict.FINAL),
    (413, Verdict.FINAL), (422, Verdict.FINAL),
    (408, Verdict.RETRY), (429, Verdict.RETRY), (500, Verdict.RETRY), (502, Verdict.RETRY), (503, Verdict.RETRY),
    (504, Verdict.RETRY), (301, Verdict.RETRY), (302, Verdict.RETRY),
])
def test_statuses(status, verdict):
    assert classify(AttemptResult(status=status)) is verdict


@pytest.mark.parametrize("failure", list(Failure))
def test_failures(failure):
    expected = Verdict.FINAL if failure in (Failure.BLOCKED, Failure.INVALID) else Verdict.RETRY
    assert classify(AttemptResult(failure=failure)) is expected


def test_an_attempt_has_a_status_or_a_failure():
    with pytest.raises(ValueError):
        AttemptResult()
    with pytest.raises(ValueError):
        AttemptResult(status=500, failure=Failure.TIMEOUT)
    assert [AttemptResult(status=s).label for s in (204, 408, 429, 404, 503)] == ["2xx", "408", "429", "4xx", "5xx"]
    assert AttemptResult(failure=Failure.TIMEOUT).label == "timeout"


@pytest.mark.parametrize(("value", "seconds"), [
    ("120", 120.0), (" 7 ", 7.0), ("0", 0.0),
    (email.utils.formatdate(NOW + 600, usegmt=True), 600.0),
    (email.utils.formatdate(NOW - 600, usegmt=True), 0.0),
    ("-5", None), ("1.5", None), ("soon", None), ("", None), (None, None),
    ("Wed, 21 Oct 2015 07:28:00", None),  # a date without a zone is not a valid HTTP date
])
def test_retry_after_values(value, seconds):
    assert parse_retry_after(value, now=NOW) == seconds


def test_the_default_schedule_spans_about_a_day():
    policy = RetryPolicy(wait=NOMINAL_WAIT)
    waits = policy.nominal_schedule()
    assert policy.max_attempts == DEFAULT_MAX_ATTEMPTS == 14 and len(waits) == 13
    assert waits[:8] == [5, 15, 45, 135, 405, 1215, 3645, 10935]
    assert waits[8:] == [4 * HOUR] * 5
    assert sum(waits) == pytest.approx(24.56 * HOUR, abs=0.01 * HOUR)


def test_default_jitter_stays_within_ten_percent_and_varies():
    policy = RetryPolicy(wait=wait_spread(NOMINAL_WAIT, 0.1, random.Random(7)))
    nominal = RetryPolicy(wait=NOMINAL_WAIT)
    samples = [[policy.backoff(n) for _ in range(50)] for n in (1, 9, 13)]
    for n, values in zip((1, 9, 13), samples):
        base = nominal.backoff(n)
        assert all(0.9 * base <= v <= 1.1 * base for v in values)
        assert len(set(values)) > 40  # capped waits are spread too
    with pytest.raises(ValueError):
        wait_spread(NOMINAL_WAIT, 1.0)


def test_decide():
    policy = RetryPolicy(wait=NOMINAL_WAIT, max_attempts=4, retry_after_cap=HOUR)
    ok = policy.decide(1, AttemptResult(status=202), now=NOW)
    assert (ok.decision, ok.delay) == (Decision.DELIVERED, None)
    retry = policy.decide(2, AttemptResult(status=503, detail="maintenance"), now=NOW)
    assert (retry.decision, retry.delay, retry.reason) == (Decision.RETRY, 15, "HTTP 503: maintenance")
    final = policy.decide(1, AttemptResult(status=404), now=NOW)
    assert final.decision is Decision.DEAD and "not retried" in final.reason
    spent = policy.decide(4, AttemptResult(failure=Failure.TIMEOUT), now=NOW)
    assert spent.decision is Decision.DEAD and "gave up after 4 attempts" in spent.reason


def test_retry_after_is_a_floor_with_a_cap():
    policy = RetryPolicy(wait=NOMINAL_WAIT, retry_after_cap=HOUR)
    assert policy.decide(1, AttemptResult(status=429, retry_after="120"), now=NOW).delay == 120
    assert policy.decide(3, AttemptResult(status=429, retry_after="1"), now=NOW).delay == 45  # the schedule wins
    assert policy.decide(1, AttemptResult(status=503, retry_after="86400"), now=NOW).delay == HOUR
    date = email.utils.formatdate(NOW + 300, usegmt=True)
    assert policy.decide(1, AttemptResult(status=503, retry_after=date), now=NOW).delay == 300
    assert policy.decide(1, AttemptResult(status=503, retry_after="garbage"), now=NOW).delay == 5


def test_any_tenacity_wait_can_be_the_schedule():
    policy = RetryPolicy(wait=wait_exponential(multiplier=1, max=60), max_attempts=20)
    assert policy.nominal_schedule()[:7] == [1, 2, 4, 8, 16, 32, 60]
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
