"""The gateway's own address book under /contacts: the seed's field names, any phone format, pages, 404s."""

from __future__ import annotations

from .test_api_sessions import bearer, create, error_of

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
