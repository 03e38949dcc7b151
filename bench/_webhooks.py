"""The `webhooks` scenario: delivery throughput, and isolation behind one dead endpoint.

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
from typing import Any

import numpy as np
import trio

from ._http import Endpoint
from ._receiver import Delivery, Receiver, open_dead_endpoint, open_receiver
from ._runs import Load, Sampler, load_summary, run_baseline, run_phase, send_requests
from ._setup import BenchSession, Target, ready_sessions
from ._stats import latency_summary, ratio
from ._ui import Ui


async def run_webhooks(target: Target, ui: Ui, *, sessions: int, load: Load, grace: float) -> dict[str, Any]:
    sampler = Sampler(target.gateway_pid)
    async with trio.open_nursery() as nursery, open_receiver() as receiver, open_dead_endpoint() as dead_url:
        await nursery.start(sampler.run)
        ui.log(f"preparing {sessions} sessions with webhooks to {receiver.url}, one more to {dead_url} (dead)")
        healthy = await ready_sessions(target, sessions, webhook_url=lambda i: f"{receiver.url}/s/{i}",
                                       prefix="hook")
        dead = (await ready_sessions(target, 1, webhook_url=lambda _i: f"{dead_url}/dead", prefix="dead"))[0]
        base = await run_baseline(target, ui, Load(connections=load.connections, duration=min(load.duration, 5.0),
                                                   warmup=1.0, workers=load.workers), [])
        sampler.mark("healthy")
        one = await _phase(target, ui, receiver, "phase 1: healthy endpoints", healthy, load, grace)
        phases = {"healthy": one}
        if one["deliveries"] == 0:
            verdict: dict[str, Any] = {
                "available": False,
                "reason": f"no webhook delivery arrived within {grace:g}s of sending {one['accepted']} messages "
                          "to sessions with webhookUrl set: this gateway build does not deliver webhooks yet"}
        else:
            sampler.mark("with dead endpoint")
            mixed = [*healthy, dead]
            # the healthy sessions keep exactly their phase-1 rate; the dead one gets one share more
            wider = Load(connections=load.connections + max(1, load.connections // len(healthy)),
                         duration=load.duration, warmup=0.0, workers=load.workers,
                         rate=(load.rate or 0) * len(mixed) / len(healthy) or None)
            two = await _phase(target, ui, receiver, "phase 2: plus one dead endpoint", mixed, wider, grace,
                               dead=dead)
            phases["with_dead_endpoint"] = two
            verdict = {
                "available": True,
                "healthy_rate_ratio": ratio(two["deliveries_per_s"], one["deliveries_per_s"]),
                "healthy_lag_p99_ratio": ratio(two["lag_ms"].get("p99_ms"), one["lag_ms"].get("p99_ms")),
            }
        sampler.mark("done")
        nursery.cancel_scope.cancel()
    b = load_summary(base)
    return {
        "scenario": "webhooks",
        "parameters": {"healthy_sessions": sessions, "rate": load.rate, "duration_s": load.duration,
                       "connections": load.connections, "grace_s": grace},
        "summary": {
            "messages_per_s_offered": load.rate,
            "deliveries_per_s": one["deliveries_per_s"],
            "healthy_lag_p99_ms": one["lag_ms"].get("p99_ms", "n/a"),
            **({"isolation: healthy rate with dead endpoint (x)": verdict.get("healthy_rate_ratio"),
                "isolation: healthy lag p99 with dead endpoint (x)": verdict.get("healthy_lag_p99_ratio")}
               if verdict["available"] else {"webhook delivery": verdict["reason"]}),
        },
        "webhooks": verdict,
        "phases": phases,
        "baseline": b,
        "ratios": {"deliveries_per_s": ratio(one["deliveries_per_s"], b["requests_per_s"])},
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
