"""The processes bench starts and watches: simulator, gateway, baseline; RSS, fds and CPU from /proc.

With `--spawn`, bench runs `gateway simulator` and `gateway serve` in a
fresh temporary directory. Load-test settings go through the documented
environment variables only (`GATEWAY_LIMIT_*=off`, no pacing, private
webhook URLs allowed, `GATEWAY_QR_WAIT=0`): the gateway's code is the code
that ships.

`gateway serve --workers N` is a parent and N children, so a gateway's CPU
is read over its process tree (`tree_cpu_seconds`). Where the machine has
cores to spare, `plan_pinning` gives the gateway cores of its own and puts
everything else (load generator, simulator, PostgreSQL backends) on the
others, with `taskset`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import trio

from ._http import Client, ProtocolError

# What --spawn sets for a load test. Every one is a documented setting (README, Settings).
LOAD_SETTINGS: Final = {
    "GATEWAY_TRANSPORT": "sim",
    "GATEWAY_LIMIT_SEND": "off",
    "GATEWAY_LIMIT_API": "off",
    "GATEWAY_LIMIT_AUTH": "off",
    "GATEWAY_SEND_MIN_GAP": "0",
    "GATEWAY_SEND_JITTER": "0",
    "GATEWAY_QR_WAIT": "0",
    "GATEWAY_ALLOW_PRIVATE_URLS": "true",
    "GATEWAY_LOG_LEVEL": "WARNING",
}
BENCH_EMAIL: Final = "bench@example.com"
BENCH_PASSWORD: Final = "bench-password-long-enough"
PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/PID/statm."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_SIZE


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (its threads included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_pids(pid: int) -> list[int]:
    """`pid` and its descendants, from the parent pids in /proc/*/stat (one scan, about 2 ms)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def tree_usage(pid: int) -> tuple[int, int, float]:
    """(RSS bytes, open fds, CPU seconds) summed over `pid` and every live descendant
    (`gateway serve --workers N`: the parent and its workers). RSS counts pages the processes share once each.

    A child that exited is no longer counted, so a worker restarted during a window makes that window's CPU
    figure low, never high. Raises, as `cpu_seconds` does, if `pid` itself is gone.
    """
    rss, fds, cpu = rss_bytes(pid), open_fds(pid), cpu_seconds(pid)
    for p in tree_pids(pid)[1:]:
        try:
            rss, fds, cpu = rss + rss_bytes(p), fds + open_fds(p), cpu + cpu_seconds(p)
        except (OSError, ValueError):
            pass  # exited meanwhile
    return rss, fds, cpu


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of `pid` and every live descendant (see `tree_usage`)."""
    return tree_usage(pid)[2]


@dataclass(frozen=True)
class Pinning:
    """Cores for the gateway, and the other cores for everything else bench runs or drives."""

    gateway: tuple[int, ...]
    others: tuple[int, ...]

    def for_gateway(self, workers: int) -> tuple[int, ...]:
        """The cores a gateway of `workers` processes gets: one each, the first ones."""
        return self.gateway[:workers]


def plan_pinning(cores: Sequence[int], gateway_workers: int, *, have_taskset: bool = True
                 ) -> tuple[Pinning | None, str]:
    """A core per gateway worker and at least one left for the rest; or None, and why not."""
    if not have_taskset:
        return None, "taskset is not installed"
    cores = sorted(cores)
    if len(cores) < gateway_workers + 1:
        return None, (f"{len(cores)} cores: {gateway_workers} gateway workers and the load generator, simulator "
                      "and PostgreSQL cannot have cores of their own")
    return Pinning(tuple(cores[:gateway_workers]), tuple(cores[gateway_workers:])), "pinned with taskset"


def pinned(args: list[str], cores: Sequence[int] | None) -> list[str]:
    """`args`, run by `taskset -c CORES` when cores are given (taskset execs: the pid stays the same)."""
    return ["taskset", "-c", ",".join(map(str, cores)), *args] if cores else args


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat: other load shows here."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    total = sum(ticks[:8])
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


def machine_description() -> dict[str, object]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_bytes": mem,
            "load_average": list(os.getloadavg()), "python": sys.version.split()[0],
            "kernel": os.uname().release}


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def check(self) -> None:
        if self.popen.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{tail}")

    async def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            with trio.move_on_after(timeout):
                while self.popen.poll() is None:
                    await trio.sleep(0.05)
            if self.popen.poll() is None:
                self.popen.kill()
                self.popen.wait()


def _start(name: str, args: list[str], env: dict[str, str], workdir: Path, cores: Sequence[int] | None = None
           ) -> Proc:
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(pinned(args, cores), env=env, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    return Proc(name, popen, log)


async def wait_port(proc: Proc, port: int, timeout: float = 30.0) -> None:
    with trio.fail_after(timeout):
        while True:
            proc.check()
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return


async def wait_healthy(proc: Proc, url: str, timeout: float = 60.0) -> None:
    client = Client(url)
    try:
        with trio.fail_after(timeout):
            while True:
                proc.check()
                try:
                    if (await client.call("GET", "/healthz", timeout=2)).status == 200:
                        return
                except (OSError, trio.TooSlowError, ProtocolError):
                    pass  # not up yet
                await trio.sleep(0.1)
    finally:
        await client.aclose()


def gateway_env(workdir: Path, sim_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(LOAD_SETTINGS)
    env.update({"GATEWAY_DATABASE_URL": f"sqlite:///{workdir}/gateway.db", "GATEWAY_DATA_DIR": str(workdir / "data"),
                "GATEWAY_SIM_URL": sim_url})
    env.update(extra or {})
    return env


@dataclass
class Spawned:
    """What --spawn started: the gateway and the simulator, a token, and the work directory."""

    workdir: Path
    gateway: Proc
    simulator: Proc
    url: str
    sim_url: str
    token: str
    env: dict[str, str] = field(repr=False, default_factory=dict)


async def run_admin(env: dict[str, str], *args: str) -> str:
    """`gateway ARGS...` (migrate, users, tokens, nodes) with `env`; its stdout."""
    result = await trio.run_process([sys.executable, "-m", "gateway", *args], env=env, capture_stdout=True,
                                    capture_stderr=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"gateway {' '.join(args[:2])} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode().strip()


@asynccontextmanager
async def spawn_gateway(*, autopair: float = 0.01, receipt_delay: float = 0.05,
                        extra_env: dict[str, str] | None = None, keep: bool = False, workers: int = 1,
                        gateway_cores: Sequence[int] | None = None, other_cores: Sequence[int] | None = None
                        ) -> AsyncIterator[Spawned]:
    """A simulator and a gateway in a temporary directory, a user and a token; all gone afterwards.

    `workers` > 1 runs `gateway serve --workers N` (PostgreSQL in `extra_env`); `gateway_cores` and
    `other_cores` pin the gateway and the simulator."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    async with AsyncExitStack() as stack:
        if not keep:
            stack.callback(shutil.rmtree, workdir, True)
        sim_port, port = free_port(), free_port()
        sim_url, url = f"ws://127.0.0.1:{sim_port}", f"http://127.0.0.1:{port}"
        env = gateway_env(workdir, sim_url, extra_env)
        sim = _start("simulator", [sys.executable, "-m", "gateway", "simulator", "--bind", f"127.0.0.1:{sim_port}",
                                   "--autopair", str(autopair), "--receipt-delay", str(receipt_delay)], env, workdir,
                     other_cores)
        stack.push_async_callback(sim.stop)
        await wait_port(sim, sim_port)
        await run_admin(env, "migrate")
        await run_admin(env, "users", "create", "--email", BENCH_EMAIL, "--password", BENCH_PASSWORD)
        token = await run_admin(env, "tokens", "create", "--email", BENCH_EMAIL, "--name", "bench")
        serve = [sys.executable, "-m", "gateway", "serve", "--bind", f"127.0.0.1:{port}"]
        gateway = _start("gateway", serve + (["--workers", str(workers)] if workers > 1 else []), env, workdir,
                         gateway_cores)
        stack.push_async_callback(gateway.stop)
        await wait_healthy(gateway, url)
        yield Spawned(workdir=workdir, gateway=gateway, simulator=sim, url=url, sim_url=sim_url, token=token,
                      env=env)


CEILINGS: Final = {"bare": "bench._baseline", "quart": "bench._quart_ceiling"}


@asynccontextmanager
async def spawn_baseline(workdir: Path, ceiling: str = "bare") -> AsyncIterator[tuple[str, Proc]]:
    """A ceiling server: the bare hypercorn-trio app (`bench._baseline`) or the trivial quart-trio app
    (`bench._quart_ceiling`); yields its URL and process."""
    port = free_port()
    proc = _start(f"{ceiling} ceiling", [sys.executable, "-m", CEILINGS[ceiling], "--bind", f"127.0.0.1:{port}"],
                  dict(os.environ), workdir)
    try:
        await wait_port(proc, port)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        await proc.stop()
