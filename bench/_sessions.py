"""The `sessions` scenario: N sessions to CONNECTED; the time it takes and the gateway's RSS per session.

RSS is read from /proc/PID/statm: once the gateway is idle before the run,
after the sessions exist, and after all are CONNECTED (then again after a
short settle). Per-session figures divide the growth by N. The time target
(10,000 in at most 60 s) is measured from the first create request to the
moment the last session is CONNECTED.
"""

from __future__ import annotations

import time
from typing import Any, Final

import trio

from ._http import Client
from ._runs import Load, Sampler, load_summary, run_baseline
from ._setup import (
    Target,
    connect_sessions,
    connected_count,
    create_sessions,
    wait_connected,
)
from ._stats import ratio
from ._ui import Ui

KIB: Final = 1024
TARGET_SESSIONS: Final = 10_000
TARGET_SECONDS: Final = 60.0
TARGET_RSS_PER_SESSION: Final = 64 * KIB
SETTLE: Final = 2.0
# /metrics walks every actor: polling it often would load the gateway being measured
POLL: Final = 1.0


async def run_sessions(target: Target, ui: Ui, *, count: int, concurrency: int, timeout: float,
                       baseline: Load) -> dict[str, Any]:
    sampler = Sampler(target.gateway_pid, interval=0.5)
    async with trio.open_nursery() as nursery:
        await nursery.start(sampler.run)
        base = await run_baseline(target, ui, baseline, [])
        await trio.sleep(SETTLE)
        client = Client(target.url)
        already = await connected_count(client) or 0
        await client.aclose()
        rss0 = sampler.sample()
        sampler.mark("create")
        t0 = time.monotonic()
        with ui.task(f"creating {count:,} sessions", count) as task:
            sessions = await create_sessions(target, count, concurrency=concurrency, on_done=task.advance)
        t_created = time.monotonic()
        rss_created = sampler.sample()
        sampler.mark("connect")
        with trio.fail_after(timeout), ui.task(f"connecting {count:,} sessions", count) as task:
            async with trio.open_nursery() as inner:
                inner.start_soon(lambda: connect_sessions(target, sessions, concurrency=concurrency))
                t_connected = await wait_connected(target, sessions, already=already, timeout=timeout, poll=POLL,
                                                   on_progress=lambda n: task.update(min(n, count)))
        rss1 = sampler.sample()
        sampler.mark("connected")
        await trio.sleep(SETTLE)
        rss_settled = sampler.sample()
        nursery.cancel_scope.cancel()
    create_s, connect_s, total_s = t_created - t0, t_connected - t_created, t_connected - t0
    b = load_summary(base)
    memory, per_session = _memory(rss0, rss_created, rss1, rss_settled, count)
    full_size = count >= TARGET_SESSIONS
    return {
        "scenario": "sessions",
        "parameters": {"sessions": count, "concurrency": concurrency},
        "summary": {
            "sessions": count,
            "create_s": round(create_s, 2),
            "connect_to_all_connected_s": round(connect_s, 2),
            "total_s": round(total_s, 2),
            "sessions_per_s": round(count / total_s, 1),
            "rss_per_session_kib": memory.get("rss_per_session_kib", "n/a"),
        },
        "memory": memory,
        "baseline": b,
        "ratios": {
            "create_per_s": ratio(count / create_s, b["requests_per_s"]),
            "connect_per_s": ratio(count / connect_s, b["requests_per_s"]),
        },
        "targets": {
            f"{TARGET_SESSIONS}_sessions_within_{TARGET_SECONDS:g}_s":
                (total_s <= TARGET_SECONDS) if full_size else None,
            "at_most_64_KiB_rss_per_session": (per_session <= TARGET_RSS_PER_SESSION)
            if per_session is not None and full_size else None,
        },
        "notes": [] if full_size else [f"targets apply to {TARGET_SESSIONS:,} sessions; this run had {count:,}"],
        "resources": sampler.to_json(),
    }


def _memory(rss0: dict | None, rss_created: dict | None, rss1: dict | None, rss_settled: dict | None,
            count: int) -> tuple[dict[str, Any], float | None]:
    """The RSS and fd figures of the run, and the RSS each session costs (None without a gateway pid)."""
    if not (rss0 and rss1 and rss_settled):
        return {"available": False, "reason": "no gateway pid (give --gateway-pid)"}, None
    per_session = (max(rss1["rss_bytes"], rss_settled["rss_bytes"]) - rss0["rss_bytes"]) / count
    return {
        "available": True,
        "rss_before_bytes": rss0["rss_bytes"],
        "rss_after_create_bytes": rss_created["rss_bytes"] if rss_created else None,
        "rss_connected_bytes": rss1["rss_bytes"],
        "rss_settled_bytes": rss_settled["rss_bytes"],
        "rss_per_session_bytes": round(per_session),
        "rss_per_session_kib": round(per_session / KIB, 2),
        "fds_before": rss0["fds"], "fds_connected": rss1["fds"],
        "gateway_cpu_s": round(rss1["cpu_s"] - rss0["cpu_s"], 2),
    }, per_session
