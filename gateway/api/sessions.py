"""Routes under /whatsapp-sessions.

A session answer never carries a proxy's password: `proxyUrl` (the session's
own) and `proxy` (what it connects through, its own or GATEWAY_PROXY_URL) are
masked, and a proxy's credentials are masked in `statusReason` too.
"""

from __future__ import annotations

from quart import Response

from .._auth import AccountPrincipal
from .._control import mask_proxy_url, redact_proxy
from .._phone import phone_at
from .._requests import MAX_PROXY_URL, CreateSession, PairingCodeRequest, UpdateSession
from ..errors import (
    Conflict,
    ConnectionFailed,
    Forbidden,
    QrNotAvailable,
    SessionNotFound,
    TryAgainLater,
    Unauthorized,
    ValidationError,
)
from ..store import QueueDepth, SessionRecord, iso_ms
from ._errors import PayloadTooLarge
from ._pagination import PAGE_PARAMS, next_cursor, read_page
from ._routing import Api, Auth, Ctx, Live, Param
from ._schemas import (
    PairingCodeAnswer,
    QrCode,
    Session,
    SessionConnecting,
    SessionList,
    SessionProxy,
    SessionWithKey,
    fields_of,
)

TAG = "Sessions"
_COMMON = [Unauthorized]
_ONE = [Unauthorized, SessionNotFound]

_PROXY_RULES = (
    "`proxyUrl` is an HTTP, HTTPS or SOCKS5 proxy the session connects to WhatsApp through: "
    "`scheme://[user:password@]host:port` (percent-encode `/ ? #` in a password, `:` in a user name), "
    f"no path, at most {MAX_PROXY_URL} characters. It may be on a private or loopback address: proxies often are on "
    "the LAN or the gateway's own host, and only the personal access token can set one. Unspecified, "
    "multicast and link-local addresses (cloud metadata) are refused. Its password is never shown again: "
    "answers carry `***` in its place. Without one, the session uses GATEWAY_PROXY_URL if set "
    "(`proxy.source` says which applies).")
_UPDATE_DESCRIPTION = (
    "Change the name, phone number, webhook settings, send limit or proxy. Omitted fields stay as they are; "
    "`null` clears one. `sendLimit` and `proxyUrl` need the personal access token: a session key gets 403 "
    "FORBIDDEN.\n\n" + _PROXY_RULES + " A session that is connected or connecting when its proxy changes "
    "(`null` included, when GATEWAY_PROXY_URL then applies) reconnects at once through the new one, its "
    "pairing kept (no new QR code); any other session uses it from its next connect.")


def session_out(ctx: Ctx, r: SessionRecord, *, secret: bool = False, depth: QueueDepth | None = None) -> Session:
    applied = ctx.gateway.control.proxy_for(r)
    reason = redact_proxy(r.status_reason, applied[0]) if r.status_reason and applied else r.status_reason
    return Session(
        queued=None if depth is None else depth.queued, scheduled=None if depth is None else depth.scheduled,
        id=r.id, name=r.name, phone_number=r.phone_number, status=r.status.value,
        status_reason=reason,
        webhook_url=r.webhook_url, webhook_events=r.webhook_events, webhook_enabled=r.webhook_enabled,
        webhook_secret=r.webhook_secret if secret else None, send_limit=r.send_limit,
        proxy_url=mask_proxy_url(r.proxy_url),
        proxy=SessionProxy(url=mask_proxy_url(applied[0]) or "", source=applied[1]) if applied else None,
        created_at=iso_ms(r.created_at), updated_at=iso_ms(r.updated_at))


def session_with_key(ctx: Ctx, r: SessionRecord, api_key: str) -> SessionWithKey:
    out = session_out(ctx, r, secret=True)
    return SessionWithKey(**fields_of(out), api_key=api_key)


def register(api: Api) -> None:
    _register_records(api)
    _register_connection(api)


def _register_records(api: Api) -> None:
    @api.route("GET", "/whatsapp-sessions", summary="List sessions", tag=TAG, auth=Auth.PAT,
               answer=SessionList, query=PAGE_PARAMS, errors=[Unauthorized, ValidationError])
    async def list_sessions(ctx: Ctx) -> SessionList:
        """The caller's sessions, oldest first, one page at a time."""
        after, limit = read_page(ctx.query)
        records = await ctx.gateway.sessions.list(ctx.account, after=after, limit=limit)
        depths = await ctx.gateway.queue.depths([r.id for r in records])
        return SessionList(data=[session_out(ctx, r, secret=True, depth=depths.get(r.id)) for r in records],
                           next_cursor=next_cursor([r.id for r in records], limit))

    @api.route("POST", "/whatsapp-sessions", summary="Create session", tag=TAG, auth=Auth.PAT,
               body=CreateSession, status=201, answer=SessionWithKey,
               errors=[Unauthorized, ValidationError, PayloadTooLarge],
               description="Create a session. The answer carries its API key, which is shown only here.\n\n"
                           + _PROXY_RULES)
    async def create_session(ctx: Ctx) -> SessionWithKey:
        record, key = await ctx.gateway.sessions.create(ctx.account, ctx.body)
        return session_with_key(ctx, record, key)

    @api.route("GET", "/whatsapp-sessions/<session_id>", summary="Get session", tag=TAG, auth=Auth.EITHER,
               answer=Session, errors=_ONE)
    async def get_session(ctx: Ctx, session_id: str) -> Session:
        """A session, by personal access token or by that session's own key, with its queue depth."""
        record = await ctx.gateway.sessions.get(ctx.principal, session_id)
        depths = await ctx.gateway.queue.depths([record.id])
        return session_out(ctx, record, secret=_is_account(ctx), depth=depths.get(record.id))

    # On the owner: a changed proxy is applied to the live connection, which runs there.
    @api.route("PUT", "/whatsapp-sessions/<session_id>", summary="Update session", tag=TAG, auth=Auth.EITHER,
               body=UpdateSession, answer=Session, errors=[*_ONE, Forbidden, ValidationError, PayloadTooLarge],
               live=Live.OWNER, description=_UPDATE_DESCRIPTION)
    async def update_session(ctx: Ctx, session_id: str) -> Session:
        return session_out(ctx, await ctx.gateway.sessions.update(ctx.principal, session_id, ctx.body),
                           secret=_is_account(ctx))

    @api.route("DELETE", "/whatsapp-sessions/<session_id>", summary="Delete session", tag=TAG,
               auth=Auth.EITHER, answer=Session, errors=_ONE, live=Live.OWNER)
    async def delete_session(ctx: Ctx, session_id: str) -> Session:
        """Stop the session, log it out of WhatsApp, and delete it. Its key stops working at once."""
        return session_out(ctx, await ctx.gateway.sessions.delete(ctx.principal, session_id))

    @api.route("POST", "/whatsapp-sessions/<session_id>/rotate-key", summary="Rotate session key", tag=TAG,
               auth=Auth.PAT, answer=SessionWithKey, errors=_ONE)
    async def rotate_key(ctx: Ctx, session_id: str) -> SessionWithKey:
        """Issue a new session API key. The old key stops working at once."""
        record, key = await ctx.gateway.sessions.rotate_key(ctx.account, session_id)
        return session_with_key(ctx, record, key)


def _register_connection(api: Api) -> None:
    """Connect, disconnect, QR and pairing code: the routes that need the live session."""

    @api.route("POST", "/whatsapp-sessions/<session_id>/connect", summary="Start connection", tag=TAG,
               auth=Auth.EITHER, answer=SessionConnecting, errors=[*_ONE, ConnectionFailed, TryAgainLater],
               live=Live.TAKE)
    async def connect(ctx: Ctx, session_id: str) -> SessionConnecting:
        """Start connecting. The answer has status CONNECTING and, once known, the QR code to scan.
        A session that is already CONNECTED answers as it is. The session reconnects by itself after
        drops and gateway restarts until it is disconnected."""
        record = await ctx.gateway.sessions.get(ctx.principal, session_id)
        record, qr = await ctx.gateway.control.connect(record)
        return SessionConnecting(**fields_of(session_out(ctx, record)), qr=qr)

    @api.route("POST", "/whatsapp-sessions/<session_id>/disconnect", summary="Disconnect", tag=TAG,
               auth=Auth.EITHER, answer=Session, errors=[*_ONE, TryAgainLater], live=Live.OWNER)
    async def disconnect(ctx: Ctx, session_id: str) -> Session:
        """Disconnect gracefully. The pairing is kept: connect again without a new QR scan."""
        record = await ctx.gateway.sessions.get(ctx.principal, session_id)
        return session_out(ctx, await ctx.gateway.control.disconnect(record))

    @api.route("POST", "/whatsapp-sessions/<session_id>/logout", summary="Log out of WhatsApp", tag=TAG,
               auth=Auth.EITHER, answer=Session, errors=[*_ONE, TryAgainLater], live=Live.TAKE)
    async def logout(ctx: Ctx, session_id: str) -> Session:
        """Unlink the gateway's device from the WhatsApp account. The session and its key stay; it is
        LOGGED_OUT, and connecting again shows a new QR code to scan."""
        record = await ctx.gateway.sessions.get(ctx.principal, session_id)
        return session_out(ctx, await ctx.gateway.control.logout(record))

    @api.route("GET", "/whatsapp-sessions/<session_id>/qrcode", summary="Get QR code (when CONNECTING)",
               tag=TAG, auth=Auth.EITHER, answer=QrCode, errors=[*_ONE, QrNotAvailable, ValidationError],
               live=Live.OWNER, media_answers=("image/png", "image/svg+xml"),
               query=[Param("format", "`json` (default), `png` or `svg`.",
                            {"type": "string", "enum": ["json", "png", "svg"], "default": "json"}),
                      Param("scale", "Pixels per module for png/svg, 1 to 40 (default 8).",
                            {"type": "integer", "minimum": 1, "maximum": 40, "default": 8})])
    async def qrcode(ctx: Ctx, session_id: str) -> QrCode | Response:
        """The current pairing QR code, while the session is CONNECTING and unpaired."""
        record = await ctx.gateway.sessions.get(ctx.principal, session_id)
        fmt = ctx.query.get("format", "json")
        if fmt not in ("json", "png", "svg"):
            raise ValidationError.at("query.format", "must be json, png or svg")
        scale = ctx.query.get("scale", "8")
        if not scale.isdigit() or not 1 <= int(scale) <= 40:
            raise ValidationError.at("query.scale", "must be an integer from 1 to 40")
        code = ctx.gateway.control.qr(record)
        if fmt == "json":
            return QrCode(qr=code, status=record.status.value)
        return render_qr(code, fmt, int(scale))

    @api.route("POST", "/whatsapp-sessions/<session_id>/pairing-code", summary="Get a pairing code",
               tag=TAG, auth=Auth.EITHER, body=PairingCodeRequest, answer=PairingCodeAnswer,
               errors=[*_ONE, Conflict, ValidationError, TryAgainLater], live=Live.OWNER)
    async def pairing_code(ctx: Ctx, session_id: str) -> PairingCodeAnswer:
        """Link by phone number instead of a QR scan: call connect, then this, and enter the code
        in WhatsApp on that phone."""
        record = await ctx.gateway.sessions.get(ctx.principal, session_id)
        phone = phone_at(ctx.body.phone_number, "$.phoneNumber")
        return PairingCodeAnswer(code=await ctx.gateway.control.pairing_code(record, phone))


def _is_account(ctx: Ctx) -> bool:
    return isinstance(ctx.principal, AccountPrincipal)


def render_qr(code: str, fmt: str, scale: int) -> Response:
    import io

    import segno

    buf = io.BytesIO()
    segno.make(code, error="L").save(buf, kind=fmt, scale=scale, border=2)
    mime = "image/png" if fmt == "png" else "image/svg+xml"
    return Response(buf.getvalue(), content_type=mime, headers={"Cache-Control": "no-store"})
