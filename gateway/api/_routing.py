"""The thin HTTP edge: declare a route once, get auth, decoding and docs.

A route is declared with `@api.route(...)`, naming its auth mode, body type
and answers. `serve` runs one request of a route: it authenticates, enforces
the route's body cap, decodes the body with a msgspec decoder built once,
calls the handler, and encodes the answer. Two edges call it with the same
`RequestInfo`: the lean lane in front of Quart (`_lean`), which serves the
API's requests, and the Quart view `install` registers for each route, which
serves what the lane hands on (and tests that drive Quart's test client). In cluster mode a route
marked `live` (it needs the session's WhatsApp connection) is first routed:
proxied to the node that owns the session, or handled here (`gateway.cluster`). The same declarations
generate the OpenAPI document, so docs and behaviour cannot drift apart.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
from quart import Response, request

from ratelimit import Decision, rate_limit_headers

from .._auth import AccountPrincipal, Principal, SessionPrincipal
from .._logins import CSRF_HEADER, LOGIN_COOKIE, tokens_match
from .._request import RequestInfo
from ..errors import Forbidden, OwnedElsewhere, Unauthorized, ValidationError, validation_error_from_msgspec
from ._errors import PayloadTooLarge, UnsupportedMediaType

if TYPE_CHECKING:
    from quart import Quart

    from .._gateway import Gateway

JSON = "application/json"
_ENCODER = msgspec.json.Encoder()


class Live(enum.Enum):
    """Routes that need the session's live connection; in cluster mode they run on its owner."""

    OWNER = "owner"  # on the owner; with no owner, answered here from the persisted state
    TAKE = "take"  # on the owner; with no owner, here, taking the session's lease (connect)


class Auth(enum.Enum):
    """Which credential a route takes."""

    NONE = "none"
    PAT = "pat"  # Personal Access Token: X-API-Token, or Authorization: Bearer
    SESSION = "session"  # session API key: Authorization: Bearer
    EITHER = "either"  # a PAT, or the key of the session named in the path


@dataclass
class Param:
    name: str
    description: str
    schema: dict[str, Any]
    required: bool = False


@dataclass
class RouteSpec:
    method: str
    path: str
    handler: Callable[..., Awaitable[Any]]
    summary: str
    tag: str
    auth: Auth
    body: type | None
    status: int
    answer: type | None
    query: list[Param]
    errors: list[type[Exception]]
    media_body: bool
    description: str = ""
    doc_body: type | None = None  # the body as documented, when decoding uses a looser type
    live: Live | None = None
    headers: list[Param] = field(default_factory=list)  # request headers the route reads (documented)
    media_answers: tuple[str, ...] = ()  # content types of non-JSON success answers (e.g. a QR image)
    decoder: msgspec.json.Decoder | None = field(default=None, repr=False)


@dataclass(slots=True)
class Answered:
    """An answer as the API edge sends it: a body, its status and headers, no framework object. A handler
    may return one (or a Quart `Response`, or a Struct to encode as JSON)."""

    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON

    def to_quart(self) -> Response:
        return Response(self.body, status=self.status, content_type=self.content_type, headers=self.headers)


@dataclass
class Ctx:
    """What a handler gets besides its path parameters."""

    gateway: Gateway
    principal: Principal | None
    body: Any
    query: dict[str, str]
    headers: Any
    raw: bytes = b""
    # the tightest rate-limit decision that applied; its X-RateLimit-* headers go on the answer
    rate: Decision | None = None

    def limit(self, decision: Decision | None) -> None:
        """Another limit applied: keep whichever leaves the caller less room (the one to obey)."""
        if decision is not None and (self.rate is None or _tighter(decision, self.rate)):
            self.rate = decision

    @property
    def account(self) -> AccountPrincipal:
        assert isinstance(self.principal, AccountPrincipal)
        return self.principal

    @property
    def session(self) -> SessionPrincipal:
        assert isinstance(self.principal, SessionPrincipal)
        return self.principal


class Api:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.routes: list[RouteSpec] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tag: str,
        auth: Auth,
        body: type | None = None,
        status: int = 200,
        answer: type | None = None,
        query: list[Param] | None = None,
        errors: list[type[Exception]] | None = None,
        media_body: bool = False,
        description: str = "",
        doc_body: type | None = None,
        live: Live | None = None,
        headers: list[Param] | None = None,
        media_answers: tuple[str, ...] = (),
    ) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
        def register(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            self.routes.append(RouteSpec(
                method=method, path=self.prefix + path, handler=fn, summary=summary, tag=tag, auth=auth,
                body=body, status=status, answer=answer, query=query or [], errors=errors or [],
                media_body=media_body, description=description or (fn.__doc__ or "").strip(),
                doc_body=doc_body or body, live=live, headers=headers or [], media_answers=media_answers,
                decoder=msgspec.json.Decoder(body) if body is not None else None))
            return fn

        return register

    def install(self, app: Quart, get_gateway: Callable[[], Gateway]) -> None:
        for spec in self.routes:
            app.add_url_rule(spec.path, endpoint=f"{spec.method} {spec.path}",
                             view_func=_make_view(spec, get_gateway), methods=[spec.method])


ReadBody = Callable[[int], Awaitable[bytes]]


def _make_view(spec: RouteSpec, get_gateway: Callable[[], Gateway]) -> Callable[..., Awaitable[Response]]:
    async def read_body(cap: int) -> bytes:
        return await request.get_data(cache=False)

    async def view(**path_params: str) -> Response:
        answer = await serve(spec, get_gateway, RequestInfo.from_quart(), read_body, path_params)
        return answer.to_quart() if isinstance(answer, Answered) else answer

    view.__name__ = f"view_{spec.handler.__name__}"
    return view


async def serve(spec: RouteSpec, get_gateway: Callable[[], Gateway], req: RequestInfo, read_body: ReadBody,
                path_params: dict[str, str]) -> Answered | Response:
    """One request of `spec`: its answer, or an exception for the error table."""
    gateway = get_gateway()
    config = gateway.config
    cap = config.max_media_body if spec.media_body else config.max_body
    length = req.content_length
    if length is not None and length > cap:
        raise PayloadTooLarge(f"Request body is larger than {cap} bytes")
    if spec.decoder is not None:
        _require_json(req.mimetype)
    principal, decision = await _authenticate_and_limit(gateway, req, spec.auth)
    body = None
    raw = b""
    if spec.decoder is not None:
        raw = await read_body(cap)
        if len(raw) > cap:
            raise PayloadTooLarge(f"Request body is larger than {cap} bytes")
        if not raw.strip():
            raise ValidationError.at("$", "Request body is empty; a JSON object is expected")
        try:
            body = spec.decoder.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise validation_error_from_msgspec(exc, body=spec.body) from None
    if spec.live is not None and gateway.cluster is not None:
        routed = await _route_to_owner(gateway, req, spec.live, principal, path_params, raw)
        if routed is not None:
            if decision is not None:  # charged here, not by the owner
                routed.headers.update(rate_limit_headers(decision))
            return routed
    ctx = Ctx(gateway=gateway, principal=principal, body=body, query=req.args, headers=req.headers, raw=raw,
              rate=decision)
    try:
        result = await spec.handler(ctx, **path_params)
    except OwnedElsewhere:
        # Another node (or this node's own lease round) took the session between routing and
        # running it here: route again, and run here once more if it is this node's now.
        if spec.live is None or gateway.cluster is None or gateway.cluster.router.is_forwarded(req):
            raise
        routed = await _route_to_owner(gateway, req, spec.live, principal, path_params, raw)
        result = routed if routed is not None else await spec.handler(ctx, **path_params)
    response = result if isinstance(result, Answered | Response) else Answered(_ENCODER.encode(result), spec.status)
    if ctx.rate is not None:
        response.headers.update(rate_limit_headers(ctx.rate))
    return response


def _require_json(mimetype: str) -> None:
    """A body declared as anything but JSON is refused (no Content-Type at all is read as JSON)."""
    if mimetype and mimetype != JSON:
        raise UnsupportedMediaType(f"Content-Type {mimetype} is not accepted here; send application/json")


def _tighter(a: Decision, b: Decision) -> bool:
    return (a.remaining, -a.reset_after) < (b.remaining, -b.reset_after)


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_ENCODER.encode(payload), status=status, content_type=JSON, headers=headers)


_BEARER = re.compile(r"Bearer\s+(\S+)\s*", re.IGNORECASE)


async def _route_to_owner(gateway: Gateway, req: RequestInfo, live: Live, principal: Principal | None,
                          path_params: dict[str, str], raw: bytes) -> Response | None:
    """Cluster mode: the owner's answer to this request, or None to handle it here."""
    assert gateway.cluster is not None
    if isinstance(principal, SessionPrincipal):
        session_id = principal.session_id
    else:
        session_id = path_params["session_id"]
        await gateway.sessions.get(principal, session_id)  # 404 for a session this caller cannot see
    return await gateway.cluster.router.route(session_id, connect=live is Live.TAKE, body=raw, req=req)


async def _authenticate_and_limit(gateway: Gateway, req: RequestInfo, mode: Auth
                                  ) -> tuple[Principal | None, Decision | None]:
    """Authenticate under the per-IP failed-auth limit, then charge the per-user API limit.

    A request routed here by another node was charged there: it is authenticated, not charged."""
    if mode is Auth.NONE:
        return None, None
    if gateway.cluster is not None and gateway.cluster.router.is_forwarded(req):
        return await _authenticate(gateway, req, mode), None
    rates = gateway.rates
    try:
        principal = await _authenticate(gateway, req, mode)
    except Unauthorized:
        if req.headers.get("X-API-Token") or req.headers.get("Authorization"):
            ip = rates.client_ip(req.remote_addr, req.headers.getlist("X-Forwarded-For"))
            await rates.auth_attempt(ip)  # a presented credential that failed: brute-force accounting
        raise
    assert principal is not None
    return principal, await rates.api(principal.user_id)


async def _authenticate(gateway: Gateway, req: RequestInfo, mode: Auth) -> Principal | None:
    if mode is Auth.NONE:
        return None
    token = req.headers.get("X-API-Token")
    bearer = None
    authorization = req.headers.get("Authorization")
    if authorization is not None:
        m = _BEARER.fullmatch(authorization)
        if m is None:
            raise Unauthorized("Authorization header must be 'Bearer <key>'")
        bearer = m.group(1)
    if mode is Auth.SESSION:
        if bearer is None:
            raise Unauthorized("This endpoint needs a session API key: Authorization: Bearer <session key>")
        principal = await gateway.auth.authenticate(bearer)
        if not isinstance(principal, SessionPrincipal):
            raise Unauthorized("This endpoint needs a session API key (wgs_...), not a personal access token")
        return principal
    credential = token or bearer
    if credential is None:
        login = await dashboard_login(gateway, req)
        if login is not None:
            return login
        raise Unauthorized("Missing credentials: send X-API-Token: <personal access token>"
                           + (" or Authorization: Bearer <session key>" if mode is Auth.EITHER else ""))
    principal = await gateway.auth.authenticate(credential)
    if mode is Auth.PAT and not isinstance(principal, AccountPrincipal):
        raise Unauthorized("This endpoint needs a personal access token (wgp_...), not a session key")
    return principal


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def dashboard_login(gateway: Gateway, req: RequestInfo | None = None) -> AccountPrincipal | None:
    """The dashboard login presented as a cookie, as an account principal; None without one.

    A state-changing request made with it must carry the login's CSRF token in `X-CSRF-Token`:
    the browser sends the cookie by itself, a forged cross-site request cannot read the token."""
    req = req or RequestInfo.from_quart()
    secret = req.cookies.get(LOGIN_COOKIE)
    if not secret:
        return None
    login = await gateway.logins.resolve(secret)
    if login is None:
        raise Unauthorized("The dashboard login has ended; log in again")
    if req.method not in _SAFE_METHODS and not tokens_match(req.headers.get(CSRF_HEADER), login.csrf_token):
        raise Forbidden(f"A request made with the dashboard login needs its CSRF token in {CSRF_HEADER}")
    return AccountPrincipal(user_id=login.user_id, token_id="")
