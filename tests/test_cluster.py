"""Cluster mode with real processes: three `gateway serve` nodes, the simulator and PostgreSQL.

- `test_kill_9_one_node_under_load`: 100 sessions under a steady send load
  spread over three nodes; one node is killed with SIGKILL. Its sessions must
  be CONNECTED on the others within 15 s, every accepted message must reach
  the simulator (duplicates only inside the documented window: a message
  whose send was under way when its node died, sent again by the next
  owner), every webhook event must be delivered, and a session's own send
  limit must hold across the nodes.
- `test_a_paused_node_does_not_send_for_a_session_it_lost`: split brain. A
  node is frozen (SIGSTOP) while it holds a claimed message, past its lease;
  another node takes the session over and sends everything; the frozen node
  is resumed and must not send anything for that session.
"""

from __future__ import annotations

import signal
import time
from functools import partial
from itertools import count

import httpx
import pytest
import trio

from bench.simulator import open_sim_control

from ._cluster_procs import Db, Node, cli, cluster_env, create_account, open_nodes, open_receiver, running_nodes
from ._pg import fresh_schema
from ._sim_proc import simulator

pytestmark = pytest.mark.slow

SESSIONS = 100
RECIPIENT = "+15559990000"
TAKEOVER_LIMIT = 15.0  # seconds from the kill until every orphaned session is CONNECTED elsewhere
LOAD_RATE = 60.0  # messages per second, over all sessions and nodes
_TERMINAL = ("sent", "delivered", "read")


async def wait_until(predicate, timeout: float, interval: float = 0.2) -> float:
    """Await `predicate()` (an async callable) until true; returns the seconds it took."""
    started = time.monotonic()
    with trio.fail_after(timeout):
        while not await predicate():
            await trio.sleep(interval)
    return time.monotonic() - started


async def register(sim_url: str, *phones: str) -> None:
    async with open_sim_control(sim_url) as ctl:
        for phone in phones:
            await ctl.register(phone)


async def sim_record(sim_url: str) -> list:
    async with open_sim_control(sim_url) as ctl:
        return await ctl.messages()


async def create_sessions(http: httpx.AsyncClient, nodes: list[Node], pat: dict[str, str], webhook: str | None,
                          count_: int, *, first: int = 0, **extra: object) -> list[dict]:
    """Create sessions and connect each through a different node, as a load balancer would."""
    made: list[dict] = []
    limiter = trio.CapacityLimiter(10)

    async def one(i: int) -> None:
        async with limiter:
            r = await http.post(f"{nodes[0].url}/api/v1/whatsapp-sessions", headers=pat, json={
                "name": f"s{i}", "phoneNumber": f"+1555100{first + i:04d}", "webhookUrl": webhook, **extra})
            assert r.status_code == 201, r.text
            session = r.json()
            r = await http.post(f"{nodes[i % len(nodes)].url}/api/v1/whatsapp-sessions/{session['id']}/connect",
                                headers=pat, timeout=15)
            assert r.status_code == 200, r.text
            made.append(session)

    async with trio.open_nursery() as nursery:
        for i in range(count_):
            nursery.start_soon(one, i)
    return made


async def test_kill_9_one_node_under_load(tmp_path):
    async with fresh_schema() as url, open_receiver() as receiver:
        with simulator("--autopair", "0.05", "--receipt-delay", "0.05") as sim:
            env = cluster_env(tmp_path, url, sim.url, GATEWAY_WEBHOOK_TIMEOUT="1")
            db = Db(url)
            await cli(env, "migrate")
            pat = await create_account(env)
            await register(sim.url, RECIPIENT)
            async with running_nodes(tmp_path, env, 3) as (nodes, http):
                sessions = await create_sessions(http, nodes, pat, receiver.url, SESSIONS)
                keys = {s["id"]: s["apiKey"] for s in sessions}

                async def all_connected() -> bool:
                    rows = await db.query("SELECT count(*) FROM sessions WHERE status = 'CONNECTED'")
                    return rows[0][0] == SESSIONS

                await wait_until(all_connected, 30)

                # A session's own limit holds across nodes: 36 sends spread over 3 nodes, 12 pass.
                [limited] = await create_sessions(http, nodes, pat, receiver.url, 1, first=SESSIONS,
                                                 sendLimit="12/minute")
                await wait_until(lambda: _status_is(db, limited["id"], "CONNECTED"), 15)
                codes: list[int] = []
                accepted: dict[str, str] = {}  # message id -> session id

                async def limited_send(i: int) -> None:
                    r = await http.post(f"{nodes[i % 3].url}/api/v1/send-message", json={
                        "to": RECIPIENT, "text": f"limited-{i}"}, headers={
                        "Authorization": f"Bearer {limited['apiKey']}"})
                    codes.append(r.status_code)
                    if r.status_code == 202:
                        accepted[r.json()["messageId"]] = limited["id"]

                async with trio.open_nursery() as nursery:
                    for i in range(36):
                        nursery.start_soon(limited_send, i)
                assert sorted(codes) == [202] * 12 + [429] * 24, codes

                # Steady load through every node, then kill -9 the node that owns the most sessions.
                owners = await db.owners()
                by_node: dict[str, list[str]] = {}
                for sid, (node_id, _) in owners.items():
                    by_node.setdefault(node_id, []).append(sid)
                assert len(by_node) == 3 and all(len(v) >= 20 for v in by_node.values()), \
                    {k: len(v) for k, v in by_node.items()}
                pids = {await db.node_of_pid(n.proc.pid): n for n in nodes}
                victim_id = max(by_node, key=lambda n: len(by_node[n]))
                victim = pids[victim_id]
                refused: dict[int, int] = {}
                stop_load = trio.Event()
                numbers = count()

                async def pace() -> None:
                    async with trio.open_nursery() as senders:
                        while not stop_load.is_set():
                            senders.start_soon(load_one)
                            await trio.sleep(1 / LOAD_RATE)

                async def load_one() -> None:
                    with trio.move_on_after(10):
                        await _one_request()

                async def _one_request() -> None:
                    i = next(numbers)
                    sid = list(keys)[i % SESSIONS]
                    node = nodes[i % 3]
                    try:
                        r = await http.post(f"{node.url}/api/v1/send-message", json={
                            "to": RECIPIENT, "text": f"load-{i}"}, headers={"Authorization": f"Bearer {keys[sid]}"})
                    except httpx.HTTPError:
                        refused[0] = refused.get(0, 0) + 1  # the killed node: never accepted
                        return
                    if r.status_code == 202:
                        accepted[r.json()["messageId"]] = sid
                    else:
                        refused[r.status_code] = refused.get(r.status_code, 0) + 1

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(pace)
                    await trio.sleep(4)
                    orphans = {sid for sid, (node_id, _) in (await db.owners()).items() if node_id == victim_id}
                    victim.signal(signal.SIGKILL)
                    killed_at_ms = int(time.time() * 1000)
                    survivors = {nid for nid in pids if nid != victim_id}

                    async def taken_over() -> bool:
                        # CONNECTED under a survivor's lease, and said so after the kill (or it had moved
                        # before the kill: a handover that raced our look at the owners)
                        rows = await db.query(
                            "SELECT s.id FROM sessions s JOIN session_leases l ON l.session_id = s.id "
                            "WHERE s.id = ANY(%s) AND s.status = 'CONNECTED' AND l.expires_at > now() "
                            "AND l.node_id = ANY(%s) AND (s.updated_at >= %s OR l.acquired_at < to_timestamp(%s))",
                            (list(orphans), list(survivors), killed_at_ms, killed_at_ms / 1000))
                        return len(rows) == len(orphans)

                    took = await wait_until(taken_over, TAKEOVER_LIMIT + 5)
                    await trio.sleep(3)  # keep the load on the two survivors for a while
                    stop_load.set()
                assert took <= TAKEOVER_LIMIT, f"orphaned sessions took {took:.1f}s to reconnect elsewhere"

                # Every accepted message reaches the network; duplicates only inside the window.
                async def all_sent() -> bool:
                    rows = await db.query("SELECT count(*) FROM messages WHERE id = ANY(%s) AND status = ANY(%s)",
                                          (list(accepted), list(_TERMINAL)))
                    return rows[0][0] == len(accepted)

                await wait_until(all_sent, 30)
                record = await sim_record(sim.url)
                seen = {e.message_id for e in record}
                assert set(accepted) <= seen, f"{len(set(accepted) - seen)} accepted messages never reached WhatsApp"
                duplicates = [e.message_id for e in record if e.duplicate]
                if duplicates:
                    rows = await db.query("SELECT id, session_id, attempts FROM messages WHERE id = ANY(%s)",
                                          (duplicates,))
                    for mid, sid, attempts in rows:
                        # resent by the next owner after its first owner died mid-send
                        assert sid in orphans and attempts >= 2, (mid, sid, attempts)
                    assert len(rows) == len(set(duplicates))
                assert len(duplicates) <= len(orphans)  # at most one send under way per session

                # Every webhook event is delivered (deliveries in flight on the dead node: after their claim).
                async def webhooks_done() -> bool:
                    rows = await db.query("SELECT status, count(*) FROM webhook_deliveries GROUP BY status")
                    by_status = dict(rows)
                    return set(by_status) == {"delivered"} and by_status["delivered"] == len(
                        await db.query("SELECT id FROM webhook_deliveries WHERE id = ANY(%s)",
                                       (list(receiver.unique),)))

                await wait_until(webhooks_done, 40, interval=0.5)
                delivered = await db.query("SELECT count(*) FROM webhook_deliveries")
                print(f"\ncluster kill -9: {len(sessions)} sessions, {len(orphans)} on the killed node, "
                      f"taken over in {took:.1f}s; {len(accepted)} messages accepted, refused {refused}; "
                      f"{len(duplicates)} duplicates (all resends of an interrupted send); "
                      f"{delivered[0][0]} webhook deliveries, {len(receiver.ids) - len(receiver.unique)} "
                      "delivered twice")


async def _status_is(db: Db, session_id: str, status: str) -> bool:
    rows = await db.query("SELECT status FROM sessions WHERE id = %s", (session_id,))
    return bool(rows) and rows[0][0] == status


class _SlowMedia:
    """Serves a text document; the first download hangs until `release` is set."""

    def __init__(self) -> None:
        self.url = ""
        self.requests = 0
        self.first_arrived = trio.Event()
        self.release = trio.Event()

    async def serve(self, stream: trio.SocketStream) -> None:
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                data += chunk
            self.requests += 1
            if self.requests == 1:
                self.first_arrived.set()
                await self.release.wait()
            body = b"split brain test document\n"
            await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: "
                                  + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)
        except (trio.BrokenResourceError, OSError):
            pass
        finally:
            await stream.aclose()


async def test_a_paused_node_does_not_send_for_a_session_it_lost(tmp_path):
    # Each node has its own device store here, so the next owner pairs a second device of the same
    # account: the paused node's own link stays open and would carry a send if it tried one.
    media = _SlowMedia()
    async with fresh_schema() as url, trio.open_nursery() as servers:
        listeners = await servers.start(partial(trio.serve_tcp, media.serve, 0, host="127.0.0.1"))
        media.url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/doc.txt"
        with simulator("--autopair", "0.05", "--receipt-delay", "0.05") as sim:
            env = cluster_env(tmp_path, url, sim.url, GATEWAY_LEASE_TTL="3", GATEWAY_SEND_MIN_GAP="0.05")
            db = Db(url)
            await cli(env, "migrate")
            pat = await create_account(env)
            await register(sim.url, RECIPIENT)
            async with open_nodes(tmp_path, env, 2, data_dir_per_node=True) as (a, b), \
                    httpx.AsyncClient(timeout=10) as http:
                a.start()
                await a.wait_ready()
                [session] = await create_sessions(http, [a], pat, None, 1)
                sid = session["id"]
                key = {"Authorization": f"Bearer {session['apiKey']}"}
                await wait_until(lambda: _status_is(db, sid, "CONNECTED"), 15)
                a_id = await db.node_of_pid(a.proc.pid)
                assert (await db.owners())[sid] == (a_id, 1)

                # A claims the document and hangs in its download: frozen there, past its lease.
                r = await http.post(f"{a.url}/api/v1/send-message", headers=key, json={
                    "to": RECIPIENT, "document": {"url": media.url, "filename": "doc.txt"}})
                assert r.status_code == 202, r.text
                document = r.json()["messageId"]
                with trio.fail_after(10):
                    await media.first_arrived.wait()
                a.signal(signal.SIGSTOP)
                try:
                    b.start()
                    await b.wait_ready()
                    texts = []
                    for i in range(3):
                        r = await http.post(f"{b.url}/api/v1/send-message", headers=key,
                                            json={"to": RECIPIENT, "text": f"while-frozen-{i}"})
                        assert r.status_code == 202, r.text
                        texts.append(r.json()["messageId"])
                    b_id = await db.node_of_pid(b.proc.pid)

                    async def b_sent_everything() -> bool:
                        owner = (await db.owners()).get(sid)
                        rows = await db.query("SELECT count(*) FROM messages WHERE id = ANY(%s) AND status = ANY(%s)",
                                              ([document, *texts], list(_TERMINAL)))
                        return owner == (b_id, 2) and rows[0][0] == 4

                    await wait_until(b_sent_everything, 30)
                finally:
                    media.release.set()  # A's download completes the moment it runs again
                    a.signal(signal.SIGCONT)
                # A runs again with the document in hand and a lease that expired long ago.
                await trio.sleep(4)
                assert a.alive()
                record = [e for e in await sim_record(sim.url) if e.session_id == sid]
                ids = [e.message_id for e in record]
                assert sorted(ids) == sorted([document, *texts]), ids  # each once: B's sends, none of A's
                assert not any(e.duplicate for e in record)
                history = await db.query("SELECT status, reason FROM message_status_history h WHERE message_id = %s "
                                         "ORDER BY seq", (document,))
                assert [h[0] for h in history][:4] == ["queued", "sending", "queued", "sending"], history
                log = a.log()
                assert "leases expired locally" in log or "leases lost" in log
                assert "send outcome not recorded" not in log
                # A still serves the API; what it accepts is sent by the owner, B.
                r = await http.post(f"{a.url}/api/v1/send-message", headers=key,
                                    json={"to": RECIPIENT, "text": "after-resume"})
                assert r.status_code == 202, r.text
                late = r.json()["messageId"]
                await wait_until(lambda: _message_done(db, late), 15)
                assert (await db.owners())[sid] == (b_id, 2)
        servers.cancel_scope.cancel()


async def _message_done(db: Db, message_id: str) -> bool:
    rows = await db.query("SELECT status FROM messages WHERE id = %s", (message_id,))
    return bool(rows) and rows[0][0] in _TERMINAL
