"""Send throughput of `gateway serve --workers 1` against `--workers 2` on PostgreSQL (a script, not a test).

    .venv/bin/python -m tests.cluster_bench [--rounds 3] [--duration 15] [--sessions 20] [--clients 64]

Each round starts a fresh schema, a simulator (autopair) and `gateway serve --workers W`
with the load-test settings (limits off, no pacing), creates and connects the sessions
(counted CONNECTED in the database, which sees every worker), then runs a closed loop
of `--clients` keep-alive connections posting /api/v1/send-message for `--duration`
seconds after a warm-up. Rounds alternate W=1 and W=2 so that a noisy machine affects
both alike; the report gives the median accepted req/s of each and their ratio, plus
where the CPU went during the measured window (gateway processes, PostgreSQL, the
simulator, this load generator): on a machine where they all share the cores, the
ratio cannot exceed total cores / cores busy at W=1 (Amdahl).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import trio

from tests._pg import PG_URL, with_search_path
from tests._procs import free_port, gateway_cmd

LOAD_ENV = {
    "GATEWAY_TRANSPORT": "sim", "GATEWAY_LIMIT_SEND": "off", "GATEWAY_LIMIT_API": "off",
    "GATEWAY_LIMIT_AUTH": "off", "GATEWAY_SEND_MIN_GAP": "0", "GATEWAY_SEND_JITTER": "0", "GATEWAY_QR_WAIT": "0",
    "GATEWAY_ALLOW_PRIVATE_URLS": "true", "GATEWAY_LOG_LEVEL": "WARNING",
}
RECIPIENT = "+15550009999"


class Http:
    """A minimal keep-alive HTTP/1.1 client on trio streams (cheap enough not to be the bottleneck)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stream: trio.SocketStream | None = None
        self.buffer = b""

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
                      ) -> tuple[int, bytes]:
        if self.stream is None:
            self.stream = await trio.open_tcp_stream("127.0.0.1", self.port)
            self.buffer = b""
        lines = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1", f"content-length: {len(body)}",
                 "content-type: application/json", *(f"{k}: {v}" for k, v in (headers or {}).items())]
        await self.stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        while b"\r\n\r\n" not in self.buffer:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        while len(rest) < length:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise ConnectionError("closed")
            rest += chunk
        self.buffer = rest[length:]
        return int(head[9:12]), rest[:length]


def cpu_by_group() -> collections.Counter[str]:
    out: collections.Counter[str] = collections.Counter()
    tick = os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / tick
        group = ("postgres" if "postgres" in cmd else "gateway" if "gateway serve" in cmd
                 else "simulator" if "gateway simulator" in cmd else "load" if int(pid) == os.getpid() else "other")
        out[group] += seconds
    return out


async def one_round(workers: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    schema = f"cluster_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = with_search_path(PG_URL, schema)
    sim_port, port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(LOAD_ENV, GATEWAY_DATABASE_URL=url, GATEWAY_SIM_URL=f"ws://127.0.0.1:{sim_port}",
               GATEWAY_DATA_DIR=str(workdir / f"data-{schema}"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen(gateway_cmd("simulator", "--bind", f"127.0.0.1:{sim_port}", "--autopair",
                                                  "0.01", "--receipt-delay", "0.05"), env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for command in (["migrate"], ["users", "create", "--email", "b@example.com", "--password", "bench-pw-long"]):
            subprocess.run(gateway_cmd(*command), env=env, check=True, capture_output=True)
        token = subprocess.run(gateway_cmd("tokens", "create", "--email", "b@example.com", "--name", "b"), env=env,
                               check=True, capture_output=True, text=True).stdout.strip()
        procs.append(subprocess.Popen(gateway_cmd("serve", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)),
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        keys = await setup_sessions(port, token, url, args.sessions, sim_port, workers)
        return await load(port, keys, args, workers)
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


async def setup_sessions(port: int, token: str, url: str, count: int, sim_port: int, workers: int) -> list[str]:
    from bench.simulator import open_sim_control

    with trio.fail_after(60):
        while True:
            try:
                status, _ = await Http(port).request("GET", "/readyz")
                if status == 200:
                    break
            except OSError:
                pass
            await trio.sleep(0.2)
        http = Http(port)
        keys = []
        for i in range(count):
            status, body = await http.request("POST", "/api/v1/whatsapp-sessions", json.dumps(
                {"name": f"b{i}", "phoneNumber": f"+1555200{i:04d}"}).encode(), {"X-API-Token": token})
            assert status == 201, body
            session = json.loads(body)
            keys.append(session["apiKey"])
            status, body = await http.request("POST", f"/api/v1/whatsapp-sessions/{session['id']}/connect",
                                              headers={"X-API-Token": token})
            assert status == 200, body
        while True:  # the database sees every worker's sessions (/metrics sees one process), spread evenly
            with psycopg.connect(url) as conn:
                connected = conn.execute("SELECT count(*) FROM sessions WHERE status = 'CONNECTED'").fetchone()[0]
                spread = [r[0] for r in conn.execute(
                    "SELECT count(*) FROM session_leases WHERE expires_at > now() GROUP BY node_id")]
            if connected == count and len(spread) == workers and max(spread) - min(spread) <= 1:
                break
            await trio.sleep(0.2)
        async with open_sim_control(f"ws://127.0.0.1:{sim_port}") as ctl:
            await ctl.register(RECIPIENT)
    return keys


async def load(port: int, keys: list[str], args: argparse.Namespace, workers: int) -> dict[str, Any]:
    counts: collections.Counter[int] = collections.Counter()
    measuring = False
    body = json.dumps({"to": RECIPIENT, "text": "cluster bench"}).encode()

    async def client(i: int) -> None:
        http = Http(port)
        headers = {"Authorization": f"Bearer {keys[i % len(keys)]}"}
        while True:
            status, _ = await http.request("POST", "/api/v1/send-message", body, headers)
            if measuring:
                counts[status] += 1

    async with trio.open_nursery() as nursery:
        for i in range(args.clients):
            nursery.start_soon(client, i)
        await trio.sleep(args.warmup)
        before, started = cpu_by_group(), time.monotonic()
        measuring = True
        await trio.sleep(args.duration)
        measuring = False
        after, elapsed = cpu_by_group(), time.monotonic() - started
        nursery.cancel_scope.cancel()
    cpu = {k: round((after[k] - before[k]) / elapsed, 2) for k in after if after[k] - before[k] > 0.01 * elapsed}
    return {"workers": workers, "accepted_per_s": round(counts[202] / elapsed, 1),
            "other_statuses": {k: v for k, v in counts.items() if k != 202}, "cpu_cores": cpu}


async def main(args: argparse.Namespace) -> None:
    results: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
        for r in range(args.rounds):
            for workers in (1, 2):
                result = await one_round(workers, args, Path(tmp))
                results[workers].append(result)
                print(f"round {r + 1} workers={workers}: {json.dumps(result)}", flush=True)
    one = statistics.median(r["accepted_per_s"] for r in results[1])
    two = statistics.median(r["accepted_per_s"] for r in results[2])
    busy = statistics.median(sum(r["cpu_cores"].values()) for r in results[1])
    print(json.dumps({"cores": os.cpu_count(), "workers_1_accepted_per_s": one, "workers_2_accepted_per_s": two,
                      "ratio": round(two / one, 2), "cores_busy_at_workers_1": round(busy, 2),
                      "amdahl_bound": round((os.cpu_count() or 1) / busy, 2)}, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--clients", type=int, default=64)
    trio.run(main, parser.parse_args())
    sys.exit(0)
