"""Pieces every scenario uses: the send requests (single and batch), load phases, the baseline, the sampler."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import trio

from gateway._requests import MAX_BATCH

from ._http import Endpoint, build_request
from ._load import LoadResult, LoadSpec, run_load
from ._procs import cpu_seconds, machine_cpu, open_fds, rss_bytes, spawn_baseline, tree_usage
from ._setup import RECIPIENT, BenchSession, Target
from ._stats import latency_summary, per_second, value_at
from ._ui import Ui

SEND_PATH: Final = "/api/v1/send-message"
BATCH_PATH: Final = "/api/v1/send-messages"
BATCH_SIZE: Final = MAX_BATCH  # the route's largest batch: what a bulk sender posts


def day_ahead() -> str:
    """An ISO time a day from now: a message scheduled then is accepted and stored, not sent during the run."""
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat(timespec="seconds")


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


def batch_requests(endpoint: Endpoint, sessions: list[BenchSession], connections: int, *, size: int = BATCH_SIZE,
                   text: str = "bench", send_at: str | None = None) -> list[bytes]:
    """One POST /send-messages of `size` messages per connection, as `send_requests` assigns sessions."""
    if not sessions:
        sessions = [BenchSession("baseline", "wgs_baseline_key")]
    item = {"to": RECIPIENT, "text": text} | ({"sendAt": send_at} if send_at else {})
    return [build_request(endpoint, "POST", BATCH_PATH, headers=sessions[i % len(sessions)].auth,
                          json_body={"messages": [item] * size}) for i in range(connections)]


@dataclass
class Load:
    """How to drive one phase: the same for the gateway and the baseline."""

    connections: int
    duration: float
    warmup: float = 2.0
    workers: int = 1
    rate: float | None = None
    cores: tuple[int, ...] | None = None  # pin the load generator here (off the gateway's cores)


async def run_phase(ui: Ui, label: str, endpoint: Endpoint, requests: list[bytes], load: Load, *,
                    collect_ids: bool = False, count_accepted: bool = False) -> LoadResult:
    spec = LoadSpec(endpoint=endpoint, requests=requests, duration=load.duration, warmup=load.warmup,
                    rate=load.rate, collect_ids=collect_ids, count_accepted=count_accepted, workers=load.workers,
                    cores=load.cores)
    with ui.load(label, load.warmup + load.duration) as progress:
        return await run_load(spec, progress)


CEILING_LABELS: Final = {"bare": "baseline (bare hypercorn-trio)", "quart": "framework ceiling (trivial quart-trio)"}


async def run_baseline(target: Target, ui: Ui, load: Load, sessions: list[BenchSession], *, ceiling: str = "bare",
                       send_at: str | None = None) -> LoadResult:
    """A ceiling server (`bare` or `quart`), driven by the same client with the same request; with the
    server's CPU over the measured window, as the gateway's is measured."""
    async with spawn_baseline(target.workdir, ceiling) as (url, proc), trio.open_nursery() as nursery:
        sampler = Sampler(proc.pid)
        await nursery.start(sampler.run)
        endpoint = Endpoint.from_url(url)
        result = await run_phase(ui, CEILING_LABELS[ceiling], endpoint,
                                 send_requests(endpoint, sessions, load.connections, send_at=send_at), load)
        sampler.sample()
        result.server_cpu_seconds = sampler.cpu_during(result.wall_start, result.wall_start + result.duration)
        nursery.cancel_scope.cancel()
        return result


def load_summary(result: LoadResult) -> dict[str, Any]:
    """The figures of one phase; a batch phase adds the messages its answers accepted."""
    ok = result.ok
    out = {
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
    if result.server_cpu_seconds is not None and result.completed:
        out["server_cpu_ms_per_request"] = round(result.server_cpu_seconds / result.completed * 1000, 4)
    if result.messages_accepted is not None:
        out["messages_accepted"] = result.messages_accepted
        out["messages_accepted_per_s"] = round(result.messages_accepted / result.duration, 1)
    return out


def messages_accepted(summary: dict[str, Any]) -> int:
    """Messages a phase got accepted: one per 2xx answer, or what the batch answers said."""
    return summary.get("messages_accepted", summary["accepted"])


def add_gateway_cpu(summary: dict[str, Any], sampler: Sampler, result: LoadResult) -> None:
    """The gateway's CPU (all its threads and worker processes, from /proc) over the phase's measured window:
    cores busy, and milliseconds per accepted message."""
    cpu = sampler.cpu_during(result.wall_start, result.wall_start + result.duration)
    if cpu is None:
        return
    summary["gateway_cpu_cores"] = round(cpu / result.duration, 2)
    if messages_accepted(summary):
        summary["gateway_cpu_ms_per_accepted"] = round(cpu / messages_accepted(summary) * 1000, 4)
    busy = sampler.machine_busy_during(result.wall_start, result.wall_start + result.duration)
    if busy is not None:
        summary["machine_busy_share"] = busy


def series(result: LoadResult) -> dict[str, list[float]]:
    return per_second(result.starts, result.latencies, result.duration, result.ok)


@dataclass
class Sampler:
    """RSS, open fds and CPU of one process, every `interval` seconds, with phase marks.

    With `tree`, all three are summed over the process and its descendants (`gateway serve --workers N`).
    """

    pid: int | None
    interval: float = 0.5
    tree: bool = False
    t0: float = field(default_factory=time.monotonic)
    wall0: float = field(default_factory=time.time)  # the wall time at t0: load windows are in wall time
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
            if self.tree:
                rss, fds, cpu = tree_usage(self.pid)
            else:
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

    def cpu_during(self, wall_start: float, wall_end: float) -> float | None:
        """CPU seconds between two wall times (a load's measured window, warm-up excluded), interpolated.

        Take a `sample()` before the phase starts and one after it returns, so both ends are covered."""
        a = value_at(self.t, self.cpu, wall_start - self.wall0)
        b = value_at(self.t, self.cpu, wall_end - self.wall0)
        return None if a is None or b is None else b - a

    def machine_busy_during(self, wall_start: float, wall_end: float) -> float | None:
        """The whole machine's mean busy share (0..1 of all cores) over samples inside the window."""
        t = np.asarray(self.t) + self.wall0
        busy = np.asarray(self.machine_busy)[(t > wall_start) & (t <= wall_end)]
        return round(float(busy.mean()), 3) if busy.size else None

    def to_json(self) -> dict[str, Any]:
        return {"t": self.t, "rss_bytes": self.rss, "fds": self.fds, "cpu_s": self.cpu,
                "machine_busy": self.machine_busy,
                "marks": [{"t": t, "label": label} for t, label in self.marks]}
