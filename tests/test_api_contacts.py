"""/contacts and /lids without a live connection: the gateway's own address book (the seed's field names, any phone
format, pages, 404s), what needs WhatsApp answering 409, LIDs from the session's own store, and the document; then,
against an in-process simulator, the profile caches on trio's mock clock."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from actors import SessionState
from bench.simulator import open_sim_control
from gateway import Config, create_app
from gateway.app import running_gateway

from ._sim_fixtures import simulator
from .conftest import make_account
from .test_api_sessions import BASE, bearer, create, error_of

CONTACTS = "/api/v1/contacts"


async def test_upsert_takes_the_seeds_full_name_and_the_older_name(client, account):
    key = bearer((await create(client, account))["apiKey"])
    seed = await client.put(CONTACTS, headers=key, json={"fullName": "John Doe", "phoneNumber": "+1234567890"})
    assert seed.status_code == 200, await seed.get_data()
    body = await seed.get_json()
    assert (body["fullName"], body["name"], body["phoneNumber"], body["jid"]) == (
        "John Doe", "John Doe", "+1234567890", "1234567890@s.whatsapp.net")
    renamed = await client.put(CONTACTS, headers=key, json={"name": "Johnny", "phoneNumber": "1 (234) 567-890"})
    assert (await renamed.get_json())["fullName"] == "Johnny"  # the same contact, found by its normalised number
    both = await client.put(CONTACTS, headers=key,
                            json={"fullName": "A", "name": "B", "phoneNumber": "+1234567890"})
    err = await error_of(both, 422, "VALIDATION_ERROR")
    assert err["details"][0]["path"] == "$.name"
    same = await client.put(CONTACTS, headers=key, json={"fullName": "C", "name": "C", "phoneNumber": "+1234567890"})
    assert same.status_code == 200


async def test_get_by_any_phone_format_and_unknown_is_404(client, account):
    key = bearer((await create(client, account))["apiKey"])
    await client.put(CONTACTS, headers=key, json={"fullName": "Ada", "phoneNumber": "+15550001111"})
    for spelling in ("+15550001111", "15550001111", "+1 555-000-1111"):
        found = await client.get(f"{CONTACTS}/{spelling}", headers=key)
        assert found.status_code == 200 and (await found.get_json())["fullName"] == "Ada", spelling
    await error_of(await client.get(f"{CONTACTS}/15559999999", headers=key), 404, "NOT_FOUND")


async def test_contacts_belong_to_their_session_and_come_in_pages(client, account):
    mine, other = bearer((await create(client, account))["apiKey"]), bearer((await create(client, account))["apiKey"])
    for i in range(5):
        await client.put(CONTACTS, headers=mine, json={"fullName": f"P{i}", "phoneNumber": f"+1555000100{i}"})
    first = await (await client.get(CONTACTS, headers=mine, query_string={"limit": "3"})).get_json()
    rest = await (await client.get(CONTACTS, headers=mine, query_string={"limit": "3", "cursor": first["nextCursor"]})
                  ).get_json()
    assert [c["fullName"] for c in first["data"] + rest["data"]] == [f"P{i}" for i in range(5)]
    assert rest["nextCursor"] is None
    assert (await (await client.get(CONTACTS, headers=other)).get_json())["data"] == []
    await error_of(await client.get(f"{CONTACTS}/+15550001000", headers=other), 404, "NOT_FOUND")


async def test_not_connected_lists_the_gateways_own_and_says_so(client, account):
    key = bearer((await create(client, account))["apiKey"])
    await client.put(CONTACTS, headers=key, json={"fullName": "Ada", "phoneNumber": "+15550001111"})
    listed = await (await client.get(CONTACTS, headers=key)).get_json()
    assert listed["whatsapp"] is False and listed["nextCursor"] is None
    [ada] = listed["data"]
    assert (ada["source"], ada["fullName"], ada["name"], ada["pushName"], ada["businessName"], ada["lid"]) == (
        "gateway", "Ada", "Ada", None, None, None)
    assert ada["createdAt"] and ada["updatedAt"]
    one = await (await client.get(f"{CONTACTS}/+15550001111", headers=key)).get_json()
    assert one == ada
    # what needs WhatsApp says the session is not connected, in the envelope
    for path in ("/blocklist", "/+15550001111/picture", "/+15550001111/about"):
        await error_of(await client.get(CONTACTS + path, headers=key), 409, "SESSION_DISCONNECTED")
    for action in ("block", "unblock"):
        await error_of(await client.post(f"{CONTACTS}/+15550001111/{action}", headers=key), 409,
                       "SESSION_DISCONNECTED")
    # a bad number is refused before anything else
    for path in ("/12ab/picture", "/12ab/about", "/" + "1" * 33 + "/picture"):
        err = await error_of(await client.get(CONTACTS + path, headers=key), 422, "VALIDATION_ERROR")
        assert err["details"][0]["path"] == "path.phone"
    await error_of(await client.post(f"{CONTACTS}/12ab/block", headers=key), 422, "VALIDATION_ERROR")


async def test_lids_answer_from_the_sessions_own_store_and_validate(client, account, gateway):
    mine, other = await create(client, account), await create(client, account)
    key, other_key = bearer(mine["apiKey"]), bearer(other["apiKey"])
    lid, jid = "123456789012345@lid", "15550001111@s.whatsapp.net"
    await gateway.lids.learn(mine["id"], [(lid, jid)])
    answer = {"lid": lid, "jid": jid, "phoneNumber": "+15550001111"}
    assert await (await client.get(f"/api/v1/lids/{lid}", headers=key)).get_json() == answer
    assert await (await client.get("/api/v1/lids/by-phone/+1 555 000 1111", headers=key)).get_json() == answer
    # another session never learned it, and is not connected to ask WhatsApp
    await error_of(await client.get(f"/api/v1/lids/{lid}", headers=other_key), 409, "SESSION_DISCONNECTED")
    await error_of(await client.get("/api/v1/lids/by-phone/15550001111", headers=other_key), 409,
                   "SESSION_DISCONNECTED")
    for bad in ("abc@lid", "123@s.whatsapp.net", "1" * 21 + "@lid", "1" * 40 + "@lid", "123@lid.x"):
        err = await error_of(await client.get(f"/api/v1/lids/{bad}", headers=key), 422, "VALIDATION_ERROR")
        assert err["details"][0]["path"] == "path.lid", bad
    await error_of(await client.get("/api/v1/lids/by-phone/12ab", headers=key), 422, "VALIDATION_ERROR")
    await error_of(await client.get(f"/api/v1/lids/{lid}", headers=account.headers), 401, "UNAUTHORIZED")


async def test_the_openapi_document_declares_the_new_answers_and_errors(client):
    doc = await (await client.get("/api/v1/openapi.json")).get_json()
    paths = doc["paths"]
    for path, method, codes in (("/api/v1/contacts/{phone}/picture", "get", {"200", "404", "409", "422"}),
                                ("/api/v1/contacts/{phone}/about", "get", {"200", "404", "409", "422"}),
                                ("/api/v1/contacts/{phone}/block", "post", {"200", "404", "409", "422"}),
                                ("/api/v1/contacts/{phone}/unblock", "post", {"200", "404", "409", "422"}),
                                ("/api/v1/contacts/blocklist", "get", {"200", "409"}),
                                ("/api/v1/contacts/{phone}", "get", {"200", "404", "422"}),
                                ("/api/v1/lids/{lid}", "get", {"200", "404", "409", "422"}),
                                ("/api/v1/lids/by-phone/{phone}", "get", {"200", "404", "409", "422"})):
        assert codes <= set(paths[path][method]["responses"]), path
    schemas = doc["components"]["schemas"]
    assert set(schemas["Contact"]["properties"]["source"]["enum"]) == {"gateway", "whatsapp", "both"}
    assert "whatsapp" in schemas["ContactList"]["required"]


@pytest.fixture
def clock() -> MockClock:
    """Trio's clock at the real rate (sockets and the simulator run as usual), plus `jump`."""
    return MockClock(rate=1.0)


async def test_pictures_and_about_texts_are_cached_for_the_on_whatsapp_ttl(tmp_path, clock):
    async with simulator(autopair=0) as sim, open_sim_control(sim.url) as ctl:
        config = Config(database_url=f"sqlite:///{tmp_path}/g.db", data_dir=str(tmp_path / "data"), transport="sim",
                        sim_url=sim.url, on_whatsapp_ttl=30)
        app = create_app(config)
        async with app.test_app():
            client, gw = app.test_client(), running_gateway(app)
            account = await make_account(gw)
            s = await create(client, account, phoneNumber="+15550000001")
            await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
            with trio.fail_after(10):
                while (actor := gw.control.actor(s["id"])) is None or actor.state is not SessionState.CONNECTED:
                    await trio.sleep(0.01)
            key = bearer(s["apiKey"])

            async def both() -> tuple[dict, dict]:
                picture = await client.get(f"{CONTACTS}/+15550000002/picture", headers=key)
                about = await client.get(f"{CONTACTS}/+15550000002/about", headers=key)
                assert picture.status_code == about.status_code == 200, await picture.get_data()
                return await picture.get_json(), await about.get_json()

            first = await ctl.set_profile("+15550000002", about="one", picture=True)
            picture, about = await both()
            assert (picture["id"], picture["cached"], about["about"], about["cached"]) == (
                first["picture_id"], False, "one", False)
            second = await ctl.set_profile("+15550000002", about="two", picture=True)
            clock.jump(29)
            picture, about = await both()
            assert (picture["id"], picture["cached"], about["about"], about["cached"]) == (
                first["picture_id"], True, "one", True)
            clock.jump(2)
            picture, about = await both()
            assert (picture["id"], picture["cached"], about["about"], about["cached"]) == (
                second["picture_id"], False, "two", False)
            assert picture["url"] == second["picture_url"]
