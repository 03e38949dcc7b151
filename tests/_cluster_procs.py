"""Real cluster nodes for tests: `gateway serve` processes on one PostgreSQL schema, driven from trio.

Everything here is async (the tests run a webhook receiver and a media server
in the same trio loop as the load), and every node's log goes to a file, never
to a pipe nobody reads (a full pipe would stall the node).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psycopg
import trio

from ._procs import free_port, gateway_cmd

PASSWORD = "correct horse battery"


def cluster_env(tmp_path: Path, url: str, sim_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update({
        "GATEWAY_DATABASE_URL": url, "GATEWAY_DATA_DIR": str(tmp_path / "data"), "GATEWAY_TRANSPORT": "sim",
        "GATEWAY_SIM_URL": sim_url, "GATEWAY_LOG_LEVEL": "INFO", "GATEWAY_ALLOW_PRIVATE_URLS": "true",
        "GATEWAY_LIMIT_SEND": "off", "GATEWAY_LIMIT_API": "off", "GATEWAY_LIMIT_AUTH": "off",
        "GATEWAY_SEND_MIN_GAP": "0.02", "GATEWAY_SEND_JITTER": "0", "GATEWAY_RECONNECT_MAX_DELAY": "1",
    })
    env.update(extra)
    return env


async def cli(env: dict[str, str], *args: str) -> str:
    done = await trio.run_process(gateway_cmd(*args), env=env, capture_stdout=True, capture_stderr=True,
                                  check=False)
    if done.returncode != 0:
        raise RuntimeError(f"gateway {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode().strip()


@dataclass
class Node:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(gateway_cmd("serve", "--bind", f"127.0.0.1:{self.port}"), env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=log)
        log.close()

    async def wait_ready(self, timeout: float = 30.0) -> None:
        async with httpx.AsyncClient() as http:
            with trio.fail_after(timeout):
                while True:
                    assert self.proc is not None
                    if self.proc.poll() is not None:
                        raise RuntimeError(f"node {self.name} exited: {self.log()[-2000:]}")
                    try:
                        if (await http.get(self.url + "/readyz", timeout=1)).status_code == 200:
                            return
                    except httpx.HTTPError:
                        pass
                    await trio.sleep(0.1)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)
        self.proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(20):
            while self.proc.poll() is None:
                await trio.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@asynccontextmanager
async def open_nodes(tmp_path: Path, env: dict[str, str], count: int, *,
                     data_dir_per_node: bool = False) -> AsyncIterator[list[Node]]:
    nodes = []
    for i in range(count):
        node_env = dict(env)
        if data_dir_per_node:
            node_env["GATEWAY_DATA_DIR"] = str(tmp_path / f"data-{i}")
        nodes.append(Node(f"n{i}", free_port(), node_env, tmp_path / f"node-{i}.log"))
    try:
        yield nodes
    finally:
        with trio.CancelScope(shield=True):
            for node in nodes:
                await node.stop()


@asynccontextmanager
async def running_nodes(tmp_path: Path, env: dict[str, str], count: int = 2
                        ) -> AsyncIterator[tuple[list[Node], httpx.AsyncClient]]:
    """`count` nodes, started and ready, and an HTTP client to ask them."""
    async with open_nodes(tmp_path, env, count) as nodes, httpx.AsyncClient(timeout=10) as http:
        for node in nodes:
            node.start()
        for node in nodes:
            await node.wait_ready()
        yield nodes, http


class Db:
    """Direct reads of the cluster's schema, for checks the API does not expose."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    async def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        return await trio.to_thread.run_sync(partial(self._query, sql, params))

    async def owners(self) -> dict[str, tuple[str, int]]:
        """session id → (node id, epoch) for every live lease."""
        rows = await self.query("SELECT session_id, node_id, epoch FROM session_leases WHERE expires_at > now()")
        return {r[0]: (r[1], r[2]) for r in rows}

    async def node_of_pid(self, pid: int) -> str:
        rows = await self.query("SELECT id FROM cluster_nodes WHERE pid = %s AND expires_at > now()", (pid,))
        assert len(rows) == 1, rows
        return rows[0][0]


@dataclass
class Receiver:
    """A webhook endpoint that answers 204 and records each delivery's webhook-id."""

    url: str = ""
    ids: list[str] = field(default_factory=list)

    @property
    def unique(self) -> set[str]:
        return set(self.ids)


async def _serve_webhooks(receiver: Receiver, stream: trio.SocketStream) -> None:
    buffer = b""
    try:
        while True:
            while b"\r\n\r\n" not in buffer:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            headers = {}
            for line in head.split(b"\r\n")[1:]:
                key, _, value = line.partition(b":")
                headers[key.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0"))
            while len(buffer) < length:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                buffer += chunk
            buffer = buffer[length:]
            receiver.ids.append(headers.get(b"webhook-id", b"").decode())
            await stream.send_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
    except (trio.BrokenResourceError, OSError):
        pass


@asynccontextmanager
async def open_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, partial(_serve_webhooks, receiver), 0,
                                                host="127.0.0.1"))
        receiver.url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/hook"
        yield receiver
        nursery.cancel_scope.cancel()


async def create_account(env: dict[str, str], email: str = "ops@example.com") -> dict[str, str]:
    await cli(env, "users", "create", "--email", email, "--password", PASSWORD)
    return {"X-API-Token": await cli(env, "tokens", "create", "--email", email, "--name", "cluster")}
