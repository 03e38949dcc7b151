"""`gateway serve --workers N`: N node processes on one host, sharing the public port.

The parent binds the public socket once and starts N children, each a full
`gateway serve` (one cluster node: its own lease keeper, supervisor and
dispatcher) that inherits the listening socket (`--listen-fd`) and binds its
own internal port for routed requests. The kernel hands each incoming
connection to whichever child accepts first, so an idle child takes more.

The parent does no request work. It restarts a child that dies (a crash, a
Go panic inside neonize, an OOM kill) with capped backoff; that child's
sessions move to its siblings when its leases expire and come back to the
restarted child as the keepers spread them again. On SIGTERM or SIGINT it
forwards SIGTERM to every child, waits for their graceful shutdown (each
hands its sessions over), and kills whatever is left after
`GATEWAY_SHUTDOWN_TIMEOUT` + 5 s. A child that exits with status 2 (a
configuration error) stops the whole group with status 2: restarting would
not help.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from typing import Final

import trio

from .._config import SETTINGS, Config, parse_bind

log = logging.getLogger("gateway.workers")

CONFIG_ERROR: Final = 2
_HEALTHY_AFTER: Final = 30.0  # a child that ran this long before dying restarts without backoff
_BACKOFF_MAX: Final = 30.0
_KILL_GRACE: Final = 5.0
_BACKLOG: Final = 2048


def bind_public(config: Config) -> socket.socket:
    """The public listening socket, shared by every worker."""
    host, port = config.host_port
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(_BACKLOG)
    sock.set_inheritable(True)
    return sock


def bind_internal(config: Config, worker_index: int = 0) -> tuple[socket.socket, str]:
    """This node's internal socket (bound, not listening yet) and the address other nodes dial."""
    host, port = parse_bind(config.internal_bind)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port + worker_index if port else 0))
    advertised = config.node_host or host
    if ":" in advertised:
        advertised = f"[{advertised}]"
    return sock, f"http://{advertised}:{sock.getsockname()[1]}"


def child_environment(config: Config) -> dict[str, str]:
    """The parent's effective settings (flags included) as the children's environment."""
    env = dict(os.environ)
    for setting in SETTINGS:
        value = getattr(config, setting.field)
        env[setting.env] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    env["GATEWAY_WORKERS"] = "1"
    return env


def serve_workers(config: Config) -> int:
    sock = bind_public(config)
    try:
        return trio.run(_supervise, config, sock.fileno())
    finally:
        sock.close()


async def _supervise(config: Config, fd: int) -> int:
    env = child_environment(config)
    processes: dict[int, trio.Process] = {}
    state = {"stopping": False, "status": 0}
    stopped = trio.Event()

    async def worker(index: int) -> None:
        failures = 0
        while not state["stopping"]:
            started = trio.current_time()
            command = [sys.executable, "-m", "gateway", "serve", "--listen-fd", str(fd),
                       "--worker-index", str(index)]
            proc = await trio.lowlevel.open_process(command, env=env, pass_fds=(fd,))
            processes[index] = proc
            log.info("worker started", extra={"fields": {"worker": index, "pid": proc.pid}})
            code = await proc.wait()
            if state["stopping"]:
                return
            if code == CONFIG_ERROR:
                log.error("worker refused its configuration; stopping", extra={"fields": {"worker": index}})
                state["status"] = CONFIG_ERROR
                stop_all()
                return
            failures = failures + 1 if trio.current_time() - started < _HEALTHY_AFTER else 1
            delay = min(_BACKOFF_MAX, 0.5 * 2 ** (failures - 1))
            log.error("worker exited; restarting", extra={"fields": {
                "worker": index, "pid": proc.pid, "status": code, "restart_in": delay}})
            await trio.sleep(delay)

    def stop_all() -> None:
        state["stopping"] = True
        stopped.set()
        for proc in processes.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)

    # The receiver is open before any child starts: a signal never finds the parent without it.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            async def on_signal() -> None:
                async for signum in signals:
                    log.info("shutting down workers", extra={"fields": {"signal": signal.Signals(signum).name}})
                    stop_all()
                    return

            nursery.start_soon(on_signal)
            for index in range(config.workers):
                nursery.start_soon(worker, index)
            log.info("serving with workers", extra={"fields": {"bind": config.bind, "workers": config.workers}})
            await stopped.wait()
            await _wait_or_kill(processes, config.shutdown_timeout + _KILL_GRACE)
            nursery.cancel_scope.cancel()
    return state["status"]


async def _wait_or_kill(processes: dict[int, trio.Process], timeout: float) -> None:
    with trio.move_on_after(timeout):
        for proc in list(processes.values()):
            await proc.wait()
    for proc in processes.values():
        if proc.returncode is None:
            log.warning("worker did not stop in time; killing it", extra={"fields": {"pid": proc.pid}})
            proc.kill()
            await proc.wait()
