"""Routing live operations to the session's owner: any node serves any request.

Most routes need only the database (sessions, sending, message status,
contacts, webhooks) and are answered by whichever node the client reached.
The few that need the live WhatsApp connection (connect, disconnect, QR,
pairing code, delete, on-WhatsApp, groups) run where the session's actor is:

- this node holds the lease: handled here;
- another live node holds it: the request is proxied to that node's internal
  address (its `cluster_nodes.address`), over HTTP with the client's headers
  and body, plus `X-Gateway-Hop: <that node's token>`. The owner checks the
  token: a request that carries a valid one is answered there and never
  routed again (no loops), and the rate limits are not charged twice (the
  entry node charged them). A wrong token is ignored, so the header grants
  nothing to someone who does not know the token, which only nodes (through
  the database) do;
- nobody holds it: `connect` takes the lease here; the others answer here
  from the persisted state (409 for a session that is down), except that a
  session persisted as CONNECTED or CONNECTING while wanted online is between
  owners (its node died and the lease has not expired yet, or it is being
  handed over): 503 with Retry-After.

Failure modes: the owner is unreachable or slower than `timeout` → 503 with
Retry-After (if it died, its lease expires within a TTL and another node
resumes the session); ownership moved between the lookup and the proxied
request → the old owner answers 503 and the client retries; the internal
address is wrong (GATEWAY_NODE_HOST) → every routed request is 503, and the
node's log says so on each failure.
"""

from __future__ import annotations

import logging
import math
from typing import Final

import httpx
from quart import Response

from actors import SessionState

from .._request import RequestInfo
from ..errors import TryAgainLater
from ..store import LeaseOwner, Store
from ._keeper import LeaseKeeper

log = logging.getLogger("gateway.cluster")

HOP_HEADER: Final = "X-Gateway-Hop"
FORWARDED_BY: Final = "X-Gateway-Node"
PROXY_TIMEOUT: Final = 40.0  # the slowest live operation (pairing code, groups) waits 30 s for WhatsApp
_HOP_BY_HOP: Final = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade", "host", "content-length", HOP_HEADER.lower(),
})
_NOT_RETURNED: Final = _HOP_BY_HOP | {"content-encoding", "content-type", "date", "server"}
_BETWEEN_OWNERS: Final = (SessionState.CONNECTED, SessionState.CONNECTING)


class Router:
    def __init__(self, store: Store, keeper: LeaseKeeper, http: httpx.AsyncClient, *, token: str,
                 timeout: float = PROXY_TIMEOUT) -> None:
        self._store = store
        self._keeper = keeper
        self._http = http
        self._token = token
        self._timeout = timeout
        self._retry_after = max(1, math.ceil(keeper.interval))
        self.proxied = 0
        self.proxy_failures = 0

    def is_forwarded(self, req: RequestInfo | None = None) -> bool:
        """True when the request (by default, the one Quart serves) was routed here by another node (a valid
        hop token)."""
        return (req or RequestInfo.from_quart()).headers.get(HOP_HEADER) == self._token

    async def route(self, session_id: str, *, connect: bool, body: bytes, req: RequestInfo | None = None
                    ) -> Response | None:
        """Proxy the request (by default, the one Quart serves) to the session's owner; None when it is to be
        handled here."""
        req = req or RequestInfo.from_quart()
        if self._keeper.holds(session_id):
            return None
        owner = await self._store.lease_owner(session_id)
        if owner is None:
            if not connect:
                record = await self._store.get_session(session_id)
                if record is not None and record.connect_on_start and record.status in _BETWEEN_OWNERS:
                    raise self._unavailable("The session is moving between nodes; retry shortly")
            return None
        if owner.node_id == self._keeper.node_id or self.is_forwarded(req) or not owner.address:
            # Ours in the database but not valid here (being stopped), or we are already a hop.
            raise self._unavailable("The session is changing owner; retry shortly")
        return await self._proxy(owner, body, req)

    def _unavailable(self, message: str) -> TryAgainLater:
        return TryAgainLater(message, retry_after=self._retry_after)

    async def _proxy(self, owner: LeaseOwner, body: bytes, req: RequestInfo) -> Response:
        headers = [(k, v) for k, v in req.headers.items() if k.lower() not in _HOP_BY_HOP]
        headers += [(HOP_HEADER, owner.token), (FORWARDED_BY, self._keeper.node_id)]
        url = owner.address.rstrip("/") + req.full_path
        try:
            answer = await self._http.request(req.method, url, content=body, headers=headers,
                                              timeout=self._timeout)
        except httpx.HTTPError as exc:
            self.proxy_failures += 1
            log.warning("could not reach the session's owner", extra={"fields": {
                "node": owner.node_id, "address": owner.address, "error": repr(exc)}})
            raise self._unavailable("The node that runs this session did not answer; retry shortly") from None
        self.proxied += 1
        response = Response(answer.content, status=answer.status_code,
                            content_type=answer.headers.get("content-type"))
        for key, value in answer.headers.multi_items():
            if key.lower() not in _NOT_RETURNED:
                response.headers.add(key, value)
        return response
