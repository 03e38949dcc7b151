"""Helpers for tests that run the simulator in-process and drive sessions through the sim transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import TypeVar

import trio

from actors import ConnectFailed, Connected, SessionSpec, TransportEvent
from actors.sim import SimTransport, SimTransportFactory, open_sim_transport_factory
from bench.simulator import SimControl, SimulatorHandle, open_sim_control, serve_simulator

E = TypeVar("E", bound=TransportEvent)


class Run:
    """One session's `run` in a background task, with its events and how it ended."""

    def __init__(self, transport: SimTransport) -> None:
        self.transport = transport
        self.send, self.receive = trio.open_memory_channel[TransportEvent](1000)
        self.events: list[TransportEvent] = []
        self.done = trio.Event()
        self.error: BaseException | None = None

    async def _main(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self.transport.run(self.send, task_status=task_status)
        except ConnectFailed as exc:
            self.error = exc
        finally:
            self.done.set()

    async def expect(self, kind: type[E], **fields: object) -> E:
        """The next event of `kind` whose fields match, skipping others (QR rotations, receipts...)."""
        while True:
            event = await self.receive.receive()
            self.events.append(event)
            if isinstance(event, kind) and all(getattr(event, k) == v for k, v in fields.items()):
                return event

    async def ended(self) -> BaseException | None:
        await self.done.wait()
        return self.error


async def start(nursery: trio.Nursery, transport: SimTransport) -> Run:
    run = Run(transport)
    await nursery.start(run._main)
    return run


async def start_connected(nursery: trio.Nursery, transport: SimTransport) -> tuple[Run, Connected]:
    run = await start(nursery, transport)
    return run, await run.expect(Connected)


@asynccontextmanager
async def simulator(port: int = 0, **options: object) -> AsyncIterator[SimulatorHandle]:
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(serve_simulator, "127.0.0.1", port, **options))
        yield handle
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def sim_world(data_dir: str, **options: object) -> AsyncIterator[
        tuple[SimulatorHandle, SimTransportFactory, SimControl, trio.Nursery]]:
    """A simulator, a factory linked to it, a control client, and a nursery for runs."""
    async with simulator(**options) as handle:
        async with open_sim_transport_factory(handle.url, data_dir=data_dir) as factory, \
                open_sim_control(handle.url) as control, trio.open_nursery() as nursery:
            yield handle, factory, control, nursery
            nursery.cancel_scope.cancel()


async def wait_until(predicate, *, poll: float = 0.01) -> None:
    """Poll until `predicate()` holds (for state the simulator reaches after a frame crosses the link)."""
    while not predicate():
        await trio.sleep(poll)


def spec(session_id: str, phone: str | None = None) -> SessionSpec:
    return SessionSpec(session_id=session_id, phone_number=phone)
