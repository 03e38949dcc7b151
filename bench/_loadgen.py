"""One load-generator worker process: `python -m bench._loadgen`, driven by `bench._load`.

The parent writes a `LoadJob` (JSON) on stdin. The worker opens its
connections, prints `READY`, waits for `GO`, then keeps each connection busy
(closed loop) or paced (`rate`), for `warmup + duration` seconds. Every
second quarter it prints `P <completed> <errors>`; at the end `R <base64
msgpack LoadOutput>`. Samples from the warm-up are dropped.

Latency is measured from the moment a request was due: in a closed loop that
is when it was written; with a `rate` it is its scheduled time, so a server
that falls behind shows its queueing delay (no coordinated omission).

With `count_accepted` (the batch route), the `"accepted":N` of each 2xx
answer is summed: one request accepts many messages.
"""

from __future__ import annotations

import base64
import os
import sys
import time
from array import array
from collections import Counter
from typing import Final

import msgspec
import trio

from ._http import MessageReader, ProtocolError

PROGRESS_INTERVAL: Final = 0.25
_ID_MARK: Final = b'"messageId":"'
_ACCEPTED_MARK: Final = b'"accepted":'


class LoadJob(msgspec.Struct, kw_only=True):
    host: str
    port: int
    requests: list[bytes]  # one per connection of this worker
    warmup: float
    duration: float
    rate: float | None = None  # requests/s for this whole worker; None: as fast as answers come
    collect_ids: bool = False  # keep (messageId, accept wall time) of 2xx answers
    count_accepted: bool = False  # sum the `"accepted":N` of 2xx answers (send-messages)
    timeout: float = 30.0


class LoadOutput(msgspec.Struct, kw_only=True):
    wall_start: float  # time.time() when the measured window began
    starts: bytes  # float64 seconds since the window began (when each request was due)
    latencies: bytes  # float64 seconds
    statuses: bytes  # uint16; 0 for a transport error
    errors: dict[str, int]
    ids: list[str]
    id_times: bytes  # float64 wall times the 202 came back
    id_connections: bytes  # uint32: which of this worker's connections (its `requests` index) got each id
    cpu_seconds: float
    warmup_requests: int
    items_accepted: int = 0  # with count_accepted: the sum of `"accepted":N` over measured 2xx answers


class _ErrorBody(msgspec.Struct):
    error: _ErrorCode


class _ErrorCode(msgspec.Struct):
    code: str = "?"


_error_decoder = msgspec.json.Decoder(_ErrorBody)


def error_key(status: int, body: bytes) -> str:
    try:
        return f"{status} {_error_decoder.decode(body).error.code}"
    except (msgspec.DecodeError, msgspec.ValidationError):
        return str(status)


def accepted_count(body: bytes) -> int:
    """N in a batch answer's `"accepted":N` (0 without one)."""
    i = body.find(_ACCEPTED_MARK)
    if i < 0:
        return 0
    j = k = i + len(_ACCEPTED_MARK)
    while k < len(body) and 48 <= body[k] <= 57:  # ASCII digits
        k += 1
    return int(body[j:k]) if k > j else 0


class _Recorder:
    def __init__(self) -> None:
        self.starts = array("d")
        self.latencies = array("d")
        self.statuses = array("H")
        self.errors: Counter[str] = Counter()
        self.ids: list[str] = []
        self.id_times = array("d")
        self.id_connections = array("I")
        self.warmup_requests = 0
        self.completed = 0
        self.items_accepted = 0


async def _connection(job: LoadJob, index: int, raw: bytes, stream: trio.SocketStream | None, rec: _Recorder, t0: float,
                      wall0: float, interval: float | None, offset: float) -> None:
    measure_from = t0 + job.warmup
    end = measure_from + job.duration
    reader = MessageReader(stream) if stream is not None else None
    due = t0 + offset
    perf = time.perf_counter
    while True:
        if interval is not None:
            now = perf()
            if due > now:
                await trio.sleep(due - now)
            start = due
            due += interval
        else:
            start = perf()
        if start >= end:
            break
        try:
            if stream is None:
                stream = await trio.open_tcp_stream(job.host, job.port)
                reader = MessageReader(stream)
            assert reader is not None
            with trio.fail_after(job.timeout):
                await stream.send_all(raw)
                head, headers, body = await reader.read_message()
            status = int(head[9:12])
            if b"connection: close" in headers:
                await stream.aclose()
                stream = None
        except (OSError, trio.BrokenResourceError, ProtocolError, trio.TooSlowError, ValueError) as exc:
            status, body = 0, b""
            kind = "timeout" if isinstance(exc, trio.TooSlowError) else type(exc).__name__
            if stream is not None:
                with trio.move_on_after(1):
                    await stream.aclose()
                stream = None
            if start >= measure_from:
                rec.errors[f"transport {kind}"] += 1
            await trio.sleep(0.05)  # do not spin on a server that refuses connections
        done = perf()
        if start < measure_from:
            rec.warmup_requests += 1
            continue
        rec.completed += 1
        rec.starts.append(start - measure_from)
        rec.latencies.append(done - start)
        rec.statuses.append(status)
        if status >= 300:
            rec.errors[error_key(status, body)] += 1
        elif job.count_accepted and status:
            rec.items_accepted += accepted_count(body)
        elif job.collect_ids and status:
            i = body.find(_ID_MARK)
            if i >= 0:
                j = i + len(_ID_MARK)
                rec.ids.append(body[j:body.find(b'"', j)].decode())
                rec.id_times.append(wall0 + (done - t0))
                rec.id_connections.append(index)
    if stream is not None:
        with trio.move_on_after(1):
            await stream.aclose()


async def _progress(rec: _Recorder, out: trio.abc.SendStream) -> None:
    while True:
        await trio.sleep(PROGRESS_INTERVAL)
        await out.send_all(f"P {rec.completed} {sum(rec.errors.values())}\n".encode())


async def run_job(job: LoadJob, stdin: trio.abc.ReceiveStream, stdout: trio.abc.SendStream) -> LoadOutput:
    # Open the connections before READY so that connecting is not measured.
    streams: list[trio.SocketStream | None] = [None] * len(job.requests)

    async def open_one(i: int) -> None:
        try:
            streams[i] = await trio.open_tcp_stream(job.host, job.port)
        except OSError:
            pass  # the connection loop retries, and counts the error

    async with trio.open_nursery() as nursery:
        for i in range(len(job.requests)):
            nursery.start_soon(open_one, i)
    await stdout.send_all(f"READY {sum(s is not None for s in streams)}\n".encode())
    while b"GO" not in await stdin.receive_some(16):
        pass
    rec = _Recorder()
    cpu0 = time.process_time()
    t0, wall0 = time.perf_counter(), time.time()
    n = len(job.requests)
    interval = n / job.rate if job.rate else None
    async with trio.open_nursery() as nursery:
        progress = nursery.cancel_scope
        nursery.start_soon(_progress, rec, stdout)
        async with trio.open_nursery() as conns:
            for i, raw in enumerate(job.requests):
                # paced connections are spread over one interval, not fired together
                conns.start_soon(_connection, job, i, raw, streams[i], rec, t0, wall0, interval,
                                 (interval or 0) * i / n)
        progress.cancel()
    return LoadOutput(
        wall_start=wall0 + job.warmup, starts=rec.starts.tobytes(), latencies=rec.latencies.tobytes(),
        statuses=rec.statuses.tobytes(), errors=dict(rec.errors), ids=rec.ids, id_times=rec.id_times.tobytes(),
        id_connections=rec.id_connections.tobytes(),
        cpu_seconds=time.process_time() - cpu0, warmup_requests=rec.warmup_requests,
        items_accepted=rec.items_accepted)


async def _main() -> None:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    stdout = trio.lowlevel.FdStream(os.dup(sys.stdout.fileno()))
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = await stdin.receive_some(1 << 20)
        if not chunk:
            raise SystemExit("bench._loadgen: no job on stdin")
        data += chunk
    job = msgspec.json.decode(bytes(data), type=LoadJob)
    output = await run_job(job, stdin, stdout)
    await stdout.send_all(b"R " + base64.b64encode(msgspec.msgpack.encode(output)) + b"\n")


if __name__ == "__main__":
    trio.run(_main)
