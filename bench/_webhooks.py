"""The `webhooks` scenario: delivery throughput, and isolation behind one dead endpoint.

Capacity: bench's receiver is measured on its own first, with wrk POSTing a
webhook-sized event to it (its ceiling). Then the simulator delivers
`--inbound` incoming messages to the N healthy sessions as fast as bench's
control connections can inject them; each becomes a `message.received` event,
stored, signed and POSTed to the receiver. Deliveries per second, from the
first injection to the last delivery, divided by the receiver's ceiling, is
the headline ratio (target ≥ 0.5). The same burst then goes to a plain ASGI
receiver (bench's bare hypercorn-trio app, the kind of server a user's
backend runs), measured against its own wrk ceiling in the same way.

Phase 1 (healthy): N sessions whose `webhookUrl` is bench's receiver get a
paced load of send-message; each message makes events (`message.sent`, then
`message.status` delivered and read as the simulator's receipts come). Bench
counts deliveries per second and their lag (event timestamp → received).

Phase 2 (one dead endpoint): one more session, whose endpoint accepts
connections and never answers, gets its share of the same load, while the
healthy sessions get exactly the rate they had in phase 1. Isolation holds
if the healthy deliveries keep their rate and lag.

If no delivery arrives in phase 1, the gateway does not deliver webhooks and
the report says so instead of inventing figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

import msgspec
import numpy as np
import trio

from ._http import Client, Endpoint
from ._procs import spawn_baseline
from ._receiver import Delivery, Receiver, open_dead_endpoint, open_receiver
from ._runs import Load, Sampler, load_summary, run_baseline, run_phase, send_requests
from ._setup import BenchSession, SetupError, Target, ready_sessions
from ._stats import latency_summary, ratio
from ._ui import Ui
from ._wrk import run_wrk
from .simulator import open_sim_control

CAPACITY_SENDER: Final = "+15550009999"
INJECTORS: Final = 32  # control connections injecting in parallel
CEILING_SECONDS: Final = 5.0
# What a delivery looks like to the receiver, for the wrk ceilings: a webhook-sized message.received event.
_SAMPLE_EVENT: Final = msgspec.json.encode({
    "event": "message.received", "sessionId": "0" * 36, "timestamp": "2026-01-01T00:00:00.000Z",
    "data": {"messageId": "3EB0" + "0" * 16, "from": "15550009999@s.whatsapp.net", "type": "text",
             "text": "bench capacity 0000", "pushName": None, "isGroup": False}}).decode()


async def run_webhooks(target: Target, ui: Ui, *, sessions: int, load: Load, grace: float,
                       inbound: int = 5000) -> dict[str, Any]:
    sampler = Sampler(target.gateway_pid)
    async with trio.open_nursery() as nursery, open_receiver() as receiver, open_dead_endpoint() as dead_url:
        await nursery.start(sampler.run)
        ui.log(f"preparing {sessions} sessions with webhooks to {receiver.url}, one more to {dead_url} (dead)")
        healthy = await ready_sessions(target, sessions, webhook_url=lambda i: f"{receiver.url}/s/{i}",
                                       prefix="hook")
        dead = (await ready_sessions(target, 1, webhook_url=lambda _i: f"{dead_url}/dead", prefix="dead"))[0]
        base = await run_baseline(target, ui, Load(connections=load.connections, duration=min(load.duration, 5.0),
                                                   warmup=1.0, workers=load.workers), [])
        ceiling = await _receiver_ceiling(target, ui, receiver, connections=load.connections)
        capacity = None
        asgi = None
        if inbound > 0:
            phones = await _phones(target, healthy)
            sampler.mark("capacity")
            capacity = await _capacity(target, ui, receiver, phones, count=inbound, grace=grace)
            sampler.mark("capacity, ASGI receiver")
            asgi = await _asgi_capacity(target, ui, healthy, phones, count=inbound, grace=grace,
                                        connections=load.connections, restore=lambda i: f"{receiver.url}/s/{i}")
        sampler.mark("healthy")
        one = await _phase(target, ui, receiver, "phase 1: healthy endpoints", healthy, load, grace)
        phases = {"healthy": one}
        verdict, two = await _isolation(target, ui, receiver, healthy, dead, load, grace, one, sampler)
        if two is not None:
            phases["with_dead_endpoint"] = two
        sampler.mark("done")
        nursery.cancel_scope.cancel()
    return _report(sessions, load, grace, inbound, base, ceiling, capacity, asgi, one, phases, verdict, sampler)


async def _isolation(target: Target, ui: Ui, receiver: Receiver, healthy: list[BenchSession], dead: BenchSession,
                     load: Load, grace: float, one: dict[str, Any], sampler: Sampler
                     ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Phase 2: the healthy sessions at their phase-1 rate, plus one whose endpoint never answers."""
    if one["deliveries"] == 0:
        return {"available": False,
                "reason": f"no webhook delivery arrived within {grace:g}s of sending {one['accepted']} messages "
                          "to sessions with webhookUrl set: this gateway build does not deliver webhooks yet"}, None
    sampler.mark("with dead endpoint")
    mixed = [*healthy, dead]
    # the healthy sessions keep exactly their phase-1 rate; the dead one gets one share more
    wider = Load(connections=load.connections + max(1, load.connections // len(healthy)),
                 duration=load.duration, warmup=0.0, workers=load.workers,
                 rate=(load.rate or 0) * len(mixed) / len(healthy) or None)
    two = await _phase(target, ui, receiver, "phase 2: plus one dead endpoint", mixed, wider, grace, dead=dead)
    return {
        "available": True,
        "healthy_rate_ratio": ratio(two["deliveries_per_s"], one["deliveries_per_s"]),
        "healthy_lag_p99_ratio": ratio(two["lag_ms"].get("p99_ms"), one["lag_ms"].get("p99_ms")),
    }, two


def _report(sessions: int, load: Load, grace: float, inbound: int, base: Any, ceiling: dict[str, Any] | None,
            capacity: dict[str, Any] | None, asgi: dict[str, Any] | None, one: dict[str, Any],
            phases: dict[str, Any], verdict: dict[str, Any], sampler: Sampler) -> dict[str, Any]:
    b = load_summary(base)
    ceiling_rps = (ceiling or {}).get("requests_per_s")
    capacity_rps = (capacity or {}).get("deliveries_per_s")
    capacity_ratio = ratio(capacity_rps, ceiling_rps)
    asgi_ratio = (asgi or {}).get("ratio")
    return {
        "scenario": "webhooks",
        "parameters": {"healthy_sessions": sessions, "rate": load.rate, "duration_s": load.duration,
                       "connections": load.connections, "grace_s": grace, "inbound": inbound},
        "summary": {
            "capacity: deliveries_per_s": capacity_rps if capacity else "skipped (--inbound 0)",
            "receiver ceiling (wrk) req/s": ceiling_rps or "wrk not installed",
            "capacity ÷ receiver ceiling": "n/a" if capacity_ratio is None else capacity_ratio,
            "ASGI receiver: deliveries_per_s": (asgi or {}).get("deliveries_per_s", "n/a"),
            "ASGI receiver ceiling (wrk) req/s": ((asgi or {}).get("ceiling") or {}).get("requests_per_s", "n/a"),
            "ASGI capacity ÷ its ceiling": "n/a" if asgi_ratio is None else asgi_ratio,
            "messages_per_s_offered": load.rate,
            "deliveries_per_s": one["deliveries_per_s"],
            "healthy_lag_p99_ms": one["lag_ms"].get("p99_ms", "n/a"),
            **({"isolation: healthy rate with dead endpoint (x)": verdict.get("healthy_rate_ratio"),
                "isolation: healthy lag p99 with dead endpoint (x)": verdict.get("healthy_lag_p99_ratio")}
               if verdict["available"] else {"webhook delivery": verdict["reason"]}),
        },
        "webhooks": verdict,
        "capacity": capacity,
        "receiver_ceiling": ceiling,
        "asgi_receiver": asgi,
        "phases": phases,
        "baseline": b,
        "ratios": {"capacity_to_receiver_ceiling": capacity_ratio,
                   "asgi_capacity_to_its_ceiling": asgi_ratio,
                   "deliveries_per_s": ratio(one["deliveries_per_s"], b["requests_per_s"])},
        "targets": {"capacity_at_least_0.5x_receiver": None if capacity_ratio is None else capacity_ratio >= 0.5,
                    "asgi_capacity_at_least_0.5x_its_ceiling": None if asgi_ratio is None else asgi_ratio >= 0.5,
                    "healthy_rate_loss_at_most_10pct_with_dead_endpoint":
                    None if not verdict["available"] else verdict["healthy_rate_ratio"] >= 0.9},
        "resources": sampler.to_json(),
    }


async def _phase(target: Target, ui: Ui, receiver: Receiver, label: str, sessions: list[BenchSession],
                 load: Load, grace: float, *, dead: BenchSession | None = None) -> dict[str, Any]:
    endpoint = Endpoint.from_url(target.url)
    first = len(receiver.deliveries)
    started = time.time()
    result = await run_phase(ui, label, endpoint, send_requests(endpoint, sessions, load.connections), load,
                             collect_ids=True)
    healthy_ids = {m for m, c in zip(result.ids, result.id_connections.tolist(), strict=True)
                   if sessions[int(c) % len(sessions)] != dead}
    # wait for every healthy message's last event (read), or the grace period
    with trio.move_on_after(grace), ui.task(f"{label}: waiting for deliveries", max(1, len(healthy_ids))) as task:
        while True:
            read = {d.message_id for d in receiver.since(first) if d.status == "read"} & healthy_ids
            task.update(len(read))
            if len(read) >= len(healthy_ids):
                break
            await receiver.changed.wait()
    got = [d for d in receiver.since(first) if d.path.startswith("/s/")]
    figures = _phase_figures(got, result.ok_count, len(healthy_ids), started) | {"load": load_summary(result)}
    if result.ok_count < 0.9 * result.completed:
        figures["warning"] = (f"only {result.ok_count} of {result.completed} sends were accepted "
                              f"({dict(result.errors)}): delivery figures describe a broken run")
        ui.log(figures["warning"])
    return figures


def _phase_figures(got: list[Delivery], accepted: int, healthy: int, started: float) -> dict[str, Any]:
    if not got:
        return {"accepted": accepted, "deliveries": 0, "deliveries_per_s": 0.0, "lag_ms": {"count": 0}}
    received = np.asarray([d.received_at for d in got])
    span = float(received.max() - started)
    lags = [d.received_at - d.event_at for d in got if d.event_at is not None]
    events: dict[str, int] = {}
    for d in got:
        key = d.event if d.event != "message.status" else f"message.status {d.status}"
        events[key] = events.get(key, 0) + 1
    return {
        "accepted": accepted, "healthy_messages": healthy, "deliveries": len(got),
        "deliveries_per_s": round(len(got) / span, 1) if span > 0 else None,
        "lag_ms": latency_summary(np.maximum(np.asarray(lags), 0)) if lags else {"count": 0},
        "by_event": events,
        "read_receipts_for_healthy": events.get("message.status read", 0),
    }


async def _receiver_ceiling(target: Target, ui: Ui, receiver: Receiver, *, connections: int) -> dict[str, Any] | None:
    """wrk POSTing a webhook-sized event to bench's receiver: what it can take on its own."""
    ui.log(f"measuring the receiver's own ceiling with wrk ({CEILING_SECONDS:g} s)")
    before = len(receiver.deliveries)
    result = await run_wrk(f"{receiver.url}/ceiling", body=_SAMPLE_EVENT, authorization="Bearer -",
                           connections=connections, seconds=CEILING_SECONDS, workdir=target.workdir)
    del receiver.deliveries[before:]  # wrk's requests are not deliveries
    if result is None:
        ui.log("wrk is not installed: no receiver ceiling, no capacity ratio")
    return result


async def _capacity(target: Target, ui: Ui, receiver: Receiver, phones: list[str], *, count: int,
                    grace: float) -> dict[str, Any]:
    first = len(receiver.deliveries)
    started = time.time()
    injected_at: list[float] = []

    async def injector(start: int) -> None:
        await _inject(target, phones, count, start)
        injected_at.append(time.time())

    def received() -> list[Delivery]:
        return [d for d in receiver.since(first) if d.path.startswith("/s/") and d.event == "message.received"]

    with ui.task(f"capacity: {count} incoming messages to deliver", count) as task:
        async with trio.open_nursery() as nursery:
            for k in range(INJECTORS):
                nursery.start_soon(injector, k)
            with trio.move_on_after(grace + count / 100):
                while len(got := received()) < count:
                    task.update(len(got))
                    await receiver.changed.wait()
        got = received()
        task.update(len(got))
    if not got:
        return {"injected": count, "delivered": 0, "deliveries_per_s": 0.0}
    last = max(d.received_at for d in got)
    inject_s = max(injected_at) - started if injected_at else None
    lags = [d.received_at - d.event_at for d in got if d.event_at is not None]
    return {
        "injected": count, "delivered": len(got), "unique": len({d.webhook_id for d in got}),
        "inject_s": round(inject_s, 3) if inject_s else None,
        "injected_per_s": round(count / inject_s, 1) if inject_s else None,
        "deliver_s": round(last - started, 3),
        "deliveries_per_s": round(len(got) / (last - started), 1) if last > started else None,
        "lag_ms": latency_summary(np.maximum(np.asarray(lags), 0)) if lags else {"count": 0},
    }


async def _phones(target: Target, sessions: list[BenchSession]) -> list[str]:
    client = Client(target.url)
    try:
        phones = []
        for s in sessions:
            r = await client.call("GET", f"/api/v1/whatsapp-sessions/{s.id}", headers=s.auth)
            phones.append(r.json()["phoneNumber"])
        return phones
    finally:
        await client.aclose()


async def _asgi_capacity(target: Target, ui: Ui, sessions: list[BenchSession], phones: list[str], *, count: int,
                         grace: float, connections: int, restore: Callable[[int], str]) -> dict[str, Any]:
    """The capacity burst again, to a plain ASGI receiver (bench's bare hypercorn-trio app)."""
    async with spawn_baseline(target.workdir) as (url, _proc):
        ui.log(f"measuring the ASGI receiver's own ceiling with wrk ({CEILING_SECONDS:g} s)")
        ceiling = await run_wrk(f"{url}/ceiling", body=_SAMPLE_EVENT, authorization="Bearer -",
                                connections=connections, seconds=CEILING_SECONDS, workdir=target.workdir)
        await _point_webhooks(target, sessions, lambda i: f"{url}/hook/{i}")
        counter = Client(url)
        try:
            started = time.time()
            async with trio.open_nursery() as nursery:
                for k in range(INJECTORS):
                    nursery.start_soon(_inject, target, phones, count, k)
                with trio.move_on_after(grace + count / 100), ui.task(
                        f"capacity, ASGI receiver: {count} incoming messages to deliver", count) as task:
                    while (got := await _hook_count(counter)).get("count", 0) < count:
                        task.update(int(got.get("count", 0)))
                        await trio.sleep(0.1)
            got = await _hook_count(counter)
        finally:
            await counter.aclose()
            await _point_webhooks(target, sessions, restore)
    delivered = int(got.get("count", 0))
    span = got.get("last", started) - started
    rate = round(delivered / span, 1) if delivered and span > 0 else None
    return {"injected": count, "delivered": delivered, "deliver_s": round(span, 3), "deliveries_per_s": rate,
            "ceiling": ceiling, "ratio": ratio(rate, (ceiling or {}).get("requests_per_s"))}


async def _inject(target: Target, phones: list[str], count: int, start: int) -> None:
    async with open_sim_control(target.sim_url) as ctl:
        for i in range(start, count, INJECTORS):
            await ctl.inject(CAPACITY_SENDER, phones[i % len(phones)], f"bench capacity {i}")


async def _hook_count(client: Client) -> dict[str, float]:
    return (await client.call("GET", "/counts")).json().get("hook", {})


async def _point_webhooks(target: Target, sessions: list[BenchSession], url: Callable[[int], str]) -> None:
    client = Client(target.url)
    try:
        for i, s in enumerate(sessions):
            r = await client.call("PUT", f"/api/v1/whatsapp-sessions/{s.id}", {"webhookUrl": url(i)}, headers=s.auth)
            if r.status != 200:
                raise SetupError(f"could not set webhookUrl: {r.status} {r.body[:200]!r}")
    finally:
        await client.aclose()
