"""The sessions pages: the list, one session's page, and what can be done there.

Every action goes through the same services as the API (`gateway.sessions`,
`gateway.control`, the store), under the viewer's account. In cluster mode
the actions that need the session's live connection (connect, disconnect,
log out, delete, pairing code, the live state and the QR) are routed to the
session's owner like the API's `live` routes: the request, cookie and CSRF
token included, is proxied there and the owner's answer comes back.

A session's proxy is shown as the API shows it: masked (`_shown_proxy`), and
masked in the status reason too.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Final
from urllib.parse import urlencode

import msgspec
from quart import Quart, Response, request

from actors import SessionState, TransportError

from .._auth import AccountPrincipal
from .._control import mask_proxy_url, redact_proxy
from .._events import make_event
from .._gateway import Gateway
from .._phone import phone_at
from .._requests import CreateSession, UpdateSession
from ..api._errors import describe
from ..api._routing import json_response
from ..api.sessions import render_qr
from ..errors import (
    Conflict,
    GatewayError,
    NotFound,
    ValidationError,
    validation_error_from_msgspec,
)
from ..events import EVENT_TYPES
from ..store import SessionRecord
from ..webhooks import DeliveryStatus
from ._web import GetGateway, Viewer, login_required, page, read_form, see_other

log = logging.getLogger("gateway.dashboard")

RECENT: Final = 20
_DONE: Final = {
    "connect": "Connecting: scan the QR code below with WhatsApp.",
    "disconnect": "Disconnected. The pairing is kept: connect again without a new scan.",
    "logout": "Logged out of WhatsApp. Connect again to pair with a new QR code.",
    "scan": "The simulator scanned the QR code.",
    "webhook": "Webhook settings saved.",
    "test": "A signed webhook.test event is queued.",
    "secret": "A new webhook signing secret is in use for new events.",
    "redeliver": "The delivery is queued again.",
    "deleted": "The session is deleted.",
}


def _principal(viewer: Viewer) -> AccountPrincipal:
    return AccountPrincipal(user_id=viewer.user.id, token_id="")


def _session_url(session_id: str, done: str | None = None) -> str:
    return f"/dashboard/sessions/{session_id}" + (f"?done={done}" if done else "")


async def _on_owner(gateway: Gateway, session_id: str, *, take: bool = False) -> Response | None:
    """Cluster mode: the owner's answer to this request (None: handle it here)."""
    if gateway.cluster is None or gateway.cluster.router.is_forwarded():
        return None
    body = b""
    if request.method == "POST":
        form = await read_form()
        body = urlencode(list(form.items(multi=True))).encode()
    return await gateway.cluster.router.route(session_id, connect=take, body=body)


async def _visible_here(gateway: Gateway, viewer: Viewer, session_id: str, *, take: bool = False
                        ) -> tuple[SessionRecord, Response | None]:
    """The viewer's session (404 for anyone else's), and the owner's answer when it runs elsewhere."""
    record = await gateway.sessions.get(_principal(viewer), session_id)
    return record, await _on_owner(gateway, session_id, take=take)


def install(app: Quart, get_gateway: GetGateway) -> None:
    _install_list(app, get_gateway)
    _install_detail(app, get_gateway)
    _install_actions(app, get_gateway)
    _install_webhook_actions(app, get_gateway)


def _install_list(app: Quart, get_gateway: GetGateway) -> None:
    @app.route("/dashboard", methods=["GET"])
    @login_required(get_gateway)
    async def dashboard(gateway: Gateway, viewer: Viewer) -> Response:
        sessions = await gateway.store.list_sessions(viewer.user.id, after=None, limit=200)
        return await page("sessions.html", viewer=viewer, sessions=sessions,
                          done="Session deleted." if request.args.get("done") == "deleted" else None)

    @app.route("/dashboard/sessions", methods=["GET", "POST"])
    @login_required(get_gateway)
    async def create_session(gateway: Gateway, viewer: Viewer) -> Response:
        if request.method == "GET":
            return see_other("/dashboard")
        form = await read_form()
        fields: dict[str, Any] = {"name": form.get("name", "")}
        if form.get("phoneNumber", "").strip():
            fields["phoneNumber"] = form["phoneNumber"].strip()
        try:
            req = _convert(fields, CreateSession)
            record, key = await gateway.sessions.create(_principal(viewer), req)
        except GatewayError as exc:
            sessions = await gateway.store.list_sessions(viewer.user.id, after=None, limit=200)
            return await page("sessions.html", describe(exc).status, viewer=viewer, sessions=sessions,
                              error=_explain(exc), form=fields)
        log.info("session created", extra={"fields": {"session": record.id, "user": viewer.user.id}})
        return await _detail(gateway, viewer, record, new_key=key, status=201)

    @app.route("/dashboard/sessions.json", methods=["GET"])
    @login_required(get_gateway)
    async def statuses(gateway: Gateway, viewer: Viewer) -> Response:
        """What the list page polls: each session's status, without a reload."""
        sessions = await gateway.store.list_sessions(viewer.user.id, after=None, limit=200)
        return json_response({"sessions": [
            {"id": s.id, "status": s.status.value, "reason": _shown_reason(gateway, s, s.status_reason),
             "phone": s.phone_number or ""}
            for s in sessions]}, headers={"Cache-Control": "no-store"})


def _install_detail(app: Quart, get_gateway: GetGateway) -> None:
    @app.route("/dashboard/sessions/<session_id>", methods=["GET"])
    @login_required(get_gateway)
    async def session_page(gateway: Gateway, viewer: Viewer, session_id: str) -> Response:
        record = await gateway.sessions.get(_principal(viewer), session_id)
        return await _detail(gateway, viewer, record, done=_DONE.get(request.args.get("done", "")))

    @app.route("/dashboard/sessions/<session_id>/live", methods=["GET"])
    @login_required(get_gateway)
    async def live(gateway: Gateway, viewer: Viewer, session_id: str) -> Response:
        """What the session page polls: status, reason and which QR code is showing."""
        record, routed = await _visible_here(gateway, viewer, session_id)
        if routed is not None:
            return routed
        actor = gateway.control.actor(session_id)
        state = actor.state if actor is not None else record.status
        qr = actor.qr if actor is not None and state is SessionState.CONNECTING else None
        reason = _shown_reason(gateway, record, actor.reason if actor is not None else record.status_reason)
        return json_response({
            "status": state.value, "reason": reason, "phone": record.phone_number or "",
            "qr": hashlib.sha256(qr.encode()).hexdigest()[:16] if qr else None,
        }, headers={"Cache-Control": "no-store"})

    @app.route("/dashboard/sessions/<session_id>/qr.svg", methods=["GET"])
    @login_required(get_gateway)
    async def qr_image(gateway: Gateway, viewer: Viewer, session_id: str) -> Response:
        record, routed = await _visible_here(gateway, viewer, session_id)
        if routed is not None:
            return routed
        return render_qr(gateway.control.qr(record), "svg", 6)


def _install_actions(app: Quart, get_gateway: GetGateway) -> None:
    async def act(gateway: Gateway, viewer: Viewer, session_id: str, done: str, *, take: bool = False,
                  run: Any) -> Response:
        record, routed = await _visible_here(gateway, viewer, session_id, take=take)
        if routed is not None:
            return routed
        try:
            shown = await run(record)
        except (GatewayError, TransportError) as exc:
            fresh = await gateway.store.get_session(session_id) or record
            return await _detail(gateway, viewer, fresh, error=_explain(exc), status=describe(exc).status)
        if isinstance(shown, Response):
            return shown
        return see_other(_session_url(session_id, done))

    def control(verb: str, *, take: bool) -> None:
        """POST .../connect, .../disconnect, .../logout: the session control call of that name."""

        @login_required(get_gateway)
        async def run_control(gateway: Gateway, viewer: Viewer, session_id: str) -> Response:
            return await act(gateway, viewer, session_id, verb, take=take, run=getattr(gateway.control, verb))

        app.add_url_rule(f"/dashboard/sessions/<session_id>/{verb}", endpoint=f"session_{verb}",
                         view_func=run_control, methods=["POST"])

    control("connect", take=True)
    control("disconnect", take=False)
    control("logout", take=True)  # with no actor anywhere, it starts one here to tell WhatsApp

    @app.route("/dashboard/sessions/<session_id>/delete", methods=["POST"])
    @login_required(get_gateway)
    async def delete(gateway: Gateway, viewer: Viewer, session_id: str) -> Response:
        form = await read_form()

        async def run(record: SessionRecord) -> Response:
            if form.get("confirm") != record.name:
                raise ValidationError.at("confirm", "type the session's name to delete it")
            await gateway.sessions.delete(_principal(viewer), record.id)
            log.info("session deleted", extra={"fields": {"session": record.id, "user": viewer.user.id}})
            return see_other("/dashboard?done=deleted")

        return await act(gateway, viewer, session_id, "deleted", run=run)

    @app.route("/dashboard/sessions/<session_id>/rotate-key", methods=["POST"])
    @login_required(get_gateway)
    async def rotate_key(gateway: Gateway, viewer: Viewer, session_id: str) -> Response:
        record, key = await gateway.sessions.rotate_key(_principal(viewer), session_id)
        return await _detail(gateway, viewer, record, new_key=key, done="A new key is issued; the old one no "
                                                                          "longer works.")

    @app.route("/dashboard/sessions/<session_id>/pairing-code", methods=["POST"])
    @login_required(get_gateway)
    async def pairing_code(gateway: Gateway, viewer: Viewer, session_id: str) -> Response:
        form = await read_form()

        async def run(record: SessionRecord) -> Response:
            phone = phone_at(form.get("phoneNumber", "").strip(), "phoneNumber")
            code = await gateway.control.pairing_code(record, phone)
            return await _detail(gateway, viewer, record, pairing_code=code, pairing_phone=phone)

        return await act(gateway, viewer, session_id, "connect", run=run)

    @app.route("/dashboard/sessions/<session_id>/simulate-scan", methods=["POST"])
    @login_required(get_gateway)
    async def simulate_scan(gateway: Gateway, viewer: Viewer, session_id: str) -> Response:
        form = await read_form()

        async def run(record: SessionRecord) -> None:
            if gateway.config.transport != "sim":
                raise Conflict("Simulated scans exist only with GATEWAY_TRANSPORT=sim")
            from bench.simulator import SimControlError, open_sim_control

            phone = form.get("phoneNumber", "").strip()
            try:
                async with open_sim_control(gateway.config.sim_url) as sim:
                    await sim.scan(record.id, phone_at(phone, "phoneNumber") if phone else None)
            except SimControlError as exc:
                raise Conflict(f"The simulator refused: {exc.reason}") from None
            except OSError as exc:
                raise Conflict(f"The simulator at {gateway.config.sim_url} cannot be reached: {exc}") from None

        return await act(gateway, viewer, session_id, "scan", run=run)


def _install_webhook_actions(app: Quart, get_gateway: GetGateway) -> None:
    @app.route("/dashboard/sessions/<session_id>/webhook", methods=["POST"])
    @login_required(get_gateway)
    async def webhook_settings(gateway: Gateway, viewer: Viewer, session_id: str) -> Response:
        form = await read_form()
        url = form.get("webhookUrl", "").strip()
        fields = {"webhookUrl": url or None, "webhookEvents": form.getlist("webhookEvents"),
                  "webhookEnabled": form.get("webhookEnabled") == "on"}
        try:
            await gateway.sessions.update(_principal(viewer), session_id, _convert(fields, UpdateSession))
        except (ValidationError, Conflict) as exc:
            record = await gateway.sessions.get(_principal(viewer), session_id)
            return await _detail(gateway, viewer, record, error=_explain(exc), status=422)
        return see_other(_session_url(session_id, "webhook"))

    @app.route("/dashboard/sessions/<session_id>/webhook/test", methods=["POST"])
    @login_required(get_gateway)
    async def webhook_test(gateway: Gateway, viewer: Viewer, session_id: str) -> Response:
        record = await gateway.sessions.get(_principal(viewer), session_id)
        if not record.webhook_url or not record.webhook_enabled:
            return await _detail(gateway, viewer, record, status=409,
                                 error="Set and enable a webhook URL first; then send a test.")
        await gateway.recorder.record([make_event("webhook.test", record.id, {"test": True})])
        return see_other(_session_url(session_id, "test"))

    @app.route("/dashboard/sessions/<session_id>/webhook/rotate-secret", methods=["POST"])
    @login_required(get_gateway)
    async def webhook_secret(gateway: Gateway, viewer: Viewer, session_id: str) -> Response:
        from .._security import new_webhook_secret

        await gateway.sessions.get(_principal(viewer), session_id)
        await gateway.store.update_session(session_id, {"webhook_secret": new_webhook_secret()},
                                           gateway.clock.now_ms())
        return see_other(_session_url(session_id, "secret"))

    @app.route("/dashboard/sessions/<session_id>/deliveries/<delivery_id>/redeliver", methods=["POST"])
    @login_required(get_gateway)
    async def redeliver(gateway: Gateway, viewer: Viewer, session_id: str, delivery_id: str) -> Response:
        record = await gateway.sessions.get(_principal(viewer), session_id)
        delivery = await gateway.store.get_delivery(delivery_id)
        if delivery is None or delivery.session_id != record.id:
            raise NotFound("No webhook delivery with that id in this session")
        if delivery.status is DeliveryStatus.PENDING:
            return await _detail(gateway, viewer, record, status=409,
                                 error="That delivery is still pending; it is attempted on its schedule.")
        await gateway.store.redeliver(delivery.id, gateway.clock.now_ms())
        gateway.dispatcher.wake()
        return see_other(_session_url(session_id, "redeliver"))


async def _detail(gateway: Gateway, viewer: Viewer, record: SessionRecord, *, status: int = 200,
                  **context: Any) -> Response:
    deliveries = await gateway.store.list_deliveries(record.id, status=None, before=None, limit=10)
    shown = [(d, await gateway.store.list_attempts(d.id)) for d in deliveries]
    messages = await gateway.store.list_messages(record.id, before=None, limit=RECENT)
    actor = gateway.control.actor(record.id)
    qr_showing = actor is not None and actor.state is SessionState.CONNECTING and actor.qr is not None
    context.setdefault("done", None)
    return await page("session.html", status, viewer=viewer, session=record, deliveries=shown, messages=messages,
                      event_types=EVENT_TYPES, qr_showing=qr_showing, simulator=gateway.config.transport == "sim",
                      proxy=_shown_proxy(gateway, record),
                      status_reason=_shown_reason(gateway, record, record.status_reason), **context)


def _shown_proxy(gateway: Gateway, record: SessionRecord) -> tuple[str, str] | None:
    """The proxy the session connects through, masked, and where it comes from (for people)."""
    applied = gateway.control.proxy_for(record)
    if applied is None:
        return None
    return mask_proxy_url(applied[0]) or "", "its own" if applied[1] == "session" else "GATEWAY_PROXY_URL"


def _shown_reason(gateway: Gateway, record: SessionRecord, reason: str | None) -> str:
    applied = gateway.control.proxy_for(record)
    return redact_proxy(reason or "", applied[0] if applied else None)


def _convert(fields: dict[str, Any], kind: type) -> Any:
    try:
        return msgspec.convert(fields, kind)
    except msgspec.ValidationError as exc:
        raise validation_error_from_msgspec(exc, body=kind) from None


def _explain(exc: BaseException) -> str:
    d = describe(exc)
    parts = [d.message] + [f"{e.path}: {e.message}" if e.path else e.message for e in d.details
                           if e.message not in d.message]
    return " ".join(parts)


