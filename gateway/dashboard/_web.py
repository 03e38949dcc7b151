"""What every dashboard view shares: the login, CSRF, forms, rendering, cookies.

Pages are rendered with Quart's Jinja2 (autoescaped). Every answer carries
the strict page headers of `api._pages`: scripts and styles only from
`/dashboard/static`, no inline code, no framing. Forms post back to the page
that showed them, with a CSRF token; a state change answers with a redirect
(303) unless it has something to show once, such as a new key.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Final, ParamSpec
from urllib.parse import quote

from quart import Response, redirect, render_template, request
from werkzeug.datastructures import MultiDict

from .._gateway import Gateway
from .._logins import ANON_CSRF_COOKIE, CSRF_FIELD, LOGIN_COOKIE, new_secret, tokens_match, well_formed
from ..api._errors import PayloadTooLarge
from ..api._pages import page_headers
from ..errors import Forbidden, RateLimitExceeded
from ..store import User, WebSession

MAX_FORM_BYTES: Final = 64 * 1024
PAGE_HEADERS: Final = {**page_headers(), "Cache-Control": "no-store"}
P = ParamSpec("P")


class Viewer:
    """The logged-in person behind a request."""

    def __init__(self, user: User, login: WebSession, cookie: str) -> None:
        self.user = user
        self.login = login
        self.cookie = cookie

    @property
    def csrf(self) -> str:
        return self.login.csrf_token


GetGateway = Callable[[], Gateway]


def secure_request(gateway: Gateway) -> bool:
    """Served over HTTPS, directly or behind a trusted proxy that says so."""
    if request.scheme == "https":
        return True
    return (gateway.rates.trusted_proxy(request.remote_addr)
            and request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower() == "https")


def client_ip(gateway: Gateway) -> str:
    return gateway.rates.client_ip(request.remote_addr, request.headers.getlist("X-Forwarded-For"))


async def current_viewer(gateway: Gateway) -> Viewer | None:
    cookie = request.cookies.get(LOGIN_COOKIE)
    login = await gateway.logins.resolve(cookie)
    if login is None or cookie is None:
        return None
    user = await gateway.accounts.get_user(login.user_id)
    return Viewer(user, login, cookie) if user is not None else None


def login_required(get_gateway: GetGateway) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Run the view with `(gateway, viewer, **path)`; without a login, redirect to /login?next=...

    A POST must carry the login's CSRF token, or it is refused with 403."""

    def wrap(view: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(view)
        async def run(**path: str) -> Any:
            gateway = get_gateway()
            viewer = await current_viewer(gateway)
            if viewer is None:
                if request.method != "GET":
                    return redirect("/login", 303)
                return redirect("/login?next=" + quote(request.full_path.rstrip("?"), safe="/"), 303)
            if request.method == "POST":
                form = await read_form()
                if not tokens_match(form.get(CSRF_FIELD), viewer.csrf):
                    raise Forbidden("The form's CSRF token is missing or stale; reload the page and try again")
            return await view(gateway, viewer, **path)

        return run

    return wrap


async def read_form() -> MultiDict[str, str]:
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        raise PayloadTooLarge(f"A form may hold at most {MAX_FORM_BYTES // 1024} KiB")
    form = await request.form
    return form


def safe_next(target: str | None) -> str:
    """A post-login destination: a path on this site, never another origin."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/dashboard"
    return target


async def page(template: str, status: int = 200, *, viewer: Viewer | None = None,
               headers: dict[str, str] | None = None, **context: Any) -> Response:
    gateway_context = {"viewer": viewer, "csrf_field": CSRF_FIELD, "csrf": viewer.csrf if viewer else None}
    body = await render_template(template, **gateway_context, **context)
    return Response(body, status=status, content_type="text/html; charset=utf-8",
                    headers={**PAGE_HEADERS, **(headers or {})})


async def anonymous_page(template: str, status: int = 200, *, headers: dict[str, str] | None = None,
                         **context: Any) -> Response:
    """A page shown before login, whose form is protected by a double-submit CSRF cookie."""
    token = request.cookies.get(ANON_CSRF_COOKIE)
    fresh = not well_formed(token)
    if fresh:
        token = new_secret()
    response = await page(template, status, headers=headers, anon_csrf=token, **context)
    if fresh:
        response.set_cookie(ANON_CSRF_COOKIE, token or "", httponly=True, samesite="Strict", path="/",
                            secure=request.scheme == "https")
    return response


async def check_anonymous_csrf(form: MultiDict[str, str]) -> None:
    if not tokens_match(form.get(CSRF_FIELD), request.cookies.get(ANON_CSRF_COOKIE)):
        raise Forbidden("The form's CSRF token is missing or stale; reload the page and try again")


def set_login_cookie(response: Response, gateway: Gateway, cookie: str) -> None:
    response.set_cookie(LOGIN_COOKIE, cookie, max_age=gateway.logins.ttl_seconds, httponly=True, samesite="Lax",
                        secure=secure_request(gateway), path="/")


def clear_login_cookie(response: Response, gateway: Gateway) -> None:
    response.delete_cookie(LOGIN_COOKIE, path="/", httponly=True, samesite="Lax", secure=secure_request(gateway))


def retry_headers(exc: RateLimitExceeded) -> dict[str, str]:
    return {"Retry-After": str(exc.decision.retry_after_seconds)}


def see_other(location: str) -> Response:
    response = redirect(location, 303)
    response.headers.update(PAGE_HEADERS)
    return response
