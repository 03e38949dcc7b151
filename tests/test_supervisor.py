"""Session actors and their supervisor, on the MockClock (autojump: no real sleeps)."""

from __future__ import annotations

import pytest
import trio

from actors import (
    ActorPolicy, Backoff, Connect, ConnectFailed, Connected, Receipt, SessionActor, SessionSpec, SessionState,
    Supervisor,
)

from ._fake_transport import FakeFactory, FakeTransport, RecordingHost

NO_JITTER = Backoff(initial=1.0, maximum=8.0, multiplier=2.0, jitter=0.0)


def spec(sid: str) -> SessionSpec:
    return SessionSpec(session_id=sid, phone_number="+15550000001")


async def connect(sup: Supervisor, session: SessionSpec, *, state: SessionState) -> SessionActor:
    """Start supervising the session and ask its actor to connect, as the gateway does."""
    actor = await sup.start(session, state=state)
    sup.send_nowait(session.session_id, Connect())
    return actor


async def open_supervisor(nursery, factory, host, **kw) -> Supervisor:
    kw.setdefault("policy", ActorPolicy(reconnect=NO_JITTER, connect_attempts=3))
    kw.setdefault("restart_backoff", NO_JITTER)
    return await nursery.start(Supervisor(factory, host, **kw).run)


async def test_connect_reaches_connected_and_persists_each_state(autojump_clock):
    factory, host = FakeFactory(["connect"]), RecordingHost()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            sup = await open_supervisor(nursery, factory, host)
            actor = await connect(sup, spec("a"), state=SessionState.DISCONNECTED)
            await host.wait_state("a", "CONNECTED")
            assert host.states["a"] == [("CONNECTING", None), ("CONNECTED", None)]
            assert actor.require_connected() is factory.transports["a"]
            assert sup.statistics().by_state == {"CONNECTED": 1}
            await sup.disconnect("a")
            assert host.last("a") == "DISCONNECTED"
            assert actor.statistics().connecting is False
            nursery.cancel_scope.cancel()


async def test_crash_restarts_with_growing_backoff(autojump_clock):
    factory = FakeFactory(["crash:boom"])
    host = RecordingHost()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            sup = await open_supervisor(nursery, factory, host, max_crashes=5, crash_window=1000)
            await connect(sup, spec("a"), state=SessionState.DISCONNECTED)
            await host.wait_state("a", "FAILED")
            runs = factory.transports["a"].runs
            gaps = [b - a for a, b in zip(runs, runs[1:])]
            assert len(runs) == 5
            # 1, 2, 4, 8 seconds: each restart waits longer, capped at the maximum
            assert gaps == pytest.approx([1.0, 2.0, 4.0, 8.0], abs=0.01)
            assert sup.statistics().restarts == 4
            nursery.cancel_scope.cancel()


async def test_crash_loop_is_failed_with_reason(autojump_clock):
    factory, host = FakeFactory(["crash:segfault in Go"]), RecordingHost()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            sup = await open_supervisor(nursery, factory, host, max_crashes=3, crash_window=60)
            await connect(sup, spec("a"), state=SessionState.DISCONNECTED)
            await host.wait_state("a", "FAILED")
            state, reason = host.states["a"][-1]
            assert "crash loop" in reason and "segfault in Go" in reason
            assert sup.get("a") is None  # supervision ended
            assert sup.statistics().crash_loops == 1
            nursery.cancel_scope.cancel()


async def test_crashes_spread_out_are_not_a_loop(autojump_clock):
    factory, host = FakeFactory(["crash:x", "connect", "connect"]), RecordingHost()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            sup = await open_supervisor(nursery, factory, host, max_crashes=2, crash_window=10)
            await connect(sup, spec("a"), state=SessionState.DISCONNECTED)
            await host.wait_state("a", "CONNECTED")
            await trio.sleep(30)  # window passes
            factory.transports["a"].script = ["crash:y", "connect"]
            factory.transports["a"].runs = []
            factory.transports["a"].drop("to crash")
            await trio.sleep(5)
            assert host.last("a") == "CONNECTED"
            assert sup.get("a") is not None
            nursery.cancel_scope.cancel()


async def test_crash_in_one_session_leaves_others_connected(autojump_clock):
    factory, host = FakeFactory(["connect"]), RecordingHost()
    factory.scripts["bad"] = ["crash:bad"]
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            sup = await open_supervisor(nursery, factory, host, max_crashes=3, crash_window=60)
            for sid in ("good1", "good2", "bad"):
                await connect(sup, spec(sid), state=SessionState.DISCONNECTED)
            await host.wait_state("bad", "FAILED")
            for sid in ("good1", "good2"):
                assert host.last(sid) == "CONNECTED"
                assert len(factory.transports[sid].runs) == 1  # never interrupted
                assert factory.transports[sid].connected
            nursery.cancel_scope.cancel()


async def test_stop_is_clean_and_leaves_no_task(autojump_clock):
    factory, host = FakeFactory(["connect"]), RecordingHost()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            sup = await open_supervisor(nursery, factory, host)
            for sid in ("a", "b"):
                await connect(sup, spec(sid), state=SessionState.DISCONNECTED)
                await host.wait_state(sid, "CONNECTED")
            await sup.stop("a")
            assert sup.get("a") is None and factory.transports["a"].cancelled_runs == 1
            assert not factory.transports["a"].connected
            await sup.stop_all()
            assert sup.statistics().sessions == 0
            assert sup._nursery.child_tasks == frozenset()
            await sup.stop("never-started")  # no-op
            nursery.cancel_scope.cancel()


async def test_failed_start_reaches_the_caller(autojump_clock):
    factory, host = FakeFactory(), RecordingHost()
    factory.fail_create = True
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            sup = await open_supervisor(nursery, factory, host)
            with pytest.raises(OSError, match="device store"):
                await sup.start(spec("a"))
            assert sup.get("a") is None and sup.statistics().sessions == 0
            nursery.cancel_scope.cancel()


async def test_never_connected_session_fails_after_attempts(autojump_clock):
    factory, host = FakeFactory(["fail:failed to dial whatsapp web websocket: no such host"]), RecordingHost()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            sup = await open_supervisor(nursery, factory, host)
            await connect(sup, spec("a"), state=SessionState.DISCONNECTED)
            await host.wait_state("a", "FAILED")
            assert len(factory.transports["a"].runs) == 3
            assert host.states["a"][-1] == ("FAILED", "failed to dial whatsapp web websocket: no such host")
            # the same transport object was reused for every attempt (no client churn)
            assert len(factory.transports) == 1
            # a new connect request starts afresh
            factory.transports["a"].script = ["connect"]
            sup.send_nowait("a", __import__("actors").Connect())
            await host.wait_state("a", "CONNECTED")
            nursery.cancel_scope.cancel()


async def test_connected_session_reconnects_forever_with_backoff(autojump_clock):
    factory = FakeFactory(["connect", "fail:net down", "fail:net down", "fail:net down", "fail:net down",
                           "connect"])
    host = RecordingHost()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            sup = await open_supervisor(nursery, factory, host)
            await connect(sup, spec("a"), state=SessionState.DISCONNECTED)
            await host.wait_state("a", "CONNECTED")
            t = factory.transports["a"]
            t.drop("simulator went away")
            await host.wait_state("a", "DISCONNECTED")
            assert host.states["a"][-1] == ("DISCONNECTED", "simulator went away")
            await host.wait_state("a", "CONNECTED")
            assert len(t.runs) == 6  # more failures than connect_attempts, still retried
            gaps = [b - a for a, b in zip(t.runs[1:], t.runs[2:])]
            assert gaps == pytest.approx([2.0, 4.0, 8.0, 8.0], abs=0.01)
            nursery.cancel_scope.cancel()


async def test_resume_reconnects_without_a_request(autojump_clock):
    factory, host = FakeFactory(["connect"]), RecordingHost()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            sup = await open_supervisor(nursery, factory, host)
            await sup.start(spec("a"), state=SessionState.CONNECTED, resume=True)
            await host.wait_state("a", "CONNECTED")
            nursery.cancel_scope.cancel()


async def test_qr_then_scan(autojump_clock):
    factory, host = FakeFactory(["qr"]), RecordingHost()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            sup = await open_supervisor(nursery, factory, host)
            actor = await connect(sup, spec("a"), state=SessionState.DISCONNECTED)
            while actor.qr is None:
                await actor.qr_changed.wait()
            assert actor.qr.startswith("2@") and actor.state is SessionState.CONNECTING
            factory.transports["a"].scan()
            await host.wait_state("a", "CONNECTED")
            assert actor.qr is None
            nursery.cancel_scope.cancel()


async def test_transport_level_blip_and_logout(autojump_clock):
    factory, host = FakeFactory(["connect"]), RecordingHost()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            sup = await open_supervisor(nursery, factory, host)
            await connect(sup, spec("a"), state=SessionState.DISCONNECTED)
            await host.wait_state("a", "CONNECTED")
            await factory.transports["a"].blip()
            await trio.sleep(1)
            assert [s for s, _ in host.states["a"]][-2:] == ["DISCONNECTED", "CONNECTED"]
            await sup.disconnect("a", logout=True)
            assert host.last("a") == "LOGGED_OUT"
            nursery.cancel_scope.cancel()


async def test_full_mailbox_is_an_error_not_a_drop(autojump_clock):
    factory, host = FakeFactory(["hang"]), RecordingHost()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            sup = await open_supervisor(nursery, factory, host, policy=ActorPolicy(mailbox_size=1))
            await sup.start(spec("a"))
            sup.send_nowait("a", Connect())
            with pytest.raises(trio.WouldBlock):
                for _ in range(5):
                    sup.send_nowait("a", Connect())
            with pytest.raises(KeyError):
                sup.send_nowait("nobody", Connect())
            nursery.cancel_scope.cancel()


class ConnectedThenDropped(FakeTransport):
    """Queues Connected and a receipt, then fails at once: a login that drops right away."""

    async def run(self, events, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.runs.append(trio.current_time())
        task_status.started()
        events.send_nowait(Connected(jid=f"{self.spec.session_id}@s.whatsapp.net"))
        events.send_nowait(Receipt(message_ids=["m1"], chat="x@s.whatsapp.net", type="delivered", timestamp_ms=1))
        raise ConnectFailed("dropped right after login")


class SlowHost(RecordingHost):
    async def transport_event(self, session_id, event) -> None:
        await trio.sleep(1)  # the pump is busy while the connection cycle has already failed
        await super().transport_event(session_id, event)


async def test_events_queued_before_a_failure_are_handled_before_it(autojump_clock):
    factory, host = FakeFactory(), SlowHost()
    factory.create = lambda s: factory.transports.setdefault(s.session_id, ConnectedThenDropped(s, []))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            sup = await open_supervisor(nursery, factory, host)
            await connect(sup, spec("a"), state=SessionState.DISCONNECTED)
            await host.wait_state("a", "DISCONNECTED")
            assert host.states["a"] == [("CONNECTING", None), ("CONNECTED", None),
                                        ("DISCONNECTED", "dropped right after login")]
            assert [type(e).__name__ for _, e in host.events] == ["Connected", "Receipt"]
            assert trio.current_time() == pytest.approx(2.0)  # both slow events, and no polling on top
            nursery.cancel_scope.cancel()
