"""What Go calls: the neonize transport's event handlers, run on a session's connect thread.

A mixin of `NeonizeTransport` (`_transport`), split out to keep the Go-thread side
apart from the trio side. Handlers hand events to trio through the attempt
(`Attempt.deliver`, with backpressure) and report what ends a connection
through `Attempt.post`; they never raise (see `go_callback`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .._jid import phone_from_jid
from .._transport import Connected, ConnectFailed, Disconnected, QRCode, TransportEvent
from ._attempt import Attempt, go_callback, nz
from ._rwlock import RWLock

log = logging.getLogger("actors._neonize")


class GoCallbacks:
    session_id: str
    _attempt: Attempt | None
    _client: Any
    _lock: RWLock
    _connected: bool
    _me: frozenset[str]

    def _register_handlers(self) -> None:
        ev = nz().ev
        self._client.event.qr(self._on_qr)
        for event_type, handler in (
            (ev.ConnectedEv, self._on_connected), (ev.PairStatusEv, self._on_pair_status),
            (ev.DisconnectedEv, self._on_disconnected), (ev.LoggedOutEv, self._on_logged_out),
            (ev.StreamReplacedEv, self._on_stream_replaced), (ev.TemporaryBanEv, self._on_temporary_ban),
            (ev.ConnectFailureEv, self._on_connect_failure), (ev.ClientOutdatedEv, self._on_client_outdated),
            (ev.KeepAliveTimeoutEv, self._on_keepalive), (ev.KeepAliveRestoredEv, self._on_keepalive),
            (ev.MessageEv, self._on_message), (ev.ReceiptEv, self._on_receipt),
            (ev.PresenceEv, self._on_presence), (ev.ChatPresenceEv, self._on_chat_presence),
            (ev.JoinedGroupEv, self._on_joined_group), (ev.GroupInfoEv, self._on_group_info),
            (ev.PictureEv, self._on_picture),
        ):
            self._client.event(event_type)(handler)

    def _current(self) -> Attempt | None:
        """The attempt a callback belongs to, None once it is stopping. Any callback ends the start."""
        a = self._attempt
        if a is None:
            return None
        a.settle_start(self._lock)
        return None if a.stop_flag.is_set() else a

    def _deliver(self, a: Attempt, event: TransportEvent | None) -> None:
        if event is not None:
            a.deliver(event, self.session_id)

    @go_callback
    def _on_qr(self, _client: Any, data: bytes) -> None:
        if a := self._current():
            a.post(qr_seen=True)
            self._deliver(a, QRCode(code=data.decode()))

    @go_callback
    def _on_connected(self, _client: Any, _ev: Any) -> None:
        if not (a := self._current()):
            return
        with self._lock.read():
            if a.go_stopped:
                return
            me = self._client.get_me()  # safe: the client is connected right now
            self._connected = True
        self._me = nz().groups.own_jids(me)
        jid = nz().conv.jid_str(me.JID) or ""
        a.post(connected_once=True)
        self._deliver(a, Connected(jid=jid, phone_number=phone_from_jid(jid),
                                   push_name=me.PushName or None))

    @go_callback
    def _on_pair_status(self, _client: Any, ev: Any) -> None:
        if a := self._current():
            if nz().conv.pair_succeeded(ev):
                a.post(paired=True)
            else:
                a.post(failure=ConnectFailed(f"pairing failed: {ev.Error}"))

    @go_callback
    def _on_disconnected(self, _client: Any, _ev: Any) -> None:
        if a := self._current():
            self._connected = False
            self._deliver(a, Disconnected(reason="connection lost; reconnecting"))

    @go_callback
    def _on_logged_out(self, _client: Any, ev: Any) -> None:
        if a := self._current():
            self._connected = False
            a.post(logged_out=nz().conv.failure_reason(ev.Reason))

    def _fail(self, reason: str, *, retryable: bool) -> None:
        if a := self._current():
            self._connected = False
            a.post(failure=ConnectFailed(reason, retryable=retryable))

    @go_callback
    def _on_stream_replaced(self, _client: Any, _ev: Any) -> None:
        # Another client took over this device; retrying would only take it back and forth.
        self._fail("stream replaced: this session connected from somewhere else", retryable=False)

    @go_callback
    def _on_temporary_ban(self, _client: Any, ev: Any) -> None:
        self._fail(nz().conv.temporary_ban_reason(ev), retryable=False)

    @go_callback
    def _on_connect_failure(self, _client: Any, ev: Any) -> None:
        reason = nz().conv.failure_reason(ev.Reason)
        self._fail(f"connect failure ({reason}): {ev.Message}".rstrip(": "), retryable=True)

    @go_callback
    def _on_client_outdated(self, _client: Any, _ev: Any) -> None:
        self._fail("WhatsApp rejected this client version as outdated; upgrade neonize", retryable=False)

    @go_callback
    def _on_keepalive(self, _client: Any, ev: Any) -> None:
        if self._current():
            log.info("neonize keepalive %s (session %s)", type(ev).__name__, self.session_id)

    @go_callback
    def _on_message(self, _client: Any, ev: Any) -> None:
        if not (a := self._current()):
            return
        conv = nz().conv
        if conv.poll_update_id(ev) is not None:
            self._deliver(a, self._poll_vote(ev))
            return
        self._deliver(a, conv.message_action(ev) or conv.message_received(ev))

    def _poll_vote(self, ev: Any) -> TransportEvent | None:
        """Decrypt a vote (a Go call: safe while connected, under the shared lock); None if it cannot be."""
        lib = nz()
        with self._lock.read():
            if not self._connected:
                return None
            try:
                vote = self._client.decrypt_poll_vote(ev)
            except lib.NeonizeError as exc:
                log.warning("neonize poll vote not decrypted (session %s): %s", self.session_id,
                            lib.conv.go_text(exc))
                return None
        return lib.conv.poll_vote(ev, vote.selectedOptions)

    @go_callback
    def _on_receipt(self, _client: Any, ev: Any) -> None:
        if a := self._current():
            self._deliver(a, nz().conv.receipt(ev))

    @go_callback
    def _on_presence(self, _client: Any, ev: Any) -> None:
        if a := self._current():
            self._deliver(a, nz().conv.presence(ev))

    @go_callback
    def _on_chat_presence(self, _client: Any, ev: Any) -> None:
        if a := self._current():
            self._deliver(a, nz().conv.chat_presence(ev))

    # Group events carry no milliseconds of their own (seconds, or no timestamp at all): `now_ms` stands in.

    @go_callback
    def _on_joined_group(self, _client: Any, ev: Any) -> None:
        if a := self._current():
            self._deliver(a, nz().groups.joined_group(ev, _now_ms()))

    @go_callback
    def _on_group_info(self, _client: Any, ev: Any) -> None:
        if a := self._current():
            for event in nz().groups.group_changes(ev, self._me, _now_ms()):
                self._deliver(a, event)

    @go_callback
    def _on_picture(self, _client: Any, ev: Any) -> None:
        if a := self._current():
            self._deliver(a, nz().groups.picture_changed(ev, _now_ms()))


def _now_ms() -> int:
    return int(time.time() * 1000)
