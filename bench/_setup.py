"""Getting a gateway ready for load: the target, sessions, pairing, a recipient.

A `Target` is a gateway (and the simulator behind it) that bench either
spawned itself or was pointed at (`--url`, `--sim-url`, `--token`, and
`--gateway-pid` for memory figures). A spawned gateway may be several
worker processes (`nodes`); /metrics then counts one process's sessions, so
CONNECTED is read from the session list instead. Against a running gateway, its rate
limits must already be off for load (`GATEWAY_LIMIT_SEND=off`,
`GATEWAY_LIMIT_API=off`) and pacing at 0 (`GATEWAY_SEND_MIN_GAP=0`,
`GATEWAY_SEND_JITTER=0`); bench asks the simulator to autopair.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import trio

from bench.simulator import open_sim_control

from ._http import Client, Response
from ._procs import Spawned, spawn_gateway

RECIPIENT: Final = "+15550009999"
PAGE: Final = 100
_CONNECTED_SAMPLE = re.compile(rb'^gateway_sessions\{state="CONNECTED"\} ([0-9.e+]+)$', re.MULTILINE)


class SetupError(Exception):
    """The target refused something bench needs to prepare the run."""


@dataclass
class Target:
    url: str
    sim_url: str
    token: str
    gateway_pid: int | None
    workdir: Path
    spawned: Spawned | None = None
    nodes: int = 1  # gateway processes answering on `url` (`gateway serve --workers N`)

    def account(self) -> Client:
        return Client(self.url, headers={"X-API-Token": self.token})


@dataclass(frozen=True)
class BenchSession:
    id: str
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@asynccontextmanager
async def open_target(*, spawn: bool, url: str | None, sim_url: str | None, token: str | None,
                      gateway_pid: int | None, autopair: float = 0.01, receipt_delay: float = 0.05,
                      extra_env: dict[str, str] | None = None, workers: int = 1,
                      gateway_cores: Sequence[int] | None = None, other_cores: Sequence[int] | None = None
                      ) -> AsyncIterator[Target]:
    if spawn:
        async with spawn_gateway(autopair=autopair, receipt_delay=receipt_delay, extra_env=extra_env,
                                 workers=workers, gateway_cores=gateway_cores, other_cores=other_cores) as s:
            yield Target(url=s.url, sim_url=s.sim_url, token=s.token, gateway_pid=s.gateway.pid,
                         workdir=s.workdir, spawned=s, nodes=workers)
        return
    if not (url and sim_url and token):
        raise SetupError("without --spawn, give --url, --sim-url and --token (a personal access token)")
    async with open_sim_control(sim_url) as ctl:
        await ctl.set_autopair(autopair)
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        yield Target(url=url.rstrip("/"), sim_url=sim_url, token=token, gateway_pid=gateway_pid,
                     workdir=Path(workdir))


def _check(response: Response, what: str, expected: tuple[int, ...] = (200, 201, 202)) -> Any:
    if response.status not in expected:
        raise SetupError(f"{what}: HTTP {response.status}: {response.body[:300]!r}")
    return response.json()


async def create_sessions(target: Target, count: int, *, concurrency: int = 32, prefix: str = "bench",
                          webhook_url: Callable[[int], str | None] | None = None,
                          on_done: Callable[[], None] | None = None) -> list[BenchSession]:
    client = target.account()
    try:
        bodies = []
        for i in range(count):
            body: dict[str, Any] = {"name": f"{prefix}-{i}"}
            hook = webhook_url(i) if webhook_url else None
            if hook:
                body["webhookUrl"] = hook
            bodies.append(client.build("POST", "/api/v1/whatsapp-sessions", body))
        answers = await client.many(bodies, concurrency, on_done=(lambda _r: on_done()) if on_done else None)
        out = []
        for r in answers:
            data = _check(r, "create session")
            out.append(BenchSession(data["id"], data["apiKey"]))
        return out
    finally:
        await client.aclose()


async def connect_sessions(target: Target, sessions: list[BenchSession], *, concurrency: int = 32,
                           on_done: Callable[[], None] | None = None) -> None:
    client = target.account()
    try:
        requests = [client.build("POST", f"/api/v1/whatsapp-sessions/{s.id}/connect") for s in sessions]
        for r in await client.many(requests, concurrency, on_done=(lambda _r: on_done()) if on_done else None):
            _check(r, "connect session")
    finally:
        await client.aclose()


async def connected_count(client: Client) -> int | None:
    """CONNECTED sessions as /metrics counts them (one cheap request), or None without /metrics."""
    r = await client.call("GET", "/metrics")
    if r.status != 200:
        return None
    m = _CONNECTED_SAMPLE.search(r.body)
    return int(float(m.group(1))) if m else None


async def statuses(target: Target, ids: set[str]) -> dict[str, str]:
    """Status of each of `ids`, from the session list (one page of 100 at a time)."""
    client = target.account()
    out: dict[str, str] = {}
    cursor = None
    try:
        while True:
            path = f"/api/v1/whatsapp-sessions?limit={PAGE}" + (f"&cursor={cursor}" if cursor else "")
            page = _check(await client.call("GET", path), "list sessions")
            out.update({s["id"]: s["status"] for s in page["data"] if s["id"] in ids})
            cursor = page.get("nextCursor")
            if not cursor:
                return out
    finally:
        await client.aclose()


async def wait_connected(target: Target, sessions: list[BenchSession], *, already: int = 0, timeout: float = 600,
                         on_progress: Callable[[int], None] | None = None, poll: float = 0.25) -> float:
    """Until every session is CONNECTED; `already` is how many other CONNECTED sessions /metrics counts.

    Returns the `time.monotonic()` at which the count was first seen complete (the check of each
    session's status through the list, which follows, is not part of the time)."""
    ids = {s.id for s in sessions}
    client = Client(target.url)
    try:
        with trio.fail_after(timeout):
            while True:
                count = await connected_count(client) if target.nodes == 1 else None
                if count is None:  # no /metrics, or it speaks for one worker of several: ask the list
                    count = sum(st == "CONNECTED" for st in (await statuses(target, ids)).values()) + already
                if on_progress:
                    on_progress(max(0, count - already))
                if count - already >= len(ids):
                    seen = time.monotonic()
                    final = await statuses(target, ids)
                    if all(final.get(i) == "CONNECTED" for i in ids):
                        return seen
                await trio.sleep(poll)
    except trio.TooSlowError:
        final = await statuses(target, ids)
        bad = {k: v for k, v in final.items() if v != "CONNECTED"}
        raise SetupError(f"{len(bad)} of {len(ids)} sessions not CONNECTED after {timeout:g}s, e.g. "
                         f"{list(bad.items())[:3]}") from None
    finally:
        await client.aclose()


async def register_recipient(target: Target, phone: str = RECIPIENT) -> None:
    async with open_sim_control(target.sim_url) as ctl:
        await ctl.register(phone)


async def ready_sessions(target: Target, count: int, *, concurrency: int = 32,
                         webhook_url: Callable[[int], str | None] | None = None, prefix: str = "bench"
                         ) -> list[BenchSession]:
    """Create, connect and wait for `count` CONNECTED sessions, and register the recipient."""
    client = Client(target.url)
    try:
        already = await connected_count(client) or 0
    finally:
        await client.aclose()
    sessions = await create_sessions(target, count, concurrency=concurrency, webhook_url=webhook_url, prefix=prefix)
    await connect_sessions(target, sessions, concurrency=concurrency)
    await wait_connected(target, sessions, already=already)
    await register_recipient(target)
    return sessions
