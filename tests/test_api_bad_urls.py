"""Input errors are 4xx naming what is wrong, whatever layer finds them.

Bad URL hosts, a blank group name, a body that is not JSON: never a 500, never an upstream 502.
"""

from __future__ import annotations

import pytest
import trio

from .conftest import make_account
from .test_api_sessions import BASE, bearer, error_of

BAD_HOSTS = ["hTtP://É\"ø", "http://a..b/x.png", "http://.example.com/x", "http://" + "a" * 64 + ".example.com/x"]


@pytest.mark.parametrize("url", BAD_HOSTS)
async def test_a_bad_webhook_host_is_a_422_on_create_and_update(client, gateway, url):
    with trio.fail_after(10):
        account = await make_account(gateway)
        r = await client.post(BASE, json={"name": "x", "webhookUrl": url}, headers=account.headers)
        assert (await error_of(r, 422, "VALIDATION_ERROR"))["details"][0]["path"] == "$.webhookUrl"
        r = await client.post(BASE, json={"name": "x"}, headers=account.headers)
        sid = (await r.get_json())["id"]
        r = await client.put(f"{BASE}/{sid}", json={"webhookUrl": url}, headers=account.headers)
        assert (await error_of(r, 422, "VALIDATION_ERROR"))["details"][0]["path"] == "$.webhookUrl"


async def test_a_bad_media_host_is_that_message_s_422(client, gateway, transports):
    with trio.fail_after(10):
        account = await make_account(gateway)
        s = await (await client.post(BASE, json={"name": "m"}, headers=account.headers)).get_json()
        transports.script = ["connect"]
        await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
        while gateway.control.actor(s["id"]).state.value != "CONNECTED":
            await trio.sleep(0.01)
        key = bearer(s["apiKey"])
        for url in BAD_HOSTS:
            r = await client.post("/api/v1/send-message", json={"to": "+8884057042291", "audio": {"url": url}},
                                  headers=key)
            assert (await error_of(r, 422, "VALIDATION_ERROR"))["details"][0]["path"] == "$.audio.url"
        batch = {"messages": [{"to": "+15551234567", "text": "ok"},
                              {"to": "+15551234567", "image": {"url": BAD_HOSTS[1]}}]}
        r = await client.post("/api/v1/send-messages", json=batch, headers=key)
        assert r.status_code == 202
        body = await r.get_json()
        assert (body["accepted"], body["rejected"]) == (1, 1)
        assert body["results"][1]["error"]["details"][0]["path"] == "$.messages[1].image.url"


async def test_a_blank_group_name_is_the_caller_s_422_not_an_upstream_502(client, gateway):
    with trio.fail_after(10):
        account = await make_account(gateway)
        s = await (await client.post(BASE, json={"name": "g"}, headers=account.headers)).get_json()
        r = await client.post("/api/v1/groups", json={"name": "   ", "participants": ["+15551234567"]},
                              headers=bearer(s["apiKey"]))
        assert (await error_of(r, 422, "VALIDATION_ERROR"))["details"][0]["path"] == "$.name"


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data; boundary=x",
                                          "application/x-www-form-urlencoded"])
async def test_a_body_that_is_not_json_is_415(client, gateway, content_type):
    with trio.fail_after(10):
        account = await make_account(gateway)
        r = await client.post(BASE, data=b'{"name": "x"}', headers=account.headers | {"Content-Type": content_type})
        err = await error_of(r, 415, "UNSUPPORTED_MEDIA_TYPE")
        assert "application/json" in err["message"]
        assert (await (await client.get(BASE, headers=account.headers)).get_json())["data"] == []  # nothing made
        r = await client.post(BASE, data=b'{"name": "x"}',
                              headers=account.headers | {"Content-Type": "application/json; charset=utf-8"})
        assert r.status_code == 201


def test_pattern_errors_say_what_is_expected_not_which_regex_failed():
    import msgspec

    from gateway._requests import SendMessage
    from gateway.errors import validation_error_from_msgspec

    for body, path, expected in [
            (b'{"to": "+15551234567", "image": {"url": "file:///etc/passwd"}}', "$.image.url", "http:// or https://"),
            (b'{"to": "+15551234567", "image": {"url": "http://x/a", "mimetype": "png"}}', "$.image.mimetype",
             "MIME type")]:
        with pytest.raises(msgspec.ValidationError) as raised:
            msgspec.json.decode(body, type=SendMessage)
        error = validation_error_from_msgspec(raised.value)
        assert expected in error.message and "regex" not in error.message
        assert error.details[0].path == path


def test_an_unknown_field_lists_the_fields_accepted_at_its_path():
    import msgspec

    from gateway._requests import (
        CreateSession,
        SendMessage,
        SendMessages,
        SendMessagesRaw,
        UpdateSession,
    )
    from gateway.errors import validation_error_from_msgspec

    message = ("a message has `to` and exactly one of: text, image, video, audio, document, sticker, location, "
               "contact, poll (and optionally replyTo, viewOnce, mentions, sendAt)")
    session = "name, phoneNumber, webhookUrl, webhookEvents, webhookEnabled, sendLimit, proxyUrl"
    for body_type, body, path, expected in [
            (SendMessage, b'{"to": "+15550001111", "gif": {"url": "https://example.com/a.gif"}}', "$",
             f"unknown field `gif`; {message}"),
            (SendMessage, b'{"to": "+15550001111", "poll": {"question": "q", "options": ["a", "b"], "multi": 1}}',
             "$.poll", "unknown field `multi`; accepted fields: question, options, selectableCount"),
            (SendMessages, b'{"messages": [{"to": "+15550001111", "text": "a"}, {"to": "+15550001111", "gif": 1}]}',
             "$.messages[1]", f"unknown field `gif`; {message}"),
            (SendMessagesRaw, b'{"messages": [{}], "dryRun": true}', "$", "unknown field `dryRun`; accepted fields: messages"),
            (CreateSession, b'{"name": "x", "webhook": "https://e.com"}', "$", f"unknown field `webhook`; accepted fields: {session}"),
            (UpdateSession, b'{"webhook_url": "https://e.com"}', "$", f"unknown field `webhook_url`; accepted fields: {session}")]:
        with pytest.raises(msgspec.ValidationError) as raised:
            msgspec.json.decode(body, type=body_type)
        error = validation_error_from_msgspec(raised.value, body=body_type)
        assert (error.details[0].message, error.details[0].path) == (expected, path)
        assert error.message == f"{expected} at {path}"
    with pytest.raises(msgspec.ValidationError) as raised:  # without the type, msgspec's own words
        msgspec.json.decode(b'{"to": "+15550001111", "gif": 1}', type=SendMessage)
    assert validation_error_from_msgspec(raised.value).details[0].message == "Object contains unknown field `gif`"


@pytest.mark.parametrize(("query", "path"), [
    ("limit=%C2%B2", "query.limit"),  # "²" is a digit to str.isdigit, not to int(): was a 500
    ("limit=0", "query.limit"),
    ("cursor=q", "query.cursor"),  # one base64 character is no position
    ("cursor=" + "A" * 300, "query.cursor"),
])
async def test_bad_page_parameters_are_422(client, gateway, query, path):
    with trio.fail_after(10):
        account = await make_account(gateway)
        r = await client.get(f"{BASE}?{query}", headers=account.headers)
        assert (await error_of(r, 422, "VALIDATION_ERROR"))["details"][0]["path"] == path


async def test_any_cursor_of_the_documented_shape_is_a_position(client, gateway):
    """The document says a cursor is unpadded base64url; every such text pages from somewhere."""
    with trio.fail_after(10):
        account = await make_account(gateway)
        for cursor in ["AA", "_-8", "zzzz", "QUFB", "gICA"]:  # NUL, bad UTF-8 and plain text alike
            r = await client.get(f"{BASE}?cursor={cursor}", headers=account.headers)
            assert r.status_code == 200, (cursor, await r.get_data())


async def test_an_empty_delivery_status_is_refused(client, gateway):
    with trio.fail_after(10):
        account = await make_account(gateway)
        s = await (await client.post(BASE, json={"name": "d"}, headers=account.headers)).get_json()
        r = await client.get("/api/v1/webhooks/deliveries?status=", headers=bearer(s["apiKey"]))
        assert (await error_of(r, 422, "VALIDATION_ERROR"))["details"][0]["path"] == "query.status"


async def test_a_phone_path_longer_than_documented_is_refused(client, gateway):
    with trio.fail_after(10):
        account = await make_account(gateway)
        s = await (await client.post(BASE, json={"name": "p"}, headers=account.headers)).get_json()
        r = await client.get("/api/v1/contacts/1234567" + "." * 30, headers=bearer(s["apiKey"]))
        assert (await error_of(r, 422, "VALIDATION_ERROR"))["details"][0]["path"] == "path.phone"


@pytest.mark.parametrize(("body", "path"), [
    ({"name": "s", "sendLimit": "5/15min"}, "$.sendLimit"),  # the API takes one form: COUNT/UNIT
    ({"name": "s", "sendLimit": "20/minute\n"}, "$.sendLimit"),
    ({"name": "s", "phoneNumber": "\u0663" * 8}, "$.phoneNumber"),  # Arabic-Indic digits are not 0-9
    ({"name": "s", "webhookUrl": ""}, "$.webhookUrl"),
])
async def test_body_rules_are_the_documented_patterns(client, gateway, body, path):
    with trio.fail_after(10):
        account = await make_account(gateway)
        r = await client.post(BASE, json=body, headers=account.headers)
        assert (await error_of(r, 422, "VALIDATION_ERROR"))["details"][0]["path"] == path
