"""The live event stream across nodes.

A WebSocket client (`GET /api/v1/events`) is served by whichever node it
reached, but its session's events are mostly produced on the node that owns
the session, and that node can change. So the nodes tell each other which
sessions have stream subscribers, and relay those sessions' events:

- `w:<node>:<session>,...`: "I have subscribers for these sessions". Sent at
  once when a subscriber arrives (so its events start flowing within a
  notification's latency) and again every lease round; an interest not
  repeated for three rounds is forgotten;
- `e:<node>:<json array of events>`: events of watched sessions, batched up
  to a notification's size and kept in the order they were published. A
  receiving node publishes them on its own bus, so its subscribers see them
  as if produced there. A node ignores its own notifications.

Limits: an event larger than a notification (about 7.9 KB as JSON, e.g. a
long received text) is relayed with `data` cut down to its ids and
`"truncated": true`; the webhook delivery, which does not travel this way,
carries it whole. Events produced before the interest reached the producing
node (a few milliseconds after the subscriber arrived) are not relayed.
"""

from __future__ import annotations

import logging
from typing import Final

import msgspec
import trio

from .._events import EventBus, GatewayEvent
from ._notify import MAX_BODY, Notifier

log = logging.getLogger("gateway.cluster")

WATCH: Final = "w"
EVENTS: Final = "e"
_FORGET_AFTER_ROUNDS: Final = 3
_KEEP_IN_TRUNCATED: Final = ("messageId", "whatsappId", "status", "to", "type", "chat", "sender")
_encode = msgspec.json.Encoder().encode
_decode_events = msgspec.json.Decoder(list[GatewayEvent]).decode


class EventRelay:
    def __init__(self, node_id: str, notifier: Notifier, bus: EventBus, *, interval: float) -> None:
        self._node = node_id
        self._notifier = notifier
        self._bus = bus
        self._ttl = interval * _FORGET_AFTER_ROUNDS
        self._remote: dict[str, float] = {}  # session -> trio time its interest lapses
        self._batch: list[bytes] = []
        self._batch_size = 0
        self.relayed = 0
        self.received = 0
        notifier.on(WATCH, self._on_watch)
        notifier.on(EVENTS, self._on_events)
        notifier.add_flusher(self._flush)
        bus.when_subscribed(self._subscribed)

    # -- interest -------------------------------------------------------------------

    def _subscribed(self, session_id: str | None) -> None:
        if session_id is not None:
            self._announce([session_id])

    def announce_all(self) -> None:
        """Repeat this node's interest (every lease round)."""
        self._announce(sorted(s for s in self._bus.watched() if s is not None))

    def _announce(self, sessions: list[str]) -> None:
        prefix = f"{self._node}:"
        chunk: list[str] = []
        for sid in sessions:
            if chunk and len(prefix) + sum(len(s) + 1 for s in chunk) + len(sid) > MAX_BODY:
                self._notifier.send_nowait(WATCH, prefix + ",".join(chunk))
                chunk = []
            chunk.append(sid)
        if chunk:
            self._notifier.send_nowait(WATCH, prefix + ",".join(chunk))

    def _on_watch(self, body: str) -> None:
        node, _, sessions = body.partition(":")
        if node == self._node:
            return
        until = trio.current_time() + self._ttl
        for sid in sessions.split(","):
            if sid:
                self._remote[sid] = until

    # -- events -----------------------------------------------------------------------

    def relay_nowait(self, event: GatewayEvent) -> None:
        """Send the event to the other nodes if one of them has a subscriber for its session."""
        until = self._remote.get(event.session_id)
        if until is None:
            return
        if until < trio.current_time():
            del self._remote[event.session_id]
            return
        encoded = _encode(event)
        if len(encoded) + len(self._node) + 3 > MAX_BODY:
            data = {k: v for k, v in event.data.items() if k in _KEEP_IN_TRUNCATED}
            encoded = _encode(msgspec.structs.replace(event, data={**data, "truncated": True}))
        if self._batch_size + len(encoded) + len(self._node) + 3 > MAX_BODY:
            self._flush()
        self._batch.append(encoded)
        self._batch_size += len(encoded) + 1
        self.relayed += 1
        self._notifier.wake_nowait()  # what arrives within the notifier's flush delay goes out together

    def _flush(self) -> None:
        if self._batch:
            body = f"{self._node}:[" + b",".join(self._batch).decode() + "]"
            self._batch, self._batch_size = [], 0
            self._notifier.send_nowait(EVENTS, body)

    def _on_events(self, body: str) -> None:
        node, _, events = body.partition(":")
        if node == self._node:
            return
        for event in _decode_events(events):
            self.received += 1
            self._bus.publish_nowait(event)
