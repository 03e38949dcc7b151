"""The dashboard: server-rendered pages for people, over the same services as the API.

Pages: `/` (to the dashboard or the login), `/login`, `/signup`, `/forgot`,
`/reset`, `/dashboard` (sessions, live status), `/dashboard/sessions/<id>`
(QR, pairing code, key, webhook, deliveries, messages, actions),
`/dashboard/api-tokens` and `/dashboard/account`. Assets are served from
`/dashboard/static`; nothing comes from a CDN.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from quart import Blueprint, Quart, Response, current_app, request

from ._account_views import install as _install_accounts
from ._session_views import install as _install_sessions
from ._token_views import install as _install_tokens
from ._web import PAGE_HEADERS, GetGateway, current_viewer, page

_PAGE_PREFIXES: Final = ("/dashboard", "/login", "/signup", "/logout", "/forgot", "/reset")
_DATA_SUFFIXES: Final = (".json", "/live", ".svg")  # what the pages' script fetches: errors stay JSON


def install(app: Quart, get_gateway: GetGateway) -> None:
    assets = Blueprint("dashboard", __name__, template_folder="templates", static_folder="static",
                       static_url_path="/dashboard/static")

    @assets.after_app_request
    async def asset_headers(response: Response) -> Response:
        if request.path.startswith("/dashboard/static/"):
            response.headers.update({k: v for k, v in PAGE_HEADERS.items() if k != "Cache-Control"})
            response.headers["Cache-Control"] = "public, max-age=300"
        return response

    app.extensions["dashboard.gateway"] = get_gateway
    app.register_blueprint(assets)
    app.add_template_filter(when, "when")
    _install_accounts(app, get_gateway)
    _install_sessions(app, get_gateway)
    _install_tokens(app, get_gateway)


def is_page(path: str) -> bool:
    """Whether an error on this path is answered as a page rather than the JSON envelope."""
    return path == "/" or (path.startswith(_PAGE_PREFIXES) and not path.endswith(_DATA_SUFFIXES)
                           and not path.startswith("/dashboard/static/"))


async def error_page(status: int, code: str, message: str, headers: dict[str, str]) -> Response:
    """The error as a page, with the header of the person who is logged in (if one is)."""
    try:
        viewer = await current_viewer(current_app.extensions["dashboard.gateway"]())
    except Exception:  # noqa: BLE001 - starting, stopping, or the store is down: the page shows anyway
        viewer = None
    return await page("error.html", status, viewer=viewer, headers=headers, code=code, message=message)


def when(ms: int | None) -> str:
    """Epoch milliseconds as `2026-12-02 20:14:05 UTC` (— for none)."""
    if ms is None:
        return "—"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
