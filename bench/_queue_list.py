"""`queue-list`: pages of `GET /api/v1/messages?status=&to=` over a large stored queue.

A fresh store (SQLite in a temporary directory, and with `--postgres URL` a
fresh PostgreSQL schema) is filled with `--messages` messages of one session,
spread over a few recipients and statuses, written straight through the
store in batches (the send path is not what is measured). Each query kind is
then timed two ways:

- `http`: through the real Quart app in process (auth, rate limit, query
  parsing, the store call, encoding), with the ASGI test client, so no socket
  and no HTTP parser are in the figure;
- `store`: the `list_messages` call alone, to show what the index costs.

Each kind reads a first page and then follows `nextCursor`, `--pages` pages
of 50 in all, and reports p50/p99 per kind.
"""

from __future__ import annotations

import random
import tempfile
import time
from typing import Any, Final

from gateway import Config, create_app
from gateway._auth import AccountPrincipal
from gateway._requests import CreateSession
from gateway._security import new_id
from gateway.app import running_gateway
from gateway.store import MessageRecord, MessageStatus, Store, open_store

from ._pg import fresh_schema
from ._stats import latency_summary

RECIPIENTS: Final = [f"1555000{i:04d}@s.whatsapp.net" for i in range(8)]
# The mix a campaign leaves behind: most sent or further, a tail still waiting.
STATUSES: Final = [(MessageStatus.READ, 30), (MessageStatus.DELIVERED, 30), (MessageStatus.SENT, 15),
                   (MessageStatus.QUEUED, 15), (MessageStatus.FAILED, 5), (MessageStatus.CANCELLED, 5)]
KINDS: Final = {
    "all": {},
    "status=queued": {"status": "queued"},
    "status=failed": {"status": "failed"},
    "to": {"to": "+15550000003"},
    "status=queued&to": {"status": "queued", "to": "+15550000003"},
    "status=cancelled&to": {"status": "cancelled", "to": "+15550000005"},
}
BATCH: Final = 5_000


async def run_queue_list(*, messages: int, pages: int, postgres: str | None) -> dict[str, Any]:
    result: dict[str, Any] = {"scenario": "queue-list", "parameters": {
        "messages": messages, "pages": pages, "page_size": 50, "recipients": len(RECIPIENTS),
        "statuses": {s.value: w for s, w in STATUSES}}, "stores": {}}
    with tempfile.TemporaryDirectory() as tmp:
        result["stores"]["sqlite"] = await _measure(f"sqlite:///{tmp}/queue.db", tmp, messages, pages)
    if postgres:
        with tempfile.TemporaryDirectory() as tmp:
            async with fresh_schema(postgres, "bench_queue") as (url, _schema):
                result["stores"]["postgres"] = await _measure(url, tmp, messages, pages)
    result["notes"] = [
        "http: the Quart app in process through its ASGI test client (no socket); store: list_messages alone",
        "each kind: a first page, then nextCursor pages, 50 items each",
    ]
    return result


async def _measure(url: str, data_dir: str, messages: int, pages: int) -> dict[str, Any]:
    config = Config(database_url=url, transport="sim", limit_api="off", limit_auth="off", data_dir=data_dir)
    store = await open_store(url)  # the app expects a migrated store (as `gateway migrate` leaves it)
    await store.migrate()
    await store.aclose()
    app = create_app(config)
    async with app.test_app():
        gateway = running_gateway(app)
        user = await gateway.accounts.create_user(f"bench-{new_id()}@example.com", "correct horse battery")
        record, key = await gateway.sessions.create(AccountPrincipal(user_id=user.id, token_id=""),
                                                    CreateSession(name="queue"))
        started = time.perf_counter()
        await _fill(gateway.store, record.id, user.id, messages)
        fill_s = time.perf_counter() - started
        client = app.test_client()
        headers = {"Authorization": f"Bearer {key}"}
        out: dict[str, Any] = {"fill_s": round(fill_s, 2), "kinds": {}}
        for kind, query in KINDS.items():
            http = await _pages_http(client, headers, query, pages)
            store = await _pages_store(gateway.store, record.id, query, pages)
            out["kinds"][kind] = {"http_ms": latency_summary(http[0]), "store_ms": latency_summary(store),
                                  "items_seen": http[1]}
        return out


async def _fill(store: Store, session_id: str, user_id: str, total: int) -> None:
    rng = random.Random(14)
    population, weights = zip(*STATUSES, strict=True)
    base = 1_700_000_000_000
    for start in range(0, total, BATCH):
        batch = []
        for i in range(start, min(total, start + BATCH)):
            status = rng.choices(population, weights)[0]
            batch.append(MessageRecord(
                id=new_id(), session_id=session_id, user_id=user_id, to_jid=rng.choice(RECIPIENTS), type="text",
                payload=b"\x81\xa4text\xa2hi", status=status, expires_at=base + 10**10, created_at=base + i,
                updated_at=base + i, send_at=base + 10**9 if status is MessageStatus.QUEUED and i % 3 == 0 else None))
        await store.create_messages(batch)


async def _pages_http(client: Any, headers: dict[str, str], query: dict[str, str],
                      pages: int) -> tuple[list[float], int]:
    times, seen, cursor = [], 0, None
    for _ in range(pages):
        params = dict(query) | ({"cursor": cursor} if cursor else {})
        t0 = time.perf_counter()
        r = await client.get("/api/v1/messages", query_string=params, headers=headers)
        body = await r.get_json()
        times.append(time.perf_counter() - t0)
        assert r.status_code == 200, body
        seen += len(body["data"])
        cursor = body["nextCursor"] or None  # at the end, start again from the first page
    return times, seen


async def _pages_store(store: Store, session_id: str, query: dict[str, str], pages: int) -> list[float]:
    from gateway._phone import parse_recipient

    status = MessageStatus(query["status"]) if "status" in query else None
    to_jid = parse_recipient(query["to"]) if "to" in query else None
    times, before = [], None
    for _ in range(pages):
        t0 = time.perf_counter()
        page = await store.list_messages(session_id, before=before, limit=50, status=status, to_jid=to_jid)
        times.append(time.perf_counter() - t0)
        before = page[-1].id if len(page) == 50 else None
    return times
