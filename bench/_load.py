"""Drive load from several worker processes and merge what they measured.

`run_load` starts `workers` processes of `bench._loadgen`, splits the
connections between them, starts them together once every one has connected,
relays their progress, and merges their samples into one `LoadResult`.
Several processes, because one Python process tops out at one core.
With `cores`, they run pinned there (`taskset`), off the gateway's cores.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import numpy as np
import trio

from ._http import Endpoint
from ._loadgen import LoadJob, LoadOutput
from ._procs import pinned

Progress = Callable[[int, int], None]  # (completed, errors) so far, summed over workers


@dataclass
class LoadSpec:
    endpoint: Endpoint
    requests: list[bytes]  # one per connection: its length is the number of concurrent clients
    duration: float
    warmup: float = 1.0
    rate: float | None = None  # total requests/s (paced); None: closed loop
    collect_ids: bool = False
    count_accepted: bool = False  # sum the messages each batch answer accepted
    workers: int = 1
    timeout: float = 30.0
    cores: tuple[int, ...] | None = None  # pin the load-generator processes here


@dataclass
class LoadResult:
    duration: float
    wall_start: float
    starts: np.ndarray  # seconds since the window began
    latencies: np.ndarray  # seconds
    statuses: np.ndarray
    errors: Counter[str]
    ids: list[str] = field(default_factory=list)
    id_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    id_connections: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # global index
    cpu_seconds: float = 0.0
    workers: int = 1
    connections: int = 0
    messages_accepted: int | None = None  # with count_accepted: messages the 2xx batch answers accepted
    server_cpu_seconds: float | None = None  # a ceiling server's CPU over the measured window (from /proc)

    @property
    def completed(self) -> int:
        return int(self.latencies.size)

    @property
    def ok(self) -> np.ndarray:
        return (self.statuses >= 200) & (self.statuses < 300)

    @property
    def ok_count(self) -> int:
        return int(self.ok.sum())


class _Lines:
    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buf = bytearray()

    async def next(self) -> bytes:
        while (i := self._buf.find(b"\n")) < 0:
            chunk = await self._stream.receive_some(1 << 20)
            if not chunk:
                raise EOFError("load worker exited")
            self._buf += chunk
        line = bytes(self._buf[:i])
        del self._buf[:i + 1]
        return line


async def run_load(spec: LoadSpec, on_progress: Progress | None = None) -> LoadResult:
    workers = max(1, min(spec.workers, len(spec.requests)))
    shares = [spec.requests[w::workers] for w in range(workers)]
    procs = []
    counts = [[0, 0] for _ in range(workers)]
    outputs: list[LoadOutput | None] = [None] * workers
    try:
        for _ in shares:
            procs.append(await trio.lowlevel.open_process(
                pinned([sys.executable, "-m", "bench._loadgen"], spec.cores), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE))
        lines = [_Lines(p.stdout) for p in procs]
        for proc, share in zip(procs, shares, strict=True):
            job = LoadJob(host=spec.endpoint.host, port=spec.endpoint.port, requests=share, warmup=spec.warmup,
                          duration=spec.duration, collect_ids=spec.collect_ids, timeout=spec.timeout,
                          count_accepted=spec.count_accepted,
                          rate=spec.rate * len(share) / len(spec.requests) if spec.rate else None)
            await proc.stdin.send_all(msgspec.json.encode(job) + b"\n")
        with trio.fail_after(60):
            for reader in lines:
                if not (await reader.next()).startswith(b"READY"):
                    raise RuntimeError("load worker did not start")
        for proc in procs:
            await proc.stdin.send_all(b"GO\n")

        async def follow(w: int) -> None:
            while True:
                line = await lines[w].next()
                if line.startswith(b"P "):
                    _, done, errors = line.split()
                    counts[w] = [int(done), int(errors)]
                    if on_progress is not None:
                        on_progress(sum(c[0] for c in counts), sum(c[1] for c in counts))
                elif line.startswith(b"R "):
                    outputs[w] = msgspec.msgpack.decode(base64.b64decode(line[2:]), type=LoadOutput)
                    return

        with trio.fail_after(spec.warmup + spec.duration + spec.timeout + 60):
            async with trio.open_nursery() as nursery:
                for w in range(workers):
                    nursery.start_soon(follow, w)
        for proc in procs:
            with trio.fail_after(10):
                await proc.wait()
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await proc.wait()
    if any(o is None for o in outputs):
        raise RuntimeError("a load worker ended without its results")
    return merge([o for o in outputs if o is not None], spec, workers)


def merge(outputs: list[LoadOutput], spec: LoadSpec, workers: int) -> LoadResult:
    wall0 = min(o.wall_start for o in outputs)
    starts, lats, statuses, id_times, id_conns = [], [], [], [], []
    errors: Counter[str] = Counter()
    ids: list[str] = []
    for w, o in enumerate(outputs):
        starts.append(np.frombuffer(o.starts, dtype=np.float64) + (o.wall_start - wall0))
        lats.append(np.frombuffer(o.latencies, dtype=np.float64))
        statuses.append(np.frombuffer(o.statuses, dtype=np.uint16))
        errors.update(o.errors)
        ids.extend(o.ids)
        id_times.append(np.frombuffer(o.id_times, dtype=np.float64))
        # worker w had connections w, w + workers, w + 2 * workers, ... (see run_load)
        id_conns.append(np.frombuffer(o.id_connections, dtype=np.uint32).astype(np.int64) * workers + w)
    return LoadResult(
        duration=spec.duration, wall_start=wall0, starts=np.concatenate(starts), latencies=np.concatenate(lats),
        statuses=np.concatenate(statuses), errors=errors, ids=ids, id_times=np.concatenate(id_times),
        id_connections=np.concatenate(id_conns),
        cpu_seconds=sum(o.cpu_seconds for o in outputs), workers=workers, connections=len(spec.requests),
        messages_accepted=sum(o.items_accepted for o in outputs) if spec.count_accepted else None)
