"""The `send` scenario: accepted requests/s and latency against the bare ceiling, and end-to-end latency.

1. N sessions are created (each with `webhookUrl` pointing at bench's
   receiver), connected and paired; a recipient phone is registered.
2. Two ceilings, same client, same request, same connections, same duration:
   the bare hypercorn-trio server (`bench._baseline`) and a trivial quart-trio
   app that decodes the same body with the gateway's msgspec struct
   (`bench._quart_ceiling`). Bare → Quart is the framework's cost; Quart →
   gateway is the gateway's own.
3. The gateway: C connections post send-message as fast as answers come.
4. End to end, for a sample of accepted messages: accepted (the 202 came
   back) → `sent` (the message's status history) and accepted → the
   `message.sent` webhook reached bench's receiver. If no delivery arrives,
   webhook latency is reported as unavailable, not as a failure.
5. Batches: the same connections for the same duration post
   `/api/v1/send-messages` with 100 messages each; messages accepted per
   second (the sum of each answer's `accepted`) against single sends'
   (target: at least 10x). It runs after the end-to-end part so that its
   backlog does not delay the sample's sends.

With `api_only`, every message is scheduled a day ahead (`sendAt`): the run
measures the accept path alone (auth, validation, limit, durable enqueue,
answer) with no sending, receipts or webhooks competing for the same CPU,
and there is no end-to-end part. Batch items are scheduled the same way.

With `rounds` (api-only), steps 2 and 3 run that many times in turn (bare,
Quart, gateway, bare, ...), so a slow stretch of a shared machine falls on
all three rather than on one. Each round gives its own ratios; the report's
ratios are their medians, and its figures those of the median round.

The gateway's CPU (from /proc) is read over each phase's measured window,
warm-up excluded, and divided by the messages that phase got accepted.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import trio

from ._http import Client, Endpoint
from ._load import LoadResult
from ._receiver import Receiver, open_receiver, parse_iso
from ._runs import (
    BATCH_SIZE,
    Load,
    Sampler,
    add_gateway_cpu,
    batch_requests,
    day_ahead,
    load_summary,
    run_baseline,
    run_phase,
    send_requests,
    series,
)
from ._setup import BenchSession, SetupError, Target, ready_sessions
from ._stats import latency_summary, met, ratio
from ._ui import Ui
from ._wrk import run_wrk

FINAL = ("sent", "delivered", "read", "failed")


@dataclass
class SendOptions:
    sessions: int = 20
    load: Load = None  # type: ignore[assignment]
    e2e_sample: int = 500
    drain_timeout: float = 120.0
    webhook_wait: float = 5.0
    webhooks: bool = True
    wrk_check: bool = True
    api_only: bool = False
    rounds: int = 1  # bare, Quart and gateway in turn this many times (api-only)


async def prepare(target: Target, ui: Ui, count: int, receiver: Receiver | None, *, prefix: str = "bench"
                  ) -> tuple[list[BenchSession], str | None]:
    """Ready sessions, with webhookUrl when a receiver is given; (sessions, why webhooks are off)."""
    hook = (lambda i: f"{receiver.url}/s/{i}") if receiver is not None else None
    ui.log(f"preparing {count} CONNECTED sessions")
    try:
        return await ready_sessions(target, count, webhook_url=hook, prefix=prefix), None
    except SetupError as exc:
        if hook is None or "webhookUrl" not in str(exc):
            raise
        note = f"the gateway refused the receiver's webhookUrl ({exc}); set GATEWAY_ALLOW_PRIVATE_URLS=true"
        ui.log(note)
        return await ready_sessions(target, count, prefix=prefix), note


async def run_send(target: Target, ui: Ui, opts: SendOptions) -> dict[str, Any]:
    sampler = Sampler(target.gateway_pid)
    async with trio.open_nursery() as nursery:
        await nursery.start(sampler.run)
        async with open_receiver() as receiver:
            sessions, hook_note = await prepare(target, ui, opts.sessions, receiver if opts.webhooks else None)
            sampler.mark("sessions ready")
            send_at = day_ahead() if opts.api_only else None
            endpoint = Endpoint.from_url(target.url)
            rounds: list[Round] = []
            for r in range(opts.rounds):
                of = f" (round {r + 1} of {opts.rounds})" if opts.rounds > 1 else ""
                baseline = await run_baseline(target, ui, opts.load, sessions, send_at=send_at)
                quart = await run_baseline(target, ui, opts.load, sessions, ceiling="quart", send_at=send_at)
                sampler.mark("gateway load" + of)
                sampler.sample()  # both ends of each measured window fall between samples
                gateway = await run_phase(ui, f"gateway send ({opts.sessions} sessions){of}", endpoint,
                                          send_requests(endpoint, sessions, opts.load.connections, send_at=send_at),
                                          opts.load, collect_ids=True)
                sampler.sample()
                rounds.append(Round(baseline, quart, gateway))
            wrk = None
            if opts.wrk_check:
                wrk = await _wrk_against_baseline(target, opts.load, sessions)
            sampler.mark("drain")
            if opts.api_only:
                e2e = {"available": False, "reason": "--api-only: every message is scheduled a day ahead",
                       **await _still_scheduled(target, gateway, sessions)}
            else:
                e2e = await end_to_end(target, ui, gateway, sessions, receiver, opts)
            ui.log(f"batches: {opts.load.connections} connections posting {BATCH_SIZE} messages a request")
            sampler.mark("batch load")
            sampler.sample()
            batch = await run_phase(ui, f"gateway send-messages ({BATCH_SIZE} per request)", endpoint,
                                    batch_requests(endpoint, sessions, opts.load.connections, send_at=send_at),
                                    opts.load, count_accepted=True)
            sampler.sample()
            sampler.mark("done")
        nursery.cancel_scope.cancel()
    summaries = []
    for rnd in rounds:
        g, b, q = load_summary(rnd.gateway), load_summary(rnd.baseline), load_summary(rnd.quart)
        add_gateway_cpu(g, sampler, rnd.gateway)
        summaries.append((g, b, q, _ceiling_ratios(g, b, q)))
    ratios = {key: _median([s[3][key] for s in summaries]) for key in summaries[0][3]}
    # the figures shown are the median round's (by throughput against bare)
    middle = sorted(range(len(rounds)), key=lambda i: summaries[i][3]["accepted_per_s"] or 0)[len(rounds) // 2]
    g, b, q, _ = summaries[middle]
    baseline, quart, gateway = rounds[middle].baseline, rounds[middle].quart, rounds[middle].gateway
    m = load_summary(batch)
    add_gateway_cpu(m, sampler, batch)
    ratios |= {
        # messages per second, batches (100 a request) to single sends, same connections and duration
        "batch_to_single_messages_per_s": ratio(m["messages_accepted_per_s"], g["accepted_per_s"]),
        "batch_to_single_cpu_per_message": ratio(m.get("gateway_cpu_ms_per_accepted"),
                                                 g.get("gateway_cpu_ms_per_accepted")),
    }
    return {
        "scenario": "send",
        "parameters": {"sessions": opts.sessions, "connections": opts.load.connections, "api_only": opts.api_only,
                       "duration_s": opts.load.duration, "warmup_s": opts.load.warmup, "rate": opts.load.rate,
                       "load_workers": opts.load.workers, "batch_size": BATCH_SIZE, "rounds": opts.rounds},
        "gateway": g, "baseline": b, "quart": q, "batch": m, "ratios": ratios,
        "rounds": [{"bare_per_s": sb["requests_per_s"], "quart_per_s": sq["requests_per_s"],
                    "gateway_per_s": sg["accepted_per_s"], "gateway_cpu_ms_per_accepted":
                    sg.get("gateway_cpu_ms_per_accepted"), "bare_cpu_ms_per_request":
                    sb.get("server_cpu_ms_per_request"), "quart_cpu_ms_per_request":
                    sq.get("server_cpu_ms_per_request"), "machine_busy_share": sg.get("machine_busy_share"),
                    **{f"ratio_{k}": v for k, v in sr.items()}} for sg, sb, sq, sr in summaries],
        "client_not_bottleneck": {
            "bare_faster_than_gateway": b["requests_per_s"] > g["requests_per_s"],
            "client_cpu_ms_per_request": b["client_cpu_ms_per_request"],
            "wrk_on_baseline": wrk if wrk is not None else "wrk not installed (or --no-wrk): skipped"},
        "end_to_end": e2e | ({"webhook_note": hook_note} if hook_note else {}),
        "targets": {
            # a paced run offers both servers the same rate: it says nothing about the ceiling
            "throughput_at_least_0.80x_bare": None if opts.load.rate else met(ratios["accepted_per_s"],
                                                                                lambda r: r >= 0.80),
            "p99_at_most_1.5x_bare": met(ratios["p99"], lambda r: r <= 1.5),
            # paced, both phases offer the same request rate: the ratio is then the batch size, not a finding
            "batch_messages_at_least_10x_single": None if opts.load.rate else met(
                ratios["batch_to_single_messages_per_s"], lambda r: r >= 10),
        },
        "series": {"gateway": series(gateway), "baseline": series(baseline), "quart": series(quart),
                   "gateway batch": series(batch)},
        "resources": sampler.to_json(),
    }


@dataclass
class Round:
    """One turn of the three single-send phases."""

    baseline: LoadResult
    quart: LoadResult
    gateway: LoadResult


def _ceiling_ratios(g: dict[str, Any], b: dict[str, Any], q: dict[str, Any]) -> dict[str, float | None]:
    return {
        "accepted_per_s": ratio(g["accepted_per_s"], b["requests_per_s"]),
        "p99": ratio(g["accepted_latency_ms"].get("p99_ms"), b["latency_ms"].get("p99_ms")),
        "p50": ratio(g["accepted_latency_ms"].get("p50_ms"), b["latency_ms"].get("p50_ms")),
        "quart_per_s": ratio(q["requests_per_s"], b["requests_per_s"]),
        "quart_p99": ratio(q["latency_ms"].get("p99_ms"), b["latency_ms"].get("p99_ms")),
        "gateway_to_quart_per_s": ratio(g["accepted_per_s"], q["requests_per_s"]),
        # CPU per answer, each server's own process: the figure the rest of the machine moves least
        "cpu_per_request": ratio(g.get("gateway_cpu_ms_per_accepted"), b.get("server_cpu_ms_per_request")),
        "quart_cpu_per_request": ratio(q.get("server_cpu_ms_per_request"), b.get("server_cpu_ms_per_request")),
    }


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(float(np.median(known)), 3) if known else None


async def _wrk_against_baseline(target: Target, load: Load, sessions: list[BenchSession]) -> dict[str, Any] | None:
    from ._procs import spawn_baseline

    async with spawn_baseline(target.workdir) as (url, _):
        return await run_wrk(url + "/api/v1/send-message", body='{"to":"+15550009999","text":"bench"}',
                             authorization=sessions[0].auth["Authorization"], connections=load.connections,
                             seconds=min(5.0, load.duration), workdir=target.workdir)


def _owners(result: LoadResult, sessions: list[BenchSession]) -> dict[str, BenchSession]:
    """Which session sent each accepted message (connection i sends as session i mod N)."""
    return {mid: sessions[int(c) % len(sessions)] for mid, c in zip(result.ids, result.id_connections.tolist(),
                                                                     strict=True)}


async def _still_scheduled(target: Target, result: LoadResult, sessions: list[BenchSession],
                           sample: int = 20) -> dict[str, int]:
    """With --api-only: a sample of the accepted messages, checked to be stored and not sent."""
    owner = _owners(result, sessions)
    picked = random.Random(7).sample(result.ids, min(sample, len(result.ids)))
    client = Client(target.url)
    try:
        statuses = [(await client.call("GET", f"/api/v1/messages/{m}", headers=owner[m].auth)).json().get("status")
                    for m in picked]
    finally:
        await client.aclose()
    return {"checked": len(picked), "still_queued": statuses.count("queued")}


async def end_to_end(target: Target, ui: Ui, result: LoadResult, sessions: list[BenchSession],
                     receiver: Receiver | None, opts: SendOptions) -> dict[str, Any]:
    """Accepted → sent (status history) and accepted → webhook received, for a sample of messages."""
    if not result.ids:
        return {"available": False, "reason": "no message was accepted"}
    accepted_at = dict(zip(result.ids, result.id_times.tolist(), strict=True))
    owner = _owners(result, sessions)
    sample = random.Random(7).sample(result.ids, min(opts.e2e_sample, len(result.ids)))
    load_end = float(result.id_times.max())
    client = Client(target.url)
    out: dict[str, Any] = {"accepted": len(result.ids), "sample": len(sample)}
    try:
        histories = await _wait_drained(client, owner, sample, opts.drain_timeout, ui)
    finally:
        await client.aclose()
    sent = {m: h["sent"] for m, h in histories.items() if h.get("sent") is not None}
    lat = [sent[m] - accepted_at[m] for m in sent]
    out["accepted_to_sent_ms"] = latency_summary(np.maximum(np.asarray(lat), 0)) if lat else {"count": 0}
    out["not_sent_in_sample"] = len(sample) - len(sent)
    if sent:
        # how long the sessions kept sending what had been accepted, after the load stopped
        out["drain_s_after_load"] = round(max(sent.values()) - load_end, 2)
    out["webhook"] = await _webhook_latency(receiver, accepted_at, opts.webhook_wait)
    return out


async def _wait_drained(client: Client, owner: dict[str, BenchSession], sample: list[str], timeout: float,
                        ui: Ui) -> dict[str, dict[str, float | None]]:
    """Status histories of the sample, once every one is past `sending` (or when `timeout` runs out)."""
    histories: dict[str, dict[str, float | None]] = {}
    pending = list(sample)
    with trio.move_on_after(timeout), ui.task("draining the send queue (sample)", len(sample)) as task:
        while pending:
            requests = [client.build("GET", f"/api/v1/messages/{m}", headers=owner[m].auth) for m in pending]
            still = []
            for m, r in zip(pending, await client.many(requests, 8), strict=True):
                body = r.json() if r.status == 200 else None
                if body is not None and body["status"] in FINAL:
                    histories[m] = {h["status"]: parse_iso(h["at"]) for h in body["history"]}
                else:
                    still.append(m)
            pending = still
            task.update(len(histories))
            if pending:
                await trio.sleep(0.5)
    return histories


async def _webhook_latency(receiver: Receiver | None, accepted_at: dict[str, float], wait: float) -> dict[str, Any]:
    if receiver is None:
        return {"available": False, "reason": "webhooks not requested (--no-webhooks)"}
    with trio.move_on_after(wait):
        while len({d.message_id for d in receiver.deliveries if d.event == "message.sent"} & accepted_at.keys()) \
                < len(accepted_at):
            await receiver.changed.wait()
    lat = [d.received_at - accepted_at[d.message_id] for d in receiver.deliveries
           if d.event == "message.sent" and d.message_id in accepted_at]
    if not receiver.deliveries:
        return {"available": False,
                "reason": f"no webhook delivery reached bench's receiver within {wait:g}s after the queue drained "
                          "(this gateway build does not deliver webhooks yet)"}
    events: dict[str, int] = {}
    for d in receiver.deliveries:
        events[d.event] = events.get(d.event, 0) + 1
    return {"available": True, "deliveries": len(receiver.deliveries), "duplicates": receiver.duplicates,
            "by_event": events, "message_sent_received": len(lat),
            "accepted_to_webhook_ms": latency_summary(np.maximum(np.asarray(lat), 0)) if lat else {"count": 0}}
