"""The lean lane: the API's requests are served in front of Quart, by the same code, with the same answers."""

from __future__ import annotations

import json

import pytest
import trio
from quart_trio import QuartTrio

from gateway.api._lean import LeanLane
from gateway.app import build_api

from .conftest import make_account

# Values a path parameter may take that are also static segments of other routes: the lane must pick
# the route werkzeug picks for each.
TRICKY = ("invite", "blocklist", "by-phone", "revoke", "join", "15551234567", "120363041234567890@g.us", "x")


def _lane(app: QuartTrio) -> LeanLane:
    lane = app.asgi_app
    assert isinstance(lane, LeanLane)  # create_app puts the lane in front of Quart
    return lane


async def test_the_lane_picks_the_route_werkzeug_picks_for_every_path(app):
    lane = _lane(app)
    adapter = app.url_map.bind("localhost")
    checked = 0
    for method, path in [(s.method, s.path) for s in build_api().routes]:
        for value in TRICKY:
            concrete = path
            while "<" in concrete:
                start = concrete.index("<")
                concrete = concrete[:start] + value + concrete[concrete.index(">", start) + 1:]
            try:
                endpoint, params = adapter.match(concrete, method)
            except Exception:  # werkzeug finds nothing (or a redirect): the lane must hand it on too
                assert lane.match(method, concrete) is None, (method, concrete)
                continue
            found = lane.match(method, concrete)
            if endpoint.startswith(f"{method} /api/"):
                assert found is not None, (method, concrete)
                assert f"{found[0].method} {found[0].path}" == endpoint, (method, concrete)
                assert found[1] == params, (method, concrete)
                checked += 1
            else:
                assert found is None, (method, concrete, endpoint)
    assert checked > 200


async def test_api_requests_never_reach_quart_and_everything_else_does(app, client, monkeypatch):
    gateway = app.extensions["gateway_state"]["gateway"]
    account = await make_account(gateway)
    reached: list[str] = []
    original = QuartTrio.handle_request

    async def spy(self, request):
        reached.append(request.path)
        return await original(self, request)

    monkeypatch.setattr(QuartTrio, "handle_request", spy)
    with trio.fail_after(10):
        r = await client.post("/api/v1/whatsapp-sessions", headers=account.headers, json={"name": "lane"})
        assert r.status_code == 201, await r.get_data()
        session = await r.get_json()
        key = {"Authorization": f"Bearer {session['apiKey']}"}
        r = await client.get(f"/api/v1/whatsapp-sessions/{session['id']}", headers=account.headers)
        assert r.status_code == 200 and (await r.get_json())["name"] == "lane"
        r = await client.get("/api/v1/messages?limit=5", headers=key)  # a query string, through the lane
        assert r.status_code == 200 and (await r.get_json())["data"] == []
        r = await client.get("/api/v1/whatsapp-sessions", headers={"Authorization": "Bearer wgs_nope"})
        assert r.status_code == 401 and (await r.get_json())["error"]["code"] == "UNAUTHORIZED"
        assert reached == []  # none of those went through Quart's request machinery
        for path in ("/healthz", "/api/v1/openapi.json", "/api/v1/no-such-route"):
            await client.get(path)
        r = await client.patch(f"/api/v1/whatsapp-sessions/{session['id']}", headers=account.headers, json={})
        assert r.status_code == 405 and "GET" in r.headers["Allow"]  # the path exists, not the method: Quart's 405
        assert reached == ["/healthz", "/api/v1/openapi.json", "/api/v1/no-such-route",
                           f"/api/v1/whatsapp-sessions/{session['id']}"]


async def _asgi(app, method: str, path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]],
                *, disconnect: bool = False) -> tuple[int | None, dict[bytes, bytes], bytes]:
    """One request straight through the app's ASGI callable, the body in `chunks`."""
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    if disconnect:
        messages = messages[:1]
        messages[0]["more_body"] = True
        messages.append({"type": "http.disconnect"})
    sent: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80)}
    await app(scope, receive, send)
    if not sent:
        return None, {}, b""
    start = sent[0]
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


async def test_bodies_are_capped_as_they_arrive_and_a_client_that_leaves_gets_nothing(app, config):
    gateway = app.extensions["gateway_state"]["gateway"]
    account = await make_account(gateway)
    auth = [(b"x-api-token", account.token.encode()), (b"content-type", b"application/json")]
    with trio.fail_after(10):
        # chunked (no Content-Length): refused once the chunks pass GATEWAY_MAX_BODY
        chunk = b" " * 4096
        status, headers, body = await _asgi(app, "POST", "/api/v1/whatsapp-sessions",
                                            [chunk] * (config.max_body // len(chunk) + 2), auth)
        assert status == 413 and json.loads(body)["error"]["code"] == "PAYLOAD_TOO_LARGE"
        assert headers[b"content-type"] == b"application/json"
        assert int(headers[b"content-length"]) == len(body)
        # in two chunks under the cap: read whole
        status, _, body = await _asgi(app, "POST", "/api/v1/whatsapp-sessions", [b'{"name": ', b'"two"}'], auth)
        assert status == 201 and json.loads(body)["name"] == "two"
        # the client left halfway: no answer, and nothing was created
        status, _, _ = await _asgi(app, "POST", "/api/v1/whatsapp-sessions", [b'{"name": "gone"}'], auth,
                                   disconnect=True)
        assert status is None
        listed = await gateway.store.list_sessions(account.user_id, after=None, limit=10)
        assert [s.name for s in listed] == ["two"]



@pytest.mark.parametrize("behind_drain", [False, True], ids=["as-served", "behind-DrainUnreadBody"])
async def test_an_answer_given_without_reading_the_body_keeps_the_connection(app, monkeypatch, behind_drain):
    """A GET and a refused POST are answered at once, the body drained, without `Connection: close`; a body
    too big to drain closes the connection instead of stalling. The lane drains by itself (as served), and
    defers to a `DrainUnreadBody` in front of it when there is one."""
    from gateway._drain import DrainUnreadBody

    monkeypatch.setattr("gateway._drain.DRAIN_LIMIT", 1024)
    served = DrainUnreadBody(app, limit=1024) if behind_drain else app
    with trio.fail_after(3):  # the drain's own timeout is 5 s: waiting on it would fail here
        status, headers, _ = await _asgi(served, "GET", "/api/v1/whatsapp-sessions", [b""], [])
        assert status == 401 and b"connection" not in headers
        status, headers, _ = await _asgi(served, "POST", "/api/v1/send-message", [b'{"to": ', b'"1"}'],
                                         [(b"content-type", b"application/json")])
        assert status == 401 and b"connection" not in headers  # refused before its body was read, then drained
        status, headers, _ = await _asgi(served, "POST", "/api/v1/send-message", [b"x" * 1000] * 3,
                                         [(b"content-type", b"application/json")])
        assert status == 401 and headers[b"connection"] == b"close"  # past the drain limit
