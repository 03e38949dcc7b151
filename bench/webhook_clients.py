"""Which HTTP client should POST webhooks? Measure it: `python -m bench.webhook_clients`.

A bare receiver runs in its own process on 127.0.0.1 and answers every POST
with `200 ok`, keeping connections alive: by default a raw asyncio server
that is faster than any client measured, or (`--receiver hypercorn`) a bare
ASGI app on hypercorn's trio worker, the gateway's own server. Each client then posts signed
Standard Webhooks deliveries to it from `--concurrency` tasks for
`--duration` seconds:

- `httpx`: httpx.AsyncClient on trio (through anyio);
- `httpcore`: httpcore.AsyncConnectionPool on trio;
- `urllib3`: a urllib3 PoolManager called from `--concurrency` threads;
- `h11client`: the gateway's own client (`gateway.webhooks.H11Client`);
- `dispatcher`: the whole delivery path (memory outbox, claims, signing,
  policy, records) over `h11client`.

If `wrk` is installed it measures the receiver's own ceiling in each round,
so the figures are also printed as ratios that hold on a noisy machine.
Clients are interleaved over `--rounds` and medians reported. CPU time per
request (this process, all threads) is the steadiest figure on a shared
machine. `--json PATH` writes the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable

import trio

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = json.dumps({"event": "message.received", "sessionId": "bench",
                   "timestamp": "2026-01-01T00:00:00.000Z",
                   "data": {"id": "ABCDEF0123456789", "from": "15550000001@s.whatsapp.net",
                            "type": "text", "text": "hello from the benchmark " * 4}}).encode()
CLIENTS = ("httpx", "httpcore", "urllib3", "h11client", "dispatcher")


# the receiver (asyncio, no framework: it must be faster than any client measured)

class _Receiver(asyncio.Protocol):
    _answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", self.buffer[:end + 2])
            total = end + 4 + (int(match.group(1)) if match else 0)
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            self.transport.write(self._answer)  # type: ignore[attr-defined]


def serve(port: int) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Receiver, "127.0.0.1", port, backlog=1024)
        print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
        await server.serve_forever()
    asyncio.run(main())


async def asgi_receiver(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    """The same receiver as a bare ASGI app, for `--receiver hypercorn` (the gateway's own server)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_receiver(kind: str = "raw") -> tuple[subprocess.Popen[str], int]:
    if kind == "hypercorn":
        port = _free_port()
        proc = subprocess.Popen([sys.executable, "-m", "hypercorn", "--worker-class", "trio", "--bind",
                                 f"127.0.0.1:{port}", "--log-level", "WARNING",
                                 "bench.webhook_clients:asgi_receiver"], text=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                import socket
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return proc, port
            except OSError:
                time.sleep(0.1)
        proc.kill()
        raise RuntimeError("hypercorn receiver did not start")
    proc = subprocess.Popen([sys.executable, "-m", "bench.webhook_clients", "--serve", "0"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.kill()
        raise RuntimeError("receiver did not start")
    return proc, int(line.split()[1])


def wrk_ceiling(url: str, concurrency: int, duration: float) -> float | None:
    if shutil.which("wrk") is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(BODY.decode())}\n'
                     'wrk.headers["Content-Type"] = "application/json"\n')
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s", "-s",
                              script.name, url], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    match = re.search(r"Requests/sec:\s*([\d.]+)", out)
    return float(match.group(1)) if match else None


# the clients

def _headers(n: int) -> list[tuple[str, str]]:
    from gateway.webhooks import webhook_headers
    return [*webhook_headers(f"msg_bench{n}", int(time.time()), BODY, SECRET), ("content-type", "application/json")]


async def _drive(post: Callable[[int], Awaitable[int]], concurrency: int, duration: float) -> tuple[int, int]:
    done = errors = 0
    stop = trio.current_time() + duration

    async def worker(w: int) -> None:
        nonlocal done, errors
        n = 0
        while trio.current_time() < stop:
            n += 1
            try:
                status = await post(w * 10_000_000 + n)
                if status == 200:
                    done += 1
                else:
                    errors += 1
            except Exception:
                errors += 1
    async with trio.open_nursery() as nursery:
        for w in range(concurrency):
            nursery.start_soon(worker, w)
    return done, errors


async def run_httpx(url: str, concurrency: int, duration: float) -> tuple[int, int]:
    import httpx
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=15) as client:
        async def post(n: int) -> int:
            return (await client.post(url, content=BODY, headers=_headers(n))).status_code
        return await _drive(post, concurrency, duration)


async def run_httpcore(url: str, concurrency: int, duration: float) -> tuple[int, int]:
    import httpcore
    async with httpcore.AsyncConnectionPool(max_connections=concurrency) as pool:
        async def post(n: int) -> int:
            response = await pool.request("POST", url, content=BODY, headers=_headers(n))
            return response.status
        return await _drive(post, concurrency, duration)


def run_urllib3(url: str, concurrency: int, duration: float) -> tuple[int, int]:
    import urllib3
    pool = urllib3.PoolManager(maxsize=concurrency, block=True)
    counts = [0, 0]
    lock = threading.Lock()
    stop = time.monotonic() + duration

    def worker(w: int) -> None:
        n = 0
        while time.monotonic() < stop:
            n += 1
            try:
                ok = pool.request("POST", url, body=BODY, headers=dict(_headers(w * 10_000_000 + n))).status == 200
            except Exception:
                ok = False
            with lock:
                counts[0 if ok else 1] += 1
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pool.clear()
    return counts[0], counts[1]


async def run_h11client(url: str, concurrency: int, duration: float) -> tuple[int, int]:
    from gateway.webhooks import H11Client
    client = H11Client(max_idle_per_origin=concurrency)
    addresses = ["127.0.0.1"]

    async def post(n: int) -> int:
        return (await client.post(url, addresses, BODY, _headers(n))).status
    try:
        return await _drive(post, concurrency, duration)
    finally:
        await client.aclose()


async def run_dispatcher(url: str, concurrency: int, duration: float) -> tuple[int, int]:
    from gateway.webhooks import Delivery, DeliveryStatus, H11Client, MemoryDeliveryStore, open_dispatcher
    store = MemoryDeliveryStore()
    client = H11Client(max_idle_per_origin=concurrency)  # keep-alive for every slot of the endpoint
    now = int(time.time() * 1000)
    batch = 0

    def refill() -> None:  # keep a backlog, never an unbounded one
        nonlocal batch
        for i in range(concurrency * 8):
            store.add(Delivery(id=f"msg_{batch}_{i}", session_id="bench", event="message.received", endpoint=url,
                               secret=SECRET, payload=BODY, created_at=now, next_attempt_at=now))
        batch += 1
    refill()
    async with open_dispatcher(store, client, allow_private=True, max_in_flight=concurrency,
                               per_endpoint=concurrency) as dispatcher:
        stop = trio.current_time() + duration
        while trio.current_time() < stop:
            await trio.sleep(0.01)
            if store.count(DeliveryStatus.PENDING) < concurrency * 4:
                refill()
                dispatcher.wake()
        stats = dispatcher.statistics()
    await client.aclose()
    return stats.delivered, stats.attempts - stats.delivered


def measure(name: str, url: str, concurrency: int, duration: float) -> dict[str, float]:
    started = time.perf_counter()
    cpu = time.process_time()
    if name == "urllib3":
        ok, errors = run_urllib3(url, concurrency, duration)
    else:
        runner = {"httpx": run_httpx, "httpcore": run_httpcore, "h11client": run_h11client,
                  "dispatcher": run_dispatcher}[name]
        ok, errors = trio.run(runner, url, concurrency, duration)
    wall = time.perf_counter() - started
    cpu_used = time.process_time() - cpu
    return {"requests": ok, "errors": errors, "seconds": round(wall, 3), "req_per_s": round(ok / wall, 1),
            "cpu_ms_per_request": round(1000 * cpu_used / max(ok, 1), 3)}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook_clients", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per client and round (default 4)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds, clients interleaved; medians are reported (default 3)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    parser.add_argument("--clients", default=",".join(CLIENTS), help=f"comma-separated subset of {CLIENTS}")
    parser.add_argument("--receiver", choices=("raw", "hypercorn"), default="raw",
                        help="raw: a bare asyncio server, faster than any client (default); "
                             "hypercorn: a bare ASGI app on hypercorn's trio worker")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve)
        return 0
    names = [c for c in args.clients.split(",") if c]
    unknown = set(names) - set(CLIENTS)
    if unknown:
        parser.error(f"unknown clients: {sorted(unknown)}")
    proc, port = start_receiver(args.receiver)
    url = f"http://127.0.0.1:{port}/hook"
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    ceilings: list[float] = []
    try:
        for round_number in range(1, args.rounds + 1):
            ceiling = wrk_ceiling(url, args.concurrency, args.duration)
            if ceiling:
                ceilings.append(ceiling)
            print(f"round {round_number}: receiver (wrk) "
                  + (f"{ceiling:,.0f} req/s" if ceiling else "not measured (wrk not installed)"), flush=True)
            for name in names:
                r = measure(name, url, args.concurrency, args.duration)
                runs[name].append(r)
                print(f"  {name:>10}: {r['req_per_s']:>8,.0f} req/s  {r['cpu_ms_per_request']:.3f} ms CPU/request"
                      f"  ({r['errors']:.0f} errors)", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    ceiling = _median(ceilings)
    summary = {name: {"req_per_s": _median([r["req_per_s"] for r in rs]),
                      "cpu_ms_per_request": _median([r["cpu_ms_per_request"] for r in rs]),
                      "errors": sum(r["errors"] for r in rs)} for name, rs in runs.items()}
    base = summary.get("httpx", {}).get("req_per_s")
    print(f"\nmedians over {args.rounds} rounds, {args.receiver} receiver, concurrency {args.concurrency}, "
          f"{os.cpu_count()} CPUs:")
    if ceiling:
        print(f"  {'receiver':>10}: {ceiling:>8,.0f} req/s (wrk)")
    for name, r in summary.items():
        parts = [f"{r['req_per_s']:>8,.0f} req/s", f"{r['cpu_ms_per_request']:.3f} ms CPU/request"]
        if ceiling:
            parts.append(f"{r['req_per_s'] / ceiling:.2f} of the receiver")
        if base:
            parts.append(f"{r['req_per_s'] / base:.1f}x httpx")
        print(f"  {name:>10}: " + ", ".join(parts))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"receiver": args.receiver, "concurrency": args.concurrency, "duration": args.duration,
                       "rounds": args.rounds,
                       "cpus": os.cpu_count(), "receiver_ceiling_req_per_s": ceiling or None,
                       "summary": summary, "runs": runs}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
