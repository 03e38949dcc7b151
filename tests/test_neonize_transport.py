"""The neonize transport: lifecycle, callbacks, guards and operations over a fake client; then real Go.

The fake stands in for `neonize.client.NewClient`: its `connect()` runs
scripted Go callbacks on the calling thread until `stop()`, like the real one.
Each fake-client test uses its own RWLock. The real-Go tests connect offline
(fails within milliseconds) in this process, and run the many-session stress
script in a subprocess so a Go abort fails the test instead of killing pytest.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import types
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

pb = pytest.importorskip("neonize.proto.Neonize_pb2")

from neonize.events import (  # noqa: E402
    ChatPresenceEv, ClientOutdatedEv, ConnectedEv, ConnectFailureEv, DisconnectedEv, KeepAliveTimeoutEv, LoggedOutEv,
    PairStatusEv, PresenceEv, ReceiptEv, StreamReplacedEv, TemporaryBanEv,
)
from neonize.exc import NeonizeError, SendMessageError  # noqa: E402
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message  # noqa: E402
from neonize.utils.enum import ChatPresence, ChatPresenceMedia, MediaType, ParticipantChange, Presence  # noqa: E402

from actors import (  # noqa: E402
    ChatPresence as ChatPresenceEvent, ConnectFailed, Connected, Disconnected, GroupNotFound, LoggedOut, MediaContent,
    MessageReceived, NotConnected, OutboundMessage, PairingTimeout, Presence as PresenceEvent, QRCode, Receipt,
    RecipientError, SendResult, SessionSpec, TextContent, TransportError,
)
from actors.neonize import NeonizeTransport, NeonizeTransportFactory, RWLock  # noqa: E402
from actors.neonize import _transport as _neonize  # noqa: E402

from .test_neonize_build import png  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ME = "15550001111@s.whatsapp.net"


def jid(user: str, server: str = "s.whatsapp.net", device: int = 0) -> Any:
    return pb.JID(User=user, RawAgent=0, Device=device, Integrator=0, Server=server, IsEmpty=False)


def text_event(body: str, msg_id: str = "3EB0IN") -> Any:
    source = pb.MessageSource(Chat=jid("15552223333"), Sender=jid("15552223333"), IsFromMe=False, IsGroup=False)
    return pb.Message(Info=pb.MessageInfo(MessageSource=source, ID=msg_id, Pushname="Bea", Timestamp=1_700_000_000_500),
                      Message=Message(conversation=body))


class FakeEvents:
    def __init__(self) -> None:
        self.handlers: dict[type, Any] = {}
        self.on_qr: Any = None

    def __call__(self, event_type: type) -> Any:
        return lambda fn: self.handlers.__setitem__(event_type, fn)

    def qr(self, fn: Any) -> None:
        self.on_qr = fn


class FakeClient:
    """neonize's NewClient, minus Go: connect() runs the scripted callbacks until stop()."""

    def __init__(self, connect_error: str | None = None) -> None:
        self.event = FakeEvents()
        self.connect_error = connect_error
        self.dialing: threading.Event | None = None  # when set up, connect() waits on it (a dial in flight)
        self.script: queue.Queue[Any] = queue.Queue()
        self.stopped = threading.Event()
        self.connects = self.stops = 0
        self.proxies: list[Any] = []  # the proxy_settings each connect() got
        self.me = pb.Device(JID=jid("15550001111", device=7), PushName="Gateway")
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.fail: dict[str, BaseException] = {}
        self.contact = types.SimpleNamespace(get_all_contacts=lambda: self._call("get_all_contacts", ()))

    # -- driving Go's side
    def connect(self, proxy_settings: Any = None) -> None:
        self.connects += 1
        self.proxies.append(proxy_settings)
        self.stopped.clear()
        if self.dialing is not None:
            self.dialing.wait(5)
        if self.connect_error:
            raise NeonizeError(self.connect_error)
        while not self.stopped.is_set():
            try:
                step = self.script.get(timeout=0.005)
            except queue.Empty:
                continue
            step()

    def stop(self) -> None:
        self.stops += 1
        self.stopped.set()

    def qr(self, code: str) -> None:
        def step() -> None:
            self.calls.append(("qr", (code,)))
            self.event.on_qr(self, code.encode())
        self.script.put(step)

    def emit(self, ev: Any) -> None:
        self.script.put(lambda: self.event.handlers[type(ev)](self, ev))

    def connected(self) -> None:
        self.emit(ConnectedEv(status=True))

    # -- the Go calls the transport makes
    def _call(self, name: str, args: tuple[Any, ...]) -> Any:
        self.calls.append((name, args))
        if name in self.fail:
            raise self.fail[name]
        return RESULTS.get(name)

    def get_me(self) -> Any:
        return self.me

    def __getattr__(self, name: str) -> Any:
        if name in RESULTS:
            return lambda *args: self._call(name, args)
        raise AttributeError(name)


RESULTS: dict[str, Any] = {
    "send_message": pb.SendResponse(ID="3EB0SENT", Timestamp=1_700_000_000),
    "upload": pb.UploadResponse(url="https://mmg/x", DirectPath="/x", MediaKey=b"k" * 32, FileEncSHA256=b"e" * 32,
                                FileSHA256=b"s" * 32, FileLength=10),
    "is_on_whatsapp": [pb.IsOnWhatsAppResponse(Query="+15552223333", JID=jid("15552223333"), IsIn=True)],
    "get_all_contacts": [pb.Contact(JID=jid("15552223333"), Info=pb.ContactInfo(FullName="Bea", PushName="bea"))],
    "get_joined_groups": [pb.GroupInfo(JID=jid("120363001", "g.us"), GroupName=pb.GroupName(Name="Team"))],
    "create_group": pb.GroupInfo(JID=jid("120363002", "g.us"), GroupName=pb.GroupName(Name="New")),
    "get_group_info": pb.GroupInfo(JID=jid("120363001", "g.us"), GroupName=pb.GroupName(Name="Team")),
    "update_group_participants": [pb.GroupParticipant(JID=jid("15552223333"), Error=409)],
    "leave_group": None, "send_presence": None, "subscribe_presence": None, "send_chat_presence": None,
    "logout": None, "PairPhone": "ABCD1234",
    "get_lid_from_pn": jid("555000111", "lid"),  # the store's LID map, read for each phone contact
}


def make(fake: FakeClient, **kw: Any) -> NeonizeTransport:
    spec = SessionSpec(session_id=f"fake-{uuid.uuid4().hex[:8]}")
    kw.setdefault("stop_timeout", 5.0)
    return NeonizeTransport(spec, client=fake, lock=RWLock(), **kw)


class Runner:
    """Runs `transport.run` and keeps how it ended."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: BaseException | None = None

    async def __call__(self, t: NeonizeTransport, send: Any, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await t.run(send, task_status=task_status)
        except Exception as exc:
            self.error = exc
        finally:
            self.done.set()


async def connected_transport(nursery: trio.Nursery, fake: FakeClient, **kw: Any):  # type: ignore[no-untyped-def]
    t = make(fake, **kw)
    send, recv = trio.open_memory_channel[Any](16)
    runner = Runner()
    fake.connected()
    await nursery.start(runner, t, send)
    assert await recv.receive() == Connected(jid=ME, phone_number="+15550001111", push_name="Gateway")
    return t, recv, runner


# -- lifecycle and events ----------------------------------------------------------

async def test_pairing_flow_events_then_disconnect():
    with trio.fail_after(10):
        fake = FakeClient()
        t = make(fake)
        send, recv = trio.open_memory_channel[Any](16)
        fake.qr("2@first")
        fake.qr("2@second")
        fake.emit(PairStatusEv(ID=jid("15550001111", device=7), Status=PairStatusEv.SUCCESS))
        fake.connected()
        fake.emit(text_event("hello"))
        fake.emit(ReceiptEv(MessageSource=pb.MessageSource(Chat=jid("15552223333"), Sender=jid("15552223333")),
                            MessageIDs=["3EB0SENT"], Timestamp=1_700_000_001, Type=ReceiptEv.READ))
        fake.emit(PresenceEv(From=jid("15552223333"), Unavailable=False, LastSeen=0))
        fake.emit(ChatPresenceEv(MessageSource=pb.MessageSource(Chat=jid("15552223333"), Sender=jid("15552223333")),
                                 State=ChatPresenceEv.COMPOSING, Media=ChatPresenceEv.TEXT))
        fake.emit(DisconnectedEv(status=True))
        runner = Runner()
        async with trio.open_nursery() as nursery:
            await nursery.start(runner, t, send)
            got = [await recv.receive() for _ in range(8)]
            await t.disconnect()
            await runner.done.wait()
        assert got[:3] == [QRCode(code="2@first"), QRCode(code="2@second"),
                           Connected(jid=ME, phone_number="+15550001111", push_name="Gateway")]
        assert isinstance(got[3], MessageReceived)
        assert (got[3].text, got[3].timestamp_ms) == ("hello", 1_700_000_000_500)
        assert got[4] == Receipt(message_ids=["3EB0SENT"], chat="15552223333@s.whatsapp.net",
                                 sender="15552223333@s.whatsapp.net", type="read", timestamp_ms=1_700_000_001_000)
        assert got[5] == PresenceEvent(jid="15552223333@s.whatsapp.net", available=True)
        assert got[6] == ChatPresenceEvent(chat="15552223333@s.whatsapp.net", sender="15552223333@s.whatsapp.net",
                                           state="composing")
        assert isinstance(got[7], Disconnected)
        assert runner.error is None and (fake.connects, fake.stops) == (1, 1)


async def test_a_full_channel_slows_the_go_thread_without_losing_events():
    with trio.fail_after(10):
        fake = FakeClient()
        t = make(fake)
        send, recv = trio.open_memory_channel[Any](0)  # every event waits for the reader
        fake.connected()
        for i in range(20):
            fake.emit(text_event(f"m{i}", msg_id=f"ID{i}"))
        runner = Runner()
        async with trio.open_nursery() as nursery:
            await nursery.start(runner, t, send)
            assert isinstance(await recv.receive(), Connected)
            await trio.sleep(0.05)
            assert fake.script.qsize() >= 18  # the callback thread is parked on the full channel
            got = [(await recv.receive()).message_id for _ in range(20)]
            await t.disconnect()
        assert got == [f"ID{i}" for i in range(20)]


async def test_logged_out_is_emitted_and_run_returns():
    with trio.fail_after(10):
        fake = FakeClient()
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            fake.emit(LoggedOutEv(OnConnect=False, Reason=pb.LOGGED_OUT))
            assert await recv.receive() == LoggedOut(reason="logged_out")
            await runner.done.wait()
        assert runner.error is None and fake.stops == 1
        with pytest.raises(NotConnected):
            await t.send_presence(True)


@pytest.mark.parametrize(("event", "retryable", "text"), [
    (StreamReplacedEv(), False, "stream replaced"),
    (TemporaryBanEv(Code=TemporaryBanEv.BLOCKED_BY_USERS, Expire=600), False, "blocked_by_users"),
    (ClientOutdatedEv(), False, "outdated"),
    (ConnectFailureEv(Reason=pb.SERVICE_UNAVAILABLE, Message="try later"), True, "service_unavailable"),
])
async def test_terminal_events_end_run_with_connect_failed(event, retryable, text):
    with trio.fail_after(10):
        fake = FakeClient()
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            fake.emit(event)
            await runner.done.wait()
        assert isinstance(runner.error, ConnectFailed)
        assert runner.error.retryable is retryable and text in runner.error.reason
        assert fake.stops == 1


async def test_failed_connects_reuse_the_client_and_stop_it_each_time():
    with trio.fail_after(10):
        text = 'failed to dial whatsapp web websocket: lookup web.whatsapp.com: no such host'
        fake = FakeClient(connect_error=text)
        t = make(fake)
        send, _recv = trio.open_memory_channel[Any](1)
        for attempt in (1, 2):
            with pytest.raises(ConnectFailed) as exc:
                await t.run(send)
            assert exc.value.reason == text and exc.value.retryable
            assert (fake.connects, fake.stops) == (attempt, attempt)
        assert t.client is fake


async def test_disconnect_during_a_dial_that_then_fails_ends_run_normally():
    # The stop waits for the dial to end (Go's Stop would wait for it holding the exclusive lock),
    # and run() honours the disconnect rather than reporting the failure for a retry.
    with trio.fail_after(10):
        fake = FakeClient(connect_error="failed to dial whatsapp web websocket: EOF")
        fake.dialing = threading.Event()
        t = make(fake)
        send, _recv = trio.open_memory_channel[Any](1)
        runner = Runner()
        async with trio.open_nursery() as nursery:
            await nursery.start(runner, t, send)
            nursery.start_soon(t.disconnect)
            await trio.sleep(0.05)
            assert fake.stops == 0 and not runner.done.is_set()
            fake.dialing.set()
            await runner.done.wait()
        assert runner.error is None and (fake.connects, fake.stops) == (1, 1)


async def test_run_cannot_overlap_itself():
    with trio.fail_after(10):
        fake = FakeClient()
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            send, _ = trio.open_memory_channel[Any](1)
            with pytest.raises(RuntimeError, match="already active"):
                await t.run(send)
            await t.disconnect()


async def test_pairing_deadline_on_the_mock_clock(mock_clock):
    with trio.fail_after(10_000):  # mock seconds; pytest-timeout bounds real time
        fake = FakeClient()
        t = make(fake, pairing_deadline=120.0)
        send, recv = trio.open_memory_channel[Any](4)
        fake.qr("2@unscanned")
        runner = Runner()
        async with trio.open_nursery() as nursery:
            await nursery.start(runner, t, send)
            assert await recv.receive() == QRCode(code="2@unscanned")
            mock_clock.jump(119)
            await trio.testing.wait_all_tasks_blocked()
            assert not runner.done.is_set()
            mock_clock.jump(2)
            await runner.done.wait()
        assert isinstance(runner.error, PairingTimeout) and not runner.error.retryable
        assert fake.stops == 1 and trio.current_time() >= 120


async def test_a_session_paired_in_time_has_no_deadline(mock_clock):
    with trio.fail_after(10_000):
        fake = FakeClient()
        t = make(fake, pairing_deadline=120.0)
        send, recv = trio.open_memory_channel[Any](4)
        fake.qr("2@scanned")
        runner = Runner()
        async with trio.open_nursery() as nursery:
            await nursery.start(runner, t, send)
            assert await recv.receive() == QRCode(code="2@scanned")
            mock_clock.jump(60)
            fake.connected()
            assert isinstance(await recv.receive(), Connected)
            mock_clock.jump(600)
            await trio.testing.wait_all_tasks_blocked()
            assert not runner.done.is_set()
            await t.disconnect()
            await runner.done.wait()
        assert runner.error is None


async def test_pair_phone_waits_for_the_first_qr():
    with trio.fail_after(10):
        fake = FakeClient()
        t = make(fake)
        send, recv = trio.open_memory_channel[Any](4)
        with pytest.raises(NotConnected):
            await t.pair_phone("+15551234567")  # no run() yet
        runner = Runner()
        codes: list[str] = []
        async with trio.open_nursery() as nursery:
            await nursery.start(runner, t, send)

            async def ask() -> None:
                codes.append(await t.pair_phone("+15551234567"))
            nursery.start_soon(ask)
            await trio.sleep(0.05)
            assert ("PairPhone", ("15551234567", True)) not in fake.calls
            fake.qr("2@code")
            assert await recv.receive() == QRCode(code="2@code")
            while not codes:
                await trio.sleep(0.005)
            await t.disconnect()
        assert codes == ["ABCD1234"]
        names = [name for name, _ in fake.calls]
        assert names.index("qr") < names.index("PairPhone")
        assert ("PairPhone", ("15551234567", True)) in fake.calls


# -- guards and operations ------------------------------------------------------------

async def operations(t: NeonizeTransport) -> list[Any]:
    """Every operation once; returns what each raised or returned."""
    calls = [
        lambda: t.send(OutboundMessage(to="15552223333@s.whatsapp.net", content=TextContent(body="hi"))),
        lambda: t.is_on_whatsapp(["+15552223333"]),
        t.get_contacts, t.list_groups,
        lambda: t.create_group("New", ["15552223333@s.whatsapp.net"]),
        lambda: t.group_info("120363001@g.us"),
        lambda: t.update_participants("120363001@g.us", ["15552223333@s.whatsapp.net"], "add"),
        lambda: t.leave_group("120363001@g.us"),
        lambda: t.send_presence(True), lambda: t.subscribe_presence("15552223333@s.whatsapp.net"),
        lambda: t.send_typing("15552223333@s.whatsapp.net", True), t.logout,
    ]
    out = []
    for call in calls:
        try:
            out.append(await call())
        except Exception as exc:
            out.append(exc)
    return out


async def test_no_call_reaches_go_unless_connected():
    with trio.fail_after(10):
        fake = FakeClient()
        t = make(fake)
        assert all(isinstance(r, NotConnected) for r in await operations(t))  # never ran
        send, recv = trio.open_memory_channel[Any](4)
        fake.qr("2@pairing")
        runner = Runner()
        async with trio.open_nursery() as nursery:
            await nursery.start(runner, t, send)
            await recv.receive()
            assert all(isinstance(r, NotConnected) for r in await operations(t))  # connecting, unpaired
            await t.disconnect()
        assert all(isinstance(r, NotConnected) for r in await operations(t))  # stopped
        assert [name for name, _ in fake.calls] == ["qr"]


async def test_operations_reach_the_client_with_neonize_arguments():
    with trio.fail_after(10):
        fake = FakeClient()
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            results = await operations(t)
            await runner.done.wait()  # logout (the last operation) stops the client
        sent, on_wa, contacts, groups, created, info, changed = results[:7]
        assert sent == SendResult(message_id="3EB0SENT", timestamp_ms=1_700_000_000_000)
        assert [(o.phone_number, o.exists) for o in on_wa] == [("+15552223333", True)]
        assert contacts[0].full_name == "Bea" and groups[0].name == "Team" and created.jid == "120363002@g.us"
        assert contacts[0].lid == "555000111@lid"
        assert info.name == "Team" and [(r.ok, r.error) for r in changed] == [(False, "409")]
        assert results[7:] == [None] * 5
        by_name = dict(fake.calls)
        to, msg = by_name["send_message"]
        assert (to.User, to.Server, msg.conversation) == ("15552223333", "s.whatsapp.net", "hi")
        assert by_name["is_on_whatsapp"] == ("+15552223333",)
        group, jids, action = by_name["update_group_participants"]
        assert group.Server == "g.us" and jids[0].User == "15552223333" and action is ParticipantChange.ADD
        assert by_name["send_presence"] == (Presence.AVAILABLE,)
        chat, state, media = by_name["send_chat_presence"]
        assert state is ChatPresence.CHAT_PRESENCE_COMPOSING and media is ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT
        assert "logout" in by_name and fake.stops == 1 and runner.error is None


async def test_media_is_uploaded_through_the_client():
    with trio.fail_after(10):
        fake = FakeClient()
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            await t.send(OutboundMessage(to="120363001@g.us", view_once=True,
                                         content=MediaContent(kind="image", data=png(), mimetype="image/png")))
            await t.disconnect()
        (_, (data, media_type)), (_, (to, msg)) = [c for c in fake.calls if c[0] in ("upload", "send_message")]
        assert media_type is MediaType.MediaImage and to.Server == "g.us"
        assert msg.imageMessage.URL == "https://mmg/x" and msg.imageMessage.viewOnce


@pytest.mark.parametrize(("go_text", "cls"), [
    ("info query returned status 404: item-not-found", RecipientError),
    ("websocket not connected", NotConnected),
    ("failed to get group info: group not found", GroupNotFound),
    ("failed to get group info: you're not participating in that group", GroupNotFound),
])
async def test_go_errors_are_mapped(go_text, cls):
    with trio.fail_after(10):
        fake = FakeClient()
        fake.fail["send_message"] = SendMessageError(go_text)
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            with pytest.raises(cls) as exc:
                await t.send(OutboundMessage(to="15552223333@s.whatsapp.net", content=TextContent(body="x")))
            assert exc.value.reason == go_text
            await t.disconnect()


async def test_bad_addresses_are_refused_before_go():
    with trio.fail_after(10):
        fake = FakeClient()
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            with pytest.raises(RecipientError):
                await t.group_info("15552223333@s.whatsapp.net")
            with pytest.raises(RecipientError):
                await t.send(OutboundMessage(to="nobody", content=TextContent(body="x")))
            with pytest.raises(RecipientError):
                await t.is_on_whatsapp(["555-1234"])
            await t.disconnect()
        assert [name for name, _ in fake.calls] == []


async def test_keepalive_events_are_only_logged(caplog):
    caplog.set_level(logging.INFO, logger="actors._neonize")
    with trio.fail_after(10):
        fake = FakeClient()
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            fake.emit(KeepAliveTimeoutEv(ErrorCount=1, LastSuccess=0))
            fake.emit(text_event("after"))
            assert (await recv.receive()).text == "after"
            await t.disconnect()
        assert "keepalive KeepAliveTimeout" in caplog.text and "callback failed" not in caplog.text


async def test_callback_errors_are_logged_not_raised(caplog):
    with trio.fail_after(5):
        t = make(FakeClient())
        t._attempt = _neonize.Attempt(trio.lowlevel.current_trio_token(), trio.open_memory_channel[Any](1)[0], 0.0)
        t._on_message(None, object())  # not a MessageEv: conversion fails inside the callback
        assert "callback failed" in caplog.text


# -- the factory and real Go -----------------------------------------------------------

def unique_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def test_factory_makes_one_transport_and_client_per_session(tmp_path):
    with trio.fail_after(10):
        factory = NeonizeTransportFactory(data_dir=str(tmp_path))
        spec = SessionSpec(session_id=unique_id("fac"))
        t = factory.create(spec)
        assert factory.create(spec) is t and t.client is _neonize._clients[spec.session_id]
        assert t.client.name == str(tmp_path / "neonize" / f"{spec.session_id}.sqlite3")
        with pytest.raises(ValueError):
            factory.create(SessionSpec(session_id="../escape"))
        pg = NeonizeTransportFactory(data_dir=str(tmp_path), store_name=lambda s: "postgresql://db/wa")
        with pytest.raises(ValueError, match="PostgreSQL"):
            pg.create(SessionSpec(session_id=unique_id("pg")))
        await factory.aclose()
        with pytest.raises(RuntimeError):
            factory.create(spec)
        again = NeonizeTransportFactory(data_dir=str(tmp_path)).create(spec)
        assert again.client is t.client  # a new factory in the same process reuses the Go client


async def test_offline_connect_fails_with_go_text_and_the_rerun_reuses_the_client(tmp_path):
    with trio.fail_after(60):  # a dial that hits a DNS retry takes 5 s
        factory = NeonizeTransportFactory(data_dir=str(tmp_path))
        t = factory.create(SessionSpec(session_id=unique_id("offline")))
        client = t.client
        send, recv = trio.open_memory_channel[Any](4)
        for _ in range(2):
            runner = Runner()
            async with trio.open_nursery() as nursery:
                await nursery.start(runner, t, send)
                with trio.move_on_after(10):
                    await runner.done.wait()
                if not runner.done.is_set():  # WhatsApp reachable after all: nothing offline to test
                    await t.disconnect()
                    pytest.skip("web.whatsapp.com is reachable from here")
            assert isinstance(runner.error, ConnectFailed) and runner.error.retryable
            assert runner.error.reason.startswith("failed to dial whatsapp web websocket")
            assert t.client is client and _neonize._clients[t.session_id] is client
        with pytest.raises(NotConnected):
            await t.get_contacts()
        assert Path(client.name).exists()
        await factory.aclose()


@pytest.mark.slow
async def test_many_sessions_connecting_and_stopping_at_once_do_not_abort(tmp_path):
    sessions, rounds = 50, 8  # without the lock this aborts in most runs (tests/neonize_stress.py --no-lock)
    with trio.fail_after(100):
        done = await trio.run_process(
            [sys.executable, str(REPO / "tests" / "neonize_stress.py"), str(tmp_path),
             "--sessions", str(sessions), "--rounds", str(rounds)],
            capture_stdout=True, capture_stderr=True, check=False, cwd=str(REPO))
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, stderr[-3000:]  # a Go abort ("concurrent map writes") exits 134
    counts = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert counts["connect_failed"] + counts["returned"] == sessions * rounds
    assert counts["not_connected"] == sessions * rounds


# -- chat presence and read receipts ----------------------------------------------------

@pytest.mark.parametrize(("state", "go_state", "media"), [
    ("composing", ChatPresence.CHAT_PRESENCE_COMPOSING, ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT),
    ("recording", ChatPresence.CHAT_PRESENCE_COMPOSING, ChatPresenceMedia.CHAT_PRESENCE_MEDIA_AUDIO),
    ("paused", ChatPresence.CHAT_PRESENCE_PAUSED, ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT),
])
async def test_chat_states_are_built_as_whatsmeow_wants(state, go_state, media):
    with trio.fail_after(10):
        fake = FakeClient()
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            await t.send_chat_presence("120363001@g.us", state)
            await t.disconnect()
        [(chat, sent_state, sent_media)] = [args for name, args in fake.calls if name == "send_chat_presence"]
        assert (chat.User, chat.Server) == ("120363001", "g.us")
        assert sent_state is go_state and sent_media is media


def _recording_mark_read(fake: FakeClient, error: BaseException | None = None) -> None:
    def mark_read(*message_ids: str, **kw: Any) -> None:
        fake.calls.append(("mark_read", (message_ids, kw)))
        if error is not None:
            raise error
    fake.mark_read = mark_read  # type: ignore[attr-defined]  # neonize's keyword-only signature


async def test_mark_read_sends_a_read_receipt_for_the_author():
    from neonize.utils.enum import ReceiptType

    with trio.fail_after(10):
        fake = FakeClient()
        _recording_mark_read(fake)
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            await t.mark_read("120363001@g.us", ["3EB0A", "3EB0B"], "15552223333@s.whatsapp.net")
            await t.mark_read("15552223333@s.whatsapp.net", [], "15552223333@s.whatsapp.net")  # nothing to send
            await t.disconnect()
        [(ids, kw)] = [args for name, args in fake.calls if name == "mark_read"]
        assert ids == ("3EB0A", "3EB0B") and kw["receipt"] is ReceiptType.READ
        assert (kw["chat"].User, kw["chat"].Server) == ("120363001", "g.us")
        assert (kw["sender"].User, kw["sender"].Server) == ("15552223333", "s.whatsapp.net")


@pytest.mark.parametrize(("go_text", "cls"), [
    ("websocket not connected", NotConnected),
    ("info query returned status 404: item-not-found", RecipientError),
    ("failed to send receipt: timed out", TransportError),
])
async def test_mark_read_and_chat_presence_errors_are_mapped(go_text, cls):
    from neonize.exc import MarkReadError, SendPresenceError

    with trio.fail_after(10):
        fake = FakeClient()
        _recording_mark_read(fake, MarkReadError(go_text))
        fake.fail["send_chat_presence"] = SendPresenceError(go_text)
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            with pytest.raises(cls) as exc:
                await t.mark_read("15552223333@s.whatsapp.net", ["3EB0A"], "15552223333@s.whatsapp.net")
            assert exc.value.reason == go_text
            with pytest.raises(cls):
                await t.send_chat_presence("15552223333@s.whatsapp.net", "recording")
            await t.disconnect()


async def test_mark_read_and_chat_presence_never_reach_go_unconnected():
    with trio.fail_after(10):
        fake = FakeClient()
        _recording_mark_read(fake)
        t = make(fake)
        with pytest.raises(NotConnected):
            await t.mark_read("15552223333@s.whatsapp.net", ["3EB0A"], "15552223333@s.whatsapp.net")
        with pytest.raises(NotConnected):
            await t.send_chat_presence("15552223333@s.whatsapp.net", "composing")
        assert fake.calls == []


# -- received media -----------------------------------------------------------------------------

def _image_received() -> MessageReceived:
    img = Message(imageMessage=pb_e2e().ImageMessage(mimetype="image/jpeg", directPath="/v/t62/x",
                                                      mediaKey=b"k" * 32, fileLength=4))
    return MessageReceived(message_id="3EB0IMG", chat="15552223333@s.whatsapp.net",
                           sender="15552223333@s.whatsapp.net", timestamp_ms=1, type="image",
                           media_ref=img.SerializeToString())


def pb_e2e() -> Any:
    from neonize.proto.waE2E import WAWebProtobufsE2E_pb2
    return WAWebProtobufsE2E_pb2


async def test_download_media_calls_download_any_with_the_received_message():
    with trio.fail_after(10):
        fake = FakeClient()
        got: list[Any] = []
        fake.download_any = lambda message: (got.append(message), b"\xff\xd8jpeg")[1]
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            assert await t.download_media(_image_received()) == b"\xff\xd8jpeg"
            await t.disconnect()
        [message] = got
        assert message.imageMessage.directPath == "/v/t62/x" and message.imageMessage.mediaKey == b"k" * 32


@pytest.mark.parametrize(("go_text", "cls"), [
    ("download failed with status code 410", TransportError),
    ("failed to download media: invalid media hmac", TransportError),
    ("client is nil", NotConnected),
])
async def test_download_media_errors_are_mapped(go_text, cls):
    from neonize.exc import DownloadError

    def fail(message: Any) -> bytes:
        raise DownloadError(go_text)

    with trio.fail_after(10):
        fake = FakeClient()
        fake.download_any = fail
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            with pytest.raises(cls) as exc:
                await t.download_media(_image_received())
            assert exc.value.reason == go_text and type(exc.value) is cls
            with pytest.raises(TransportError, match="no media"):  # a message without media never reaches Go
                await t.download_media(msgspec_replace(_image_received(), media_ref=None))
            await t.disconnect()


async def test_download_media_never_reaches_go_unconnected():
    fake = FakeClient()
    fake.download_any = lambda message: pytest.fail("reached Go")
    with pytest.raises(NotConnected):
        await make(fake).download_media(_image_received())


def msgspec_replace(record: Any, **changes: Any) -> Any:
    import msgspec
    return msgspec.structs.replace(record, **changes)
