"""Cluster mode with real processes: routing live requests to the owner, and `serve --workers N`."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import httpx
import pytest
import trio

from ._cluster_procs import Db, cli, cluster_env, create_account, running_nodes
from ._pg import fresh_schema
from ._procs import base_env, free_port, gateway_cmd, run_cli
from ._sim_proc import simulator

pytestmark = pytest.mark.slow


async def _connected(db: Db, session_id: str) -> bool:
    rows = await db.query("SELECT status FROM sessions WHERE id = %s", (session_id,))
    return rows[0][0] == "CONNECTED"


async def _sent(http, base: str, key: dict, message_id: str) -> bool:
    got = await http.get(f"{base}/api/v1/messages/{message_id}", headers=key)
    return got.json()["status"] in ("sent", "delivered", "read")


async def _until(predicate, timeout: float) -> None:
    with trio.fail_after(timeout):
        while not await predicate():
            await trio.sleep(0.1)


async def test_live_requests_run_on_the_owner_wherever_they_arrive(tmp_path):
    async with fresh_schema() as url:
        with simulator("--autopair", "0.05") as sim:
            env = cluster_env(tmp_path, url, sim.url, GATEWAY_LIMIT_API="5/minute")
            db = Db(url)
            await cli(env, "migrate")
            pat = await create_account(env)
            async with running_nodes(tmp_path, env) as ((a, b), http):
                r = await http.post(f"{a.url}/api/v1/whatsapp-sessions", headers=pat,
                                    json={"name": "routed", "phoneNumber": "+15551230001"})
                session = r.json()
                sid, key = session["id"], {"Authorization": f"Bearer {session['apiKey']}"}
                # connect through B: nobody owns the session, so B takes it
                r = await http.post(f"{b.url}/api/v1/whatsapp-sessions/{sid}/connect", headers=pat)
                assert r.status_code == 200, r.text
                await _until(lambda: _connected(db, sid), 15)
                b_id = await db.node_of_pid(b.proc.pid)
                assert (await db.owners())[sid][0] == b_id

                # asked through A, answered by B: B's on-WhatsApp cache fills, A's stays empty
                first = await http.get(f"{a.url}/api/v1/on-whatsapp/+15551230001", headers=key)
                again = await http.get(f"{a.url}/api/v1/on-whatsapp/+15551230001", headers=key)
                assert first.status_code == again.status_code == 200, first.text
                assert (first.json()["cached"], again.json()["cached"]) == (False, True)
                # A charged the user's shared limit once per request (create, connect, these two)
                assert (first.headers["x-ratelimit-limit"], again.headers["x-ratelimit-remaining"]) == ("5", "1")
                # B's QR answer (the session is paired) comes back through A unchanged
                qr = await http.get(f"{a.url}/api/v1/whatsapp-sessions/{sid}/qrcode", headers=pat)
                assert qr.status_code == 409 and qr.json()["error"]["code"] == "QR_NOT_AVAILABLE"
                # the per-user API limit held across nodes and hops: 5 requests passed, the 6th is refused
                refused = await http.get(f"{b.url}/api/v1/groups", headers=key)
                assert refused.status_code == 429, refused.text
                # a hop header with a wrong token is no free pass
                forged = await http.get(f"{b.url}/api/v1/groups", headers={**key, "X-Gateway-Hop": "guess"})
                assert forged.status_code == 429


async def test_disconnect_anywhere_stops_the_session_on_its_owner(tmp_path):
    async with fresh_schema() as url:
        with simulator("--autopair", "0.05") as sim:
            env = cluster_env(tmp_path, url, sim.url, GATEWAY_LEASE_TTL="2")
            db = Db(url)
            await cli(env, "migrate")
            pat = await create_account(env)
            async with running_nodes(tmp_path, env) as ((a, b), http):
                session = (await http.post(f"{a.url}/api/v1/whatsapp-sessions", headers=pat,
                                           json={"name": "d", "phoneNumber": "+15551230002"})).json()
                sid = session["id"]
                assert (await http.post(f"{a.url}/api/v1/whatsapp-sessions/{sid}/connect", headers=pat)).is_success
                await _until(lambda: _connected(db, sid), 15)
                r = await http.post(f"{b.url}/api/v1/whatsapp-sessions/{sid}/disconnect", headers=pat)
                assert r.status_code == 200 and r.json()["status"] == "DISCONNECTED", r.text

                async def released() -> bool:  # not wanted online and idle: the owner lets it go
                    return sid not in await db.owners()

                await _until(released, 10)
                # and sending to it is refused wherever it is asked
                r = await http.post(f"{b.url}/api/v1/send-message", json={"to": "+15551230009", "text": "x"},
                                    headers={"Authorization": f"Bearer {session['apiKey']}"})
                assert r.status_code == 409

                # connected again through B, which takes it; then B dies: requests routed to it get
                # 503 + Retry-After (and its sessions come back on A once the lease expires)
                assert (await http.post(f"{b.url}/api/v1/whatsapp-sessions/{sid}/connect", headers=pat)).is_success
                await _until(lambda: _connected(db, sid), 15)
                b_id = await db.node_of_pid(b.proc.pid)
                assert (await db.owners())[sid][0] == b_id
                b.signal(signal.SIGKILL)
                r = await http.get(f"{a.url}/api/v1/whatsapp-sessions/{sid}/qrcode", headers=pat)
                assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1, r.text
                a_id = await db.node_of_pid(a.proc.pid)

                async def back_on_a() -> bool:
                    return (await db.owners()).get(sid, ("", 0))[0] == a_id and await _connected(db, sid)

                await _until(back_on_a, 10)


def test_workers_need_postgresql(tmp_path):
    out = run_cli(base_env(tmp_path), "serve", "--workers", "2", timeout=30)
    assert out.returncode == 2
    assert "--workers 2 needs PostgreSQL" in out.stderr


async def test_workers_share_one_port_and_come_back_after_a_crash(tmp_path):
    async with fresh_schema() as url:
        with simulator("--autopair", "0.05") as sim:
            env = cluster_env(tmp_path, url, sim.url)
            db = Db(url)
            await cli(env, "migrate")
            port = free_port()
            log = (tmp_path / "workers.log").open("wb")
            parent = subprocess.Popen(gateway_cmd("serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"),
                                      env=env, stdout=subprocess.DEVNULL, stderr=log)
            try:
                async def nodes_alive(n: int) -> bool:
                    rows = await db.query("SELECT pid FROM cluster_nodes WHERE expires_at > now()")
                    return len(rows) == n

                await _until(lambda: nodes_alive(2), 30)
                async with httpx.AsyncClient(timeout=5) as http:
                    answers = [await http.get(f"http://127.0.0.1:{port}/healthz") for _ in range(5)]
                assert all(r.status_code == 200 for r in answers)
                pids = [r[0] for r in await db.query("SELECT pid FROM cluster_nodes WHERE expires_at > now()")]
                # a worker dies: the parent starts another in its place (a new node)
                subprocess.run(["kill", "-9", str(pids[0])], check=True)
                await _until(lambda: nodes_alive(3), 60)  # the new one, plus the dead one until its TTL ends

                async def replaced() -> bool:
                    rows = await db.query("SELECT pid FROM cluster_nodes WHERE expires_at > now()")
                    return len(rows) == 2 and pids[0] not in {r[0] for r in rows}

                await _until(replaced, 30)
            finally:
                parent.send_signal(signal.SIGTERM)
                started = time.monotonic()
                while parent.poll() is None and time.monotonic() - started < 30:
                    await trio.sleep(0.1)
                log.close()
            assert parent.returncode == 0, (tmp_path / "workers.log").read_text()[-3000:]
            # both running workers left the cluster on the way out (the killed one just expires)
            alive = await db.query("SELECT pid FROM cluster_nodes WHERE expires_at > now()")
            assert {r[0] for r in alive} <= {pids[0]}


async def test_the_event_stream_shows_events_made_on_another_node(tmp_path):
    from trio_websocket import open_websocket_url

    from bench.simulator import open_sim_control

    async with fresh_schema() as url:
        with simulator("--autopair", "0.3", "--receipt-delay", "0.05") as sim:
            env = cluster_env(tmp_path, url, sim.url)
            db = Db(url)
            await cli(env, "migrate")
            pat = await create_account(env)
            async with open_sim_control(sim.url) as ctl:
                await ctl.register("+15551230009")
            async with running_nodes(tmp_path, env) as ((a, b), http):
                session = (await http.post(f"{a.url}/api/v1/whatsapp-sessions", headers=pat,
                                           json={"name": "s", "phoneNumber": "+15551230003"})).json()
                sid, key = session["id"], session["apiKey"]
                seen: list[dict] = []
                ws_url = f"ws://127.0.0.1:{a.port}/api/v1/events?apiKey={key}"
                async with open_websocket_url(ws_url) as ws:
                    await trio.sleep(0.3)  # the interest reaches B
                    # connected through B: its QR, connection and message events reach A's subscriber
                    assert (await http.post(f"{b.url}/api/v1/whatsapp-sessions/{sid}/connect",
                                            headers=pat)).is_success
                    await _until(lambda: _connected(db, sid), 15)
                    r = await http.post(f"{a.url}/api/v1/send-message", json={"to": "+15551230009", "text": "x"},
                                        headers={"Authorization": f"Bearer {key}"})
                    assert r.status_code == 202
                    with trio.fail_after(10):
                        while not any(e["event"] == "message.status" and e["data"]["status"] == "read"
                                      for e in seen):
                            seen.append(json.loads(await ws.get_message()))
                b_id = await db.node_of_pid(b.proc.pid)
                assert (await db.owners())[sid][0] == b_id  # every event was produced on B
                names = [e["event"] for e in seen]
                assert names.index("session.qr") < names.index("session.connected") < names.index("message.sent")
                assert all(e["sessionId"] == sid for e in seen)


async def test_the_dashboard_reaches_a_session_on_its_owner(tmp_path):
    """A person's browser may land on any node: the live parts of a session's page come from its owner."""
    import re

    async with fresh_schema() as url:
        with simulator() as sim:
            env = cluster_env(tmp_path, url, sim.url)
            db = Db(url)
            await cli(env, "migrate")
            async with running_nodes(tmp_path, env) as ((a, b), http):

                async def csrf(page: str) -> str:
                    return re.search(r'name="csrf_token" value="([^"]+)"', (await http.get(page)).text).group(1)

                signed_up = await http.post(f"{a.url}/signup", data={
                    "csrf_token": await csrf(f"{a.url}/signup"), "email": "ops@example.com",
                    "password": "cluster password", "confirm": "cluster password"})
                assert signed_up.status_code == 303, signed_up.text  # the login cookie is good on every node
                created = await http.post(f"{b.url}/dashboard/sessions", data={
                    "csrf_token": await csrf(f"{b.url}/dashboard"), "name": "everywhere"})
                assert created.status_code == 201
                sid = re.search(r"/dashboard/sessions/([0-9a-f-]{36})/", created.text).group(1)
                token = await csrf(f"{a.url}/dashboard")
                connected = await http.post(f"{b.url}/dashboard/sessions/{sid}/connect", data={"csrf_token": token})
                assert connected.status_code == 303, connected.text
                b_id = await db.node_of_pid(b.proc.pid)
                assert (await db.owners())[sid][0] == b_id
                # asked through A, which has no actor for it: the QR comes from B
                live = (await http.get(f"{a.url}/dashboard/sessions/{sid}/live")).json()
                assert live["status"] == "CONNECTING" and live["qr"], live
                qr = await http.get(f"{a.url}/dashboard/sessions/{sid}/qr.svg")
                assert qr.status_code == 200 and qr.headers["content-type"].startswith("image/svg+xml")
                # a form posted to A acts on B's actor
                stopped = await http.post(f"{a.url}/dashboard/sessions/{sid}/disconnect", data={"csrf_token": token})
                assert stopped.status_code == 303 and stopped.headers["location"].endswith("?done=disconnect")
                rows = await db.query("SELECT status FROM sessions WHERE id = %s", (sid,))
                assert rows[0][0] == "DISCONNECTED"


async def test_chat_and_message_actions_run_on_the_owner(tmp_path):
    """Presence, typing, reactions, edits, votes, mark-read and revokes need the live connection: asked on a
    node without it, they are routed to the owner."""
    async with fresh_schema() as url:
        with simulator("--autopair", "0.05") as sim:
            env = cluster_env(tmp_path, url, sim.url)
            db = Db(url)
            await cli(env, "migrate")
            pat = await create_account(env)
            async with running_nodes(tmp_path, env) as ((a, b), http):
                session = (await http.post(f"{a.url}/api/v1/whatsapp-sessions", headers=pat,
                                           json={"name": "acts", "phoneNumber": "+15551230011"})).json()
                sid, key = session["id"], {"Authorization": f"Bearer {session['apiKey']}"}
                assert (await http.post(f"{b.url}/api/v1/whatsapp-sessions/{sid}/connect", headers=pat)).is_success
                await _until(lambda: _connected(db, sid), 15)
                assert (await db.owners())[sid][0] == await db.node_of_pid(b.proc.pid)
                # A runs no actor for it: without routing each of these would answer 409 SESSION_DISCONNECTED
                for path, body in (("/api/v1/presence", {"available": True}),
                                   ("/api/v1/presence/subscribe", {"to": "+15551230012"}),
                                   ("/api/v1/chats/15551230012/presence", {"state": "composing"})):
                    r = await http.post(a.url + path, headers=key, json=body)
                    assert r.is_success, (path, r.status_code, r.text)
                sent = await http.post(f"{a.url}/api/v1/send-message", headers=key,
                                       json={"to": "+15551230012", "text": "react to me"})
                message_id = sent.json()["messageId"]
                await _until(lambda: _sent(http, a.url, key, message_id), 15)
                reacted = await http.post(f"{a.url}/api/v1/messages/{message_id}/reaction", headers=key,
                                          json={"emoji": "👍"})
                assert reacted.is_success, reacted.text
                edited = await http.put(f"{a.url}/api/v1/messages/{message_id}", headers=key,
                                        json={"text": "edited on the owner"})
                assert edited.is_success, edited.text
                poll = await http.post(f"{a.url}/api/v1/send-message", headers=key, json={
                    "to": "+15551230012", "poll": {"question": "Routed?", "options": ["yes", "no"]}})
                poll_id = poll.json()["messageId"]
                await _until(lambda: _sent(http, a.url, key, poll_id), 15)
                voted = await http.post(f"{a.url}/api/v1/messages/{poll_id}/vote", headers=key,
                                        json={"options": ["yes"]})
                assert voted.is_success, voted.text
                read = await http.post(f"{a.url}/api/v1/chats/15551230012/read", headers=key,
                                       json={"messageId": "3EB0FFFFFFFFFFFFFFFFFF"})
                assert read.is_success, read.text
                revoked = await http.delete(f"{a.url}/api/v1/messages/{message_id}", headers=key)
                assert revoked.is_success, revoked.text
                assert revoked.json()["action"] == "revoked", revoked.text
                # contacts, identity and group administration: all on the owner too
                group = await http.post(f"{a.url}/api/v1/groups", headers=key,
                                        json={"name": "Routed", "participants": ["+15551230012"]})
                assert group.status_code == 201, group.text
                jid = group.json()["jid"]
                for method, path, body in (
                        ("PUT", f"/api/v1/groups/{jid}/settings", {"description": "set on the owner"}),
                        ("POST", f"/api/v1/groups/{jid}/participants/promote", {"participants": ["+15551230012"]}),
                        ("GET", f"/api/v1/groups/{jid}/invite", None),
                        ("POST", "/api/v1/contacts/15551230013/block", {}),
                        ("GET", "/api/v1/contacts/blocklist", None),
                        ("GET", "/api/v1/lids/by-phone/15551230012", None),
                        ("GET", "/api/v1/contacts/15551230012/about", None)):
                    r = await http.request(method, a.url + path, headers=key, json=body)
                    assert r.is_success, (path, r.status_code, r.text)
                info = await http.get(f"{a.url}/api/v1/groups/{jid}", headers=key)
                assert info.json()["description"] == "set on the owner", info.text
                assert "15551230013@s.whatsapp.net" in (await http.get(f"{b.url}/api/v1/contacts/blocklist",
                                                                       headers=key)).json()["data"]
                followed = await http.get(f"{a.url}/api/v1/presence/subscriptions", headers=key)
                assert "15551230012@s.whatsapp.net" in followed.text, followed.text  # stored by B, read on A
