"""Log in, sign up, log out, forgot and reset password, change password.

Limits (the seed's): every sign-up, forgot and reset request and every login
is charged to the client IP's auth bucket (5/min); a login that succeeds
gets its charge back, so only failures count, and a spent bucket refuses the
login before the password is even checked. Forgot is also limited per email
(3/hour), whether or not the email has an account, and always answers the
same page; the mail goes out in the background, so the answer's timing does
not tell either.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from quart import Quart, Response, request
from werkzeug.datastructures import MultiDict

from .._accounts import MIN_PASSWORD_LENGTH, AccountError, normalize_email
from .._gateway import Gateway
from .._mail import Mail
from ..errors import RateLimitExceeded
from ._web import (
    GetGateway,
    Viewer,
    anonymous_page,
    check_anonymous_csrf,
    clear_login_cookie,
    client_ip,
    current_viewer,
    login_required,
    page,
    read_form,
    retry_headers,
    safe_next,
    see_other,
    set_login_cookie,
)

log = logging.getLogger("gateway.dashboard")


def install(app: Quart, get_gateway: GetGateway) -> None:
    @app.route("/", methods=["GET"])
    async def home() -> Response:
        viewer = await current_viewer(get_gateway())
        return see_other("/dashboard" if viewer else "/login")

    @app.route("/login", methods=["GET", "POST"])
    async def login() -> Response:
        gateway = get_gateway()
        nxt = safe_next(request.args.get("next"))
        if request.method == "GET":
            if await current_viewer(gateway):
                return see_other(nxt)
            notice = {"reset": "Your password is changed. Log in with the new one.",
                      "out": "You are logged out."}.get(request.args.get("done", ""))
            return await _login_page(gateway, nxt, notice=notice)
        form = await read_form()
        await check_anonymous_csrf(form)
        nxt = safe_next(form.get("next"))
        ip = client_ip(gateway)
        email = form.get("email", "")
        try:
            await gateway.rates.auth_attempt(ip)
        except RateLimitExceeded as exc:
            return await _login_page(gateway, nxt, email=email, status=429, headers=retry_headers(exc),
                                     error=f"Too many attempts from your address; try again in "
                                           f"{exc.decision.retry_after_seconds} s.")
        user = await gateway.accounts.check_login(email, form.get("password", ""))
        if user is None:
            return await _login_page(gateway, nxt, email=email, status=401, error="Wrong email or password.")
        await gateway.rates.refund_auth(ip)
        return await _logged_in(gateway, user.id, nxt)

    @app.route("/signup", methods=["GET", "POST"])
    async def signup() -> Response:
        gateway = get_gateway()
        if gateway.config.signup == "closed":
            return await anonymous_page("signup.html", 403, closed=True)
        if request.method == "GET":
            return await anonymous_page("signup.html", min_length=MIN_PASSWORD_LENGTH)

        async def create(form: MultiDict[str, str], password: str) -> Response:
            user = await gateway.accounts.create_user(form.get("email", ""), password)
            log.info("user signed up", extra={"fields": {"user": user.id}})
            return await _logged_in(gateway, user.id, "/dashboard")

        return await _new_password_form(gateway, "signup.html", create, keep="email")

    @app.route("/logout", methods=["POST"])
    @login_required(get_gateway)
    async def logout(gateway: Gateway, viewer: Viewer) -> Response:
        await gateway.logins.end(viewer.cookie)
        response = see_other("/login?done=out")
        clear_login_cookie(response, gateway)
        return response

    @app.route("/forgot", methods=["GET", "POST"])
    async def forgot() -> Response:
        gateway = get_gateway()
        if request.method == "GET":
            return await anonymous_page("forgot.html")
        form = await read_form()
        await check_anonymous_csrf(form)
        email = form.get("email", "").strip()
        try:
            normalize_email(email)
        except AccountError as exc:
            return await anonymous_page("forgot.html", 422, email=email, error=_sentence(exc))
        try:
            await gateway.rates.auth_attempt(client_ip(gateway))
            await gateway.rates.forgot(email)
        except RateLimitExceeded as exc:
            return await anonymous_page("forgot.html", 429, headers=retry_headers(exc), email=email,
                                        error=_too_many(exc))
        gateway.nursery.start_soon(_send_reset_link, gateway, email)
        return await anonymous_page("forgot.html", sent=True, email=email)

    @app.route("/reset", methods=["GET", "POST"])
    async def reset() -> Response:
        gateway = get_gateway()
        if request.method == "GET":
            return await anonymous_page("reset.html", token=request.args.get("token", ""),
                                        min_length=MIN_PASSWORD_LENGTH)

        async def reset_with(form: MultiDict[str, str], password: str) -> Response:
            user = await gateway.accounts.finish_reset(form.get("token", ""), password)
            ended = await gateway.logins.end_all(user.id)
            log.info("password reset", extra={"fields": {"user": user.id, "logins_ended": ended}})
            response = see_other("/login?done=reset")
            clear_login_cookie(response, gateway)
            return response

        return await _new_password_form(gateway, "reset.html", reset_with, keep="token")

    @app.route("/dashboard/account", methods=["GET", "POST"])
    @login_required(get_gateway)
    async def account(gateway: Gateway, viewer: Viewer) -> Response:
        if request.method == "GET":
            return await page("account.html", viewer=viewer, min_length=MIN_PASSWORD_LENGTH)
        form = await read_form()
        try:
            if form.get("password", "") != form.get("confirm", ""):
                raise AccountError("the two new passwords differ")
            await gateway.accounts.change_password(viewer.user.id, form.get("current", ""), form.get("password", ""))
        except AccountError as exc:
            return await page("account.html", 422, viewer=viewer, min_length=MIN_PASSWORD_LENGTH,
                              error=_sentence(exc))
        # Every login of the user ends, this one too; the person who changed it stays in on a new one.
        await gateway.logins.end_all(viewer.user.id)
        cookie, _ = await gateway.logins.start(viewer.user.id, ip=client_ip(gateway),
                                               user_agent=request.headers.get("User-Agent", ""))
        response = see_other("/dashboard/account?done=password")
        set_login_cookie(response, gateway, cookie)
        return response


async def _new_password_form(gateway: Gateway, template: str,
                             run: Callable[[MultiDict[str, str], str], Awaitable[Response]], *, keep: str) -> Response:
    """Sign-up and reset: charge the client's auth allowance, check the two passwords agree, then `run`.
    A refusal shows the form again with the reason, and the `keep` field as it was typed."""
    form = await read_form()
    await check_anonymous_csrf(form)
    shown = {keep: form.get(keep, ""), "min_length": MIN_PASSWORD_LENGTH}
    try:
        await gateway.rates.auth_attempt(client_ip(gateway))
        password = form.get("password", "")
        if password != form.get("confirm", ""):
            raise AccountError("the two passwords differ")
        return await run(form, password)
    except RateLimitExceeded as exc:
        return await anonymous_page(template, 429, headers=retry_headers(exc), error=_too_many(exc), **shown)
    except AccountError as exc:
        return await anonymous_page(template, 422, error=_sentence(exc), **shown)


async def _login_page(gateway: Gateway, nxt: str, *, status: int = 200, email: str = "", error: str | None = None,
                      notice: str | None = None, headers: dict[str, str] | None = None) -> Response:
    return await anonymous_page("login.html", status, headers=headers, next=nxt, email=email, error=error,
                                notice=notice, signup_open=gateway.config.signup == "open")


async def _logged_in(gateway: Gateway, user_id: str, target: str) -> Response:
    cookie, _ = await gateway.logins.start(user_id, ip=client_ip(gateway),
                                           user_agent=request.headers.get("User-Agent", ""))
    response = see_other(target)
    set_login_cookie(response, gateway, cookie)
    return response


async def _send_reset_link(gateway: Gateway, email: str) -> None:
    """In the background: the forgot page answers the same, as fast, whether or not the email is known."""
    try:
        started = await gateway.accounts.start_reset(email)
        if started is None:
            log.info("password reset asked for an unknown email")
            return
        user, token = started
        link = f"{gateway.config.base_url()}/reset?token={quote(token)}"
        await gateway.mailer.send(Mail(
            to=user.email, subject="Reset your WhatsApp gateway password",
            text=(f"Someone (hopefully you) asked to reset the password of {user.email}.\n\n"
                  f"Open this link within an hour to choose a new one:\n{link}\n\n"
                  "The link works once. If you did not ask for it, ignore this mail: your password "
                  "stays as it is.\n")))
    except Exception:  # noqa: BLE001 - a background task: log it, the person may ask again
        log.exception("could not send a password-reset mail")


def _too_many(exc: RateLimitExceeded) -> str:
    return f"Too many requests; try again in {exc.decision.retry_after_seconds} s."


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
