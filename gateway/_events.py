"""The internal event bus: what happened, in the seed's webhook shape.

Producers publish without blocking. Each subscriber has a bounded buffer; a
subscriber that falls behind is cut off (its channel is closed and it is told
why) rather than holding unbounded memory or slowing the producers. The
durable webhook outbox reads the same events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import msgspec
import trio

from ._clock import now_ms
from .store import iso_ms

log = logging.getLogger("gateway.events")

DEFAULT_SUBSCRIBER_BUFFER: Final = 256


class GatewayEvent(msgspec.Struct, frozen=True, rename="camel"):
    """`{event, sessionId, timestamp, data}` — the webhook payload of the seed."""

    event: str
    session_id: str
    timestamp: str
    data: dict[str, Any]


def make_event(event: str, session_id: str, data: dict[str, Any], *, at: int | None = None) -> GatewayEvent:
    """An event stamped `at` (epoch ms: the time of the change it reports), or now."""
    return GatewayEvent(event=event, session_id=session_id, timestamp=iso_ms(now_ms() if at is None else at) or "",
                        data=data)


class Subscription:
    def __init__(self, session_id: str | None, buffer: int) -> None:
        self.session_id = session_id
        self.send, self.receive = trio.open_memory_channel[GatewayEvent](buffer)
        self.overflowed = False


class EventBus:
    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self.published = 0
        self._on_subscribe: list[Callable[[str | None], None]] = []

    def when_subscribed(self, callback: Callable[[str | None], None]) -> None:
        """Call `callback(session_id)` whenever a subscriber arrives (cluster mode: ask the other nodes
        for that session's events, since they may be produced on the node that owns it)."""
        self._on_subscribe.append(callback)

    def watched(self) -> set[str | None]:
        """The sessions this process has subscribers for (None: a subscriber to every session)."""
        return {sub.session_id for sub in self._subs}

    def publish_nowait(self, event: GatewayEvent) -> None:
        self.published += 1
        for sub in list(self._subs):
            if sub.session_id is not None and sub.session_id != event.session_id:
                continue
            try:
                sub.send.send_nowait(event)
            except trio.WouldBlock:
                sub.overflowed = True
                self._subs.discard(sub)
                sub.send.close()
            except trio.ClosedResourceError:
                self._subs.discard(sub)

    @contextmanager
    def subscribe(self, session_id: str | None = None, *,
                  buffer: int = DEFAULT_SUBSCRIBER_BUFFER) -> Iterator[Subscription]:
        """Events (of one session, or all) until the block ends or the subscriber overflows."""
        sub = Subscription(session_id, buffer)
        self._subs.add(sub)
        for callback in self._on_subscribe:
            callback(session_id)
        try:
            yield sub
        finally:
            self._subs.discard(sub)
            sub.send.close()

    @property
    def subscribers(self) -> int:
        return len(self._subs)


class Collector:
    """Builds events inside a store write (see `EventsOf`) and keeps them for publishing after commit.

    A store may run a write's function again after rolling it back (group commit retries a batch that
    failed): a record built again replaces its earlier build, so its events are published once."""

    def __init__(self, build: Callable[[Any], list[GatewayEvent]]) -> None:
        self._build = build
        self._built: dict[Any, list[GatewayEvent]] = {}

    def __call__(self, record: Any) -> list[GatewayEvent]:
        built = self._build(record)
        self._built[getattr(record, "id", None) or id(record)] = built
        return built

    @property
    def events(self) -> list[GatewayEvent]:
        return [event for built in self._built.values() for event in built]


class EventRecorder:
    """Where producers hand events: durable outbox first, then the live bus and the dispatcher.

    Events that accompany a state change are written by that change's store
    call (`Collector` as its `events=`); `published` then fans them out.
    Events with no other state (received messages, presence, QR) go through
    `record`, which writes them to the outbox itself. `wake` tells the webhook
    dispatcher that deliveries are due; `relay` (cluster mode) hands each event
    to the other nodes' stream subscribers.
    """

    def __init__(self, store: Any, bus: EventBus, *, wake: Callable[[], None],
                 relay: Callable[[GatewayEvent], None] | None = None) -> None:
        self._store = store
        self.bus = bus
        self._wake = wake
        self._relay = relay

    def published(self, events: list[GatewayEvent]) -> None:
        for event in events:
            self.bus.publish_nowait(event)
            if self._relay is not None:
                self._relay(event)
        if events:
            self._wake()

    async def record(self, events: list[GatewayEvent], at: int | None = None) -> list[Any]:
        deliveries = await self._store.record_events(events, now_ms() if at is None else at)
        self.published(events)
        return deliveries
