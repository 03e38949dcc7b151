"""Plumbing of the neonize transport: loading neonize, one connect attempt's state, Go callbacks.

`Attempt` is what a `run()` and its connect thread share. Threads never touch
its trio-side fields: they `post` changes, applied on the trio thread, and
`deliver` events through `trio.from_thread.run`, so a full events channel
blocks the Go callback thread (backpressure) rather than dropping events.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import types
from collections.abc import Callable
from typing import Any

import trio

from .._transport import ConnectFailed, EventSendChannel, TransportEvent
from ._rwlock import RWLock

log = logging.getLogger("actors._neonize")


@functools.cache
def nz() -> Any:
    """neonize and the modules that import it, loaded on first use (see `_transport` on logging)."""
    import neonize.client
    import neonize.events
    import neonize.exc
    import neonize.utils.enum

    from . import _answers, _build, _events, _group_events
    return types.SimpleNamespace(NewClient=neonize.client.NewClient, ev=neonize.events,
                                 NeonizeError=neonize.exc.NeonizeError, enum=neonize.utils.enum,
                                 ProxySettings=neonize.client.ProxySettings, build=_build, conv=_events,
                                 answers=_answers, groups=_group_events)


def go_callback(fn: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any) -> None:
        try:
            fn(self, *args)
        except BaseException:  # ctypes would swallow it silently
            log.exception("neonize %s callback failed (session %s)", fn.__name__, self.session_id)
    return wrapper


class Attempt:
    """One connect() call. Trio-side fields change on the trio thread only (threads `post`)."""

    def __init__(self, token: trio.lowlevel.TrioToken, events: EventSendChannel, started_at: float) -> None:
        self.token, self.events, self.started_at = token, events, started_at
        self.wakeup = trio.Event()
        self.launched = self.go_ready = self.connected_once = self.paired = False
        self.qr_seen, self.done, self.stopped = trio.Event(), trio.Event(), trio.Event()
        self.connect_error: str | None = None
        self.failure: ConnectFailed | None = None
        self.logged_out: str | None = None
        self.stop_started = False
        self.deliveries: set[trio.CancelScope] = set()
        # any thread; go_started/go_stopped change under the exclusive lock only
        self.stop_flag = threading.Event()
        self.connect_returned = threading.Event()  # the Go connect call has returned
        self.go_started = self.go_stopped = False
        self._start_hold = self._settled = False
        self._hold_guard = threading.Lock()

    def post(self, **changes: Any) -> None:
        """From any thread: apply `changes` on the trio thread and wake `run`."""
        try:
            self.token.run_sync_soon(self._apply, changes)
        except trio.RunFinishedError:
            pass

    def _apply(self, changes: dict[str, Any]) -> None:
        for name, value in changes.items():
            if name in ("qr_seen", "done"):
                getattr(self, name).set()
            elif name == "failure":
                self.failure = self.failure or value
            else:
                setattr(self, name, value)
        self.wakeup.set()

    async def next_change(self, deadline: float = math.inf) -> None:
        """Wait for the next `post` (or `deadline`)."""
        with trio.move_on_at(deadline):
            await self.wakeup.wait()
        if self.wakeup.is_set():
            self.wakeup = trio.Event()

    async def wait_until(self, ready: Callable[[], bool], deadline: float = math.inf) -> None:
        while not ready() and trio.current_time() < deadline:
            await self.next_change(deadline)

    def take_start_hold(self) -> None:
        with self._hold_guard:
            self._start_hold = True

    def release_start_hold(self, lock: RWLock) -> None:
        """End the exclusive hold of the connect start; idempotent, from any thread."""
        with self._hold_guard:
            held, self._start_hold = self._start_hold, False
        if held:
            lock.release_write()

    def settle_start(self, lock: RWLock) -> None:
        """From any thread: Go's start-up is over (a first callback came, or connect() returned).

        Ends the exclusive hold and, the first time, tells `run` (`go_ready`).
        """
        with self._hold_guard:
            first, self._settled = not self._settled, True
        self.release_start_hold(lock)
        if first:
            self.post(go_ready=True)

    def deliver(self, event: TransportEvent, session_id: str) -> None:
        """From a Go callback thread: hand `event` to trio; returns once the channel took it."""
        if self.stop_flag.is_set():
            return
        try:
            trio.from_thread.run(self._send, event, trio_token=self.token)
        except BaseException as exc:  # the trio run ended or is shutting down
            log.debug("dropped %s for session %s: %r", type(event).__name__, session_id, exc)

    async def _send(self, event: TransportEvent) -> None:
        with trio.CancelScope() as scope:  # stop cancels deliveries still waiting for room
            self.deliveries.add(scope)
            try:
                if not self.stop_flag.is_set():
                    await self.events.send(event)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                self.deliveries.discard(scope)
