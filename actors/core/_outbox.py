"""The paced sender: drains a session's durable queue through its transport.

The queue lives in the store, not in memory: an HTTP handler persists a
message and then only nudges the actor, so a full actor, a crash or a restart
never loses an accepted message. The sender runs while the session is
CONNECTED and waits otherwise; messages queued during a drop go out after the
reconnect.

Pacing protects the account from bans: at least `min_gap` seconds, plus up to
`jitter` random seconds, between two sends of one session, and optionally a
typing indicator before each message.

A message is marked `sending` when claimed and `sent` once the transport
answers. A crash between the two leaves it `sending`; at start-up it is put
back in the queue and sent again. WhatsApp ids cannot be chosen through
neonize 0.5.2, so that resend may arrive twice: that window is the transport
call itself (milliseconds), and is documented in the README.

In cluster mode a session is owned by one node at a time, and a node must
never send for a session it lost. The queue's claims and status writes are
fenced in the store; in addition, right before each transport call (with no
checkpoint in between) the sender awaits `queue.wait_owned`, which returns at
once while this node's lease is valid on its own monotonic clock and never
returns once it is not (the lease keeper then stops the actor).
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from typing import Protocol

import msgspec
import trio

from .._messages import OutboundMessage, SendResult
from .._transport import ConnectFailed, NotConnected, Transport, TransportError

log = logging.getLogger("actors.outbox")


@dataclass(frozen=True)
class Pacing:
    min_gap: float = 1.0
    jitter: float = 1.0
    typing: bool = False
    typing_time: float = 1.0

    def gap(self, rng: random.Random) -> float:
        return self.min_gap + (rng.random() * self.jitter if self.jitter > 0 else 0.0)


class PrepareFailed(Exception):
    """The message cannot be built (media download failed, too large, ...); it fails with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Claimed(msgspec.Struct, frozen=True):
    message_id: str
    to: str  # chat JID


class OutboundQueue(Protocol):
    """The durable queue as the sender sees it (the gateway implements it on its store)."""

    async def claim_next(self, session_id: str) -> Claimed | None:
        """The next due message, now marked `sending`; None when nothing is due."""

    async def seconds_until_due(self, session_id: str) -> float | None:
        """How long until a scheduled message is due; None when none is scheduled."""

    async def prepare(self, session_id: str, claimed: Claimed) -> OutboundMessage:
        """Build the message (fetching media); raises PrepareFailed."""

    async def sent(self, session_id: str, claimed: Claimed, result: SendResult) -> None: ...

    async def failed(self, session_id: str, claimed: Claimed, reason: str) -> None: ...

    async def requeue(self, session_id: str, claimed: Claimed) -> None:
        """The send never started (not connected): back to `queued`."""

    async def wait_owned(self, session_id: str) -> None:
        """Return without a checkpoint while this process may send for the session; otherwise wait
        (a node that lost the session never sends again: its actor is stopped while it waits)."""


class Sender:
    def __init__(self, session_id: str, queue: OutboundQueue, pacing: Pacing, rng: random.Random) -> None:
        self.session_id = session_id
        self._queue = queue
        self._pacing = pacing
        self._rng = rng
        self._wake = trio.Event()
        self._idle_scope: trio.CancelScope | None = None  # while idle: ends when the next scheduled one is due
        self._last_send = -math.inf
        self.sent = 0
        self.failed = 0

    def nudge(self, due_in: float = 0.0) -> None:
        """Something was queued, due in `due_in` seconds (0: now): look at the queue by then.

        A sender idle until a time no later than that has nothing to do; one idle until later (or until
        woken) moves its wake-up earlier, without a store call. Any other sender looks again now."""
        idle = self._idle_scope
        if idle is not None and due_in > 0:
            at = trio.current_time() + due_in
            if at < idle.deadline:  # (setting a deadline costs more than comparing one)
                idle.deadline = at
            return
        self._wake.set()

    async def run(self, wait_transport: _TransportGate) -> None:
        while True:
            transport = await wait_transport()
            wait = self._last_send + self._pacing.gap(self._rng) - trio.current_time()
            if wait > 0:
                await trio.sleep(wait)
            claimed = await self._queue.claim_next(self.session_id)
            if claimed is None:
                await self._idle()
                continue
            await self._send_one(transport, claimed)

    async def _idle(self) -> None:
        due = await self._queue.seconds_until_due(self.session_id)
        # A nudge during that read set `_wake` (the read may have missed its message): no waiting then.
        with trio.move_on_after(math.inf if due is None else max(due, 0.0)) as scope:
            self._idle_scope = scope
            try:
                await self._wake.wait()
            finally:
                self._idle_scope = None
        self._wake = trio.Event()

    async def _send_one(self, transport: Transport, claimed: Claimed) -> None:
        try:
            message = await self._queue.prepare(self.session_id, claimed)
        except PrepareFailed as exc:
            self.failed += 1
            await self._queue.failed(self.session_id, claimed, exc.reason)
            return
        try:
            if self._pacing.typing:
                await self._queue.wait_owned(self.session_id)
                await self._typing(transport, claimed.to)
            await self._queue.wait_owned(self.session_id)
            result = await transport.send(message)
        except (NotConnected, ConnectFailed):
            await self._queue.requeue(self.session_id, claimed)
            return
        except TransportError as exc:
            self.failed += 1
            self._last_send = trio.current_time()
            await self._queue.failed(self.session_id, claimed, exc.reason)
            return
        self._last_send = trio.current_time()
        self.sent += 1
        await self._queue.sent(self.session_id, claimed, result)


    async def _typing(self, transport: Transport, chat: str) -> None:
        try:
            await transport.send_typing(chat, True)
        except (NotConnected, ConnectFailed):
            raise
        except TransportError as exc:  # a cosmetic step: never fail a message over it
            log.info("typing indicator failed", extra={"fields": {"session": self.session_id, "error": exc.reason}})
            return
        await trio.sleep(self._pacing.typing_time)


class _TransportGate(Protocol):
    async def __call__(self) -> Transport: ...
