"""The sim transport against an in-process simulator: pairing, messages, social calls, faults, scale.

Real sockets on loopback, so real time with short delays (no autojump clock).
"""

from __future__ import annotations

import hashlib
import json
import time

import msgspec
import pytest
import trio

from actors import (
    ChatPresence, ConnectFailed, Connected, ContactContent, GroupNotFound, LocationContent, LoggedOut, MediaContent, MessageReceived,
    NotConnected, OutboundMessage, PairingTimeout, PollContent, Presence, QRCode, Receipt, RecipientError, ReplyTo,
    TextContent, TransportError,
)
from actors.sim import SimTransportFactory, open_sim_transport_factory
from bench.simulator import SimControlError, open_sim_control

from ._procs import free_port
from ._sim_fixtures import sim_world, simulator, spec, start, start_connected, wait_until
from .test_event_schemas import public

A, B, C = "+15550000001", "+15550000002", "+15550000003"
JA, JB, JC = "15550000001@s.whatsapp.net", "15550000002@s.whatsapp.net", "15550000003@s.whatsapp.net"


def creds_file(tmp_path, session_id: str):
    return tmp_path / "sim" / f"{session_id}.json"


async def test_qr_then_scan_connects_with_the_scanned_number(tmp_path):
    with trio.fail_after(10):
        async with sim_world(str(tmp_path)) as (sim, factory, control, nursery):
            run = await start(nursery, factory.create(spec("s1")))
            qr = await run.expect(QRCode)
            assert qr.code.startswith("2@") and qr.code.count(",") == 3
            assert await control.qr("s1") == qr.code
            with pytest.raises(NotConnected):  # unpaired: calls need a live connection
                await run.transport.is_on_whatsapp([A])
            assert await control.scan("s1", A) == A
            connected = await run.expect(Connected)
            assert (connected.jid, connected.phone_number) == (JA, A)
            stored = json.loads(creds_file(tmp_path, "s1").read_text())
            assert stored["phone"] == A and stored["device_id"] and stored["token"]
            assert await control.qr("s1") is None
            await run.transport.disconnect()
            assert await run.ended() is None


async def test_qr_codes_rotate(tmp_path):
    with trio.fail_after(10):
        async with sim_world(str(tmp_path), qr_interval=0.05) as (sim, factory, control, nursery):
            run = await start(nursery, factory.create(spec("s1")))
            first, second = await run.expect(QRCode), await run.expect(QRCode)
            assert first.code != second.code
            with pytest.raises(SimControlError):
                await control.scan_code(first.code)  # a rotated code no longer pairs
            await control.scan_code(await control.qr("s1"), B)
            assert (await run.expect(Connected)).phone_number == B


async def test_autopair_uses_the_spec_number_or_a_fresh_one(tmp_path):
    with trio.fail_after(10):
        async with sim_world(str(tmp_path), autopair=0.05) as (sim, factory, control, nursery):
            _, with_number = await start_connected(nursery, factory.create(spec("a", A)))
            _, fresh = await start_connected(nursery, factory.create(spec("b")))
            _, fresh2 = await start_connected(nursery, factory.create(spec("c")))
            assert with_number.phone_number == A
            assert fresh.phone_number.startswith("+888") and fresh.phone_number != fresh2.phone_number
            assert (await control.stats()).sessions_connected == 3


async def test_pairing_code_pairs_through_scan_code(tmp_path):
    with trio.fail_after(10):
        async with sim_world(str(tmp_path)) as (sim, factory, control, nursery):
            run = await start(nursery, factory.create(spec("s1")))
            await run.expect(QRCode)
            code = await run.transport.pair_phone(C)
            assert len(code) == 8 and code.isalnum()
            await control.scan_code(code[:4] + "-" + code[4:])
            assert (await run.expect(Connected)).phone_number == C
            with pytest.raises(TransportError):
                await run.transport.pair_phone(C)


async def test_pairing_deadline_raises_pairing_timeout(tmp_path):
    with trio.fail_after(10):
        async with simulator() as sim:
            async with open_sim_transport_factory(sim.url, data_dir=str(tmp_path), pairing_deadline=0.3) as factory:
                async with trio.open_nursery() as nursery:
                    run = await start(nursery, factory.create(spec("s1")))
                    assert isinstance(await run.ended(), PairingTimeout)
                    assert not run.error.retryable
                    await wait_until(lambda: sim.statistics().sessions_attached == 0)  # it detached


def _all_types() -> dict[str, OutboundMessage]:
    jpeg = b"\xff\xd8\xff" + bytes(range(256)) * 40
    def msg(content, **kw):
        return OutboundMessage(to=JB, content=content, **kw)
    return {
        "text": msg(TextContent(body="hello")),
        "image": msg(MediaContent(kind="image", data=jpeg, mimetype="image/jpeg", caption="a cat")),
        "video": msg(MediaContent(kind="video", data=b"\x00\x00\x00\x18ftypmp42", mimetype="video/mp4")),
        "audio": msg(MediaContent(kind="audio", data=b"OggS" * 10, mimetype="audio/ogg; codecs=opus", ptt=True)),
        "document": msg(MediaContent(kind="document", data=b"%PDF-1.4", mimetype="application/pdf",
                                     filename="report.pdf", caption="Q3")),
        "sticker": msg(MediaContent(kind="sticker", data=b"RIFF....WEBP", mimetype="image/webp")),
        "location": msg(LocationContent(latitude=37.7749, longitude=-122.4194, name="San Francisco",
                                        address="CA")),
        "contact": msg(ContactContent(full_name="John Doe", phone_number="+1234567890")),
        "poll": msg(PollContent(question="Lunch?", options=["pizza", "sushi"], selectable_count=1)),
        "quoted": msg(TextContent(body="replying"), reply_to=ReplyTo(message_id="3EB0ABC", chat=JB, text="orig")),
        "viewOnce": msg(MediaContent(kind="image", data=jpeg, mimetype="image/jpeg"), view_once=True),
        "mentions": msg(TextContent(body="hi @b"), mentions=[JB]),
    }


async def test_two_sessions_exchange_every_content_type_with_receipts(tmp_path):
    with trio.fail_after(20):
        async with sim_world(str(tmp_path), autopair=0, receipt_delay=0.02) as (sim, factory, control, nursery):
            a, _ = await start_connected(nursery, factory.create(spec("a", A)))
            b, _ = await start_connected(nursery, factory.create(spec("b", B)))
            messages = _all_types()
            sent = {name: await a.transport.send(m) for name, m in messages.items()}
            got = {}
            for _ in messages:
                event = await b.expect(MessageReceived)
                got[event.message_id] = event
            for name, result in sent.items():
                event = got[result.message_id]
                assert (event.chat, event.sender, event.sender_phone, event.is_group) == (JA, JA, A, False)
                assert event.timestamp_ms == result.timestamp_ms
                content = messages[name].content
                if isinstance(content, MediaContent):
                    assert event.type == content.kind and event.text == content.caption
                    assert event.data["sha256"] == hashlib.sha256(content.data).hexdigest()
                    assert event.data["file_length"] == len(content.data)
                    assert event.data["mimetype"] == content.mimetype
            by_name = {name: got[r.message_id] for name, r in sent.items()}
            assert (by_name["text"].type, by_name["text"].text) == ("text", "hello")
            assert by_name["audio"].data["ptt"] is True
            assert by_name["document"].data["filename"] == "report.pdf"
            assert by_name["location"].data == {"latitude": 37.7749, "longitude": -122.4194,
                                                 "name": "San Francisco", "address": "CA"}
            assert by_name["contact"].type == "contact" and by_name["contact"].data["phone_numbers"] == ["+1234567890"]
            assert by_name["contact"].data["display_name"] == "John Doe"
            assert "waid=1234567890" in by_name["contact"].data["vcard"]
            assert by_name["poll"].data["options"] == ["pizza", "sushi"] and by_name["poll"].text == "Lunch?"
            assert by_name["quoted"].data["quoted"]["message_id"] == "3EB0ABC"
            assert by_name["viewOnce"].data["view_once"] is True and by_name["viewOnce"].type == "image"
            assert by_name["mentions"].data["mentions"] == [JB]
            for event in got.values():  # what the gateway makes of each: camelCase at every depth, as documented
                public(event)
            # the sender sees delivered, then read, for every message
            seen: dict[str, list[str]] = {r.message_id: [] for r in sent.values()}
            while any(len(kinds) < 2 for kinds in seen.values()):
                receipt = await a.expect(Receipt)
                assert receipt.chat == JB
                for mid in receipt.message_ids:
                    seen[mid].append(receipt.type)
            assert all(kinds == ["delivered", "read"] for kinds in seen.values())
            counts = await control.record_counts()
            assert (counts.total, counts.distinct, counts.duplicates) == (12, 12, 0)
            record = await control.messages(sender=A)
            assert [e.message_id for e in record] == [r.message_id for r in sent.values()]
            assert record[0].recipient == JB and record[0].type == "text" and record[0].session_id == "a"


async def test_on_whatsapp_registered_phones_and_unregistered_recipients(tmp_path):
    with trio.fail_after(10):
        async with sim_world(str(tmp_path), autopair=0, receipt_delay=0.02) as (sim, factory, control, nursery):
            a, _ = await start_connected(nursery, factory.create(spec("a", A)))
            assert await control.register(C, verified_name="Acme") == JC
            assert await control.unregister("19999999999") == "+19999999999"  # the open world has every other number
            answers = await a.transport.is_on_whatsapp([A, C, "+19999999999"])
            assert [(x.phone_number, x.exists, x.jid) for x in answers] == [
                (A, True, JA), (C, True, JC), ("+19999999999", False, None)]
            assert answers[1].verified_name == "Acme"
            with pytest.raises(RecipientError):
                await a.transport.send(OutboundMessage(to="19999999999@s.whatsapp.net",
                                                       content=TextContent(body="nobody")))
            # a registered phone without a session accepts, records and reads
            result = await a.transport.send(OutboundMessage(to=JC, content=TextContent(body="to a phone")))
            assert (await a.expect(Receipt, type="delivered")).message_ids == [result.message_id]
            assert (await a.expect(Receipt, type="read")).message_ids == [result.message_id]
            [entry] = await control.messages(recipient=C)
            assert entry.text == "to a phone"
            # and it can write back
            mid = await control.inject(C, A, "hi from a phone")
            got = await a.expect(MessageReceived)
            assert (got.message_id, got.sender_phone, got.text) == (mid, C, "hi from a phone")


async def test_groups(tmp_path):
    with trio.fail_after(15):
        async with sim_world(str(tmp_path), autopair=0, receipt_delay=0.02) as (sim, factory, control, nursery):
            a, _ = await start_connected(nursery, factory.create(spec("a", A)))
            b, _ = await start_connected(nursery, factory.create(spec("b", B)))
            await control.register(C)
            await control.unregister("+19999999999")  # not on WhatsApp: left out of groups, "404" on add
            group = await a.transport.create_group("Team", [JB, "+19999999999"])
            assert group.jid.endswith("@g.us") and group.name == "Team" and group.owner == JA
            assert {(p.jid, p.is_super_admin) for p in group.participants} == {(JA, True), (JB, False)}
            results = await a.transport.update_participants(group.jid, [JB, C, "+19999999999"], "add")
            assert [(r.ok, r.error) for r in results] == [(False, "409"), (True, None), (False, "404")]
            denied = await b.transport.update_participants(group.jid, [JA], "remove")
            assert [(r.ok, r.error) for r in denied] == [(False, "not-authorized")]
            info = await b.transport.group_info(group.jid)
            assert {p.jid for p in info.participants} == {JA, JB, JC}
            # a group message fans out to every other member; receipts name the participant
            sent = await a.transport.send(OutboundMessage(to=group.jid, content=TextContent(body="hi all")))
            got = await b.expect(MessageReceived)
            assert (got.message_id, got.chat, got.sender, got.is_group) == (sent.message_id, group.jid, JA, True)
            readers = set()
            while len(readers) < 2:
                receipt = await a.expect(Receipt, type="read")
                assert receipt.chat == group.jid
                readers.add(receipt.sender)
            assert readers == {JB, JC}
            removed = await a.transport.update_participants(group.jid, [C, "+19999999999"], "remove")
            assert [(r.ok, r.error) for r in removed] == [(True, None), (False, "404")]
            assert [g.jid for g in await b.transport.list_groups()] == [group.jid]
            await b.transport.leave_group(group.jid)
            assert await b.transport.list_groups() == []
            with pytest.raises(GroupNotFound):  # a group you left is one you cannot see
                await b.transport.group_info(group.jid)
            with pytest.raises(RecipientError):
                await b.transport.send(OutboundMessage(to=group.jid, content=TextContent(body="left")))
            with pytest.raises(GroupNotFound):
                await a.transport.group_info("120363000000000000@g.us")
            assert {p.jid for p in (await a.transport.group_info(group.jid)).participants} == {JA}


async def test_presence_typing_and_contacts(tmp_path):
    with trio.fail_after(10):
        async with sim_world(str(tmp_path), autopair=0, receipt_delay=0.02) as (sim, factory, control, nursery):
            a, _ = await start_connected(nursery, factory.create(spec("a", A)))
            b, _ = await start_connected(nursery, factory.create(spec("b", B)))
            await b.transport.send_presence(True)  # WhatsApp sends presence only to an available account
            await b.transport.subscribe_presence(JA)
            assert (await b.expect(Presence)).available is False  # the current state, at once
            await a.transport.send_presence(True)
            assert await b.expect(Presence) == Presence(jid=JA, available=True)
            await a.transport.send_presence(False)
            offline = await b.expect(Presence)
            assert not offline.available and offline.last_seen_ms
            await a.transport.send_typing(JB, True)
            assert await b.expect(ChatPresence) == ChatPresence(chat=JA, sender=JA, state="composing")
            await a.transport.send_typing(JB, False)
            assert (await b.expect(ChatPresence)).state == "paused"
            await control.unregister("+19999999999")
            with pytest.raises(RecipientError):
                await a.transport.subscribe_presence("19999999999@s.whatsapp.net")
            assert await a.transport.get_contacts() == []
            await a.transport.send(OutboundMessage(to=JB, content=TextContent(body="hey")))
            await control.register(C, push_name="Carol")
            await control.add_contact(A, C, "Carol Work")
            contacts = {c.jid: c for c in await a.transport.get_contacts()}
            assert set(contacts) == {JB, JC}
            assert contacts[JC].full_name == "Carol Work" and contacts[JC].push_name == "Carol"
            assert [c.jid for c in await b.transport.get_contacts()] == [JA]


async def test_presence_needs_availability_and_lasts_one_connection(tmp_path):
    with trio.fail_after(10):
        async with sim_world(str(tmp_path), autopair=0, receipt_delay=0.02) as (sim, factory, control, nursery):
            a, _ = await start_connected(nursery, factory.create(spec("a", A)))
            b, _ = await start_connected(nursery, factory.create(spec("b", B)))
            await b.transport.subscribe_presence(JA)  # b is not available: nothing comes
            await a.transport.send_presence(True)
            await b.transport.send_presence(True)
            await a.transport.send_presence(False)
            assert (await b.expect(Presence)).available is False  # only the update sent while b was available
            assert [e for e in b.events if isinstance(e, Presence)] == [b.events[-1]]
            # b's going offline reaches a subscriber as unavailable
            await a.transport.send_presence(True)
            await a.transport.subscribe_presence(JB)
            assert (await a.expect(Presence)) == Presence(jid=JB, available=True)
            await control.drop("b")
            assert isinstance(await b.ended(), ConnectFailed)
            gone = await a.expect(Presence)
            assert (gone.jid, gone.available) == (JB, False) and gone.last_seen_ms
            # a reconnected device follows nothing until it subscribes again
            b2, _ = await start_connected(nursery, b.transport)
            await b2.transport.send_presence(True)
            assert await a.expect(Presence, jid=JB, available=True)
            await a.transport.send_presence(False)
            await a.transport.send_presence(True)
            await b2.transport.subscribe_presence(JA)
            now = await b2.expect(Presence)
            assert (now.jid, now.available) == (JA, True)  # the current state only
            assert len([e for e in b2.events if isinstance(e, Presence)]) == 1


async def test_recording_and_read_receipts_by_the_reader(tmp_path):
    with trio.fail_after(10):
        async with sim_world(str(tmp_path), autopair=0, receipt_delay=0.02) as (sim, factory, control, nursery):
            await control.set_auto_read(False)
            a, _ = await start_connected(nursery, factory.create(spec("a", A)))
            b, _ = await start_connected(nursery, factory.create(spec("b", B)))
            await a.transport.send_chat_presence(JB, "recording")
            assert await b.expect(ChatPresence) == ChatPresence(chat=JA, sender=JA, state="recording")
            sent = await a.transport.send(OutboundMessage(to=JB, content=TextContent(body="read me")))
            assert (await b.expect(MessageReceived)).message_id == sent.message_id
            assert (await a.expect(Receipt, type="delivered")).message_ids == [sent.message_id]
            await trio.sleep(0.1)  # no read by itself with auto-read off
            assert not [e for e in a.events if isinstance(e, Receipt) and e.type == "read"]
            await b.transport.mark_read(JA, [sent.message_id, "3EB0UNKNOWN"], JA)
            read = await a.expect(Receipt, type="read")
            assert (read.message_ids, read.chat, read.sender) == ([sent.message_id], JB, None)
            # in a group, the receipt names the reader
            group = await a.transport.create_group("Team", [JB])
            in_group = await a.transport.send(OutboundMessage(to=group.jid, content=TextContent(body="all")))
            await b.expect(MessageReceived, message_id=in_group.message_id)
            await b.transport.mark_read(group.jid, [in_group.message_id], JA)
            read = await a.expect(Receipt, type="read")
            assert (read.message_ids, read.chat, read.sender) == ([in_group.message_id], group.jid, JB)
            with pytest.raises(GroupNotFound):
                await b.transport.mark_read("120363000000000000@g.us", ["x"], JA)


async def test_open_world_a_never_seen_number_is_on_whatsapp_and_reads(tmp_path):
    d, jd = "+15557770001", "15557770001@s.whatsapp.net"
    with trio.fail_after(10):
        async with sim_world(str(tmp_path), autopair=0, receipt_delay=0.02) as (sim, factory, control, nursery):
            a, _ = await start_connected(nursery, factory.create(spec("a", A)))
            accounts = sim.statistics().accounts
            answers = await a.transport.is_on_whatsapp(["15557770001", "not a number"])
            assert [(x.exists, x.jid) for x in answers] == [(True, jd), (False, None)]
            assert sim.statistics().accounts == accounts  # asking creates nothing
            result = await a.transport.send(OutboundMessage(to=jd, content=TextContent(body="hello stranger")))
            assert (await a.expect(Receipt, type="delivered")).message_ids == [result.message_id]
            assert (await a.expect(Receipt, type="read")).message_ids == [result.message_id]
            [entry] = await control.messages(recipient=d)
            assert (entry.message_id, entry.text, entry.duplicate) == (result.message_id, "hello stranger", False)
            assert sim.statistics().accounts == accounts + 1  # the account was made on first use
            # groups take never-seen numbers too, and so do presence and typing
            group = await a.transport.create_group("Open", ["+15557770002"])
            assert {p.jid for p in group.participants} == {JA, "15557770002@s.whatsapp.net"}
            added = await a.transport.update_participants(group.jid, ["+15557770003"], "add")
            assert [(r.jid, r.ok, r.error) for r in added] == [("15557770003@s.whatsapp.net", True, None)]
            await a.transport.subscribe_presence("15557770004@s.whatsapp.net")
            await a.transport.send_typing(jd, True)
            # and the new phone can write back
            mid = await control.inject(d, A, "who is this?")
            got = await a.expect(MessageReceived)
            assert (got.message_id, got.sender_phone) == (mid, d)


async def test_unregister_takes_a_number_off_whatsapp(tmp_path):
    with trio.fail_after(10):
        async with sim_world(str(tmp_path), autopair=0, receipt_delay=0.02) as (sim, factory, control, nursery):
            a, _ = await start_connected(nursery, factory.create(spec("a", A)))
            b, _ = await start_connected(nursery, factory.create(spec("b", B)))
            group = await a.transport.create_group("Team", [JB, C])
            assert {p.jid for p in group.participants} == {JA, JB, JC}
            assert await control.unregister(C) == C  # a phone without a session
            assert await control.unregister("15550000002") == B  # a paired session: its device is logged out
            assert (await b.expect(LoggedOut)).reason == "account deleted"
            assert await b.ended() is None
            answers = await a.transport.is_on_whatsapp([B, C])
            assert [(x.phone_number, x.exists, x.jid) for x in answers] == [(B, False, None), (C, False, None)]
            for to in (JB, JC):
                with pytest.raises(RecipientError) as refused:
                    await a.transport.send(OutboundMessage(to=to, content=TextContent(body="anyone?")))
                assert "not on WhatsApp" in refused.value.reason
            assert {p.jid for p in (await a.transport.group_info(group.jid)).participants} == {JA}
            added = await a.transport.update_participants(group.jid, [C], "add")
            assert [(r.ok, r.error) for r in added] == [(False, "404")]
            with pytest.raises(RecipientError):
                await a.transport.subscribe_presence(JC)
            with pytest.raises(RecipientError):
                await a.transport.send_typing(JC, True)
            assert await control.messages(recipient=C) == []
            # registering brings the number back
            await control.register(C)
            assert (await a.transport.is_on_whatsapp([C]))[0].exists
            result = await a.transport.send(OutboundMessage(to=JC, content=TextContent(body="welcome back")))
            assert (await a.expect(Receipt, type="read")).message_ids == [result.message_id]


async def test_closed_world_only_registered_numbers_are_on_whatsapp(tmp_path):
    d, jd = "+15557770001", "15557770001@s.whatsapp.net"
    with trio.fail_after(10):
        async with sim_world(str(tmp_path), autopair=0, receipt_delay=0.02,
                             open_world=False) as (sim, factory, control, nursery):
            a, _ = await start_connected(nursery, factory.create(spec("a", A)))  # pairing registers A
            assert [x.exists for x in await a.transport.is_on_whatsapp([A, C])] == [True, False]
            with pytest.raises(RecipientError) as refused:
                await a.transport.send(OutboundMessage(to=JC, content=TextContent(body="nobody")))
            assert refused.value.reason == f"{JC} is not on WhatsApp"
            group = await a.transport.create_group("Closed", [C])
            assert {p.jid for p in group.participants} == {JA}  # left out, as WhatsApp does
            added = await a.transport.update_participants(group.jid, [C], "add")
            assert [(r.ok, r.error) for r in added] == [(False, "404")]
            await control.register(C)
            added = await a.transport.update_participants(group.jid, [C], "add")
            assert [(r.ok, r.error) for r in added] == [(True, None)]
            await a.transport.send(OutboundMessage(to=JC, content=TextContent(body="now you are")))
            # the world can be opened (and closed) while running; an unregistered number stays off
            await control.set_open_world(True)
            assert (await a.transport.is_on_whatsapp([d]))[0].exists
            await a.transport.send(OutboundMessage(to=jd, content=TextContent(body="open")))
            await control.unregister(d)
            assert not (await a.transport.is_on_whatsapp([d]))[0].exists
            await control.set_open_world(False)
            assert not (await a.transport.is_on_whatsapp(["+15557770005"]))[0].exists
            assert [x.exists for x in await a.transport.is_on_whatsapp([A, C])] == [True, True]


async def test_drop_one_session_then_resume_as_the_same_number(tmp_path):
    with trio.fail_after(10):
        async with sim_world(str(tmp_path)) as (sim, factory, control, nursery):
            transport = factory.create(spec("s1"))
            run = await start(nursery, transport)
            await run.expect(QRCode)
            await control.scan("s1", A)
            await run.expect(Connected)
            other = await start(nursery, factory.create(spec("s2")))
            await other.expect(QRCode)
            assert await control.drop("s1") == 1
            error = await run.ended()
            assert isinstance(error, ConnectFailed) and error.retryable
            assert not other.done.is_set()  # only that session dropped
            with pytest.raises(NotConnected):
                await transport.send(OutboundMessage(to=JA, content=TextContent(body="x")))
            again = await start(nursery, transport)  # the same object, as the actor does
            assert (await again.expect(Connected)).phone_number == A
            assert not any(isinstance(e, QRCode) for e in again.events)


async def test_messages_wait_for_a_disconnected_session(tmp_path):
    with trio.fail_after(10):
        async with sim_world(str(tmp_path), autopair=0, receipt_delay=0.02) as (sim, factory, control, nursery):
            a, _ = await start_connected(nursery, factory.create(spec("a", A)))
            b, _ = await start_connected(nursery, factory.create(spec("b", B)))
            await b.transport.disconnect()
            assert await b.ended() is None
            sent = [await a.transport.send(OutboundMessage(to=JB, content=TextContent(body=f"m{i}")))
                    for i in range(5)]
            await trio.sleep(0.1)
            assert not any(isinstance(e, Receipt) for e in a.events)  # nobody got them yet
            assert sim.statistics().backlog == 5
            b2 = await start(nursery, b.transport)
            await b2.expect(Connected)
            got = [(await b2.expect(MessageReceived)).message_id for _ in sent]
            assert got == [r.message_id for r in sent]
            assert (await a.expect(Receipt, type="delivered")).message_ids == [sent[0].message_id]


async def test_drop_the_whole_link_then_resume(tmp_path):
    with trio.fail_after(10):
        async with simulator() as sim, open_sim_control(sim.url) as control:
            async with open_sim_transport_factory(sim.url, data_dir=str(tmp_path), backoff_initial=0.02,
                                                  backoff_max=0.1) as factory, trio.open_nursery() as nursery:
                ta, tb = factory.create(spec("a")), factory.create(spec("b"))
                a, b = await start(nursery, ta), await start(nursery, tb)
                await a.expect(QRCode)
                await b.expect(QRCode)
                await control.scan("a", A)
                await control.scan("b", B)
                await a.expect(Connected)
                await b.expect(Connected)
                assert await control.drop() == 1  # every link
                assert isinstance(await a.ended(), ConnectFailed) and isinstance(await b.ended(), ConnectFailed)
                a, b = await start(nursery, ta), await start(nursery, tb)
                assert (await a.expect(Connected)).phone_number == A
                assert (await b.expect(Connected)).phone_number == B
                assert factory.statistics().connects == 2
                nursery.cancel_scope.cancel()
            # the gateway restarts: a new factory over the same data dir resumes both
            async with open_sim_transport_factory(sim.url, data_dir=str(tmp_path)) as factory, \
                    trio.open_nursery() as nursery:
                _, ca = await start_connected(nursery, factory.create(spec("a")))
                _, cb = await start_connected(nursery, factory.create(spec("b")))
                assert (ca.phone_number, cb.phone_number) == (A, B)
                nursery.cancel_scope.cancel()


async def test_simulator_restart_on_the_same_port_needs_no_rescan(tmp_path):
    port = free_port()
    with trio.fail_after(15):
        async with open_sim_transport_factory(f"ws://127.0.0.1:{port}", data_dir=str(tmp_path),
                                              backoff_initial=0.02, backoff_max=0.1) as factory, \
                trio.open_nursery() as nursery:
            ta, tb = factory.create(spec("a")), factory.create(spec("b"))
            async with simulator(port) as sim, open_sim_control(sim.url) as control:
                a, b = await start(nursery, ta), await start(nursery, tb)
                await a.expect(QRCode)
                await b.expect(QRCode)
                await control.scan("a", A)
                await control.scan("b", B)
                await a.expect(Connected)
                await b.expect(Connected)
            # the simulator is gone: runs fail, and fail again while it stays down
            assert isinstance(await a.ended(), ConnectFailed) and isinstance(await b.ended(), ConnectFailed)
            assert isinstance(await (await start(nursery, ta)).ended(), ConnectFailed)
            async with simulator(port) as sim2, open_sim_control(sim2.url) as control:
                assert (await control.stats()).accounts == 0  # a new process that knows nobody
                a, ca = await start_connected(nursery, ta)
                b, cb = await start_connected(nursery, tb)
                assert (ca.phone_number, cb.phone_number) == (A, B)
                assert not any(isinstance(e, QRCode) for e in a.events + b.events)
                result = await ta.send(OutboundMessage(to=JB, content=TextContent(body="after restart")))
                assert (await b.expect(MessageReceived)).message_id == result.message_id
                assert (await control.stats()).accounts == 2
            nursery.cancel_scope.cancel()


async def test_logout_from_the_phone_forgets_the_pairing(tmp_path):
    with trio.fail_after(10):
        async with sim_world(str(tmp_path)) as (sim, factory, control, nursery):
            transport = factory.create(spec("s1"))
            run = await start(nursery, transport)
            await run.expect(QRCode)
            await control.scan("s1", A)
            await run.expect(Connected)
            assert await control.logout("s1") == 1
            assert (await run.expect(LoggedOut)).reason
            assert await run.ended() is None  # run returns normally after LoggedOut
            assert not creds_file(tmp_path, "s1").exists()
            again = await start(nursery, transport)
            await again.expect(QRCode)  # a new pairing is needed


async def test_stale_credentials_of_a_logged_out_device_get_logged_out(tmp_path):
    with trio.fail_after(10):
        async with sim_world(str(tmp_path), autopair=0) as (sim, factory, control, nursery):
            transport = factory.create(spec("s1", A))
            run, _ = await start_connected(nursery, transport)
            saved = creds_file(tmp_path, "s1").read_bytes()
            await transport.disconnect()
            await run.ended()
            assert await control.logout(phone=A) == 1  # unlinked while offline
            other = SimTransportFactory(sim.url, data_dir=str(tmp_path))
            assert other.creds_path("s1").read_bytes() == saved
            again = await start(nursery, factory.create(spec("s1", A)))
            await again.expect(LoggedOut)
            assert await again.ended() is None and not creds_file(tmp_path, "s1").exists()


async def test_transport_logout_and_disconnect(tmp_path):
    with trio.fail_after(10):
        async with sim_world(str(tmp_path), autopair=0) as (sim, factory, control, nursery):
            transport = factory.create(spec("s1", A))
            run, _ = await start_connected(nursery, transport)
            await transport.logout()
            assert await run.ended() is None
            assert not creds_file(tmp_path, "s1").exists()
            assert sim.statistics().devices == 0
            await transport.disconnect()  # not running: nothing to do
            with pytest.raises(NotConnected):
                await transport.get_contacts()


async def test_error_rate_and_latency(tmp_path):
    with trio.fail_after(10):
        async with sim_world(str(tmp_path), autopair=0) as (sim, factory, control, nursery):
            a, _ = await start_connected(nursery, factory.create(spec("a", A)))
            await control.register(B)
            msg = OutboundMessage(to=JB, content=TextContent(body="x"))
            await control.set_error_rate(1.0)
            with pytest.raises(TransportError) as failed:
                await a.transport.send(msg)
            assert not isinstance(failed.value, RecipientError) and "simulated" in failed.value.reason
            await control.set_error_rate(0.5)
            outcomes = []
            for _ in range(40):
                try:
                    await a.transport.send(msg)
                    outcomes.append(True)
                except TransportError:
                    outcomes.append(False)
            assert 0 < sum(outcomes) < 40
            await control.set_error_rate(0)
            await a.transport.send(msg)
            stats = await control.stats()
            assert stats.send_failures == 1 + outcomes.count(False)
            assert (await control.record_counts()).total == 1 + sum(outcomes)
            await control.set_latency(0.2, session_id="a")
            started = trio.current_time()
            await a.transport.is_on_whatsapp([B])
            assert trio.current_time() - started >= 0.2
            await control.set_latency(0, session_id="a")
            started = trio.current_time()
            await a.transport.is_on_whatsapp([B])
            assert trio.current_time() - started < 0.2


async def test_record_counts_duplicates_and_the_network_deduplicates(tmp_path):
    with trio.fail_after(10):
        async with sim_world(str(tmp_path), autopair=0, receipt_delay=0.02) as (sim, factory, control, nursery):
            a, _ = await start_connected(nursery, factory.create(spec("a", A)))
            b, _ = await start_connected(nursery, factory.create(spec("b", B)))
            msg = OutboundMessage(to=JB, content=TextContent(body="once"), id_hint="3EB0FIXEDID0000000001")
            first, second = await a.transport.send(msg), await a.transport.send(msg)
            assert first == second and first.message_id == msg.id_hint
            await a.transport.send(OutboundMessage(to=JB, content=TextContent(body="other")))
            counts = await control.record_counts()
            assert (counts.total, counts.distinct, counts.duplicates) == (3, 2, 1)
            assert [e.duplicate for e in await control.messages()] == [False, True, False]
            assert [e.text for e in await control.messages(offset=1, limit=1)] == ["once"]
            texts = [(await b.expect(MessageReceived)).text for _ in range(2)]
            assert texts == ["once", "other"]  # delivered once
            await control.clear_record()
            assert (await control.record_counts()).total == 0


async def test_unreachable_simulator_and_closed_factory(tmp_path):
    with trio.fail_after(10):
        async with simulator() as sim:
            url = sim.url
        async with open_sim_transport_factory(url, data_dir=str(tmp_path)) as factory:
            async with trio.open_nursery() as nursery:
                run = await start(nursery, factory.create(spec("s1")))
                error = await run.ended()
                assert isinstance(error, ConnectFailed) and error.retryable
                assert "simulator" in error.reason
            stats = factory.statistics()
            assert not stats.connected and stats.last_error
        with pytest.raises(ConnectFailed) as closed:
            await factory.create(spec("s2")).run(trio.open_memory_channel(1)[0])
        assert not closed.value.retryable


async def test_closing_the_factory_ends_runs(tmp_path):
    with trio.fail_after(10):
        async with simulator(autopair=0) as sim, trio.open_nursery() as nursery:
            async with open_sim_transport_factory(sim.url, data_dir=str(tmp_path)) as factory:
                run, _ = await start_connected(nursery, factory.create(spec("s1", A)))
            error = await run.ended()
            assert isinstance(error, ConnectFailed) and not error.retryable


async def test_scale_500_sessions_through_one_factory(tmp_path):
    count = 500
    with trio.fail_after(30):
        async with sim_world(str(tmp_path), autopair=0) as (sim, factory, control, nursery):
            started = time.perf_counter()
            runs = [await start(nursery, factory.create(spec(f"s{i}"))) for i in range(count)]
            connected = [await run.expect(Connected) for run in runs]
            elapsed = time.perf_counter() - started
            assert len({c.phone_number for c in connected}) == count
            stats = await control.stats()
            assert (stats.links, stats.sessions_connected) == (1, count)
            assert factory.statistics().sessions == count
            print(f"\n{count} sessions connected through one link in {elapsed:.2f}s")
            assert elapsed < 10
            # and they all talk: each sends to the next
            with trio.fail_after(15):
                async with trio.open_nursery() as senders:
                    for i, run in enumerate(runs):
                        to = connected[(i + 1) % count].jid
                        senders.start_soon(run.transport.send, OutboundMessage(to=to, content=TextContent(body="x")))
                for run in runs:
                    await run.expect(MessageReceived)
            assert (await control.record_counts()).distinct == count


def test_creds_file_is_plain_json(tmp_path):
    factory = SimTransportFactory("ws://127.0.0.1:1", data_dir=str(tmp_path))
    from bench.simulator import Creds
    factory.store.save("a/b", Creds(phone=A, device_id="d", token="t"))
    path = factory.creds_path("a/b")
    assert path.parent == tmp_path / "sim" and path.name == "a%2Fb.json"
    assert msgspec.json.decode(path.read_bytes()) == {"phone": A, "device_id": "d", "token": "t"}
