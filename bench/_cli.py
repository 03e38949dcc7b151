"""`python -m bench`: the command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from ._runs import Load
from ._ui import Ui

DESCRIPTION = """\
Load-test the gateway against a simulated WhatsApp network, and measure, in
the same run, the bare hypercorn-trio ceiling: a minimal ASGI app on the same
server (hypercorn, trio worker) answering the same request, driven by the same
client. Every report gives the gateway's ratio to it, so figures hold on a
noisy machine.

scenarios:
  send      N sessions, C concurrent clients posting /api/v1/send-message for a
            duration (closed loop, or paced with --rate). Reports accepted
            requests/s, latency p50/p90/p99/p99.9
            (HDR histogram), errors by HTTP status and error code, and end to
            end latency for a sample: accepted -> `sent` (status history) and
            accepted -> `message.sent` webhook received by bench's own
            receiver (reported as unavailable if the gateway delivers none).
            Then the same connections and duration post batches
            (/api/v1/send-messages, 100 messages each): messages accepted/s
            of batches against single sends (target >= 10x), and the
            gateway's CPU per accepted message of each.
  sessions  Create N sessions and bring them to CONNECTED (the simulator pairs
            them). Reports creation and connection times and the gateway's RSS
            per session (from /proc, before and after). Target: 10,000 in
            <= 60 s at <= 64 KiB each.
  webhooks  Capacity: a burst of --inbound incoming messages, each a signed
            delivery, to bench's raw receiver and then to a plain ASGI receiver,
            each against its own wrk ceiling (target >= 0.5x). Then a paced load
            to N sessions, and the same again with one more session whose
            endpoint accepts and never answers: healthy deliveries must not slow
            down behind it. Says so clearly if the gateway delivers no webhooks.
  soak      A steady paced load for a duration, watching the gateway's RSS and
            open file descriptors. Reports their growth slope after warm-up.
            Target: < 5% RSS growth over 10 minutes, no fd growth.
  queue-list
            Pages of GET /api/v1/messages?status=&to= over 100,000 stored
            messages (a fresh SQLite store; --postgres URL adds a fresh
            schema there), through the app in process and through the store
            call alone. Needs no simulator (--spawn is ignored). Target: a
            page in < 50 ms.
  stores    The gateway's CPU per accepted message on SQLite and on a fresh
            PostgreSQL schema (--postgres URL), in one run: one spawned
            gateway on each, the same sessions and the same --api-only send
            load. Reports both, their ratio (target: PostgreSQL <= 1.5x
            SQLite), accepted/s of each, and the CPU of the PostgreSQL
            backends serving that gateway. Always spawns (--spawn implied).
  workers   `gateway serve --workers N` (--gateway-workers, default 2) against
            one worker, each on a fresh PostgreSQL schema, same --api-only
            load: accepted/s and CPU per accepted message (summed over the
            gateway's processes). The gateway gets a core per worker and the
            rest (load generator, simulator, PostgreSQL backends) the other
            cores, with taskset, where there are cores enough; otherwise the
            report says accepted/s is not a scaling figure.

target:
  --spawn starts a simulator and a gateway in a temporary directory with
  load-test settings, all documented: GATEWAY_LIMIT_SEND/API/AUTH=off,
  GATEWAY_SEND_MIN_GAP=0, GATEWAY_SEND_JITTER=0, GATEWAY_QR_WAIT=0,
  GATEWAY_ALLOW_PRIVATE_URLS=true (webhooks to 127.0.0.1). Without --spawn,
  give --url, --sim-url and --token of a gateway started with those settings
  (and --gateway-pid for memory figures).

output:
  a live progress bar on stderr, a table on stdout, OUT/SCENARIO.json and
  OUT/SCENARIO-{latency,throughput,rss}.png.

examples:
  python -m bench send --spawn --sessions 20 --clients 64 --duration 30
  python -m bench sessions --spawn --sessions 10000
  python -m bench webhooks --spawn --rate 200 --duration 15
  python -m bench soak --spawn --rate 300 --duration 600 --warmup 60
  python -m bench queue-list --postgres postgresql://postgres@127.0.0.1:5432/test
  python -m bench stores --postgres postgresql://postgres@127.0.0.1:5432/test
  python -m bench workers --postgres postgresql://postgres@127.0.0.1:5432/test --gateway-workers 2
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    t = common.add_argument_group("target")
    t.add_argument("--spawn", action="store_true", help="start a simulator and a gateway for this run")
    t.add_argument("--url", help="gateway base URL, e.g. http://127.0.0.1:8080 (without --spawn)")
    t.add_argument("--sim-url", help="simulator URL, e.g. ws://127.0.0.1:8765 (without --spawn)")
    t.add_argument("--token", help="a personal access token on that gateway (without --spawn)")
    t.add_argument("--gateway-pid", type=int, help="the gateway's pid, for RSS and fd figures (without --spawn)")
    t.add_argument("--autopair", type=float, default=0.01, metavar="S",
                   help="the simulator pairs each connecting session after S seconds (default 0.01)")
    t.add_argument("--receipt-delay", type=float, default=0.05, metavar="S",
                   help="simulator delay before delivered and read receipts, with --spawn (default 0.05)")
    o = common.add_argument_group("output and load")
    o.add_argument("--out", type=Path, default=Path("bench-results"), help="directory for JSON and PNGs")
    o.add_argument("--workers", type=int, default=1, help="load-generator processes (default 1)")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    o.add_argument("--no-wrk", action="store_true", help="skip the wrk cross-check of the ceiling")
    sub = parser.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")

    send = sub.add_parser("send", parents=[common], help="send-message throughput and latency, end to end")
    send.add_argument("--sessions", type=int, default=20, help="sessions to spread the load over (default 20)")
    send.add_argument("--clients", type=int, default=64, help="concurrent connections (default 64)")
    send.add_argument("--duration", type=float, default=20.0, help="seconds measured, per run (default 20)")
    send.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring (default 2)")
    send.add_argument("--rate", type=float, metavar="REQ_PER_S",
                      help="pace the load at this rate (gateway and baseline alike) instead of as fast as answers "
                           "come; end-to-end latency then shows the pipeline, not a growing backlog")
    send.add_argument("--e2e-sample", type=int, default=500, help="messages whose history is read (default 500)")
    send.add_argument("--drain-timeout", type=float, default=180.0,
                      help="seconds to wait for the send queue to drain (default 180)")
    send.add_argument("--no-webhooks", action="store_true", help="do not set webhookUrl on the sessions")
    send.add_argument("--api-only", action="store_true",
                      help="schedule every message (single sends and batch items) a day ahead (sendAt): measure "
                           "the accept path alone, with nothing sent during the run")
    send.add_argument("--rounds", type=int, default=1,
                      help="with --api-only: run bare, Quart and gateway in turn this many times, and report "
                           "the median of each round's ratios (default 1)")

    sessions = sub.add_parser("sessions", parents=[common], help="N sessions to CONNECTED: time and RSS/session")
    sessions.add_argument("--sessions", type=int, default=1000, help="sessions to create and connect (default 1000)")
    sessions.add_argument("--concurrency", type=int, default=64, help="requests in flight while setting up")
    sessions.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    sessions.add_argument("--baseline-duration", type=float, default=5.0,
                          help="seconds of the bare-ceiling run (default 5)")

    hooks = sub.add_parser("webhooks", parents=[common], help="webhook delivery throughput and isolation")
    hooks.add_argument("--sessions", type=int, default=10, help="healthy sessions (default 10)")
    hooks.add_argument("--rate", type=float, default=100.0, help="messages/s sent (default 100)")
    hooks.add_argument("--duration", type=float, default=10.0, help="seconds of sending per phase (default 10)")
    hooks.add_argument("--clients", type=int, default=16, help="concurrent connections (default 16)")
    hooks.add_argument("--inbound", type=int, default=5000,
                       help="incoming messages for the capacity phase (default 5000; 0 skips it)")
    hooks.add_argument("--grace", type=float, default=15.0,
                       help="seconds to wait for deliveries after sending stops (default 15)")

    soak = sub.add_parser("soak", parents=[common], help="steady load; RSS and fd growth after warm-up")
    soak.add_argument("--sessions", type=int, default=10, help="sessions (default 10)")
    soak.add_argument("--clients", type=int, default=16, help="concurrent connections (default 16)")
    soak.add_argument("--rate", type=float, default=200.0, help="requests/s, paced (default 200)")
    soak.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    soak.add_argument("--warmup", type=float, default=60.0, help="seconds excluded from the slopes (default 60)")
    soak.add_argument("--baseline-duration", type=float, default=10.0,
                      help="seconds of the bare-ceiling run at the same rate (default 10)")
    queue = sub.add_parser("queue-list", parents=[common],
                           help="GET /messages?status=&to= pages over a large stored queue (p50/p99 per query)")
    queue.add_argument("--messages", type=int, default=100_000, help="messages stored (default 100000)")
    queue.add_argument("--pages", type=int, default=200, help="pages timed per query kind (default 200)")
    queue.add_argument("--postgres", metavar="URL", help="also measure a fresh schema on this PostgreSQL server")

    stores = sub.add_parser("stores", parents=[common],
                            help="gateway CPU per accepted message, SQLite against PostgreSQL (api-only load)")
    workers = sub.add_parser("workers", parents=[common],
                             help="accepted/s and CPU per message, gateway serve --workers N against 1 (PostgreSQL)")
    for p in (stores, workers):
        p.add_argument("--postgres", metavar="URL", required=True,
                       help="PostgreSQL server; each gateway gets a fresh schema there, dropped afterwards")
        p.add_argument("--sessions", type=int, default=10, help="sessions to spread the load over (default 10)")
        p.add_argument("--clients", type=int, default=64, help="concurrent connections (default 64)")
        p.add_argument("--duration", type=float, default=20.0, help="seconds measured, per gateway (default 20)")
        p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring (default 2)")
    workers.add_argument("--gateway-workers", type=int, default=2, metavar="N",
                         help="worker processes of the gateway compared with one (default 2)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.scenario == "workers" and args.gateway_workers < 2:
        parser.error("--gateway-workers must be at least 2: the run compares it with one worker")
    if args.scenario == "send" and (args.rounds < 1 or (args.rounds > 1 and not args.api_only)):
        parser.error("--rounds must be at least 1, and more than 1 only with --api-only (a round's sends would "
                     "still be going out during the next)")
    ui = Ui(quiet=args.quiet)
    try:
        result = trio.run(_run, args, ui)
    except KeyboardInterrupt:
        return 130
    from ._report import finish, print_summary

    path, plots = finish(result, args.out, argv=list(argv) if argv is not None else None)
    print_summary(result, path, plots)
    return 0


async def _run(args: argparse.Namespace, ui: Ui) -> dict:
    if args.scenario == "queue-list":  # in process, on stores it fills itself: no simulator, no gateway process
        from ._queue_list import run_queue_list

        return await run_queue_list(messages=args.messages, pages=args.pages, postgres=args.postgres)
    if args.scenario in ("stores", "workers"):  # a gateway of their own per configuration: always spawned
        from ._stores import StoreOptions, run_stores, run_workers

        opts = StoreOptions(postgres=args.postgres, sessions=args.sessions, autopair=args.autopair,
                            load=Load(connections=args.clients, duration=args.duration, warmup=args.warmup,
                                      workers=args.workers))
        if args.scenario == "stores":
            return await run_stores(ui, opts)
        return await run_workers(ui, opts, args.gateway_workers)
    from ._setup import open_target

    async with open_target(spawn=args.spawn, url=args.url, sim_url=args.sim_url, token=args.token,
                           gateway_pid=args.gateway_pid, autopair=args.autopair,
                           receipt_delay=args.receipt_delay) as target:
        ui.log(f"gateway {target.url} (pid {target.gateway_pid or 'unknown'}), simulator {target.sim_url}")
        if args.scenario == "send":
            from ._send import SendOptions, run_send

            load = Load(connections=args.clients, duration=args.duration, warmup=args.warmup, workers=args.workers,
                        rate=args.rate)
            return await run_send(target, ui, SendOptions(
                sessions=args.sessions, load=load, e2e_sample=args.e2e_sample, drain_timeout=args.drain_timeout,
                webhooks=not args.no_webhooks, wrk_check=not args.no_wrk, api_only=args.api_only,
                rounds=args.rounds))
        if args.scenario == "sessions":
            from ._sessions import run_sessions

            return await run_sessions(target, ui, count=args.sessions, concurrency=args.concurrency,
                                      timeout=args.timeout, baseline=Load(connections=args.concurrency,
                                                                          duration=args.baseline_duration,
                                                                          warmup=1.0, workers=args.workers))
        if args.scenario == "webhooks":
            from ._webhooks import run_webhooks

            return await run_webhooks(target, ui, sessions=args.sessions, grace=args.grace, inbound=args.inbound,
                                      load=Load(connections=args.clients, duration=args.duration, warmup=0.0,
                                                workers=args.workers, rate=args.rate))
        from ._soak import run_soak

        return await run_soak(target, ui, sessions=args.sessions, warmup=args.warmup,
                              load=Load(connections=args.clients, duration=args.duration, warmup=0.0,
                                        workers=args.workers, rate=args.rate),
                              baseline_duration=args.baseline_duration)


if __name__ == "__main__":
    sys.exit(main())
