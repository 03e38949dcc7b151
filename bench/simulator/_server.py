"""The simulator's I/O edge: the websocket server, its timer task, control requests, and the CLI."""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import signal
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import msgspec
import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, WebSocketRequest, serve_websocket

from actors.sim import (
    CONTROL_PATH, MAX_MESSAGE_SIZE, NIL, PROTOCOL_VERSION, Ack, Attach, Call, ControlReply, Detach, Frame, Hello,
    Reply, Welcome, client_frames_decoder, control_encoder, control_request_decoder, link_encoder,
)

from ._control_ops import ControlOps
from ._model import OpError, Slot
from ._network import DEFAULT_QR_INTERVAL, Network

log = logging.getLogger("bench.simulator")

MAX_BATCH: Final = 512  # frames per websocket message
RECEIVE_BUFFER: Final = 64 * 1024
TIMERS_PER_CHECKPOINT: Final = 1000
CLOSE_TIMEOUT: Final = 1.0


class Scheduler:
    """One task runs every timer (QR rotation, autopair, receipts): a heap, not a task per timer."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._scope: trio.CancelScope | None = None

    def call_later(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        due = trio.current_time() + max(0.0, delay)
        heapq.heappush(self._heap, (due, next(self._seq), fn, args))
        if self._scope is not None and due < self._scope.deadline:
            self._scope.deadline = due

    def __len__(self) -> int:
        return len(self._heap)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            ran = 0
            while self._heap and self._heap[0][0] <= trio.current_time():
                _, _, fn, args = heapq.heappop(self._heap)
                try:
                    fn(*args)
                except Exception:
                    log.exception("simulator timer %r failed", fn)
                ran += 1
                if ran % TIMERS_PER_CHECKPOINT == 0:
                    await trio.lowlevel.checkpoint()
            with trio.CancelScope(deadline=self._heap[0][0] if self._heap else math.inf) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None


class ServerLink:
    """The server side of one link. Its queue never blocks a producer: the credit windows bound it
    (at most window events per session, plus replies to calls the client is waiting for)."""

    def __init__(self, link_id: int) -> None:
        self.id = link_id
        self.slots: dict[str, Slot] = {}
        self.cancel_scope = trio.CancelScope()
        self._out: deque[Frame] = deque()
        self._lot = trio.lowlevel.ParkingLot()

    def enqueue(self, frame: Frame) -> None:
        self._out.append(frame)
        if self._lot:
            self._lot.unpark()

    def close(self) -> None:
        self.cancel_scope.cancel()

    async def write_forever(self, ws: WebSocketConnection) -> None:
        out = self._out
        while True:
            if not out:
                await self._lot.park()
                continue
            batch = [out.popleft() for _ in range(min(len(out), MAX_BATCH))]
            await ws.send_message(link_encoder.encode(batch))


class SimulatorServer:
    def __init__(self, network: Network) -> None:
        self.network = network
        self.control = ControlOps(network)
        self._link_ids = itertools.count(1)

    async def handle(self, request: WebSocketRequest) -> None:
        path = request.path.split("?", 1)[0].rstrip("/")
        ws = await request.accept()
        try:
            if path == CONTROL_PATH:
                await self._serve_control(ws)
            else:
                await self._serve_link(ws)
        except ConnectionClosed:
            pass
        # A link dropped by the fault injector closes gracefully; a simulator that is shutting down
        # (cancelled) just goes away, like a killed process, and its clients see an abnormal close.
        with trio.move_on_after(CLOSE_TIMEOUT):
            await ws.aclose()

    async def _serve_link(self, ws: WebSocketConnection) -> None:
        link = ServerLink(next(self._link_ids))
        self.network.link_opened(link, self.network.window)
        log.debug("link %d opened", link.id)
        try:
            with link.cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write, link, ws, nursery.cancel_scope)
                    while True:
                        try:
                            data = await ws.get_message()
                            frames = client_frames_decoder.decode(data)
                        except ConnectionClosed:
                            nursery.cancel_scope.cancel()
                            return
                        except (msgspec.DecodeError, TypeError) as exc:
                            log.warning("link %d sent a bad frame (%s); closing it", link.id, exc)
                            nursery.cancel_scope.cancel()
                            return
                        for frame in frames:
                            self._handle(link, frame, nursery)
        finally:
            self.network.link_closed(link)
            log.debug("link %d closed", link.id)

    @staticmethod
    async def _write(link: ServerLink, ws: WebSocketConnection, scope: trio.CancelScope) -> None:
        try:
            await link.write_forever(ws)
        except ConnectionClosed:
            scope.cancel()

    def _handle(self, link: ServerLink, frame: Frame, nursery: trio.Nursery) -> None:
        net = self.network
        match frame:
            case Ack(session=session, count=count):
                net.ack(link, session, count)
            case Call(session=session):
                delay = net.latency.get(session, net.latency.get(None, 0.0))
                if delay > 0:
                    nursery.start_soon(self._delayed_call, link, frame, delay)
                else:
                    self._call(link, frame)
            case Attach():
                net.attach(link, frame)
            case Detach(session=session):
                net.detach(link, session)
            case Hello(version=version, window=window):
                if version != PROTOCOL_VERSION:
                    log.warning("link %d speaks protocol %d, not %d", link.id, version, PROTOCOL_VERSION)
                net.windows[link.id] = max(1, window)
                link.enqueue(Welcome(version=PROTOCOL_VERSION, link=link.id))

    async def _delayed_call(self, link: ServerLink, frame: Call, delay: float) -> None:
        await trio.sleep(delay)
        self._call(link, frame)

    def _call(self, link: ServerLink, frame: Call) -> None:
        try:
            result = self.network.call(link, frame.session, frame.op)
        except OpError as exc:
            link.enqueue(Reply(rid=frame.rid, error=exc.message, kind=exc.kind))  # type: ignore[arg-type]
            return
        except Exception:
            log.exception("simulator operation %s failed", type(frame.op).__name__)
            link.enqueue(Reply(rid=frame.rid, error="internal simulator error", kind="error"))
            return
        raw = NIL if result is None else msgspec.Raw(link_encoder.encode(result))
        link.enqueue(Reply(rid=frame.rid, result=raw))

    async def _serve_control(self, ws: WebSocketConnection) -> None:
        while True:
            data = await ws.get_message()
            try:
                request = control_request_decoder.decode(data)
            except msgspec.DecodeError as exc:
                reply = ControlReply(id=0, ok=False, error=f"bad request: {exc}")
            else:
                try:
                    result = self.control.dispatch(request.op, request.args)
                    reply = ControlReply(id=request.id, ok=True, result=msgspec.to_builtins(result))
                except (OpError, TypeError, ValueError, KeyError) as exc:
                    reply = ControlReply(id=request.id, ok=False, error=str(exc))
            await ws.send_message(control_encoder.encode(reply).decode())


@dataclass(frozen=True)
class SimulatorHandle:
    """What `serve_simulator` hands to `task_status.started`."""

    host: str
    port: int
    network: Network

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    @property
    def control_url(self) -> str:
        return self.url + CONTROL_PATH

    def statistics(self):  # noqa: ANN201 - SimStats
        return self.network.statistics()


async def serve_simulator(host: str, port: int, *, autopair: float | None = None, receipt_delay: float = 0.5,
                          qr_interval: float = DEFAULT_QR_INTERVAL, open_world: bool = True,
                          task_status: trio.TaskStatus[SimulatorHandle] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve a simulated WhatsApp network until cancelled; `port=0` picks a free port (see the handle).

    `open_world=False` is `--closed-world`: only numbers a session paired as or control registered are
    on WhatsApp."""
    scheduler = Scheduler()
    network = Network(scheduler, autopair=autopair, receipt_delay=receipt_delay, qr_interval=qr_interval,
                      open_world=open_world)
    server = SimulatorServer(network)
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        ws_server = await nursery.start(partial(
            serve_websocket, server.handle, host, port, None, message_queue_size=8,
            max_message_size=MAX_MESSAGE_SIZE, receive_buffer_size=RECEIVE_BUFFER))
        task_status.started(SimulatorHandle(host, ws_server.port, network))


def parse_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--bind must be HOST:PORT, got {bind!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def run_simulator_cli(bind: str, *, autopair: float | None, receipt_delay: float,
                      qr_interval: float = DEFAULT_QR_INTERVAL, open_world: bool = True) -> int:
    """`gateway simulator`: serve until SIGINT or SIGTERM, then exit 0."""
    if qr_interval <= 0:
        print("gateway simulator: --qr-interval must be positive", file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        host, port = parse_bind(bind)
    except ValueError as exc:
        print(f"gateway simulator: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                handle = await nursery.start(partial(serve_simulator, host, port, autopair=autopair,
                                                     receipt_delay=receipt_delay, qr_interval=qr_interval,
                                                     open_world=open_world))
                print(f"simulator listening on {handle.url}", flush=True)
                log.info("simulator listening on %s (autopair=%s, receipt delay %.3fs, %s world)",
                         handle.url, autopair, receipt_delay, "open" if open_world else "closed")
                async for signum in signals:
                    log.info("simulator stopping on %s", signal.Signals(signum).name)
                    break
                nursery.cancel_scope.cancel()

    failure: OSError | None = None
    try:
        trio.run(main)
    except* OSError as group:  # a bind failure arrives wrapped by the nurseries
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        failure = leaf  # type: ignore[assignment]
    if failure is not None:
        print(f"gateway simulator: cannot listen on {bind}: {failure}", file=sys.stderr)
        return 1
    return 0


def run_control_cli(url: str, op: str, **args: Any) -> int:
    """`gateway simulator scan|unregister`: one control request; prints its phone number, exit 0.

    A refusal (say, no session waiting to pair) or an unreachable simulator prints the reason to
    stderr and exits 1."""
    from .control import SimControlError, open_sim_control

    async def main() -> str:
        async with open_sim_control(url) as control:
            if op == "scan":
                return await control.scan(args["session_id"], args.get("phone"))
            if op == "unregister":
                return await control.unregister(args["phone"])
            raise SimControlError(f"unknown command {op!r}")

    try:
        phone = trio.run(main)
    except SimControlError as exc:
        print(f"gateway simulator {op}: {exc.reason}", file=sys.stderr)
        return 1
    except (OSError, ValueError, HandshakeError, ConnectionClosed) as exc:
        cause = exc if str(exc) else (exc.__cause__ or exc.__context__ or type(exc).__name__)
        print(f"gateway simulator {op}: cannot reach the simulator at {url}: {cause}", file=sys.stderr)
        return 1
    print(phone, flush=True)
    return 0
