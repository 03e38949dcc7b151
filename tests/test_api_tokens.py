"""Personal access tokens: create, list, revoke, expire, last use; over HTTP, in the authenticator and the CLI."""

from __future__ import annotations

import pytest
import trio

from gateway._auth import Authenticator
from gateway._security import CredentialKind
from gateway.errors import Unauthorized
from gateway.store import open_store

from ._procs import base_env, run_cli
from .conftest import make_account
from .test_api_sessions import bearer, error_of

TOKENS = "/api/v1/tokens"


async def test_create_list_use_and_revoke_over_http(client, gateway, account):
    with trio.fail_after(10):
        r = await client.post(TOKENS, json={"name": "crm", "expiresInDays": 30}, headers=account.headers)
        assert r.status_code == 201
        made = await r.get_json()
        assert made["token"].startswith(f"wgp_{made['id']}_") and made["prefix"] == f"wgp_{made['id']}"
        assert made["expiresAt"] is not None and made["lastUsedAt"] is None
        crm = {"X-API-Token": made["token"]}
        assert (await client.get("/api/v1/whatsapp-sessions", headers=crm)).status_code == 200
        listed = (await (await client.get(TOKENS, headers=account.headers)).get_json())["data"]
        assert {t["name"] for t in listed} == {"tests", "crm"}
        assert [t["createdAt"] for t in listed] == sorted(t["createdAt"] for t in listed)  # oldest first
        assert all("token" not in t for t in listed)  # secrets are shown once, at creation
        assert [t for t in listed if t["id"] == made["id"]][0]["lastUsedAt"] is not None
        r = await client.delete(f"{TOKENS}/{made['id']}", headers=account.headers)
        assert r.status_code == 200 and (await r.get_json())["revokedAt"] is not None
        # Refused at once in this process, although the token was cached a moment ago.
        await error_of(await client.get("/api/v1/whatsapp-sessions", headers=crm), 401, "UNAUTHORIZED")
        again = await client.delete(f"{TOKENS}/{made['id']}", headers=account.headers)
        assert again.status_code == 200  # revoking a revoked token changes nothing


async def test_a_token_can_revoke_itself(client, account):
    with trio.fail_after(10):
        own = account.token.split("_")[1]
        assert (await client.delete(f"{TOKENS}/{own}", headers=account.headers)).status_code == 200
        await error_of(await client.get(TOKENS, headers=account.headers), 401, "UNAUTHORIZED")


async def test_another_users_token_is_not_found_and_keys_do_not_reach_tokens(client, gateway, account):
    with trio.fail_after(10):
        other = await make_account(gateway, "other@example.com")
        theirs = other.token.split("_")[1]
        await error_of(await client.delete(f"{TOKENS}/{theirs}", headers=account.headers), 404, "NOT_FOUND")
        await error_of(await client.delete(f"{TOKENS}/ffffffffffffffff", headers=account.headers), 404, "NOT_FOUND")
        assert (await client.get(TOKENS, headers=other.headers)).status_code == 200  # theirs still works
        s = await (await client.post("/api/v1/whatsapp-sessions", json={"name": "k"}, headers=account.headers)
                   ).get_json()
        r = await client.get(TOKENS, headers=bearer(s["apiKey"]))
        assert r.status_code in (401, 403)


@pytest.mark.parametrize("body", [{"name": "   "}, {"name": "x", "expiresInDays": 0},
                                  {"name": "x", "expiresInDays": 3651}, {"name": "x", "secret": "mine"}])
async def test_bad_token_requests_are_422(client, account, body):
    with trio.fail_after(10):
        await error_of(await client.post(TOKENS, json=body, headers=account.headers), 422, "VALIDATION_ERROR")


class _Wall:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def now_ms(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return trio.current_time()


async def test_expiry_is_checked_on_every_request_and_revocation_elsewhere_within_the_ttl(tmp_path, mock_clock):
    from gateway._accounts import Accounts

    store = await open_store(f"sqlite:///{tmp_path}/t.db")
    try:
        await store.migrate()
        wall = _Wall(1_000_000)
        accounts = Accounts(store, clock=wall)
        await accounts.create_user("a@example.com", "correct horse battery")
        token, secret = await accounts.create_token("a@example.com", "ci", expires_in_days=1)
        here, there = Authenticator(store, ttl=10, clock=wall), Authenticator(store, ttl=10, clock=wall)
        await here.authenticate(secret)
        await there.authenticate(secret)
        assert (await store.get_token(token.id)).last_used_at == 1_000_000
        # Revoked through `here`'s process: `here` forgets it at once, `there` within its TTL.
        await accounts.revoke_token(token.id)
        here.forget(CredentialKind.PAT, token.id)
        with pytest.raises(Unauthorized):
            await here.authenticate(secret)
        await there.authenticate(secret)  # still cached there
        mock_clock.jump(10.1)
        with pytest.raises(Unauthorized):
            await there.authenticate(secret)
        # Expiry: refused from the expiry on, even while cached.
        other, other_secret = await accounts.create_token("a@example.com", "short", expires_in_days=1)
        await here.authenticate(other_secret)
        wall.ms += 86_400_000
        with pytest.raises(Unauthorized, match="expired"):
            await here.authenticate(other_secret)
    finally:
        await store.aclose()


@pytest.mark.timeout(120)
def test_cli_lists_and_revokes_tokens(tmp_path):
    env = base_env(tmp_path)
    assert run_cli(env, "users", "create", "--email", "c@example.com", "--password", "a long password").returncode == 0
    token = run_cli(env, "tokens", "create", "--email", "c@example.com", "--name", "laptop",
                    "--expires-days", "7").stdout.strip()
    token_id = token.split("_")[1]
    listed = run_cli(env, "tokens", "list", "--email", "c@example.com")
    assert listed.returncode == 0 and token_id in listed.stdout and "laptop" in listed.stdout
    assert token.split("_", 2)[2] not in listed.stdout  # never the secret
    revoked = run_cli(env, "tokens", "revoke", token)  # the whole token or its id
    assert revoked.returncode == 0 and "revoked" in revoked.stderr
    line = [row for row in run_cli(env, "tokens", "list", "--email", "c@example.com").stdout.splitlines()
            if token_id in row][0]
    assert line.rstrip().endswith("Z") and line.split()[-1] != "-"  # a revocation time
    assert run_cli(env, "tokens", "revoke", "ffffffffffffffff").returncode != 0


async def test_a_whole_number_may_be_written_as_a_float_but_a_fraction_is_refused(client, account):
    """JSON (and JSON Schema's `integer`) has no int/float split: 90.0 is 90."""
    with trio.fail_after(10):
        r = await client.post(TOKENS, json={"name": "f", "expiresInDays": 90.0}, headers=account.headers)
        assert r.status_code == 201, await r.get_data()
        r = await client.post(TOKENS, json={"name": "f", "expiresInDays": 90.5}, headers=account.headers)
        assert (await error_of(r, 422, "VALIDATION_ERROR"))["details"][0]["path"] == "$.expiresInDays"
