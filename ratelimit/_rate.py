"""What a limit is: `Rate` (COUNT per PERIOD) and the `COUNT/PERIOD` setting syntax.

A rate is both the burst (COUNT requests may arrive at once on a full bucket)
and the sustained pace (one request per PERIOD/COUNT after that). The maths in
`_gcra.py` works in integer nanoseconds, so a `Rate` carries its period in
nanoseconds too, computed once here rather than on every hit.

Setting syntax, case-insensitive, spaces allowed around the parts::

    COUNT/[MULTIPLIER]UNIT      10/minute   10/min   5/15min   3/hour   3/h

UNIT is one of ``s sec secs second seconds``, ``min mins minute minutes``,
``h hr hrs hour hours``, ``d day days``. A bare ``m`` is refused on purpose: it
reads as "month" as easily as "minute". COUNT and MULTIPLIER are positive whole
numbers. Anything else raises `RateParseError`, whose message names the setting
and shows the expected form.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Final

SECOND: Final = 1.0
MINUTE: Final = 60 * SECOND
HOUR: Final = 60 * MINUTE
DAY: Final = 24 * HOUR

NS_PER_SECOND: Final = 1_000_000_000

# The fastest pace a rate may have: one request per millisecond (1000/second).
# The maths forgives float rounding of the clock by `_gcra.TOLERANCE_NS` (1 µs);
# keeping every token interval far above that tolerance means the tolerance can
# never hand out an extra token.
MIN_INTERVAL: Final = 0.001 * SECOND
_MIN_INTERVAL_NS: Final = NS_PER_SECOND // 1000
# The largest burst. `_gcra` rounds each token's share of the period down to a
# whole nanosecond, so COUNT single requests may undercharge by up to COUNT ns;
# with at most 100 000 of them against a token interval of at least 1 ms, that
# error (plus the 1 µs tolerance) can never add up to a token.
MAX_COUNT: Final = 100_000
# The longest period, so that state stays a small integer of nanoseconds and a
# typo such as 3/99999999hour is caught rather than locking a client out for ever.
MAX_PERIOD: Final = 366 * DAY

_UNIT_NAMES: Final[tuple[tuple[str, float, tuple[str, ...]], ...]] = (
    ("second", SECOND, ("s", "sec", "secs", "second", "seconds")),
    ("minute", MINUTE, ("min", "mins", "minute", "minutes")),
    ("hour", HOUR, ("h", "hr", "hrs", "hour", "hours")),
    ("day", DAY, ("d", "day", "days")),
)
_UNITS: Final = {alias: seconds for _, seconds, aliases in _UNIT_NAMES for alias in aliases}
_CANONICAL: Final = {seconds: name for name, seconds, _ in _UNIT_NAMES}

_RATE_RE: Final = re.compile(r"\s*(\d+)\s*/\s*(\d+)?\s*([a-z]+)\s*", re.ASCII | re.IGNORECASE)

_EXPECTED: Final = "expected COUNT/PERIOD such as 10/minute, 5/15min or 3/hour " \
                   "(periods: second, minute, hour, day)"


class RateParseError(ValueError):
    """Raised by `parse_rate` (and `Rate`) for a limit that cannot be used.

    `text` is the offending setting as given, so a configuration error can
    quote it back.
    """

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"invalid rate {text!r}: {reason}; {_EXPECTED}")


@dataclass(frozen=True, slots=True)
class Rate:
    """`count` requests per `period` seconds: burst `count`, refill one per `interval`."""

    count: int
    period: float
    # Derived once; the hot path reads this instead of converting a float per hit.
    period_ns: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        text = f"{self.count!r}/{self.period!r}s"
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise RateParseError(text, "COUNT must be a whole number of at least 1")
        if self.count > MAX_COUNT:
            raise RateParseError(text, f"COUNT must be at most {MAX_COUNT}")
        if (isinstance(self.period, bool) or not isinstance(self.period, (int, float))
                or not math.isfinite(self.period) or self.period <= 0):
            raise RateParseError(text, "PERIOD must be a positive, finite number of seconds")
        if self.period > MAX_PERIOD:
            raise RateParseError(text, "PERIOD must be at most 366 days")
        period_ns = round(self.period * NS_PER_SECOND)
        if self.count * _MIN_INTERVAL_NS > period_ns:
            raise RateParseError(text, f"faster than one request per {MIN_INTERVAL * 1000:g} ms")
        object.__setattr__(self, "period_ns", period_ns)

    @property
    def interval(self) -> float:
        """Seconds for one token to come back."""
        return self.period / self.count

    def __str__(self) -> str:
        unit = _CANONICAL.get(float(self.period))
        if unit is not None:
            return f"{self.count}/{unit}"
        for seconds in (DAY, HOUR, MINUTE, SECOND):
            multiple = self.period / seconds
            if multiple == int(multiple):
                return f"{self.count}/{int(multiple)}{_CANONICAL[seconds]}s"
        return f"{self.count}/{self.period:g}s"


def parse_rate(text: str) -> Rate:
    """Parse a `COUNT/PERIOD` setting (see the module docstring for the syntax)."""
    if not isinstance(text, str):
        raise RateParseError(repr(text), "a rate setting must be a string")
    match = _RATE_RE.fullmatch(text)
    if match is None:
        raise RateParseError(text, "not of the form COUNT/PERIOD")
    count_text, multiplier_text, unit_text = match.groups()
    unit = _UNITS.get(unit_text.lower())
    if unit is None:
        raise RateParseError(text, f"unknown period {unit_text!r}")
    if len(count_text) > 9 or len(multiplier_text or "") > 9:
        raise RateParseError(text, "number too large")
    count = int(count_text)
    multiplier = 1 if multiplier_text is None else int(multiplier_text)
    if count < 1:
        raise RateParseError(text, "COUNT must be at least 1")
    if multiplier < 1:
        raise RateParseError(text, "the period multiplier must be at least 1")
    try:
        return Rate(count, multiplier * unit)
    except RateParseError as exc:
        raise RateParseError(text, exc.reason) from None
