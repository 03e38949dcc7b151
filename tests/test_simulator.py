"""The simulator itself: the network model without sockets, its timer task, control errors, the CLI process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import trio

from actors import ConnectFailed, Connected, LoggedOut, MessageReceived, OutboundMessage, QRCode, TextContent
from actors.sim import Attach, Creds, End, Paired, Push, SendOp, SimLink, open_sim_transport_factory
from bench.simulator import Network, SimControlError, open_sim_control
from bench.simulator import _network
from bench.simulator._model import OpError
from bench.simulator._server import Scheduler, parse_bind

from ._procs import free_port
from ._sim_fixtures import simulator, spec, start, start_connected

A, B = "+15550000001", "+15550000002"
JA, JB = "15550000001@s.whatsapp.net", "15550000002@s.whatsapp.net"


class FakeScheduler:
    def __init__(self) -> None:
        self.timers: list[tuple[float, object, tuple]] = []

    def call_later(self, delay, fn, *args) -> None:
        self.timers.append((delay, fn, args))

    def fire(self) -> None:
        """Run the timers set so far (not the ones they set)."""
        timers, self.timers = self.timers, []
        for _, fn, args in sorted(timers, key=lambda t: t[0]):
            fn(*args)


class FakeLink:
    def __init__(self, link_id: int = 1) -> None:
        self.id = link_id
        self.slots = {}
        self.frames = []
        self.closed = False

    def enqueue(self, frame) -> None:
        self.frames.append(frame)

    def close(self) -> None:
        self.closed = True

    def take(self) -> list:
        frames, self.frames = self.frames, []
        return frames


def events(frames, kind=None):
    return [f.event for f in frames if isinstance(f, Push) and (kind is None or isinstance(f.event, kind))]


def text(to: str, body: str) -> SendOp:
    return SendOp(message=OutboundMessage(to=to, content=TextContent(body=body)))


def paired(net: Network, link: FakeLink, session: str, phone: str) -> Creds:
    net.attach(link, Attach(session=session, phone=phone))
    net.pair(link.slots[session], None)
    [creds] = [f.creds for f in link.take() if isinstance(f, Paired)]
    return creds


async def test_credit_window_and_at_least_once_redelivery():
    net = Network(FakeScheduler(), receipt_delay=0)
    link = FakeLink()
    net.link_opened(link, window=3)
    creds = paired(net, link, "s", B)
    phone = net.account(A)
    ids = [net.send(phone, text(JB, f"m{i}"), session_id=None)[0] for i in range(5)]
    # window 3: Connected (taken by `paired`, not acknowledged) and two messages are in flight
    assert [e.message_id for e in events(link.take(), MessageReceived)] == ids[:2]
    net.ack(link, "s", 2)  # Connected and m0 consumed
    assert [e.message_id for e in events(link.take(), MessageReceived)] == ids[2:4]
    net.detach(link, "s")  # m1, m2, m3 were never acknowledged
    assert net.statistics().backlog == 4
    net.attach(link, Attach(session="s", creds=creds))
    again = link.take()
    assert isinstance(events(again)[0], Connected)  # a fresh Connected, the old one is not replayed
    assert [e.message_id for e in events(again, MessageReceived)] == ids[1:3]
    net.ack(link, "s", 3)
    assert [e.message_id for e in events(link.take(), MessageReceived)] == ids[3:5]


async def test_receipts_go_out_once_per_recipient_even_with_two_devices():
    sched = FakeScheduler()
    net = Network(sched, receipt_delay=0.1)
    link = FakeLink()
    net.link_opened(link, window=100)
    paired(net, link, "b1", B)
    paired(net, link, "b2", B)  # a second device of the same account
    sender_creds = paired(net, link, "a", A)
    link.take()
    sched.timers.clear()  # stale QR rotations
    mid, _ = net.send(net.accounts[A], text(JB, "hi"), session_id="a")
    delivered = events(link.take(), MessageReceived)
    assert len(delivered) == 2 and {f.message_id for f in delivered} == {mid}
    assert [t[0] for t in sched.timers] == [0.1, 0.2]  # delivered, then read: once
    sched.fire()
    receipts = [(f.session, f.event.type) for f in link.take() if isinstance(f, Push)]
    assert receipts == [("a", "delivered"), ("a", "read")]
    assert sender_creds.phone == A


async def test_stale_pairing_timers_do_nothing_and_stream_replaced():
    sched = FakeScheduler()
    net = Network(sched, autopair=1.0, qr_interval=20)
    link = FakeLink()
    net.link_opened(link, window=10)
    net.attach(link, Attach(session="s", phone=A))
    assert len(events(link.take(), QRCode)) == 1
    creds = paired(net, link, "s", A)  # scanned before autopair fired
    sched.fire()  # the QR rotation and autopair timers are stale now
    assert events(link.take(), QRCode) == []
    assert len(net.devices) == 1
    other = FakeLink(2)
    net.link_opened(other, window=10)
    net.attach(other, Attach(session="s", creds=creds))  # the same device from another process
    [end] = [f for f in link.take() if isinstance(f, End)]
    assert (end.kind, end.reason) == ("dropped", "stream replaced")
    assert "s" not in link.slots and other.slots["s"].device is not None


async def test_backlog_is_bounded(monkeypatch):
    monkeypatch.setattr(_network, "MAX_BACKLOG", 3)
    net = Network(FakeScheduler())
    link = FakeLink()
    net.link_opened(link, window=10)
    paired(net, link, "s", B)
    net.detach(link, "s")
    for i in range(5):
        net.send(net.account(A), text(JB, f"m{i}"), session_id=None)
    stats = net.statistics()
    assert (stats.backlog, stats.backlog_dropped, stats.messages_routed) == (3, 2, 5)


async def test_link_closed_drops_every_slot_and_drop_all_closes_links():
    net = Network(FakeScheduler())
    links = [FakeLink(1), FakeLink(2)]
    for link in links:
        net.link_opened(link, window=10)
        paired(net, link, "s", A if link.id == 1 else B)
    assert net.drop(None) == 2 and all(link.closed for link in links)
    net.link_closed(links[0])
    stats = net.statistics()
    assert (stats.links, stats.sessions_attached, stats.devices) == (1, 1, 2)


async def test_open_world_by_default_closed_on_request_and_unregister():
    for open_world in (True, False):
        net = Network(FakeScheduler(), receipt_delay=0, open_world=open_world)
        sender = net.account(A)
        if open_world:
            net.send(sender, text(JB, "hi"), session_id=None)
            assert B in net.accounts and net.on_whatsapp(B).exists
        else:
            with pytest.raises(OpError) as refused:
                net.send(sender, text(JB, "hi"), session_id=None)
            assert (refused.value.kind, refused.value.message) == ("recipient", f"{JB} is not on WhatsApp")
            assert B not in net.accounts and not net.on_whatsapp(B).exists
    net = Network(FakeScheduler())
    link = FakeLink()
    net.link_opened(link, window=10)
    paired(net, link, "b", B)
    link.take()
    assert net.unregister(B) == 1  # its one device is logged out
    assert [type(f.event) for f in link.take() if isinstance(f, Push)] == [LoggedOut]
    assert not net.on_whatsapp(B).exists and B not in net.accounts and not net.devices
    with pytest.raises(OpError):
        net.send(net.account(A), text(JB, "hi"), session_id=None)
    net.account(B)  # registering (or pairing) puts it back
    net.send(net.account(A), text(JB, "hi"), session_id=None)


async def test_scheduler_runs_timers_in_order_on_the_mock_clock(autojump_clock):
    scheduler = Scheduler()
    fired: list[tuple[str, float]] = []

    def note(name: str) -> None:
        fired.append((name, trio.current_time()))
        if name == "b":
            scheduler.call_later(0.5, note, "from-b")

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            t0 = trio.current_time()
            scheduler.call_later(5, note, "c")
            scheduler.call_later(1, note, "a")
            await trio.sleep(0.1)
            scheduler.call_later(1.9, note, "b")  # due at 2.0: earlier than the task's current deadline
            await trio.sleep(10)
            nursery.cancel_scope.cancel()
    assert [(name, round(t - t0, 3)) for name, t in fired] == [("a", 1.0), ("b", 2.0), ("from-b", 2.5), ("c", 5.0)]


async def test_link_backoff_is_capped_with_jitter():
    link = SimLink("ws://127.0.0.1:1", window=8, backoff_initial=0.1, backoff_max=2.0)
    for attempt, base in [(1, 0.1), (2, 0.2), (3, 0.4), (6, 2.0), (60, 2.0)]:
        delays = [link.backoff(attempt) for _ in range(200)]
        assert all(base * 0.5 <= d <= base for d in delays)
        assert len(set(delays)) > 1


def test_parse_bind():
    assert parse_bind("127.0.0.1:8765") == ("127.0.0.1", 8765)
    assert parse_bind("[::1]:0") == ("::1", 0)
    assert parse_bind(":9000") == ("127.0.0.1", 9000)
    with pytest.raises(ValueError):
        parse_bind("localhost")


async def test_control_errors_and_session_listing(tmp_path):
    with trio.fail_after(10):
        async with simulator() as sim, open_sim_control(sim.url + "/control") as control:
            for call in (control.scan("nobody"), control.register("not a number"),
                         control.request("no_such_op"), control.request("stats", bogus=1),
                         control.set_error_rate(2.0), control.logout(), control.scan_code("2@nope"),
                         control.unregister("not a number"), control.set_open_world("yes")):
                with pytest.raises(SimControlError):
                    await call
            async with open_sim_transport_factory(sim.url, data_dir=str(tmp_path)) as factory, \
                    trio.open_nursery() as nursery:
                run = await start(nursery, factory.create(spec("s1")))
                qr = await run.expect(QRCode)
                [info] = await control.sessions()
                assert (info.session_id, info.connected, info.qr) == ("s1", False, qr.code)
                assert await control.wait_qr("s1") == qr.code
                await control.scan("s1", A)
                await run.expect(Connected)
                [info] = await control.sessions()
                assert (info.connected, info.phone, info.qr) == (True, A, None)
                with pytest.raises(SimControlError):
                    await control.scan("s1")  # already paired
                nursery.cancel_scope.cancel()


async def _read_line(proc: trio.Process) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = await proc.stdout.receive_some(1024)
        if not chunk:
            raise AssertionError("the simulator exited before printing its address")
        data += chunk
    return data.decode()


async def _spawn(port: int, *args: str) -> trio.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return await trio.lowlevel.open_process(
        [sys.executable, "-m", "gateway", "simulator", "--bind", f"127.0.0.1:{port}", *args],
        stdout=subprocess.PIPE, env=env)


@pytest.mark.slow
async def test_cli_process_restart_keeps_pairings_and_stops_on_sigterm(tmp_path):
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    with trio.fail_after(60):
        async with open_sim_transport_factory(url, data_dir=str(tmp_path), backoff_initial=0.05,
                                              backoff_max=0.2) as factory, trio.open_nursery() as nursery:
            first = await _spawn(port, "--receipt-delay", "0.01")
            try:
                assert (await _read_line(first)).strip() == f"simulator listening on {url}"
                transport = factory.create(spec("s1"))
                run = await start(nursery, transport)
                await run.expect(QRCode)
                async with open_sim_control(url) as control:
                    await control.scan("s1", A)
                await run.expect(Connected)
            finally:
                first.kill()  # SIGKILL: no goodbye
                await first.wait()
            await run.ended()
            second = await _spawn(port)
            try:
                await _read_line(second)
                run, connected = await start_connected(nursery, transport)
                assert connected.phone_number == A and not any(isinstance(e, QRCode) for e in run.events)
                second.send_signal(signal.SIGTERM)
                with trio.fail_after(10):
                    assert await second.wait() == 0
            finally:
                if second.returncode is None:
                    second.kill()
                    await second.wait()
            nursery.cancel_scope.cancel()


async def test_link_reconnects_with_capped_backoff_on_the_mock_clock(tmp_path, autojump_clock):
    url = f"ws://127.0.0.1:{free_port()}"  # nothing listens there
    with trio.fail_after(120):
        async with open_sim_transport_factory(url, data_dir=str(tmp_path), backoff_initial=1.0,
                                              backoff_max=4.0) as factory, trio.open_nursery() as nursery:
            run = await start(nursery, factory.create(spec("s1")))
            assert isinstance(await run.ended(), ConnectFailed)  # the first failed attempt ends the run
            started = trio.current_time()
            await trio.sleep(30)
            # delays of at most 1, 2, 4, 4, ... s and at least half that: 9 to 17 attempts in 30 s
            assert 9 <= factory.link.failures <= 17, factory.link.failures
            assert trio.current_time() - started == pytest.approx(30)
            assert "connect to 127.0.0.1" in factory.statistics().last_error


async def _gateway_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process([sys.executable, "-m", "gateway", *args], env=env, capture_stdout=True,
                                  capture_stderr=True, check=False)


@pytest.mark.slow
async def test_cli_closed_world_and_the_scan_and_unregister_commands(tmp_path):
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")} | {"GATEWAY_SIM_URL": url}
    with trio.fail_after(60):
        sim = await _spawn(port, "--closed-world", "--qr-interval", "0.1")
        try:
            assert (await _read_line(sim)).strip() == f"simulator listening on {url}"
            async with open_sim_transport_factory(url, data_dir=str(tmp_path)) as factory, \
                    trio.open_nursery() as nursery:
                run = await start(nursery, factory.create(spec("s1")))
                first, second = await run.expect(QRCode), await run.expect(QRCode)  # --qr-interval 0.1
                assert first.code != second.code
                scanned = await _gateway_cli("simulator", "scan", "s1", env=env)  # the URL from GATEWAY_SIM_URL
                assert scanned.returncode == 0, scanned.stderr
                phone = scanned.stdout.decode().strip()
                assert phone.startswith("+888") and len(phone) == 14  # no --phone, none in the spec: a fresh one
                assert (await run.expect(Connected)).phone_number == phone
                again = await _gateway_cli("simulator", "scan", "s1", "--phone", A, env=env)
                assert again.returncode == 1 and again.stdout == b""
                assert b"not waiting to pair" in again.stderr
                # --closed-world: a number nobody registered is not on WhatsApp
                assert [x.exists for x in await run.transport.is_on_whatsapp([phone, B])] == [True, False]
                async with open_sim_control(url) as control:
                    await control.register(B)
                assert (await run.transport.is_on_whatsapp([B]))[0].exists
                gone = await _gateway_cli("simulator", "unregister", B, "--url", url, env={})
                assert (gone.returncode, gone.stdout.decode().strip()) == (0, B), gone.stderr
                assert not (await run.transport.is_on_whatsapp([B]))[0].exists
                bad = await _gateway_cli("simulator", "unregister", "not a number", env=env)
                assert bad.returncode == 1 and b"not a phone number" in bad.stderr
                nursery.cancel_scope.cancel()
        finally:
            sim.kill()
            await sim.wait()
