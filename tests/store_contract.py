"""The store contract: one suite every storage driver must pass unchanged.

A driver's test module subclasses `StoreContract` and provides a `store`
fixture yielding a freshly migrated, empty store.
"""

from __future__ import annotations

import secrets

import pytest
import trio

from actors import SessionState

from gateway._security import new_id
from gateway.store import (
    StatusEntry,
    ApiToken, ContactRecord, IdempotencyRecord, MessageRecord, MessageStatus, PasswordReset, QueueDepth, SessionRecord,
    Store,
    StoreConflict, User, WebSession,
)


def a_user(email: str = "u@example.com") -> User:
    return User(id=new_id(), email=email, password_hash="argon2-hash", created_at=1_700_000_000_000)


def a_session(user_id: str, name: str = "s", **kw) -> SessionRecord:
    fields = dict(id=new_id(), user_id=user_id, name=name, key_id=secrets.token_hex(8), key_hash=b"\x01" * 32,
                  webhook_secret="whsec_x", created_at=1_700_000_000_000, updated_at=1_700_000_000_000)
    fields.update(kw)
    return SessionRecord(**fields)


def a_web_session(user_id: str, **kw) -> WebSession:
    fields = dict(id_hash=secrets.token_bytes(32), user_id=user_id, csrf_token=secrets.token_urlsafe(16),
                  created_at=1_000, expires_at=5_000, last_seen_at=1_000)
    fields.update(kw)
    return WebSession(**fields)


def a_password_reset(user_id: str, **kw) -> PasswordReset:
    fields = dict(token_hash=secrets.token_bytes(32), user_id=user_id, created_at=1_000, expires_at=5_000)
    fields.update(kw)
    return PasswordReset(**fields)


class StoreContract:
    async def test_migrate_is_idempotent(self, store: Store):
        version = await store.schema_version()
        assert version >= 1
        assert await store.migrate() == []
        assert await store.schema_version() == version

    async def test_users_roundtrip_and_unique_email(self, store: Store):
        user = a_user("Mixed@Example.com")
        await store.create_user(user)
        assert await store.get_user(user.id) == user
        assert await store.get_user_by_email("Mixed@Example.com") == user
        assert await store.get_user_by_email("mixed@example.com") == user
        assert await store.get_user("missing") is None
        with pytest.raises(StoreConflict):
            await store.create_user(a_user("mixed@example.com"))
        assert await store.count_users() == 1

    async def test_tokens_roundtrip_list_and_revoke(self, store: Store):
        user = a_user()
        await store.create_user(user)
        t1 = ApiToken(id="a" * 16, user_id=user.id, name="one", secret_hash=b"\x02" * 32, created_at=1)
        t2 = ApiToken(id="b" * 16, user_id=user.id, name="two", secret_hash=b"\x03" * 32, created_at=2)
        await store.create_token(t1)
        await store.create_token(t2)
        assert await store.get_token(t1.id) == t1
        assert [t.id for t in await store.list_tokens(user.id)] == [t1.id, t2.id]
        t0 = ApiToken(id="0" * 16, user_id=user.id, name="later", secret_hash=b"\x05" * 32, created_at=3)
        await store.create_token(t0)  # the smallest id, created last: listed last (oldest first)
        assert [t.id for t in await store.list_tokens(user.id)] == [t1.id, t2.id, t0.id]
        assert await store.revoke_token(t1.id, at=99) is True
        assert await store.revoke_token(t1.id, at=100) is False
        assert (await store.get_token(t1.id)).revoked_at == 99
        with pytest.raises(StoreConflict):
            await store.create_token(t1)

    async def test_token_expiry_and_last_use(self, store: Store):
        user = a_user()
        await store.create_user(user)
        t = ApiToken(id="c" * 16, user_id=user.id, name="ci", secret_hash=b"\x04" * 32, created_at=1, expires_at=5000)
        await store.create_token(t)
        assert (await store.get_token(t.id)).expires_at == 5000
        assert (await store.get_token(t.id)).last_used_at is None
        await store.touch_token(t.id, at=200)
        await store.touch_token(t.id, at=150)  # a use seen late by another process never moves it back
        assert (await store.get_token(t.id)).last_used_at == 200
        await store.touch_token("missing", at=1)

    async def test_set_user_password(self, store: Store):
        user = a_user()
        await store.create_user(user)
        assert await store.set_user_password(user.id, "new-hash") is True
        assert (await store.get_user(user.id)).password_hash == "new-hash"
        assert (await store.get_user_by_email(user.email)).password_hash == "new-hash"
        assert await store.set_user_password("missing", "x") is False

    async def test_web_session_roundtrip_and_expiry_boundary(self, store: Store):
        user = a_user()
        await store.create_user(user)
        s = a_web_session(user.id, user_agent="Firefox/140", ip="203.0.113.9")
        plain = a_web_session(user.id)
        await store.create_web_session(s)
        await store.create_web_session(plain)
        assert await store.get_web_session(s.id_hash, now=4_999) == s
        assert await store.get_web_session(s.id_hash, now=5_000) is None  # expires_at <= now: over
        got = await store.get_web_session(plain.id_hash, now=1_000)
        assert (got.user_agent, got.ip) == ("", "")
        assert await store.get_web_session(b"\x00" * 32, now=0) is None
        with pytest.raises(StoreConflict):
            await store.create_web_session(s)
        with pytest.raises(StoreConflict):
            await store.create_web_session(a_web_session("no-such-user"))

    async def test_touch_web_session_slides_forward_only_and_never_revives(self, store: Store):
        user = a_user()
        await store.create_user(user)
        s = a_web_session(user.id)
        await store.create_web_session(s)
        await store.touch_web_session(s.id_hash, last_seen_at=3_000, expires_at=8_000)
        got = await store.get_web_session(s.id_hash, now=7_999)
        assert (got.last_seen_at, got.expires_at, got.created_at) == (3_000, 8_000, 1_000)
        await store.touch_web_session(s.id_hash, last_seen_at=2_000, expires_at=7_000)  # late, from another request
        got = await store.get_web_session(s.id_hash, now=3_000)
        assert (got.last_seen_at, got.expires_at) == (3_000, 8_000)
        await store.touch_web_session(s.id_hash, last_seen_at=8_000, expires_at=13_000)  # at expiry: already over
        assert await store.get_web_session(s.id_hash, now=8_000) is None
        await store.touch_web_session(b"\x00" * 32, last_seen_at=1, expires_at=2)

    async def test_delete_web_sessions_one_or_all_but_the_kept_one(self, store: Store):
        alice, bob = a_user("a@example.com"), a_user("b@example.com")
        await store.create_user(alice)
        await store.create_user(bob)
        mine = [a_web_session(alice.id) for _ in range(4)]
        theirs = a_web_session(bob.id)
        for s in [*mine, theirs]:
            await store.create_web_session(s)
        assert await store.delete_web_session(mine[0].id_hash) is True
        assert await store.delete_web_session(mine[0].id_hash) is False
        assert await store.delete_user_web_sessions(alice.id, keep=mine[1].id_hash) == 2
        assert await store.get_web_session(mine[1].id_hash, now=0) == mine[1]
        assert [await store.get_web_session(s.id_hash, now=0) for s in mine[2:]] == [None, None]
        assert await store.get_web_session(theirs.id_hash, now=0) == theirs
        assert await store.delete_user_web_sessions(alice.id, keep=mine[1].id_hash) == 0
        assert await store.delete_user_web_sessions(alice.id) == 1
        assert await store.get_web_session(mine[1].id_hash, now=0) is None
        assert await store.delete_user_web_sessions("missing") == 0
        assert await store.get_web_session(theirs.id_hash, now=0) == theirs

    async def test_password_reset_is_single_use_and_expires(self, store: Store):
        user = a_user()
        await store.create_user(user)
        r, late = a_password_reset(user.id), a_password_reset(user.id)
        await store.create_password_reset(r)
        await store.create_password_reset(late)
        with pytest.raises(StoreConflict):
            await store.create_password_reset(r)
        with pytest.raises(StoreConflict):
            await store.create_password_reset(a_password_reset("no-such-user"))
        used = await store.use_password_reset(r.token_hash, now=4_999)
        assert used == msgspec_replace(r, used_at=4_999)
        assert await store.use_password_reset(r.token_hash, now=4_999) is None  # second use
        assert await store.use_password_reset(late.token_hash, now=5_000) is None  # expires_at <= now
        assert await store.use_password_reset(late.token_hash, now=4_000) is not None  # the failed try used nothing
        assert await store.use_password_reset(b"\x00" * 32, now=0) is None

    async def test_racing_uses_of_one_password_reset_have_one_winner(self, store: Store):
        user = a_user()
        await store.create_user(user)
        r = a_password_reset(user.id)
        await store.create_password_reset(r)
        results: list[PasswordReset | None] = []

        async def use() -> None:
            results.append(await store.use_password_reset(r.token_hash, now=2_000))

        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(use)
        assert sorted(results, key=lambda x: x is None) == [msgspec_replace(r, used_at=2_000), None]

    async def test_delete_expired_web_auth(self, store: Store):
        user = a_user()
        await store.create_user(user)
        gone_s, kept_s = a_web_session(user.id, expires_at=3_000), a_web_session(user.id, expires_at=3_001)
        gone_r, kept_r = a_password_reset(user.id, expires_at=3_000), a_password_reset(user.id, expires_at=3_001)
        used_r = a_password_reset(user.id, expires_at=2_000)
        for s in (gone_s, kept_s):
            await store.create_web_session(s)
        for r in (gone_r, kept_r, used_r):
            await store.create_password_reset(r)
        await store.use_password_reset(used_r.token_hash, now=1_500)
        assert await store.delete_expired_web_auth(now=3_000) == 3
        assert await store.delete_expired_web_auth(now=3_000) == 0
        assert await store.get_web_session(kept_s.id_hash, now=3_000) == kept_s
        assert await store.use_password_reset(kept_r.token_hash, now=3_000) is not None
        assert await store.use_password_reset(gone_r.token_hash, now=0) is None  # its row is gone

    async def test_sessions_roundtrip(self, store: Store):
        user = a_user()
        await store.create_user(user)
        s = a_session(user.id, phone_number="+15551234567", webhook_url="https://x.example/h",
                      webhook_events=["message.sent", "session.qr"], webhook_enabled=False,
                      proxy_url="socks5://u:p@10.0.0.1:1080")
        await store.create_session(s)
        assert await store.get_session(s.id) == s
        assert await store.get_session_by_key_id(s.key_id) == s
        assert await store.get_session("nope") is None
        with pytest.raises(StoreConflict):
            await store.create_session(a_session(user.id, key_id=s.key_id))

    async def test_list_sessions_pages_by_id_per_user(self, store: Store):
        alice, bob = a_user("a@example.com"), a_user("b@example.com")
        await store.create_user(alice)
        await store.create_user(bob)
        mine = [a_session(alice.id, f"a{i}") for i in range(5)]
        for s in mine:
            await store.create_session(s)
        await store.create_session(a_session(bob.id, "b"))
        page1 = await store.list_sessions(alice.id, after=None, limit=3)
        page2 = await store.list_sessions(alice.id, after=page1[-1].id, limit=3)
        assert [s.id for s in page1 + page2] == sorted(s.id for s in mine)
        assert len(page2) == 2

    async def test_update_session_changes_only_given_fields(self, store: Store):
        user = a_user()
        await store.create_user(user)
        s = a_session(user.id, phone_number="+15551234567")
        await store.create_session(s)
        updated = await store.update_session(
            s.id, {"name": "renamed", "status": SessionState.FAILED, "status_reason": "crash loop",
                   "webhook_events": ["message.received"], "connect_on_start": True, "send_limit": "20/minute"},
            at=s.updated_at + 5)
        assert updated.name == "renamed" and updated.status is SessionState.FAILED
        assert updated.status_reason == "crash loop" and updated.webhook_events == ["message.received"]
        assert updated.phone_number == "+15551234567" and updated.updated_at == s.updated_at + 5
        assert updated.send_limit == "20/minute"
        assert await store.get_session(s.id) == updated
        assert [x.id for x in await store.list_sessions_to_connect()] == [s.id]
        assert await store.update_session("missing", {"name": "x"}, at=1) is None
        with pytest.raises(ValueError):
            await store.update_session(s.id, {"user_id": "someone else"}, at=1)

    async def test_delete_session(self, store: Store):
        user = a_user()
        await store.create_user(user)
        s = a_session(user.id)
        await store.create_session(s)
        assert await store.delete_session(s.id) is True
        assert await store.delete_session(s.id) is False
        assert await store.get_session(s.id) is None
        assert await store.get_session_by_key_id(s.key_id) is None


def a_message(session: SessionRecord, **kw) -> MessageRecord:
    fields = dict(id=new_id(), session_id=session.id, user_id=session.user_id, to_jid="1555@s.whatsapp.net",
                  type="text", payload=b"\x81\xa4text\xa2hi", expires_at=10_000, created_at=1_000,
                  updated_at=1_000)
    fields.update(kw)
    return MessageRecord(**fields)


class MessageContract:
    async def _session(self, store: Store) -> SessionRecord:
        user = a_user(f"{new_id()}@example.com")
        await store.create_user(user)
        s = a_session(user.id)
        await store.create_session(s)
        return s

    async def test_create_and_get_with_history(self, store: Store):
        s = await self._session(store)
        m = a_message(s, modifiers=["quoted"], payload=b"\x00\xffbinary")
        assert await store.create_messages([m]) is None
        assert await store.get_message(m.id) == m
        assert await store.get_message_history(m.id) == [StatusEntry(MessageStatus.QUEUED, 1_000, None)]
        assert await store.count_messages(s.id, MessageStatus.QUEUED) == 1

    async def test_claim_in_order_respecting_schedule_and_expiry(self, store: Store):
        s = await self._session(store)
        first, scheduled, second = a_message(s), a_message(s, send_at=5_000), a_message(s)
        expired = a_message(s, expires_at=1_500)
        await store.create_messages([first, scheduled, second, expired])
        got = await store.claim_next_message(s.id, now=2_000)
        assert got.id == first.id and got.status is MessageStatus.SENDING and got.attempts == 1
        assert (await store.claim_next_message(s.id, now=2_000)).id == second.id
        assert await store.claim_next_message(s.id, now=2_000) is None  # scheduled not due, expired skipped
        assert await store.next_scheduled_at(s.id) == 5_000
        assert (await store.claim_next_message(s.id, now=5_000)).id == scheduled.id
        assert [m.id for m in await store.expire_messages(now=2_000)] == [expired.id]
        assert (await store.get_message(expired.id)).status is MessageStatus.FAILED

    async def test_due_scheduled_and_ready_messages_go_oldest_first(self, store: Store):
        s = await self._session(store)
        early = a_message(s, send_at=3_000)  # created first, scheduled: due from 3_000
        ready = a_message(s)
        later = a_message(s, send_at=2_500)  # created after `ready`, due earlier than `early`
        await store.create_messages([early, ready, later])
        assert await store.next_scheduled_at(s.id) == 2_500
        assert (await store.claim_next_message(s.id, now=2_000)).id == ready.id  # nothing scheduled is due yet
        assert await store.claim_next_message(s.id, now=2_000) is None
        assert await store.sessions_with_due_messages([s.id], 2_000) == []
        assert await store.sessions_with_due_messages([s.id, s.id], 3_000) == [s.id]
        # both due: the earliest scheduled goes first, then the next
        assert [(await store.claim_next_message(s.id, now=3_000)).id for _ in range(2)] == [later.id, early.id]
        assert await store.next_scheduled_at(s.id) is None

    async def test_list_messages_newest_first_by_session_in_pages(self, store: Store):
        s, other = await self._session(store), await self._session(store)
        mine = [a_message(s) for _ in range(5)]
        await store.create_messages([*mine, a_message(other)])
        newest = [m.id for m in reversed(mine)]
        first = await store.list_messages(s.id, before=None, limit=3)
        assert [m.id for m in first] == newest[:3]
        rest = await store.list_messages(s.id, before=first[-1].id, limit=3)
        assert [m.id for m in rest] == newest[3:]
        assert await store.list_messages("no-such-session", before=None, limit=3) == []

    async def test_list_messages_filters_by_status_recipient_and_time(self, store: Store):
        s, other = await self._session(store), await self._session(store)
        alice, bob = "1555@s.whatsapp.net", "1666@s.whatsapp.net"
        made = [a_message(s, to_jid=alice if i % 2 else bob, created_at=1_000 + i) for i in range(8)]
        await store.create_messages([*made, a_message(other, to_jid=alice)])
        sending = await store.claim_next_message(s.id, now=2_000)  # made[0], to bob
        assert sending.id == made[0].id

        async def ids(**kw):
            return [m.id for m in await store.list_messages(s.id, before=None, limit=100, **kw)]

        newest = [m.id for m in reversed(made)]
        assert await ids() == newest
        assert await ids(to_jid=alice) == [m.id for m in reversed(made) if m.to_jid == alice]
        assert await ids(status=MessageStatus.SENDING) == [made[0].id]
        assert await ids(status=MessageStatus.QUEUED, to_jid=bob) == [m.id for m in reversed(made[2::2])]
        assert await ids(since=1_003, until=1_006) == [made[5].id, made[4].id, made[3].id]
        assert await ids(to_jid=alice, since=1_003, until=1_006) == [made[5].id, made[3].id]
        assert await ids(status=MessageStatus.CANCELLED) == []
        page = await store.list_messages(s.id, before=made[5].id, limit=2, to_jid=alice)
        assert [m.id for m in page] == [made[3].id, made[1].id]
        assert await store.list_messages(s.id, before=None, limit=3) == list(reversed(made))[:3]  # unfiltered as before

    async def test_cancel_moves_only_a_queued_message_and_records_it(self, store: Store):
        s = await self._session(store)
        claimed, queued, scheduled = a_message(s), a_message(s), a_message(s, send_at=50_000, expires_at=99_000)
        await store.create_messages([claimed, queued, scheduled])
        assert (await store.claim_next_message(s.id, now=2_000)).id == claimed.id
        got = await store.cancel_message(queued.id, 3_000, reason="by test")
        assert (got.id, got.status, got.status_reason, got.updated_at) == (queued.id, MessageStatus.CANCELLED,
                                                                          "by test", 3_000)
        assert await store.get_message_history(queued.id) == [StatusEntry(MessageStatus.QUEUED, 1_000, None),
                                                                StatusEntry(MessageStatus.CANCELLED, 3_000, "by test")]
        assert (await store.cancel_message(scheduled.id, 3_000, reason="x")).status is MessageStatus.CANCELLED
        assert await store.cancel_message(queued.id, 4_000, reason="again") is None  # already cancelled
        assert await store.cancel_message(claimed.id, 4_000, reason="late") is None  # already sending
        assert (await store.get_message(claimed.id)).status is MessageStatus.SENDING
        assert await store.cancel_message("no-such-message", 4_000, reason="x") is None
        assert await store.claim_next_message(s.id, now=60_000) is None  # cancelled ones are never claimed
        assert await store.next_scheduled_at(s.id) is None
        assert await store.expire_messages(now=99_000) == []  # nor expired
        assert await store.requeue_interrupted([s.id], 5_000) == 1  # only the claimed one
        assert (await store.get_message(queued.id)).status is MessageStatus.CANCELLED

    async def test_cancel_writes_its_event_in_the_same_change(self, store: Store):
        from gateway._events import make_event

        user = a_user(f"{new_id()}@example.com")
        await store.create_user(user)
        s = a_session(user.id, webhook_url="https://hooks.example/x", webhook_events=["message.status"])
        await store.create_session(s)
        one, two, three = a_message(s), a_message(s), a_message(s, send_at=9_000)
        await store.create_messages([one, two, three])

        def events(r):
            return [make_event("message.status", r.session_id, {"messageId": r.id, "status": r.status.value}, at=3)]

        await store.cancel_message(one.id, 3_000, reason="one", events=events)
        assert await store.cancel_queued_messages(s.id, 4_000, reason="all", events=events) == 2
        assert await store.cancel_queued_messages(s.id, 5_000, reason="all", events=events) == 0
        listed = await store.list_deliveries(s.id, status=None, before=None, limit=10)
        assert len(listed) == 3
        for m in (two, three):
            assert (await store.get_message(m.id)).status_reason == "all"
            assert (await store.get_message_history(m.id))[-1] == StatusEntry(MessageStatus.CANCELLED, 4_000, "all")

    async def test_cancel_all_touches_only_this_sessions_queued_messages(self, store: Store):
        s, other = await self._session(store), await self._session(store)
        claimed, rest = a_message(s), [a_message(s), a_message(s, send_at=7_000)]
        theirs = a_message(other)
        await store.create_messages([claimed, *rest, theirs])
        await store.claim_next_message(s.id, now=2_000)
        assert await store.cancel_queued_messages(s.id, 3_000, reason="all") == 2
        assert (await store.get_message(claimed.id)).status is MessageStatus.SENDING
        assert (await store.get_message(theirs.id)).status is MessageStatus.QUEUED
        assert await store.count_messages(s.id, MessageStatus.CANCELLED) == 2

    async def test_reschedule_moves_a_queued_scheduled_message_only(self, store: Store):
        s = await self._session(store)
        scheduled, ready = a_message(s, send_at=50_000, expires_at=90_000), a_message(s)
        await store.create_messages([scheduled, ready])
        moved = await store.reschedule_message(scheduled.id, 30_000, 70_000, 2_000)
        assert (moved.send_at, moved.expires_at, moved.updated_at, moved.status) == (30_000, 70_000, 2_000,
                                                                                     MessageStatus.QUEUED)
        assert await store.next_scheduled_at(s.id) == 30_000
        assert await store.reschedule_message(ready.id, 30_000, 70_000, 2_000) is None  # not scheduled
        assert (await store.claim_next_message(s.id, now=2_500)).id == ready.id
        assert (await store.claim_next_message(s.id, now=30_000)).id == scheduled.id
        assert await store.reschedule_message(scheduled.id, 40_000, 80_000, 31_000) is None  # claimed
        assert (await store.get_message(scheduled.id)).send_at == 30_000

    async def test_session_queue_depths_in_one_query(self, store: Store):
        s, other, empty = await self._session(store), await self._session(store), await self._session(store)
        await store.create_messages([a_message(s), a_message(s, send_at=5_000), a_message(s, send_at=9_000),
                                     a_message(s), a_message(other)])
        await store.claim_next_message(s.id, now=2_000)
        depths = await store.session_queue_depths([s.id, other.id, empty.id, s.id], now=6_000)
        assert depths == {s.id: QueueDepth(3, 1), other.id: QueueDepth(1, 0), empty.id: QueueDepth(0, 0)}
        assert await store.session_queue_depths([], now=6_000) == {}

    async def test_queue_depths_count_queued_and_sending_messages(self, store: Store):
        before = await store.queue_depths()
        s = await self._session(store)
        await store.create_messages([a_message(s) for _ in range(3)])
        await store.claim_next_message(s.id, now=2_000)
        after = await store.queue_depths()
        assert after["messages_queued"] - before["messages_queued"] == 2
        assert after["messages_sending"] - before["messages_sending"] == 1
        assert after["webhooks_pending"] == before["webhooks_pending"]

    async def test_a_ready_message_behind_thousands_of_scheduled_ones(self, store: Store):
        s = await self._session(store)
        await store.create_messages([a_message(s, send_at=10_000_000 + i, expires_at=20_000_000)
                                     for i in range(3_000)])
        ready = a_message(s)
        await store.create_messages([ready])
        assert (await store.claim_next_message(s.id, now=2_000)).id == ready.id
        assert await store.claim_next_message(s.id, now=2_000) is None
        assert await store.next_scheduled_at(s.id) == 10_000_000

    async def test_status_moves_and_guards(self, store: Store):
        s = await self._session(store)
        m = a_message(s)
        await store.create_messages([m])
        await store.claim_next_message(s.id, now=2_000)
        sent = await store.set_message_status(m.id, MessageStatus.SENT, 3_000, wa_id="WA1",
                                              only_from=frozenset({MessageStatus.SENDING}))
        assert sent.status is MessageStatus.SENT and sent.wa_id == "WA1"
        assert (await store.find_message_by_wa_id(s.id, "WA1")).id == m.id
        assert await store.find_message_by_wa_id(s.id, "WA2") is None
        # a late 'delivered' after 'read' is refused by the guard
        await store.set_message_status(m.id, MessageStatus.READ, 5_000,
                                       only_from=frozenset({MessageStatus.SENT, MessageStatus.DELIVERED}))
        assert await store.set_message_status(m.id, MessageStatus.DELIVERED, 6_000,
                                              only_from=frozenset({MessageStatus.SENT})) is None
        history = [e.status for e in await store.get_message_history(m.id)]
        assert history == [MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.SENT, MessageStatus.READ]
        assert (await store.get_message(m.id)).wa_id == "WA1"

    async def test_a_receipt_moves_the_message_by_its_whatsapp_id_in_one_call(self, store: Store):
        from gateway._events import Collector, make_event

        s = await self._session(store)
        other = await self._session(store)
        mine, theirs = a_message(s), a_message(other)
        await store.create_messages([mine])
        await store.create_messages([theirs])
        for m, session in ((mine, s), (theirs, other)):
            await store.claim_next_message(session.id, now=2_000)
            await store.set_message_status(m.id, MessageStatus.SENT, 3_000, wa_id="WA-SAME")
        collect = Collector(lambda r: [make_event("message.status", r.session_id, {"id": r.id}, at=4_000)])
        delivered = await store.set_status_by_wa_id(
            s.id, "WA-SAME", MessageStatus.DELIVERED, 4_000,
            only_from=frozenset({MessageStatus.SENT}), events=collect)
        assert delivered.id == mine.id and delivered.status is MessageStatus.DELIVERED
        assert delivered.wa_id == "WA-SAME" and delivered.updated_at == 4_000
        assert [e.data["id"] for e in collect.events] == [mine.id]
        assert (await store.get_message(theirs.id)).status is MessageStatus.SENT  # the same id in another session
        assert await store.set_status_by_wa_id(s.id, "WA-NONE", MessageStatus.READ, 5_000) is None
        # the guard: a late 'delivered' after 'read' moves nothing
        assert (await store.set_status_by_wa_id(s.id, "WA-SAME", MessageStatus.READ, 5_000)).status is \
            MessageStatus.READ
        assert await store.set_status_by_wa_id(s.id, "WA-SAME", MessageStatus.DELIVERED, 6_000,
                                               only_from=frozenset({MessageStatus.SENT})) is None
        assert [e.status for e in await store.get_message_history(mine.id)] == [
            MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.SENT, MessageStatus.DELIVERED,
            MessageStatus.READ]

    async def test_requeue_interrupted(self, store: Store):
        s = await self._session(store)
        m = a_message(s)
        await store.create_messages([m])
        await store.claim_next_message(s.id, now=2_000)
        assert await store.requeue_interrupted([s.id], at=3_000) == 1
        again = await store.claim_next_message(s.id, now=4_000)
        assert again.id == m.id and again.attempts == 2

    async def test_requeue_interrupted_of_every_session(self, store: Store):
        """What a single node does at start-up: whatever was mid-send goes out again."""
        s, t = await self._session(store), await self._session(store)
        ms, mt, waiting = a_message(s), a_message(t), a_message(t)
        await store.create_messages([ms, mt, waiting])
        await store.claim_next_message(s.id, now=2_000)
        await store.claim_next_message(t.id, now=2_000)
        assert await store.requeue_interrupted(None, at=3_000) == 2
        assert await store.requeue_interrupted(None, at=3_001) == 0
        for m in (ms, mt):
            requeued = await store.get_message(m.id)
            assert (requeued.status, requeued.status_reason, requeued.updated_at) == (
                MessageStatus.QUEUED, "interrupted before the send was confirmed", 3_000)
            assert [e.status for e in await store.get_message_history(m.id)] == [
                MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.QUEUED]
        assert await store.get_message_history(waiting.id) == [StatusEntry(MessageStatus.QUEUED, 1_000, None)]

    async def test_idempotency_key_claimed_with_the_messages(self, store: Store):
        s = await self._session(store)
        idem = IdempotencyRecord(session_id=s.id, key="k1", request_hash=b"h" * 32, status_code=202,
                                 response=b'{"messageId":"x"}', created_at=1_000)
        m1, m2 = a_message(s), a_message(s)
        assert await store.create_messages([m1], idem) is None
        existing = await store.create_messages([m2], msgspec_replace(idem, response=b"other"))
        assert existing == idem
        assert await store.get_message(m2.id) is None  # nothing inserted on a replay
        assert await store.get_idempotency(s.id, "k1") == idem
        assert await store.purge_idempotency(older_than=2_000) == 1
        assert await store.get_idempotency(s.id, "k1") is None


class ContactContract:
    async def test_upsert_get_list(self, store: Store):
        user = a_user(f"{new_id()}@example.com")
        await store.create_user(user)
        s = a_session(user.id)
        await store.create_session(s)
        c = ContactRecord(session_id=s.id, phone_number="+15550000002", name="Bo", created_at=1, updated_at=1)
        assert await store.upsert_contact(c) == c
        renamed = await store.upsert_contact(ContactRecord(session_id=s.id, phone_number="+15550000002",
                                                           name="Bob", created_at=5, updated_at=5))
        assert (renamed.name, renamed.created_at, renamed.updated_at) == ("Bob", 1, 5)
        await store.upsert_contact(ContactRecord(session_id=s.id, phone_number="+15550000001", name=None,
                                                 created_at=2, updated_at=2))
        assert await store.get_contact(s.id, "+15550000002") == renamed
        assert await store.get_contact(s.id, "+19999999999") is None
        page = await store.list_contacts(s.id, after=None, limit=1)
        assert [c.phone_number for c in page] == ["+15550000001"]
        rest = await store.list_contacts(s.id, after=page[-1].phone_number, limit=10)
        assert [c.phone_number for c in rest] == ["+15550000002"]

    async def test_lids_are_learned_per_session_and_the_newest_phone_wins(self, store: Store):
        user = a_user(f"{new_id()}@example.com")
        await store.create_user(user)
        s, other = a_session(user.id), a_session(user.id)
        await store.create_session(s)
        await store.create_session(other)
        await store.put_lids(s.id, [("111@lid", "15550000001@s.whatsapp.net"),
                                    ("222@lid", "15550000002@s.whatsapp.net")], 1)
        assert await store.phone_for_lid(s.id, "111@lid") == "15550000001@s.whatsapp.net"
        assert await store.lid_for_phone(s.id, "15550000002@s.whatsapp.net") == "222@lid"
        assert await store.phone_for_lid(other.id, "111@lid") is None  # another session learned nothing
        await store.put_lids(s.id, [("111@lid", "15550000009@s.whatsapp.net")], 2)
        assert await store.phone_for_lid(s.id, "111@lid") == "15550000009@s.whatsapp.net"
        assert await store.lid_for_phone(s.id, "15550000001@s.whatsapp.net") is None
        await store.put_lids(s.id, [], 3)
        await store.delete_session(s.id)
        assert await store.phone_for_lid(s.id, "222@lid") is None


class OutboxContract:
    """The webhooks' DeliveryStore contract, as MemoryDeliveryStore defines it."""

    async def _deliveries(self, store: Store):
        from gateway.webhooks import Delivery

        user = a_user(f"{new_id()}@example.com")
        await store.create_user(user)
        s = a_session(user.id)
        await store.create_session(s)
        rows = [Delivery(id=f"{ep}{i}", session_id=s.id, event="e", endpoint=ep, secret="whsec_x", payload=b"{}",
                         created_at=0, next_attempt_at=i) for i in range(5) for ep in ("a", "b")]
        await store.insert_deliveries(rows)
        return s

    async def test_claims_respect_room_leases_and_fences(self, store: Store):
        from gateway.webhooks import AttemptRecord, DeliveryStatus

        s = await self._deliveries(store)
        got = await store.claim_due(10, limit=10, room={"a": 1}, default_room=2, lease_until_ms=100)
        assert sorted(d.id for d in got) == ["a0", "b0", "b1"]
        assert all(d.claimed_until == 100 for d in got)
        only = await store.claim_due(10, limit=10, room={"a": 1}, default_room=0, lease_until_ms=100)
        assert [d.id for d in only] == ["a1"]
        assert await store.next_due_at(room={"a": 0}, default_room=1) == 2
        assert await store.next_due_at(room={}, default_room=0) is None
        again = await store.claim_due(100, limit=10, room={}, default_room=10, lease_until_ms=200)
        assert {"a0", "b0", "b1", "a1"} <= {d.id for d in again}
        stale = AttemptRecord(delivery_id="a0", attempt=1, claimed_until=100, started_at=0, finished_at=1,
                              outcome=DeliveryStatus.DELIVERED, next_attempt_at=None, status_code=200)
        assert not await store.record_attempt(stale)
        fresh = AttemptRecord(delivery_id="a0", attempt=1, claimed_until=200, started_at=0, finished_at=1,
                              outcome=DeliveryStatus.PENDING, next_attempt_at=5000, status_code=503, error="HTTP 503")
        assert await store.record_attempt(fresh)
        a0 = await store.get_delivery("a0")
        assert (a0.attempts, a0.claimed_until, a0.next_attempt_at, a0.last_error) == (1, 0, 5000, "HTTP 503")
        assert await store.expedite("a", 300) == 1
        assert (await store.get_delivery("a0")).next_attempt_at == 300
        assert [a.status_code for a in await store.list_attempts("a0")] == [503]
        listed = await store.list_deliveries(s.id, status=None, before=None, limit=3)
        assert [d.id for d in listed] == ["b4", "b3", "b2"]

    async def test_events_become_deliveries_in_the_same_write(self, store: Store):
        import msgspec

        from gateway._events import make_event

        user = a_user(f"{new_id()}@example.com")
        await store.create_user(user)
        s = a_session(user.id, webhook_url="https://hooks.example/x", webhook_events=["message.sent"],
                      webhook_secret="whsec_AAAA")
        await store.create_session(s)

        def events(record):
            return [make_event("session.connected", record.id, {"name": record.name}),
                    make_event("message.sent", record.id, {"name": record.name})]

        await store.update_session(s.id, {"name": "renamed"}, 5, events=events)
        [d] = await store.list_deliveries(s.id, status=None, before=None, limit=10)
        assert (d.event, d.endpoint, d.secret, d.next_attempt_at) == ("message.sent", "https://hooks.example/x",
                                                                      "whsec_AAAA", 5)
        body = msgspec.json.decode(d.payload)
        assert body["sessionId"] == s.id and body["data"] == {"name": "renamed"}  # built from the new record
        await store.record_events([make_event("webhook.test", s.id, {})], 6)  # test pings ignore the filter
        assert len(await store.list_deliveries(s.id, status=None, before=None, limit=10)) == 2
        await store.update_session(s.id, {"webhook_enabled": False}, 7, events=events)
        assert len(await store.list_deliveries(s.id, status=None, before=None, limit=10)) == 2
        m = a_message(s)
        await store.create_messages([m])
        await store.update_session(s.id, {"webhook_enabled": True, "webhook_events": []}, 8)
        await store.set_message_status(m.id, MessageStatus.FAILED, 9, reason="x",
                                       events=lambda r: [make_event("message.status", r.session_id,
                                                                    {"status": r.status.value})])
        newest = (await store.list_deliveries(s.id, status=None, before=None, limit=1))[0]
        assert msgspec.json.decode(newest.payload)["data"] == {"status": "failed"}

    async def test_dead_letter_and_redeliver(self, store: Store):
        from gateway.webhooks import AttemptRecord, DeliveryStatus

        s = await self._deliveries(store)
        [d] = await store.claim_due(0, limit=1, room={}, default_room=1, lease_until_ms=50)
        dead = AttemptRecord(delivery_id=d.id, attempt=1, claimed_until=50, started_at=0, finished_at=1,
                             outcome=DeliveryStatus.DEAD, next_attempt_at=None, status_code=400, error="HTTP 400")
        assert await store.record_attempt(dead)
        assert [x.id for x in await store.list_deliveries(s.id, status=DeliveryStatus.DEAD, before=None,
                                                         limit=10)] == [d.id]
        assert await store.count_deliveries(DeliveryStatus.DEAD) == 1
        again = await store.redeliver(d.id, 77)
        assert (again.status, again.next_attempt_at, again.attempts) == (DeliveryStatus.PENDING, 77, 0)
        assert await store.redeliver("missing", 1) is None

    async def test_list_deliveries_pages_back_by_id_and_filters_by_status(self, store: Store):
        from gateway.webhooks import AttemptRecord, DeliveryStatus

        s = await self._deliveries(store)
        older = await store.list_deliveries(s.id, status=None, before="b2", limit=3)
        assert [d.id for d in older] == ["b1", "b0", "a4"]
        assert [d.id for d in await store.list_deliveries(s.id, status=None, before="a1", limit=3)] == ["a0"]
        [d] = await store.claim_due(0, limit=1, room={}, default_room=1, lease_until_ms=50)
        assert await store.record_attempt(AttemptRecord(
            delivery_id=d.id, attempt=1, claimed_until=50, started_at=0, finished_at=1,
            outcome=DeliveryStatus.DELIVERED, next_attempt_at=None, status_code=200))
        pending = await store.list_deliveries(s.id, status=DeliveryStatus.PENDING, before=None, limit=100)
        assert len(pending) == 9 and d.id not in {p.id for p in pending}
        delivered = await store.list_deliveries(s.id, status=DeliveryStatus.DELIVERED, before=None, limit=100)
        assert [x.id for x in delivered] == [d.id] and delivered[0].finished_at == 1
        assert await store.count_deliveries(DeliveryStatus.DELIVERED) == 1
        assert await store.list_deliveries("no-such-session", status=None, before=None, limit=10) == []

    async def test_redeliver_leaves_a_pending_delivery_as_it_is_and_reopens_a_delivered_one(self, store: Store):
        from gateway.webhooks import AttemptRecord, DeliveryStatus

        await self._deliveries(store)
        [d] = await store.claim_due(0, limit=1, room={}, default_room=1, lease_until_ms=50)
        untouched = await store.redeliver("b3", 77)
        assert untouched == await store.get_delivery("b3")
        assert (untouched.status, untouched.next_attempt_at) == (DeliveryStatus.PENDING, 3)
        claimed = await store.redeliver(d.id, 77)  # pending (claimed, mid-attempt): its claim is kept
        assert (claimed.status, claimed.claimed_until) == (DeliveryStatus.PENDING, 50)
        assert await store.record_attempt(AttemptRecord(
            delivery_id=d.id, attempt=1, claimed_until=50, started_at=0, finished_at=1,
            outcome=DeliveryStatus.DELIVERED, next_attempt_at=None, status_code=200))
        again = await store.redeliver(d.id, 88)
        assert (again.status, again.next_attempt_at, again.attempts, again.claimed_until, again.finished_at) == (
            DeliveryStatus.PENDING, 88, 0, 0, None)
        assert d.id in {x.id for x in await store.claim_due(88, limit=10, room={}, default_room=10,
                                                              lease_until_ms=100)}
        assert [a.outcome for a in await store.list_attempts(d.id)] == [DeliveryStatus.DELIVERED]  # history stays

    async def test_record_events_returns_what_it_wrote_and_expired_messages_write_theirs(self, store: Store):
        import msgspec

        from gateway._events import make_event

        user = a_user(f"{new_id()}@example.com")
        await store.create_user(user)
        s = a_session(user.id, webhook_url="https://hooks.example/x", webhook_events=["message.status"])
        quiet = a_session(user.id, name="no webhook")
        await store.create_session(s)
        await store.create_session(quiet)
        written = await store.record_events([make_event("message.status", s.id, {"n": 1}),
                                             make_event("message.received", s.id, {"n": 2}),  # filtered out
                                             make_event("message.status", quiet.id, {"n": 3})], 4)
        assert [(d.session_id, d.event, d.next_attempt_at) for d in written] == [(s.id, "message.status", 4)]
        assert await store.list_deliveries(s.id, status=None, before=None, limit=10) == written
        m = a_message(s, expires_at=1_500)
        await store.create_messages([m])
        [expired] = await store.expire_messages(now=2_000, events=lambda r: [
            make_event("message.status", r.session_id, {"status": r.status.value, "reason": r.status_reason})])
        assert expired.id == m.id and expired.status is MessageStatus.FAILED
        newest = (await store.list_deliveries(s.id, status=None, before=None, limit=1))[0]
        assert newest.next_attempt_at == 2_000
        assert msgspec.json.decode(newest.payload)["data"] == {"status": "failed", "reason": "expired in the queue"}


def msgspec_replace(record, **changes):
    import msgspec

    return msgspec.structs.replace(record, **changes)

