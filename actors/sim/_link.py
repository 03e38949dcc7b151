"""The one websocket link that a `SimTransportFactory` shares between all its sessions.

Why one link: a gateway process may run 10,000 sessions, and a socket, a
websocket state machine and reader/writer tasks per session would cost far more
than the sessions themselves. Frames carry the session id; calls carry a
request id; a writer task batches every queued frame into one websocket message.

The link connects when the first session wants it and reconnects after a drop
with capped exponential backoff and jitter (time through trio). A drop ends
every session's `run` with `ConnectFailed` and fails calls in flight with
`NotConnected`; sessions then re-attach on the next link.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections import deque
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

import msgspec
import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, open_websocket_url

from .._messages import MediaContent
from .._transport import GroupNotFound, NotAuthorized, NotConnected, RecipientError, TransportError
from ._protocol import (
    MAX_MESSAGE_SIZE,
    PROTOCOL_VERSION,
    Ack,
    Call,
    Frame,
    Hello,
    Reply,
    SendOp,
    ServerFrame,
    Welcome,
    link_encoder,
    server_frames_decoder,
)

log = logging.getLogger("actors.sim")

T = TypeVar("T")

MAX_BATCH: Final = 512  # frames per websocket message
BATCH_BYTES: Final = 8 * 1024 * 1024  # stop adding frames to a message past this (media)
RECEIVE_BUFFER: Final = 64 * 1024
OUTBOX_SIZE: Final = 4096  # frames queued for the writer before callers block (backpressure)
HANDSHAKE_TIMEOUT: Final = 10.0
CLOSE_TIMEOUT: Final = 1.0


@dataclass(frozen=True)
class SimLinkStatistics:
    connected: bool
    sessions: int  # sessions with a run attached to the link
    calls_in_flight: int
    outbox: int  # frames waiting for the writer
    connects: int  # successful connections so far (reconnects = connects - 1)
    frames_sent: int
    frames_received: int
    last_error: str


class LinkSession(Protocol):
    def deliver(self, frame: ServerFrame) -> None:
        """Take one frame for this session; must not block."""

    def link_lost(self, reason: str) -> None: ...


class _Pending:
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.reply: Reply | None = None


_decoders: dict[object, msgspec.msgpack.Decoder] = {}


def _decode(raw: msgspec.Raw, result_type: type[T]) -> T:
    decoder = _decoders.get(result_type)
    if decoder is None:  # one decoder per result type, built on first use and kept
        decoder = _decoders[result_type] = msgspec.msgpack.Decoder(result_type)
    return decoder.decode(raw)


def _weight(frame: Frame) -> int:
    if type(frame) is Call and type(frame.op) is SendOp and isinstance(frame.op.message.content, MediaContent):
        return len(frame.op.message.content.data)
    return 64


class SimLink:
    def __init__(self, url: str, *, window: int, backoff_initial: float = 0.1, backoff_max: float = 5.0,
                 name: str = "") -> None:
        self.url = url
        self.window = window
        self.name = name
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.sessions: dict[str, LinkSession] = {}
        self.generation = 0  # bumped per connection; frames queued for an older one are dropped
        self.connected = False
        self.running = False
        self.closed = False
        self.last_error = "the link task is not running (use open_sim_transport_factory)"
        self.connects = 0
        self.failures = 0  # attempts that did not connect
        self.frames_sent = 0
        self.frames_received = 0
        self._state_lot = trio.lowlevel.ParkingLot()  # woken when the link comes up or closes
        self._wanted = trio.Event()
        self._out: deque[Frame] = deque()
        self._out_lot = trio.lowlevel.ParkingLot()
        self._space_lot = trio.lowlevel.ParkingLot()
        self._pending: dict[int, _Pending] = {}
        self._acks: dict[str, int] = {}  # coalesced per session until the writer's next batch
        self._rids = itertools.count(1)
        self._rng = random.Random()
        self._scope: trio.CancelScope | None = None

    # -- lifecycle ----------------------------------------------------------------

    def want(self) -> None:
        self._wanted.set()

    async def wait_up(self) -> None:
        """Wait until the link is up, the factory closed, or the next connection attempt failed."""
        await trio.lowlevel.checkpoint_if_cancelled()
        failures = self.failures
        while not self.connected and not self.closed and self.failures == failures:
            await self._state_lot.park()

    def backoff(self, attempt: int) -> float:
        base = min(self.backoff_max, self.backoff_initial * 2.0 ** min(attempt - 1, 32))
        return base * (1.0 - 0.5 * self._rng.random())  # jitter: a restart does not reconnect in lockstep

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the link up while the factory lives; started by the factory's owner."""
        self.running = True
        self.last_error = "not connected yet"
        try:
            with trio.CancelScope() as self._scope:
                task_status.started()
                attempt = 0
                while not self.closed:
                    await self._wanted.wait()
                    connects = self.connects
                    reason = await self._connect_once()
                    if self.connects > connects:
                        attempt = 0  # it worked for a while: start the backoff over
                    else:
                        self.failures += 1
                    self._down(reason)
                    self._state_lot.unpark_all()
                    attempt += 1
                    await trio.sleep(self.backoff(attempt))
        finally:
            self.running = False
            self._down("the sim transport factory closed")

    def close(self) -> None:
        self.closed = True
        self._state_lot.unpark_all()
        if self._scope is not None:
            self._scope.cancel()

    async def _connect_once(self) -> str:
        """One connection: returns why it ended ("" after a connection that worked)."""
        try:
            async with open_websocket_url(self.url, message_queue_size=8, max_message_size=MAX_MESSAGE_SIZE,
                                          receive_buffer_size=RECEIVE_BUFFER, connect_timeout=HANDSHAKE_TIMEOUT,
                                          disconnect_timeout=CLOSE_TIMEOUT) as ws:
                return await self._serve(ws)
        except (HandshakeError, ConnectionClosed, OSError) as exc:
            cause = exc.__cause__ or exc
            return f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__

    async def _serve(self, ws: WebSocketConnection) -> str:
        self.generation += 1
        self._out.clear()
        self._acks.clear()
        await ws.send_message(link_encoder.encode([Hello(version=PROTOCOL_VERSION, window=self.window,
                                                         name=self.name)]))
        self.connected = True
        self.connects += 1
        self.last_error = ""
        self._state_lot.unpark_all()
        log.info("sim link %s up (connection %d)", self.url, self.connects)
        why = ["link closed by the simulator"]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write, ws, nursery.cancel_scope, why)
            try:
                while True:
                    frames = server_frames_decoder.decode(await ws.get_message())
                    self.frames_received += len(frames)
                    self._dispatch(frames)
            except ConnectionClosed as exc:
                why[0] = f"link closed: {exc.reason}"
            except msgspec.DecodeError as exc:
                why[0] = f"bad frame from the simulator: {exc}"
            nursery.cancel_scope.cancel()
        self.connected = False
        return why[0]

    def _down(self, reason: str) -> None:
        if self.generation and not self.last_error and not self.closed:  # it was up: say so once
            log.warning("sim link %s down: %s", self.url, reason)
        self.connected = False
        self.last_error = reason
        self._out.clear()
        self._acks.clear()
        self._space_lot.unpark_all()
        pending, self._pending = self._pending, {}
        for p in pending.values():
            p.event.set()  # reply None: the caller raises NotConnected
        sessions, self.sessions = self.sessions, {}
        for session in sessions.values():
            session.link_lost(reason)

    # -- frames -----------------------------------------------------------------------

    def _dispatch(self, frames: list[ServerFrame]) -> None:
        for frame in frames:
            if type(frame) is Reply:
                pending = self._pending.pop(frame.rid, None)
                if pending is not None:
                    pending.reply = frame
                    pending.event.set()
            elif type(frame) is not Welcome:
                session = self.sessions.get(frame.session)  # type: ignore[union-attr]
                if session is not None:
                    session.deliver(frame)

    async def _write(self, ws: WebSocketConnection, scope: trio.CancelScope, why: list[str]) -> None:
        out = self._out
        try:
            while True:
                if not out and not self._acks:
                    await self._out_lot.park()
                    continue
                batch: list[Frame] = []
                size = 0
                while out and len(batch) < MAX_BATCH and size < BATCH_BYTES:
                    frame = out.popleft()
                    batch.append(frame)
                    size += _weight(frame)
                if self._acks:
                    batch.extend(Ack(session=s, count=n) for s, n in self._acks.items())
                    self._acks.clear()
                if self._space_lot:
                    self._space_lot.unpark_all()
                await ws.send_message(link_encoder.encode(batch))
                self.frames_sent += len(batch)
        except ConnectionClosed as exc:
            why[0] = f"link closed: {exc.reason}"
            scope.cancel()

    async def put(self, frame: Frame, generation: int) -> None:
        """Queue a frame for the link `generation`; blocks while the outbox is full."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while len(self._out) >= OUTBOX_SIZE and self.generation == generation and self.connected:
            await self._space_lot.park()
        if self.generation != generation or not self.connected:
            raise NotConnected("the link to the simulator was lost")
        self._out.append(frame)
        if self._out_lot:
            self._out_lot.unpark()

    def put_nowait(self, frame: Frame, generation: int) -> None:
        """Queue a small control frame (ack, detach) past the bound: at most a few per session."""
        if self.generation == generation and self.connected:
            self._out.append(frame)
            if self._out_lot:
                self._out_lot.unpark()

    def ack(self, session: str, generation: int) -> None:
        """One more event of `session` reached its consumer; sent with the writer's next batch."""
        if self.generation == generation and self.connected:
            self._acks[session] = self._acks.get(session, 0) + 1
            if self._out_lot:
                self._out_lot.unpark()

    def flush_acks(self, session: str, generation: int) -> None:
        """Queue `session`'s pending acks now, ahead of a frame that must follow them (Detach)."""
        count = self._acks.pop(session, 0)
        if count:
            self.put_nowait(Ack(session=session, count=count), generation)

    async def call(self, session: str, op: object, result_type: type[T] | None, timeout: float) -> T | None:
        if not self.connected:
            raise NotConnected()
        generation = self.generation
        rid = next(self._rids)
        pending = self._pending[rid] = _Pending()
        try:
            await self.put(Call(rid=rid, session=session, op=op), generation)  # type: ignore[arg-type]
            with trio.move_on_after(timeout):
                await pending.event.wait()
        finally:
            self._pending.pop(rid, None)
        reply = pending.reply
        if reply is None:
            if pending.event.is_set() or not self.connected or self.generation != generation:
                raise NotConnected("the link to the simulator was lost")
            raise TransportError(f"the simulator did not answer within {timeout:g} s")
        if reply.error is not None:
            if reply.kind == "group_not_found":
                raise GroupNotFound(reply.error)
            if reply.kind == "not_authorized":
                raise NotAuthorized(reply.error)
            if reply.kind == "recipient":
                raise RecipientError(reply.error)
            if reply.kind == "not_connected":
                raise NotConnected(reply.error)
            raise TransportError(reply.error)
        return None if result_type is None else _decode(reply.result, result_type)

    def statistics(self) -> SimLinkStatistics:
        return SimLinkStatistics(connected=self.connected, sessions=len(self.sessions),
                                 calls_in_flight=len(self._pending), outbox=len(self._out), connects=self.connects,
                                 frames_sent=self.frames_sent, frames_received=self.frames_received,
                                 last_error=self.last_error)
