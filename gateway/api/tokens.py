"""Routes under /tokens: a user's personal access tokens (personal access token only)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from .._accounts import MAX_TOKEN_DAYS, AccountError
from .._patterns import NOT_BLANK_PATTERN
from .._requests import Request, whole, whole_number
from .._security import CredentialKind
from ..errors import NotFound, Unauthorized, ValidationError
from ..store import ApiToken, iso_ms
from ._routing import Api, Auth, Ctx
from ._schemas import Answer, fields_of

TAG = "Tokens"


class CreateToken(Request):
    name: Annotated[str, Meta(min_length=1, max_length=100, pattern=NOT_BLANK_PATTERN,
                              description="What the token is for, e.g. `ci` or `crm`.")]
    expires_in_days: whole_number(ge=1, le=MAX_TOKEN_DAYS,  # type: ignore[valid-type]
                                  description="Refuse the token after this many days. Omit for a token that "
                                              "does not expire.") | None = None


class Token(Answer):
    id: str
    name: str
    prefix: Annotated[str, Meta(description="The token's public part (`wgp_<id>`), to recognise it by.")]
    created_at: str
    last_used_at: Annotated[str | None, Meta(description=(
        "Last successful use, exact to within GATEWAY_AUTH_CACHE_TTL seconds."))]
    expires_at: str | None
    revoked_at: str | None


class TokenWithSecret(Token):
    token: Annotated[str, Meta(description="The token itself. Shown only in this answer: store it now.")]


class TokenList(Answer):
    data: list[Token]


def token_out(t: ApiToken) -> Token:
    return Token(id=t.id, name=t.name, prefix=f"wgp_{t.id}", created_at=iso_ms(t.created_at) or "",
                 last_used_at=iso_ms(t.last_used_at), expires_at=iso_ms(t.expires_at),
                 revoked_at=iso_ms(t.revoked_at))


def register(api: Api) -> None:
    @api.route("GET", "/tokens", summary="List tokens", tag=TAG, auth=Auth.PAT, answer=TokenList,
               errors=[Unauthorized])
    async def list_tokens(ctx: Ctx) -> TokenList:
        """Every personal access token of the caller's user, oldest first, revoked and expired ones
        included. Secrets are never shown again."""
        return TokenList(data=[token_out(t) for t in await ctx.gateway.accounts.list_tokens(ctx.account.user_id)])

    @api.route("POST", "/tokens", summary="Create token", tag=TAG, auth=Auth.PAT, body=CreateToken, status=201,
               answer=TokenWithSecret, errors=[Unauthorized, ValidationError])
    async def create_token(ctx: Ctx) -> TokenWithSecret:
        """A new personal access token for the caller's user. The answer is the only place its secret
        appears: it is stored as a hash."""
        try:
            token, secret = await ctx.gateway.accounts.issue_token(
                ctx.account.user_id, ctx.body.name, expires_in_days=None if ctx.body.expires_in_days is None
                else whole(ctx.body.expires_in_days, "$.expiresInDays"))
        except AccountError as exc:
            raise ValidationError.at("$", str(exc)) from None
        out = token_out(token)
        return TokenWithSecret(**fields_of(out), token=secret)

    @api.route("DELETE", "/tokens/<token_id>", summary="Revoke token", tag=TAG, auth=Auth.PAT, answer=Token,
               errors=[Unauthorized, NotFound])
    async def revoke_token(ctx: Ctx, token_id: str) -> Token:
        """Revoke one of the caller's tokens (the one making the call included). It is refused at once
        by this process and within GATEWAY_AUTH_CACHE_TTL seconds by the others. Revoking a revoked
        token changes nothing."""
        token = await ctx.gateway.accounts.revoke_token(token_id, owner=ctx.account.user_id)
        if token is None:
            raise NotFound("No such token")
        ctx.gateway.auth.forget(CredentialKind.PAT, token_id)
        return token_out(token)
