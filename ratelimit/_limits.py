"""`Limits`: which rate applies to which request, and the bucket key it is counted under.

The API has four limits (the seed's defaults, all configurable):

======  ===============================  =========  ==================
scope   what                             per        default
======  ===============================  =========  ==================
send    POST /send-message (cost: the    session    10/minute
        number of messages in the batch)
api     every authenticated route        user       100/minute
auth    login and other auth routes      client IP  5/minute
forgot  forgot password                  email      3/hour
======  ===============================  =========  ==================

A per-key `override` hook can give one subject its own rate, for instance a
session's own send limit. Because a bucket's state is a point in time (see
`_gcra.py`), changing a key's rate needs no migration: the debt it has run up
is simply measured against the new period from the next request on.

Keys are `"<scope>:<subject>"`, so scopes never share a bucket. Subjects are
normalised where clients could otherwise multiply their buckets: emails are
case-folded, an IPv6 client is limited per /64 (one customer's allocation, in
which an attacker can pick any of 2^64 addresses), and a subject longer than
128 characters is replaced by its digest, so each key costs bounded memory.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from ._backend import Limiter
from ._gcra import Decision
from ._rate import HOUR, MINUTE, Rate, RateParseError, parse_rate

MAX_SUBJECT_LENGTH: Final = 128


class Scope(enum.StrEnum):
    """Which limit a request counts against; the value prefixes its bucket key."""

    SEND = "send"
    API = "api"
    AUTH = "auth"
    FORGOT = "forgot"


DEFAULT_SEND: Final = Rate(10, MINUTE)
DEFAULT_API: Final = Rate(100, MINUTE)
DEFAULT_AUTH: Final = Rate(5, MINUTE)
DEFAULT_FORGOT: Final = Rate(3, HOUR)

Override = Callable[[Scope, str], Rate | None]
"""`(scope, subject) -> Rate | None`: a subject's own rate, or None for the scope's.

Called on every request, so it must be cheap and must not block (no I/O):
read the rate from something already in memory, such as the session object.
"""


@dataclass(frozen=True, slots=True)
class Limits:
    """The four scopes' rates, plus an optional per-subject `override` hook."""

    send: Rate = DEFAULT_SEND
    api: Rate = DEFAULT_API
    auth: Rate = DEFAULT_AUTH
    forgot: Rate = DEFAULT_FORGOT
    override: Override | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, str | Rate], *, override: Override | None = None) -> Limits:
        """Build from `{"send": "10/minute", ...}`; scopes left out keep their defaults.

        Raises `RateParseError` (a `ValueError`) naming the scope for a bad
        rate, and `ValueError` for a scope that does not exist.
        """
        rates: dict[str, Rate] = {}
        for name, value in raw.items():
            try:
                scope = Scope(name)
            except ValueError:
                known = ", ".join(s.value for s in Scope)
                raise ValueError(f"unknown rate limit scope {name!r} (scopes: {known})") from None
            if isinstance(value, Rate):
                rates[scope.value] = value
                continue
            try:
                rates[scope.value] = parse_rate(value)
            except RateParseError as exc:
                raise RateParseError(exc.text, f"{exc.reason} (rate limit {scope.value!r})") from None
        return cls(**rates, override=override)

    def with_override(self, override: Override | None) -> Limits:
        """The same limits with another override hook."""
        return dataclasses.replace(self, override=override)

    def rates(self) -> dict[Scope, Rate]:
        """Each scope's rate before overrides (for documentation and diagnostics)."""
        return {scope: getattr(self, scope.value) for scope in Scope}

    def rate(self, scope: Scope | str, subject: str | None = None) -> Rate:
        """The rate for `subject` in `scope`: the override's if it gives one, else the scope's."""
        scope = Scope(scope)
        if self.override is not None and subject is not None:
            rate = self.override(scope, subject)
            if rate is not None:
                return rate
        return getattr(self, scope.value)

    def key(self, scope: Scope | str, subject: str) -> str:
        """The bucket key for `subject` in `scope` (see the module docstring)."""
        scope = Scope(scope)
        if scope is Scope.FORGOT:
            subject = subject.strip().casefold()
        elif scope is Scope.AUTH:
            subject = _client_network(subject)
        if len(subject) > MAX_SUBJECT_LENGTH:
            digest = hashlib.blake2b(subject.encode(errors="surrogatepass"), digest_size=16)
            subject = "#" + digest.hexdigest()
        return f"{scope.value}:{subject}"

    def resolve(self, scope: Scope | str, subject: str) -> tuple[str, Rate]:
        """`(key, rate)` for one request: the arguments for `Limiter.hit`."""
        return self.key(scope, subject), self.rate(scope, subject)

    async def hit(self, limiter: Limiter, scope: Scope | str, subject: str, cost: int = 1) -> Decision:
        """Charge one request by `subject` in `scope` to `limiter`."""
        key, rate = self.resolve(scope, subject)
        return await limiter.hit(key, rate, cost)


def _client_network(address: str) -> str:
    """An IP as the unit a client controls: IPv4 as is, IPv6 as its /64."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
