"""The `soak` scenario: a steady paced load for a long time, watching RSS and open fds.

Sessions have `webhookUrl` set to bench's receiver, so delivery is part of
the steady state. After the warm-up, a least-squares line through the RSS
samples gives the growth slope and the fitted growth over the window (the
target is under 5% over 10 minutes); open fds are compared between the first
and last tenth of the window (the target is no growth: at most
`FD_TOLERANCE` more, for connections that happen to be open).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import trio

from ._http import Endpoint
from ._receiver import open_receiver
from ._runs import (
    Load,
    Sampler,
    load_summary,
    run_baseline,
    run_phase,
    send_requests,
    series,
)
from ._send import prepare
from ._setup import Target
from ._stats import growth, ratio
from ._ui import Ui

TARGET_SECONDS: Final = 600.0
TARGET_RSS_GROWTH_PCT: Final = 5.0
FD_TOLERANCE: Final = 2


async def run_soak(target: Target, ui: Ui, *, sessions: int, load: Load, warmup: float,
                   baseline_duration: float) -> dict[str, Any]:
    sampler = Sampler(target.gateway_pid, interval=1.0 if load.duration >= 60 else 0.25)
    async with trio.open_nursery() as nursery, open_receiver() as receiver:
        await nursery.start(sampler.run)
        ready, hook_note = await prepare(target, ui, sessions, receiver, prefix="soak")
        base = await run_baseline(target, ui, Load(connections=load.connections, duration=baseline_duration,
                                                   warmup=1.0, workers=load.workers, rate=load.rate), ready)
        endpoint = Endpoint.from_url(target.url)
        start = sampler.mark("soak")
        result = await run_phase(ui, f"soak at {load.rate:g} req/s", endpoint,
                                 send_requests(endpoint, ready, load.connections), load)
        sampler.mark("done")
        nursery.cancel_scope.cancel()
    # up to the load's end: the connections closing afterwards are not a change in the gateway
    t, rss, fds = sampler.window(start + warmup, start + load.duration)
    g, b = load_summary(result), load_summary(base)
    memory: dict[str, Any] = {"available": False, "reason": "no gateway pid (give --gateway-pid)"}
    fd_growth = None
    if t.size >= 2:
        tenth = max(1, t.size // 10)
        fd_growth = int(np.median(fds[-tenth:]) - np.median(fds[:tenth]))
        memory = {"available": True, "window_s": round(float(t[-1] - t[0]), 1), "samples": int(t.size),
                  "rss": growth(t, rss), "fds": growth(t, fds) | {"growth_first_to_last_tenth": fd_growth}}
    elif target.gateway_pid is not None:
        memory = {"available": False, "reason": f"no samples after a {warmup:g}s warm-up; run longer"}
    full = load.duration >= TARGET_SECONDS
    rss_pct = memory["rss"]["growth_pct"] if memory.get("available") else None
    return {
        "scenario": "soak",
        "parameters": {"sessions": sessions, "rate": load.rate, "connections": load.connections,
                       "duration_s": load.duration, "warmup_s": warmup},
        "summary": {
            "rss_growth_after_warmup_pct": round(rss_pct, 2) if rss_pct is not None else "n/a",
            "rss_slope_kib_per_min": round(memory["rss"]["slope_per_min"] / 1024, 1) if rss_pct is not None
            else "n/a",
            "fd_growth_after_warmup": fd_growth if fd_growth is not None else "n/a",
            "webhook_deliveries": len(receiver.deliveries),
            **({"webhooks": hook_note} if hook_note else {}),
        },
        "memory": memory,
        "gateway": g, "baseline": b,
        "ratios": {"accepted_per_s": ratio(g["accepted_per_s"], b["requests_per_s"]),
                   "p99_at_same_rate": ratio(g["accepted_latency_ms"].get("p99_ms"), b["latency_ms"].get("p99_ms"))},
        "targets": {
            "rss_growth_under_5pct_over_10_min": (rss_pct < TARGET_RSS_GROWTH_PCT) if full and rss_pct is not None
            else None,
            "no_fd_growth": (fd_growth <= FD_TOLERANCE) if fd_growth is not None else None,
        },
        "notes": [] if full else [(f"the RSS target is for {TARGET_SECONDS / 60:g} minutes; this run was "
                                   f"{load.duration:g} s")],
        "series": {"gateway": series(result), "baseline": series(base)},
        "resources": sampler.to_json(),
    }
