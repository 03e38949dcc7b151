"""Pieces every scenario uses: the send request, load phases, the baseline, the resource sampler."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import trio

from ._http import Endpoint, build_request
from ._load import LoadResult, LoadSpec, run_load
from ._procs import cpu_seconds, machine_cpu, open_fds, rss_bytes, spawn_baseline
from ._setup import RECIPIENT, BenchSession, Target
from ._stats import latency_summary, per_second
from ._ui import Ui

SEND_PATH: Final = "/api/v1/send-message"


def send_requests(endpoint: Endpoint, sessions: list[BenchSession], connections: int, *,
                  text: str = "bench", send_at: str | None = None) -> list[bytes]:
    """One POST /send-message per connection; connection i sends as session i mod N.

    With `send_at` (an ISO time), every message is scheduled for then: accepted and stored, not sent.
    """
    if not sessions:
        sessions = [BenchSession("baseline", "wgs_baseline_key")]
    body = {"to": RECIPIENT, "text": text} | ({"sendAt": send_at} if send_at else {})
    return [build_request(endpoint, "POST", SEND_PATH, headers=sessions[i % len(sessions)].auth,
                          json_body=body) for i in range(connections)]


@dataclass
class Load:
    """How to drive one phase: the same for the gateway and the baseline."""

    connections: int
    duration: float
    warmup: float = 2.0
    workers: int = 1
    rate: float | None = None


async def run_phase(ui: Ui, label: str, endpoint: Endpoint, requests: list[bytes], load: Load, *,
                    collect_ids: bool = False) -> LoadResult:
    spec = LoadSpec(endpoint=endpoint, requests=requests, duration=load.duration, warmup=load.warmup,
                    rate=load.rate, collect_ids=collect_ids, workers=load.workers)
    with ui.load(label, load.warmup + load.duration) as progress:
        return await run_load(spec, progress)


CEILING_LABELS: Final = {"bare": "baseline (bare hypercorn-trio)", "quart": "framework ceiling (trivial quart-trio)"}


async def run_baseline(target: Target, ui: Ui, load: Load, sessions: list[BenchSession], *, ceiling: str = "bare",
                       send_at: str | None = None) -> LoadResult:
    """A ceiling server (`bare` or `quart`), driven by the same client with the same request."""
    async with spawn_baseline(target.workdir, ceiling) as (url, _proc):
        endpoint = Endpoint.from_url(url)
        return await run_phase(ui, CEILING_LABELS[ceiling], endpoint,
                               send_requests(endpoint, sessions, load.connections, send_at=send_at), load)


def load_summary(result: LoadResult) -> dict[str, Any]:
    ok = result.ok
    return {
        "duration_s": result.duration,
        "connections": result.connections,
        "load_workers": result.workers,
        "requests": result.completed,
        "accepted": result.ok_count,
        "requests_per_s": round(result.completed / result.duration, 1),
        "accepted_per_s": round(result.ok_count / result.duration, 1),
        "latency_ms": latency_summary(result.latencies),
        "accepted_latency_ms": latency_summary(result.latencies[ok]),
        "errors": dict(sorted(result.errors.items())),
        "client_cpu_s": round(result.cpu_seconds, 2),
        "client_cpu_ms_per_request": round(result.cpu_seconds / max(1, result.completed) * 1000, 4),
    }


def series(result: LoadResult) -> dict[str, list[float]]:
    return per_second(result.starts, result.latencies, result.duration, result.ok)


@dataclass
class Sampler:
    """RSS, open fds and CPU of one process, every `interval` seconds, with phase marks."""

    pid: int | None
    interval: float = 0.5
    t0: float = field(default_factory=time.monotonic)
    t: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    # the whole machine's busy share since the previous sample (0..1 of all cores): the noise gauge
    machine_busy: list[float] = field(default_factory=list)
    _machine_last: tuple[float, float] | None = None
    marks: list[tuple[float, str]] = field(default_factory=list)

    def sample(self) -> dict[str, float] | None:
        if self.pid is None:
            return None
        try:
            rss, fds, cpu = rss_bytes(self.pid), open_fds(self.pid), cpu_seconds(self.pid)
        except (OSError, ValueError):
            return None
        busy, total = machine_cpu()
        last = self._machine_last or (busy, total)
        self._machine_last = (busy, total)
        self.machine_busy.append(round((busy - last[0]) / (total - last[1]), 3) if total > last[1] else 0.0)
        self.t.append(round(time.monotonic() - self.t0, 3))
        self.rss.append(rss)
        self.fds.append(fds)
        self.cpu.append(cpu)
        return {"rss_bytes": rss, "fds": fds, "cpu_s": cpu}

    def mark(self, label: str) -> float:
        at = round(time.monotonic() - self.t0, 3)
        self.marks.append((at, label))
        return at

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while self.pid is not None:
            self.sample()
            await trio.sleep(self.interval)

    def window(self, start: float, end: float = float("inf")) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = np.asarray(self.t)
        keep = (t >= start) & (t <= end)
        return t[keep], np.asarray(self.rss)[keep], np.asarray(self.fds)[keep]

    def cpu_between(self, start: float, end: float) -> float | None:
        t = np.asarray(self.t)
        inside = np.nonzero((t >= start) & (t <= end))[0]
        if inside.size < 2:
            return None
        return float(self.cpu[inside[-1]] - self.cpu[inside[0]])

    def to_json(self) -> dict[str, Any]:
        return {"t": self.t, "rss_bytes": self.rss, "fds": self.fds, "cpu_s": self.cpu,
                "machine_busy": self.machine_busy,
                "marks": [{"t": t, "label": label} for t, label in self.marks]}
