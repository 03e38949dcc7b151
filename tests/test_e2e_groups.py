"""End to end, groups: the gateway with the `sim` transport against a `gateway simulator` process, two or three
sessions in one group. Admins, invite links, settings, announce-only, pictures and removals are seen by the
other members, in their group info and as signed `group.*` webhooks in the documented shape; unknown groups
and invite codes answer 404 in the envelope. The picture URL checks (SSRF, body cap) run without a simulator."""

from __future__ import annotations

import base64
from contextlib import asynccontextmanager

import pytest
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from bench.simulator import open_sim_control
from gateway import Config, create_app
from gateway.api.groups import PICTURE_BASE64_MAX, PICTURE_MAX_BYTES
from gateway.app import running_gateway

from ._fake_transport import FakeFactory
from ._sim_proc import simulator
from .conftest import make_account
from .test_api_sessions import BASE, bearer, create, error_of
from .test_api_webhooks import receiver_at, verify
from .test_e2e_sim import A_PHONE, B_PHONE, C_PHONE, gateway_app, pair, wait_message, wait_status
from .test_event_schemas import validate_event

JA, JB, JC = "15550000001@s.whatsapp.net", "15550000002@s.whatsapp.net", "15550000003@s.whatsapp.net"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(200)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)
UNKNOWN_GROUP = "120363000000000001@g.us"
UNKNOWN_CODE = "AbCdEfGhIjKlMnOpQrStUv"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def ok(r, status: int = 200) -> dict:
    assert r.status_code == status, (r.status_code, await r.get_data())
    return await r.get_json()


async def link(client, account, ctl, session: dict, phone: str) -> None:
    """Connect one more session and scan its QR as `phone` (`pair` links two)."""
    await client.post(f"{BASE}/{session['id']}/connect", headers=account.headers)
    await ctl.wait_qr(session["id"])
    await ctl.scan(session["id"], phone)
    await wait_status(client, account.headers, session["id"], "CONNECTED")


async def hooked(rx, session: dict, kind: str, /, **data) -> dict:
    """The first webhook post of `kind` to `session` whose data has these values: its signature verified with the
    session's secret, the whole body checked against the document's schema."""
    with trio.fail_after(15):
        while True:
            got = rx.got
            for headers, body in rx.calls:
                event = verify(session["webhookSecret"], headers, body) if _for(body, session) else None
                if event is not None and event["event"] == kind and all(
                        event["data"].get(k) == v for k, v in data.items()):
                    validate_event(kind, event["data"], envelope=event)
                    return event
            await got.wait()


def _for(body: bytes, session: dict) -> bool:
    return f'"sessionId":"{session["id"]}"'.encode() in body


async def roles(client, key, group: str) -> dict[str, tuple[bool, bool]]:
    info = await ok(await client.get(f"/api/v1/groups/{group}", headers=key))
    return {p["jid"]: (p["isAdmin"], p["isSuperAdmin"]) for p in info["participants"]}


@pytest.mark.slow
async def test_admins_invite_links_and_removal_reach_the_other_members(tmp_path):
    """A promotes and demotes B (B's group info and B's webhook show each), C joins by A's invite link
    (`group.joined` for C, `group.participants` add for B), a revoked code leads nowhere, and A removes C
    (`group.left` at C's webhook)."""
    with simulator("--receipt-delay", "0.05") as sim:
        async with receiver_at() as rx, gateway_app(tmp_path, sim.url, allow_private_urls=True) as (
                _, client, gw), open_sim_control(sim.url) as ctl:
            account = await make_account(gw)
            a = await create(client, account, name="a", phoneNumber=A_PHONE)
            b = await create(client, account, name="b", phoneNumber=B_PHONE, webhookUrl=rx.url,
                             webhookEvents=["group.joined", "group.participants"])
            c = await create(client, account, name="c", phoneNumber=C_PHONE, webhookUrl=rx.url,
                             webhookEvents=["group.joined", "group.left"])
            await pair(client, account, ctl, a, b)
            await link(client, account, ctl, c, C_PHONE)
            ka, kb, kc = bearer(a["apiKey"]), bearer(b["apiKey"]), bearer(c["apiKey"])

            g = (await ok(await client.post("/api/v1/groups", json={"name": "team", "participants": [B_PHONE]},
                                            headers=ka), 201))["jid"]
            joined = await hooked(rx, b, "group.joined")
            assert joined["data"] == {"group": g, "by": JA, "timestampMs": joined["data"]["timestampMs"],
                                      "name": "team"}

            # promote, then demote: B's own group info and B's webhook show each change
            results = await ok(await client.post(f"/api/v1/groups/{g}/participants/promote",
                                                 json={"participants": [B_PHONE, C_PHONE]}, headers=ka))
            assert results == {"results": [{"jid": JB, "ok": True, "error": None},
                                           {"jid": JC, "ok": False, "error": "404"}]}  # C is not in it yet
            assert (await roles(client, kb, g))[JB] == (True, False)
            promoted = await hooked(rx, b, "group.participants", action="promote")
            assert promoted["data"] == {"group": g, "by": JA, "timestampMs": promoted["data"]["timestampMs"],
                                        "action": "promote", "participants": [JB]}
            # an admin other than the creator cannot demote the creator
            assert (await ok(await client.post(f"/api/v1/groups/{g}/participants/demote",
                                               json={"participants": [A_PHONE]}, headers=kb)))["results"][0][
                "error"] == "not-authorized"
            await ok(await client.post(f"/api/v1/groups/{g}/participants/demote", json={"participants": [B_PHONE]},
                                       headers=ka))
            assert (await roles(client, kb, g)) == {JA: (True, True), JB: (False, False)}
            demoted = await hooked(rx, b, "group.participants", action="demote")
            assert (demoted["data"]["by"], demoted["data"]["participants"]) == (JA, [JB])
            # a member who is not an admin promotes nobody
            refused = await ok(await client.post(f"/api/v1/groups/{g}/participants/promote",
                                                 json={"participants": [B_PHONE]}, headers=kb))
            assert refused["results"] == [{"jid": JB, "ok": False, "error": "not-authorized"}]

            # the invite link: the admin's, the same until revoked; C previews it, then joins
            invite = await ok(await client.get(f"/api/v1/groups/{g}/invite", headers=ka))
            assert invite["link"] == f"https://chat.whatsapp.com/{invite['code']}" and len(invite["code"]) == 22
            assert await ok(await client.get(f"/api/v1/groups/{g}/invite", headers=ka)) == invite
            denied = await error_of(await client.get(f"/api/v1/groups/{g}/invite", headers=kb), 403, "FORBIDDEN")
            assert "not-authorized" in denied["message"]
            preview = await ok(await client.get(f"/api/v1/groups/invite/{invite['code']}", headers=kc))
            assert (preview["jid"], preview["name"], len(preview["participants"])) == (g, "team", 2)
            assert await ok(await client.post(f"/api/v1/groups/invite/{invite['code']}/join", headers=kc)) == {
                "jid": g}
            by_link = await hooked(rx, c, "group.joined", group=g)
            assert by_link["data"]["by"] is None and by_link["data"]["name"] == "team"
            came = await hooked(rx, b, "group.participants", action="add")
            assert (came["data"]["by"], came["data"]["participants"]) == (JC, [JC])
            assert JC in await roles(client, kc, g)
            await ok(await client.post(f"/api/v1/groups/{g}/participants/promote", json={"participants": [C_PHONE]},
                                       headers=ka))
            await hooked(rx, b, "group.participants", action="promote", participants=[JC])
            assert (await roles(client, kc, g))[JC] == (True, False)

            fresh = await ok(await client.post(f"/api/v1/groups/{g}/invite/revoke", headers=ka))
            assert fresh["code"] != invite["code"]
            await error_of(await client.get(f"/api/v1/groups/invite/{invite['code']}", headers=kc), 404,
                           "GROUP_NOT_FOUND")
            assert (await ok(await client.get(f"/api/v1/groups/invite/{fresh['code']}", headers=kc)))["jid"] == g

            # A removes C: C's webhook gets group.left, B's the removal; C no longer sees the group
            removed = await ok(await client.post(f"/api/v1/groups/{g}/participants/remove",
                                                 json={"participants": [C_PHONE]}, headers=ka))
            assert removed["results"] == [{"jid": JC, "ok": True, "error": None}]
            left = await hooked(rx, c, "group.left")
            assert left["data"] == {"group": g, "by": JA, "timestampMs": left["data"]["timestampMs"],
                                    "reason": "removed"}
            gone = await hooked(rx, b, "group.participants", action="remove")
            assert gone["data"]["participants"] == [JC]
            await error_of(await client.get(f"/api/v1/groups/{g}", headers=kc), 404, "GROUP_NOT_FOUND")
            # each session's event filter held (C was promoted, and removed from B's view, unannounced)
            for s, kinds in ((b, {"group.joined", "group.participants"}), (c, {"group.joined", "group.left"})):
                assert {verify(s["webhookSecret"], h, body)["event"] for h, body in rx.calls if _for(body, s)} == kinds


@asynccontextmanager
async def files_at(files: dict[str, bytes]):
    """A local HTTP server answering GET `path` with `files[path]` (404 for others); yields its base URL."""

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = files.get(scope["path"])
        await send({"type": "http.response.start", "status": 200 if body is not None else 404,
                    "headers": [(b"content-length", str(len(body or b"")).encode())]})
        await send({"type": "http.response.body", "body": body or b""})

    cfg = HyperConfig()
    cfg.bind = ["127.0.0.1:0"]
    cfg.accesslog = None
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, app, cfg)
        yield binds[0]
        nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_settings_announce_only_and_the_picture_reach_a_member(tmp_path):
    """A names and describes the group, makes it announce-only and locks it: B sees each setting in its group
    info and as `group.updated` at its webhook, B's send to the group fails with WhatsApp's reason, B may no
    longer edit. A sets the picture from base64 and by URL, B reads it; a PNG or an oversized JPEG is refused."""
    just_over = JPEG + bytes(PICTURE_MAX_BYTES + 1 - len(JPEG))
    too_big = JPEG + bytes(PICTURE_MAX_BYTES)
    with simulator("--receipt-delay", "0.05") as sim:
        async with receiver_at() as rx, files_at({"/p.jpg": JPEG + b"url", "/p.png": PNG, "/big.jpg": too_big}) as \
                files, gateway_app(tmp_path, sim.url, allow_private_urls=True) as (_, client, gw), \
                open_sim_control(sim.url) as ctl:
            account = await make_account(gw)
            a = await create(client, account, name="a", phoneNumber=A_PHONE)
            b = await create(client, account, name="b", phoneNumber=B_PHONE, webhookUrl=rx.url,
                             webhookEvents=["group.updated"])
            await pair(client, account, ctl, a, b)
            ka, kb = bearer(a["apiKey"]), bearer(b["apiKey"])
            g = (await ok(await client.post("/api/v1/groups", json={"name": "team", "participants": [B_PHONE]},
                                            headers=ka), 201))["jid"]
            settings = f"/api/v1/groups/{g}/settings"

            after = await ok(await client.put(settings, json={"name": " Launch ", "description": "Q3 plans"},
                                              headers=ka))
            assert {k: after[k] for k in ("name", "description", "topic", "announce", "locked")} == {
                "name": "Launch", "description": "Q3 plans", "topic": "Q3 plans", "announce": False, "locked": False}
            seen = await ok(await client.get(f"/api/v1/groups/{g}", headers=kb))
            assert (seen["name"], seen["description"]) == ("Launch", "Q3 plans")
            updated = await hooked(rx, b, "group.updated", name="Launch")
            assert updated["data"] == {"group": g, "by": JA, "timestampMs": updated["data"]["timestampMs"],
                                       "name": "Launch", "topic": "Q3 plans"}  # only what changed

            for bad in ({}, {"name": "   "}, {"name": "x" * 101}, {"description": "x" * 2049}, {"topic": "x"}):
                await error_of(await client.put(settings, json=bad, headers=ka), 422, "VALIDATION_ERROR")
            refused = await error_of(await client.put(settings, json={"announce": True}, headers=kb), 403,
                                     "FORBIDDEN")
            assert "not-authorized" in refused["message"]

            # announce-only: B's message to the group ends failed with the reason; A's goes
            assert (await ok(await client.put(settings, json={"announce": True}, headers=ka)))["announce"] is True
            assert (await hooked(rx, b, "group.updated", announce=True))["data"].keys() == {
                "group", "by", "timestampMs", "announce"}
            assert (await ok(await client.get(f"/api/v1/groups/{g}", headers=kb)))["announce"] is True
            r = await ok(await client.post("/api/v1/send-message", json={"to": g, "text": "may I?"}, headers=kb), 202)
            failed = await wait_message(client, kb, r["messageId"], "failed")
            assert "only admins may send" in failed["statusReason"]
            r = await ok(await client.post("/api/v1/send-message", json={"to": g, "text": "news"}, headers=ka), 202)
            await wait_message(client, ka, r["messageId"], "sent")

            # the picture: from base64, read by B, announced to B
            picture = f"/api/v1/groups/{g}/picture"
            await error_of(await client.get(picture, headers=kb), 404, "NOT_FOUND")  # none yet
            first = await ok(await client.put(picture, json={"base64": b64(JPEG)}, headers=ka))
            assert first["jid"] == g and first["id"]
            read = await ok(await client.get(picture, headers=kb))
            assert read["id"] == first["id"] and read["url"].startswith("https://")
            assert (await hooked(rx, b, "group.updated", pictureChanged=True))["data"]["by"] == JA
            for body, words in (({"base64": b64(PNG)}, "must be a JPEG image; got image/png"),
                                ({"base64": b64(just_over)}, "a group picture is at most 1.0 MB"),
                                ({"base64": b64(too_big)}, f"length <= {PICTURE_BASE64_MAX}"),  # not even decoded
                                ({"base64": "not base64!"}, "not valid base64"),
                                ({"url": f"{files}/p.png"}, "must be a JPEG image"),
                                ({"url": f"{files}/big.jpg"}, "at most 1.0 MB is accepted here"),
                                ({"url": f"{files}/missing.jpg"}, "HTTP 404"),
                                ({"url": f"{files}/p.jpg", "base64": b64(JPEG)}, "exactly one of url and base64"),
                                ({}, "exactly one of url and base64")):
                error = await error_of(await client.put(picture, json=body, headers=ka), 422, "VALIDATION_ERROR")
                assert words in error["message"], (body.keys(), error)
            by_url = await ok(await client.put(picture, json={"url": f"{files}/p.jpg"}, headers=ka))
            assert by_url["id"] not in (None, first["id"])
            assert (await ok(await client.get(picture, headers=kb)))["id"] == by_url["id"]

            # locked: B may change neither the name nor the picture; A takes the picture down
            await ok(await client.put(settings, json={"locked": True}, headers=ka))
            await hooked(rx, b, "group.updated", locked=True)
            for r in (await client.put(settings, json={"name": "mine"}, headers=kb),
                      await client.put(picture, json={"base64": b64(JPEG)}, headers=kb)):
                assert "not-authorized" in (await error_of(r, 403, "FORBIDDEN"))["message"]
            assert await ok(await client.delete(picture, headers=ka)) == {"jid": g, "id": None}
            await error_of(await client.get(picture, headers=kb), 404, "NOT_FOUND")  # none any more


@pytest.mark.slow
async def test_unknown_groups_and_invite_codes_answer_404_and_malformed_ones_422(tmp_path):
    """A well-formed group JID reaches WhatsApp and comes back GROUP_NOT_FOUND on every route, as does an unknown
    invite code; what is not a group JID or an invite code is refused before that."""
    with simulator("--autopair", "0.05") as sim:
        async with gateway_app(tmp_path, sim.url) as (_, client, gw):
            account = await make_account(gw)
            s = await create(client, account, name="a", phoneNumber=A_PHONE)
            await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
            await wait_status(client, account.headers, s["id"], "CONNECTED")
            key = bearer(s["apiKey"])
            people = {"participants": [B_PHONE]}
            for group in (UNKNOWN_GROUP, "123456789@g.us", "15551234567-1600000000@g.us"):
                base = f"/api/v1/groups/{group}"
                for method, path, body in (
                        ("GET", "", None), ("GET", "/participants", None), ("PUT", "/settings", {"name": "x"}),
                        ("GET", "/picture", None), ("PUT", "/picture", {"base64": b64(JPEG)}),
                        ("DELETE", "/picture", None), ("GET", "/invite", None), ("POST", "/invite/revoke", None),
                        ("POST", "/participants/add", people), ("POST", "/participants/promote", people),
                        ("POST", "/participants/demote", people), ("POST", "/leave", None)):
                    r = await client.open(base + path, method=method, json=body, headers=key)
                    error = await error_of(r, 404, "GROUP_NOT_FOUND")
                    assert error["details"] == [], (method, path)
            await error_of(await client.get(f"/api/v1/groups/invite/{UNKNOWN_CODE}", headers=key), 404,
                           "GROUP_NOT_FOUND")
            await error_of(await client.post(f"/api/v1/groups/invite/{UNKNOWN_CODE}/join", headers=key), 404,
                           "GROUP_NOT_FOUND")
            for method, path in (("GET", "abc@g.us"), ("GET", "123456789"), ("GET", "15550000002@s.whatsapp.net"),
                                 ("PUT", f"{'1' * 60}@g.us/settings"), ("GET", "invite/short"),
                                 ("GET", "invite/AbCdEfGhIjKlMnOp-rStUv"), ("POST", f"invite/{'A' * 33}/join")):
                r = await client.open(f"/api/v1/groups/{path}", method=method,
                                      json={"name": "x"} if method == "PUT" else None, headers=key)
                error = await error_of(r, 422, "VALIDATION_ERROR")
                assert error["details"][0]["path"] in ("path.jid", "path.code"), path


@pytest.mark.parametrize("url, words", [
    ("http://127.0.0.1:9/p.jpg", "refused"),
    ("http://169.254.169.254/latest/meta-data", "refused"),
    ("http://[::ffff:10.0.0.1]/p.jpg", "refused"),
    ("ftp://example.com/p.jpg", "must be an http:// or https:// URL"),
])
async def test_a_picture_url_passes_the_media_ssrf_checks(tmp_path, url, words):
    """No simulator needed: the URL is refused before anything reaches WhatsApp."""
    config = Config(database_url=f"sqlite:///{tmp_path}/g.db", transport="sim", max_media_body=2 * 1024 * 1024)
    app = create_app(config, transport_factory=FakeFactory(["connect"]))
    async with app.test_app():
        client, gw = app.test_client(), running_gateway(app)
        account = await make_account(gw)
        s = await create(client, account)
        await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
        await wait_status(client, account.headers, s["id"], "CONNECTED")
        picture = f"/api/v1/groups/{UNKNOWN_GROUP}/picture"
        error = await error_of(await client.put(picture, json={"url": url}, headers=bearer(s["apiKey"])), 422,
                               "VALIDATION_ERROR")
        assert words in error["message"] and error["details"][0]["path"] == "$.url"
        # the route's body cap is GATEWAY_MAX_MEDIA_BODY; the base64 is capped at the picture's size
        r = await client.put(picture, json={"base64": "A" * (2 * 1024 * 1024)}, headers=bearer(s["apiKey"]))
        await error_of(r, 413, "PAYLOAD_TOO_LARGE")
        r = await client.put(picture, json={"base64": "A" * (PICTURE_BASE64_MAX + 4)}, headers=bearer(s["apiKey"]))
        assert (await error_of(r, 422, "VALIDATION_ERROR"))["details"][0]["path"] == "$.base64"

