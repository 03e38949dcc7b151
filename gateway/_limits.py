"""The seed's rate limits, applied at the HTTP edge.

A single node decides in memory (`MemoryLimiter.hit_nowait`), so a limited
answer costs no I/O and the async methods below never even yield. In cluster
mode the limiter is `PostgresLimiter`, shared by every node, so a limit
holds exactly across nodes at the price of one round trip per decision.
Scopes:
- auth: failed authentications per client IP. Once an IP has used its
  allowance, its failed attempts are answered 429 instead of 401 until the
  bucket refills. A valid credential is never refused by this scope: API keys
  are 256-bit random secrets nobody can guess, and one careless client behind
  a shared address must not lock every other client out;
- api: authenticated requests per user, across all its tokens and session keys;
- send: messages per session (a batch costs its size), with per-session rates
  set through `sendLimit`;
- forgot: password-reset requests per email (`/forgot`), whether or not the
  email has an account, so the answer reveals nothing.
The dashboard's auth routes charge the auth scope too: every sign-up, forgot
and reset request, and each failed login.
A scope set to `off` is not limited (load tests); a session's own `sendLimit`
still applies then.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from ratelimit import (
    CostExceedsLimit,
    Decision,
    Limiter,
    Limits,
    MemoryLimiter,
    Rate,
    Scope,
    parse_rate,
)

from ._config import LIMIT_OFF, Config
from .errors import RateLimitExceeded, ValidationError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RateGuard:
    def __init__(self, config: Config, limiter: MemoryLimiter | Limiter | None = None) -> None:
        self.limiter: MemoryLimiter | Limiter = limiter or MemoryLimiter()
        self._memory = self.limiter if isinstance(self.limiter, MemoryLimiter) else None
        self._send_rates: dict[str, Rate] = {}
        settings = {"send": config.limit_send, "api": config.limit_api, "auth": config.limit_auth,
                    "forgot": config.limit_forgot}
        self._off = {Scope(name) for name, value in settings.items() if value == LIMIT_OFF}
        self.limits = Limits.from_mapping({k: v for k, v in settings.items() if v != LIMIT_OFF},
                                          override=self._override)
        self._proxies: tuple[Network, ...] = config.proxy_networks()
        self.rejections: dict[str, int] = {s.value: 0 for s in Scope}

    def _override(self, scope: Scope, subject: str) -> Rate | None:
        return self._send_rates.get(subject) if scope is Scope.SEND else None

    def set_send_rate(self, session_id: str, rate: str | None) -> None:
        """A session's own send rate (None: the default). Kept in memory for the hot path; in cluster
        mode every node refreshes it from the session's record as it accepts a send."""
        if rate is None:
            self._send_rates.pop(session_id, None)
        else:
            self._send_rates[session_id] = parse_rate(rate)

    # -- scopes --------------------------------------------------------------------

    async def auth_attempt(self, ip: str) -> None:
        """Count an auth attempt (a failed one, or a sign-up, forgot or reset request); raises
        RateLimitExceeded once the allowance is spent."""
        await self._charge(Scope.AUTH, ip, 1)

    async def api(self, user_id: str) -> Decision | None:
        return await self._charge(Scope.API, user_id, 1)

    async def send(self, session_id: str, cost: int = 1) -> Decision | None:
        try:
            return await self._charge(Scope.SEND, session_id, cost)
        except CostExceedsLimit as exc:
            raise ValidationError.at("$.messages", f"a batch of {exc.cost} exceeds this session's send limit "
                                                   f"of {exc.rate}; split it") from None

    async def refund_send(self, session_id: str, cost: int) -> None:
        """Give back tokens `send` charged for messages that were then refused (validation with I/O)."""
        if Scope.SEND in self._off and session_id not in self._send_rates:
            return
        await self._refund(Scope.SEND, session_id, cost)

    async def refund_auth(self, ip: str) -> None:
        """Give back an auth attempt charged before a login that then succeeded."""
        if Scope.AUTH not in self._off:
            await self._refund(Scope.AUTH, ip, 1)

    async def _refund(self, scope: Scope, subject: str, cost: int) -> None:
        if cost <= 0:
            return
        key, rate = self.limits.resolve(scope, subject)
        if self._memory is not None:
            self._memory.refund_nowait(key, rate, cost)
        else:
            await self.limiter.refund(key, rate, cost)

    async def forgot(self, email: str) -> Decision | None:
        return await self._charge(Scope.FORGOT, email, 1)

    async def _hit(self, key: str, rate: Rate, cost: int) -> Decision:
        if self._memory is not None:
            return self._memory.hit_nowait(key, rate, cost)  # no I/O, and no checkpoint either
        return await self.limiter.hit(key, rate, cost)

    async def _charge(self, scope: Scope, subject: str, cost: int) -> Decision | None:
        if scope in self._off and not (scope is Scope.SEND and subject in self._send_rates):
            return None
        key, rate = self.limits.resolve(scope, subject)
        decision = await self._hit(key, rate, cost)
        if not decision.allowed:
            self.rejections[scope.value] += 1
            raise RateLimitExceeded(f"Rate limit {rate} ({scope.value}) exceeded; retry after "
                                    f"{decision.retry_after_seconds}s", decision=decision)
        return decision

    # -- client address ----------------------------------------------------------------

    def trusted_proxy(self, peer: str | None) -> bool:
        """Whether the socket peer is one of GATEWAY_TRUSTED_PROXIES (its X-Forwarded-* are believed)."""
        return bool(peer) and bool(self._proxies) and _in(peer or "", self._proxies)

    def client_ip(self, peer: str | None, forwarded_for: Sequence[str]) -> str:
        """The socket address, or the right-most untrusted X-Forwarded-For hop behind trusted proxies."""
        ip = peer or "unknown"
        if not self._proxies or not _in(ip, self._proxies):
            return ip
        hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
        for hop in reversed(hops):
            if not _valid_ip(hop):
                return ip  # a garbled header: trust nothing in it
            if not _in(hop, self._proxies):
                return hop
            ip = hop
        return ip


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _in(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)
