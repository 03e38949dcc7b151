"""Routes under /whatsapp-sessions."""

from __future__ import annotations

from quart import Response

from .._auth import AccountPrincipal
from .._phone import phone_at
from ..errors import Conflict, ConnectionFailed, Forbidden, QrNotAvailable, SessionNotFound, TryAgainLater, Unauthorized, ValidationError
from ._errors import PayloadTooLarge
from ..store import QueueDepth, SessionRecord, iso_ms
from ._pagination import PAGE_PARAMS, next_cursor, read_page
from ._routing import Api, Auth, Ctx, Live, Param
from .._requests import CreateSession, PairingCodeRequest, UpdateSession
from ._schemas import PairingCodeAnswer, QrCode, Session, SessionConnecting, SessionList, SessionWithKey, fields_of

TAG = "Sessions"
_COMMON = [Unauthorized]
_ONE = [Unauthorized, SessionNotFound]


def session_out(r: SessionRecord, *, secret: bool = False, depth: QueueDepth | None = None) -> Session:
    return Session(
        queued=None if depth is None else depth.queued, scheduled=None if depth is None else depth.scheduled,
        id=r.id, name=r.name, phone_number=r.phone_number, status=r.status.value, status_reason=r.status_reason,
        webhook_url=r.webhook_url, webhook_events=r.webhook_events, webhook_enabled=r.webhook_enabled,
        webhook_secret=r.webhook_secret if secret else None, send_limit=r.send_limit, created_at=iso_ms(r.created_at), updated_at=iso_ms(r.updated_at))


def session_with_key(r: SessionRecord, api_key: str) -> SessionWithKey:
    out = session_out(r, secret=True)
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
        return SessionList(data=[session_out(r, secret=True, depth=depths.get(r.id)) for r in records],
                           next_cursor=next_cursor([r.id for r in records], limit))

    @api.route("POST", "/whatsapp-sessions", summary="Create session", tag=TAG, auth=Auth.PAT,
               body=CreateSession, status=201, answer=SessionWithKey,
               errors=[Unauthorized, ValidationError, PayloadTooLarge])
    async def create_session(ctx: Ctx) -> SessionWithKey:
        """Create a session. The answer carries its API key, which is shown only here."""
        record, key = await ctx.gateway.sessions.create(ctx.account, ctx.body)
        return session_with_key(record, key)

    @api.route("GET", "/whatsapp-sessions/<session_id>", summary="Get session", tag=TAG, auth=Auth.EITHER,
               answer=Session, errors=_ONE)
    async def get_session(ctx: Ctx, session_id: str) -> Session:
        """A session, by personal access token or by that session's own key, with its queue depth."""
        record = await ctx.gateway.sessions.get(ctx.principal, session_id)
        depths = await ctx.gateway.queue.depths([record.id])
        return session_out(record, secret=_is_account(ctx), depth=depths.get(record.id))

    @api.route("PUT", "/whatsapp-sessions/<session_id>", summary="Update session", tag=TAG, auth=Auth.EITHER,
               body=UpdateSession, answer=Session, errors=[*_ONE, Forbidden, ValidationError, PayloadTooLarge])
    async def update_session(ctx: Ctx, session_id: str) -> Session:
        """Change the name, phone number or webhook settings. Omitted fields stay as they are."""
        return session_out(await ctx.gateway.sessions.update(ctx.principal, session_id, ctx.body),
                           secret=_is_account(ctx))

    @api.route("DELETE", "/whatsapp-sessions/<session_id>", summary="Delete session", tag=TAG,
               auth=Auth.EITHER, answer=Session, errors=_ONE, live=Live.OWNER)
    async def delete_session(ctx: Ctx, session_id: str) -> Session:
        """Stop the session, log it out of WhatsApp, and delete it. Its key stops working at once."""
        return session_out(await ctx.gateway.sessions.delete(ctx.principal, session_id))

    @api.route("POST", "/whatsapp-sessions/<session_id>/rotate-key", summary="Rotate session key", tag=TAG,
               auth=Auth.PAT, answer=SessionWithKey, errors=_ONE)
    async def rotate_key(ctx: Ctx, session_id: str) -> SessionWithKey:
        """Issue a new session API key. The old key stops working at once."""
        record, key = await ctx.gateway.sessions.rotate_key(ctx.account, session_id)
        return session_with_key(record, key)



def _register_connection(api: Api) -> None:
    """Connect, disconnect, QR and pairing code: the routes that need the live session."""

    @api.route("POST", "/whatsapp-sessions/<session_id>/connect", summary="Start connection", tag=TAG,
               auth=Auth.EITHER, answer=SessionConnecting, errors=[*_ONE, ConnectionFailed, TryAgainLater], live=Live.TAKE)
    async def connect(ctx: Ctx, session_id: str) -> SessionConnecting:
        """Start connecting. The answer has status CONNECTING and, once known, the QR code to scan.
        A session that is already CONNECTED answers as it is. The session reconnects by itself after
        drops and gateway restarts until it is disconnected."""
        record = await ctx.gateway.sessions.get(ctx.principal, session_id)
        record, qr = await ctx.gateway.control.connect(record)
        return SessionConnecting(**fields_of(session_out(record)), qr=qr)

    @api.route("POST", "/whatsapp-sessions/<session_id>/disconnect", summary="Disconnect", tag=TAG,
               auth=Auth.EITHER, answer=Session, errors=[*_ONE, TryAgainLater], live=Live.OWNER)
    async def disconnect(ctx: Ctx, session_id: str) -> Session:
        """Disconnect gracefully. The pairing is kept: connect again without a new QR scan."""
        record = await ctx.gateway.sessions.get(ctx.principal, session_id)
        return session_out(await ctx.gateway.control.disconnect(record))

    @api.route("POST", "/whatsapp-sessions/<session_id>/logout", summary="Log out of WhatsApp", tag=TAG,
               auth=Auth.EITHER, answer=Session, errors=[*_ONE, TryAgainLater], live=Live.TAKE)
    async def logout(ctx: Ctx, session_id: str) -> Session:
        """Unlink the gateway's device from the WhatsApp account. The session and its key stay; it is
        LOGGED_OUT, and connecting again shows a new QR code to scan."""
        record = await ctx.gateway.sessions.get(ctx.principal, session_id)
        return session_out(await ctx.gateway.control.logout(record))

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
