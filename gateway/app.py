"""The quart-trio application: routes, error envelope, lifespan."""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import trio
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from actors import TransportFactory

from . import dashboard
from ._config import Config
from ._drain import DrainUnreadBody
from ._gateway import Gateway, open_gateway
from ._metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ._metrics import GatewayMetrics
from .api import chats, contacts, groups, media, message_actions, messages, sessions, tokens, webhooks
from .api._cors import CorsPolicy, install_cors
from .api._docs import DOCS_STYLE, render_docs
from .api._errors import MethodNotAllowed, OtherHttpError, PayloadTooLarge, RouteNotFound, answer_for, describe
from .api._lean import LeanLane
from .api._openapi import build_openapi
from .api._pages import html_page, page_headers
from .api._routing import JSON, Api, json_response
from .api._schemas import Health
from .errors import GatewayError, TryAgainLater

log = logging.getLogger("gateway.http")
API_PREFIX = "/api/v1"


def _version() -> str:
    try:
        return version("trio-whatsapp-gateway")
    except PackageNotFoundError:  # running from a source tree
        return "0.0.0"


def build_api() -> Api:
    api = Api(API_PREFIX)
    sessions.register(api)
    messages.register(api)
    message_actions.register(api)
    contacts.register(api)
    groups.register(api)
    chats.register(api)
    media.register(api)
    webhooks.register(api)
    tokens.register(api)
    return api


def running_gateway(app: QuartTrio) -> Gateway:
    """The components behind a started app (tests and embedding use this)."""
    gateway = app.extensions["gateway_state"].get("gateway")
    if gateway is None:
        raise RuntimeError("the app is not serving")
    return gateway


def create_app(config: Config, *, transport_factory: TransportFactory | None = None,
               node_address: str = "") -> QuartTrio:
    """The app. `node_address` is the base URL other cluster nodes reach this process at."""
    app = QuartTrio("gateway")
    # Bodies are buffered by Quart up to this cap; each route then applies its own
    # (GATEWAY_MAX_BODY, or GATEWAY_MAX_MEDIA_BODY on media routes).
    app.config["MAX_CONTENT_LENGTH"] = config.max_media_body
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    state: dict[str, Any] = {}
    app.extensions["gateway_state"] = state

    def get_gateway() -> Gateway:
        gateway = state.get("gateway")
        if gateway is None:
            raise TryAgainLater("The gateway is starting or stopping")
        return gateway

    api = build_api()
    api.install(app, get_gateway)
    webhooks.install_stream(app, get_gateway)
    dashboard.install(app, get_gateway)
    metrics = _install_metrics(app, state)
    cors = CorsPolicy(config.cors_origin_set())
    install_cors(app, cors)
    # The API's requests take the lean lane in front of Quart; everything else goes on to Quart, behind
    # DrainUnreadBody (the lane drains what it does not read itself).
    app.asgi_app = LeanLane(DrainUnreadBody(app.asgi_app), api.routes, get_gateway,  # type: ignore[method-assign]
                            cors=cors, metrics=metrics)
    _install_lifespan(app, state, config, transport_factory, node_address)
    _install_meta_routes(app, state, api)
    _install_errors(app)
    return app


def _install_metrics(app: QuartTrio, state: dict[str, Any]) -> GatewayMetrics:
    metrics = app.extensions["metrics"] = GatewayMetrics()
    metrics.bind(lambda: state.get("gateway"))

    @app.before_request
    async def start_timer() -> None:
        g.started = trio.current_time()

    @app.after_request
    async def observe(response: Response) -> Response:
        started = g.get("started")
        if started is not None:
            rule = request.url_rule.rule if request.url_rule is not None else None
            metrics.observe_request(request.method, rule, response.status_code, trio.current_time() - started)
        return response

    @app.route("/metrics", methods=["GET"])
    async def prometheus_metrics() -> Response:
        await metrics.refresh_store()
        return Response(metrics.render(), content_type=METRICS_CONTENT_TYPE)

    return metrics


def _install_lifespan(app: QuartTrio, state: dict[str, Any], config: Config,
                      transport_factory: TransportFactory | None, node_address: str) -> None:
    """The gateway runs in the app's nursery from `before_serving` until `after_serving`."""

    @app.before_serving
    async def start() -> None:
        stopped = trio.Event()
        stop = trio.Event()

        async def run(task_status: trio.TaskStatus[Gateway] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                async with open_gateway(config, transport_factory=transport_factory,
                                        node_address=node_address) as gateway:
                    task_status.started(gateway)
                    await stop.wait()
            finally:
                stopped.set()

        state["gateway"] = await app.nursery.start(run)
        state["stop"], state["stopped"] = stop, stopped
        if await state["gateway"].store.count_users() == 0:
            log.warning("no users yet: sign up in the dashboard (/signup), or create one with `gateway users "
                        "create --email you@example.com --password '...'`, then a token with `gateway tokens "
                        "create --email you@example.com --name cli`")

    @app.after_serving
    async def stop() -> None:
        if "stop" in state:
            state.pop("gateway", None)
            state["stop"].set()
            with trio.move_on_after(config.shutdown_timeout):
                await state["stopped"].wait()


def _install_meta_routes(app: QuartTrio, state: dict[str, Any], api: Api) -> None:
    """The OpenAPI document, the docs page, and the health checks."""
    # server_url "/": every path already starts with /api/v1
    openapi_doc = build_openapi(api.routes, version=_version(), server_url="/")
    docs_html = render_docs(openapi_doc)
    docs_headers = page_headers(styles=[DOCS_STYLE])

    @app.route(f"{API_PREFIX}/openapi.json", methods=["GET"])
    async def openapi() -> Response:
        return json_response(openapi_doc)

    @app.route("/docs", methods=["GET"])
    async def docs() -> Response:
        return html_page(docs_html, docs_headers)

    @app.route("/healthz", methods=["GET"])
    async def healthz() -> Response:
        return json_response(Health(status="ok"))

    @app.route("/readyz", methods=["GET"])
    async def readyz() -> Response:
        gateway = state.get("gateway")
        if gateway is None:
            return json_response(Health(status="starting", checks={"gateway": "not started"}), 503)
        try:
            with trio.fail_after(2):
                await gateway.store.schema_version()
        except Exception as exc:  # noqa: BLE001 - readiness reports any store failure
            return json_response(Health(status="unavailable", checks={"store": repr(exc)}), 503)
        return json_response(Health(status="ready", checks={"store": "ok"}))


def _install_errors(app: QuartTrio) -> None:
    """Every error, ours or the framework's, leaves as the envelope through the one table."""

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        return await _error_response(_from_werkzeug(exc))

    @app.errorhandler(Exception)
    async def any_error(exc: Exception) -> Response:
        if answer_for(exc).status == 500:  # raised on purpose nowhere: a bug, logged with its traceback
            log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
        return await _error_response(exc)


async def _error_response(exc: BaseException) -> Response:
    if dashboard.is_page(request.path):  # people get a page; programs get the envelope
        d = describe(exc)
        return await dashboard.error_page(d.status, d.code, d.message, d.headers)
    answer = answer_for(exc)
    return Response(answer.body, status=answer.status, content_type=JSON, headers=answer.headers)


def _from_werkzeug(exc: HTTPException) -> GatewayError:
    """Quart's own refusals (no route, wrong method, body over the app-wide cap) in our terms."""
    if exc.code == 404:
        return RouteNotFound(f"No route {request.method} {request.path}")
    if exc.code == 405:
        allowed = getattr(exc, "valid_methods", None) or ()
        return MethodNotAllowed(f"{request.method} is not allowed on {request.path}", allow=allowed)
    if exc.code == 413:
        return PayloadTooLarge()
    return OtherHttpError(exc.code or 500, exc.name or "ERROR", exc.description or exc.name or "")
