"""/dashboard/api-tokens: create (the secret shown once), list and revoke personal access tokens."""

from __future__ import annotations

import logging

from quart import Quart, Response, request

from .._accounts import MAX_TOKEN_DAYS, AccountError
from .._gateway import Gateway
from .._security import CredentialKind
from ..errors import NotFound
from ._web import GetGateway, Viewer, login_required, page, read_form, see_other

log = logging.getLogger("gateway.dashboard")


def install(app: Quart, get_gateway: GetGateway) -> None:
    @app.route("/dashboard/api-tokens", methods=["GET", "POST"])
    @login_required(get_gateway)
    async def tokens(gateway: Gateway, viewer: Viewer) -> Response:
        if request.method == "GET":
            done = "Token revoked: it is refused from now on." if request.args.get("done") == "revoked" else None
            return await _tokens_page(gateway, viewer, done=done)
        form = await read_form()
        name = form.get("name", "")
        days = form.get("expiresInDays", "").strip()
        try:
            if days and not days.isdigit():
                raise AccountError(f"expiry must be a whole number of days, 1 to {MAX_TOKEN_DAYS}")
            token, secret = await gateway.accounts.issue_token(viewer.user.id, name,
                                                               expires_in_days=int(days) if days else None)
        except AccountError as exc:
            return await _tokens_page(gateway, viewer, status=422, error=str(exc).capitalize() + ".",
                                      form={"name": name, "expiresInDays": days})
        log.info("token created", extra={"fields": {"token": token.id, "user": viewer.user.id}})
        return await _tokens_page(gateway, viewer, status=201, new_token=secret, new_token_name=token.name)

    @app.route("/dashboard/api-tokens/<token_id>/revoke", methods=["POST"])
    @login_required(get_gateway)
    async def revoke(gateway: Gateway, viewer: Viewer, token_id: str) -> Response:
        token = await gateway.accounts.revoke_token(token_id, owner=viewer.user.id)
        if token is None:
            raise NotFound("No such token")
        gateway.auth.forget(CredentialKind.PAT, token_id)
        log.info("token revoked", extra={"fields": {"token": token_id, "user": viewer.user.id}})
        return see_other("/dashboard/api-tokens?done=revoked")


async def _tokens_page(gateway: Gateway, viewer: Viewer, *, status: int = 200, **context: object) -> Response:
    tokens = await gateway.accounts.list_tokens(viewer.user.id)
    return await page("tokens.html", status, viewer=viewer, tokens=tokens, now=gateway.clock.now_ms(),
                      max_days=MAX_TOKEN_DAYS, **context)
