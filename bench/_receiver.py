"""Bench's own webhook endpoints: a receiver that records every delivery, and a dead endpoint.

`open_receiver` serves plain HTTP on 127.0.0.1 and answers 204 to any POST,
recording when it arrived, its event, session, message id, event timestamp
and `webhook-id` (retries of one delivery keep their id, so they are counted
once in `unique`). `open_dead_endpoint` accepts connections and never
answers: the worst endpoint a dispatcher can meet (each attempt waits for
its timeout). Sessions point at them with `webhookUrl`, which needs
`GATEWAY_ALLOW_PRIVATE_URLS=true` on the gateway.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import msgspec
import trio

from ._http import MessageReader, ProtocolError

NO_CONTENT: Final = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"


class _Event(msgspec.Struct):
    event: str = ""
    sessionId: str = ""
    timestamp: str = ""
    data: dict[str, Any] = {}


_decoder = msgspec.json.Decoder(_Event)


@dataclass(frozen=True)
class Delivery:
    received_at: float  # wall clock, seconds
    path: str
    event: str
    session_id: str
    message_id: str | None
    status: str | None
    event_at: float | None  # the event's own timestamp, wall clock seconds
    webhook_id: str | None


@dataclass
class Receiver:
    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    duplicates: int = 0
    changed: trio.Event = field(default_factory=trio.Event)

    @property
    def unique(self) -> int:
        return len(self.deliveries) - self.duplicates

    def record(self, path: str, headers: bytes, body: bytes) -> None:
        now = time.time()
        webhook_id = _header(headers, b"webhook-id")
        if webhook_id is not None:
            if webhook_id in self.seen:
                self.duplicates += 1
            self.seen.add(webhook_id)
        try:
            ev = _decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            ev = _Event()
        self.deliveries.append(Delivery(
            received_at=now, path=path, event=ev.event, session_id=ev.sessionId,
            message_id=ev.data.get("messageId"), status=ev.data.get("status"),
            event_at=parse_iso(ev.timestamp), webhook_id=webhook_id))
        self.changed.set()
        self.changed = trio.Event()

    def since(self, index: int) -> list[Delivery]:
        return self.deliveries[index:]


def parse_iso(text: str) -> float | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _header(block: bytes, name: bytes) -> str | None:
    i = block.find(name + b":")
    if i < 0 or (i > 0 and block[i - 1:i] != b"\n"):
        return None
    j = block.find(b"\r\n", i)
    return block[i + len(name) + 1:j if j >= 0 else None].strip().decode(errors="replace")


async def _serve_receiver(receiver: Receiver, stream: trio.SocketStream) -> None:
    reader = MessageReader(stream)
    try:
        while True:
            start, headers, body = await reader.read_message()
            parts = start.split(b" ")
            receiver.record(parts[1].decode(errors="replace") if len(parts) > 1 else "/", headers, body)
            await stream.send_all(NO_CONTENT)
    except (ProtocolError, trio.BrokenResourceError, OSError, ValueError):
        pass
    finally:
        with trio.move_on_after(1):
            await stream.aclose()


async def _serve_dead(stream: trio.SocketStream) -> None:
    try:
        while await stream.receive_some(65536):
            pass  # never answer
    except (trio.BrokenResourceError, OSError):
        pass
    finally:
        with trio.move_on_after(1):
            await stream.aclose()


@asynccontextmanager
async def open_receiver() -> AsyncIterator[Receiver]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, lambda s: _serve_receiver(receiver, s), 0,
                                                host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        receiver = Receiver(url=f"http://127.0.0.1:{port}")
        yield receiver
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def open_dead_endpoint() -> AsyncIterator[str]:
    """A URL whose server accepts and never answers."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, _serve_dead, 0, host="127.0.0.1"))
        yield f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        nursery.cancel_scope.cancel()
