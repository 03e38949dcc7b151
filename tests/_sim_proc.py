"""A `gateway simulator` process for end-to-end tests."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ._procs import free_port, gateway_cmd


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open")


class SimProcess:
    def __init__(self, port: int, *args: str) -> None:
        self.port = port
        self.args = args
        self.url = f"ws://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(gateway_cmd("simulator", "--bind", f"127.0.0.1:{self.port}", *self.args),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_port(self.port)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


@contextmanager
def simulator(*args: str, port: int | None = None) -> Iterator[SimProcess]:
    sim = SimProcess(port or free_port(), *args)
    sim.start()
    try:
        yield sim
    finally:
        sim.kill()
