"""The production transport: real WhatsApp through neonize (whatsmeow in Go).

One `neonize.client.NewClient` per session, keyed in Go by the session id and
backed by its own device store (`<data_dir>/neonize/<session_id>.sqlite3`), so
the "no jid → resume the first device in the store" rule always finds this
session's device or pairs a new one. How each neonize hazard is handled:

- `connect()` blocks until `stop()`: it runs on a thread of its own per attempt,
  never on trio's worker threads. Go calls back on that thread; each event is
  handed to trio at once with `trio.from_thread.run(events.send, ...)`, so a full
  events channel slows the session down (backpressure) instead of losing events.
  ctypes swallows exceptions, so every callback catches and logs its own.
- Go's global maps are unlocked: every Go call holds the process-wide `GO_LOCK`
  (`_rwlock`) shared; a connect start and every stop hold it exclusively. The
  start hold ends with the first Go callback, connect() returning, or after
  `start_hold_cap`. A stop first lets a start in progress settle: Go's Stop
  waits for a dial in progress, and would do so holding the exclusive lock.
  A stop keeps the exclusive hold until that client's connect() has returned
  (at most `STOP_SETTLE`): Go's connect cleans up its map entries on the way out.
  Residual risks, inside Go and out of reach: a connect start still running
  after the cap, and an unpaired client's map read when its QR phase ends
  (paired, or its QR codes ran out after a stop).
  Costs: connect starts are serial (about one dial and login each, so a
  restart with many paired sessions brings them up one by one), and a long Go
  call (a large upload) holds the shared lock, delaying other sessions'
  connects and stops.
- Calls that abort the process on a client that is not connected never reach
  Go: every operation checks the connected flag under the shared lock, and
  stop clears it under the exclusive lock.
- Clients are never churned: one per session id for the life of the process
  (`_clients`), reused by every `run()`; their garbage-collection finalizer
  (Stop(uuid), outside any lock) is detached. After each attempt, even a failed
  one, the client is stopped so Go's maps hold nothing stale; each failed
  connect still leaks a descriptor in Go, which is why the actor backs off
  between runs.
- A proxy (`SessionSpec.proxy_url`) is checked before each attempt (a bad one
  ends `run` with ConnectFailed, not retryable) and handed to that attempt's
  `connect()`: neonize applies a proxy only while connect() creates the Go
  client (see `_proxy`). Its URL never reaches a log line or a reason.
- An unpaired session (one that was shown a QR code) must pair within
  `pairing_deadline` seconds (trio clock) of `run()` starting; otherwise the
  client is stopped and `run` raises PairingTimeout. `pair_phone` waits for the
  first QR code, the point from which whatsmeow accepts a pairing-code request.

The WhatsApp message id cannot be chosen in neonize 0.5.2: `OutboundMessage.id_hint`
is ignored and `send` returns the id WhatsApp assigned.

Logging: importing neonize calls `logging.basicConfig(level=INFO)` and its Go
core prints to stdout. Nothing here imports neonize until a
`NeonizeTransportFactory` is constructed: build the factory after configuring
logging, and neonize's basicConfig finds handlers in place and does nothing.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import trio

from .._messages import OutboundMessage, SendResult
from .._transport import (
    ChatState, ConnectFailed, EventSendChannel, LoggedOut, MessageReceived, NotConnected, OnWhatsApp,
    PairingTimeout, SessionSpec, TransportError,
)
from . import _proxy
from ._attempt import Attempt, nz
from ._callbacks import GoCallbacks
from ._directory import DirectoryCalls
from ._rwlock import GO_LOCK, RWLock

log = logging.getLogger("actors._neonize")  # one logger for the transport, its attempts and callbacks

PAIRING_DEADLINE: Final = 120.0  # seconds from run() start for an unpaired session
STOP_TIMEOUT: Final = 15.0  # seconds to wait for connect() to return after stop
STOP_SETTLE: Final = 2.0  # longest exclusive hold after Stop, waiting for Go's connect to unwind
START_HOLD_CAP: Final = 3.0  # longest exclusive hold for a connect start (seconds)
PAIR_PHONE_WAIT: Final = 20.0  # seconds pair_phone waits for the first QR code
MAX_CONCURRENT_CALLS: Final = 16  # Go calls in flight per factory

_clients: dict[str, Any] = {}  # session id (Go uuid) → NewClient, for the life of the process
_clients_guard = threading.Lock()


class NeonizeTransport(GoCallbacks, DirectoryCalls):
    """A `Transport` over one neonize client; see the module docstring and `actors/_transport.py`."""

    def __init__(self, spec: SessionSpec, *, client: Any, lock: RWLock = GO_LOCK,
                 pairing_deadline: float = PAIRING_DEADLINE, stop_timeout: float = STOP_TIMEOUT,
                 start_hold_cap: float = START_HOLD_CAP, pair_phone_wait: float = PAIR_PHONE_WAIT,
                 limiter: trio.CapacityLimiter | None = None) -> None:
        self.spec, self.session_id = spec, spec.session_id
        self._client, self._lock = client, lock
        self._pairing_deadline, self._stop_timeout = pairing_deadline, stop_timeout
        self._stop_settle = min(STOP_SETTLE, stop_timeout)
        self._start_hold_cap, self._pair_phone_wait = start_hold_cap, pair_phone_wait
        self._limiter = limiter or trio.CapacityLimiter(MAX_CONCURRENT_CALLS)
        self._attempt: Attempt | None = None
        self._thread: threading.Thread | None = None
        self._running = self._closed = False
        self._connected = False  # the Go client is logged in; written under the lock or by Go callbacks
        self._me: frozenset[str] = frozenset()  # this account's JIDs (phone, LID), from the last Connected
        self._proxy: Any = None  # the last attempt's neonize ProxySettings, None without a proxy
        self._proxy_url: str | None = None  # ... and its URL, scrubbed from every error text
        self._register_handlers()

    @property
    def client(self) -> Any:
        return self._client

    def respec(self, spec: SessionSpec) -> None:
        """Take the session's current spec (a changed proxy, say); the next `run()` uses it."""
        if spec.session_id != self.session_id:
            raise ValueError(f"spec of session {spec.session_id!r} given to {self.session_id!r}")
        self.spec = spec

    def _proxy_settings(self) -> Any:
        """The ProxySettings for the next connect(), None without a proxy; ConnectFailed for a bad URL."""
        url = self.spec.proxy_url
        if not url:
            return None
        _proxy.check(url)
        return nz().ProxySettings(proxy_address=url)

    def _scrub(self, text: str) -> str:
        return _proxy.scrub(text, self._proxy_url)

    # -- lifecycle ----------------------------------------------------------------

    async def run(self, events: EventSendChannel, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._closed:
            raise ConnectFailed("transport is closed", retryable=False)
        if self._running:
            raise RuntimeError(f"run() is already active for session {self.session_id}")
        self._proxy, self._proxy_url = self._proxy_settings(), self.spec.proxy_url
        self._running = True
        try:
            await self._wait_previous_thread()
            a = self._attempt = Attempt(trio.lowlevel.current_trio_token(), events, trio.current_time())
            self._thread = threading.Thread(target=self._connect_thread, args=(a,), daemon=True,
                                            name=f"neonize-connect-{self.session_id}")
            try:
                self._thread.start()
                await a.wait_until(lambda: a.launched or a.done.is_set())
                task_status.started()
                with trio.move_on_after(self._start_hold_cap):
                    await a.wait_until(lambda: a.go_ready or a.done.is_set())
                if not a.go_ready:
                    log.info("neonize start of session %s still running after %g s; releasing the exclusive lock",
                             self.session_id, self._start_hold_cap)
                a.release_start_hold(self._lock)
                await self._supervise(a)
            finally:
                with trio.CancelScope(shield=True):
                    await self._stop(a)
        finally:
            self._running = False

    async def _supervise(self, a: Attempt) -> None:
        while True:
            if a.logged_out is not None:
                await self._stop(a)
                try:
                    await a.events.send(LoggedOut(reason=a.logged_out))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                return
            if a.stop_flag.is_set():  # disconnect() or logout(), even if connect() failed meanwhile
                await self._stop(a)
                return
            if a.failure is not None:
                raise a.failure
            if a.done.is_set():
                raise ConnectFailed(a.connect_error or "connect() returned without being stopped")
            pairing = a.qr_seen.is_set() and not (a.connected_once or a.paired)
            deadline = a.started_at + self._pairing_deadline if pairing else math.inf
            if trio.current_time() >= deadline:
                raise PairingTimeout(f"not paired within {self._pairing_deadline:g} s")
            await a.next_change(deadline)

    def _connect_thread(self, a: Attempt) -> None:
        error: str | None = None
        try:
            self._lock.acquire_write()
            a.take_start_hold()
            if a.stop_flag.is_set():
                return
            a.go_started = True
            a.post(launched=True)
            try:
                self._client.connect(self._proxy)
            except Exception as exc:
                error = self._scrub(nz().conv.go_text(exc))
                if self._proxy is not None and _proxy.refused_by_go(error):
                    a.post(failure=ConnectFailed(
                        f"proxy {_proxy.masked(self._proxy_url or '')} refused: {error}", retryable=False))
            finally:
                a.connect_returned.set()
        except BaseException as exc:
            # a traceback could quote the proxy URL: only without one
            log.error("neonize connect thread failed (session %s): %s", self.session_id, self._scrub(repr(exc)),
                      exc_info=self._proxy_url is None)
            error = error or self._scrub(f"connect thread failed: {exc!r}")
        finally:
            a.settle_start(self._lock)
            a.post(done=True, connect_error=error)

    async def _stop(self, a: Attempt) -> None:
        """Stop the attempt's client (once) and wait, bounded, for its connect() to return."""
        a.stop_flag.set()
        a.release_start_hold(self._lock)
        for scope in list(a.deliveries):
            scope.cancel()
        if not a.stop_started:
            a.stop_started = True
            # Stop waits in Go for a dial in progress, under the exclusive lock: let the start settle first.
            with trio.move_on_after(self._stop_timeout):
                await a.wait_until(lambda: a.go_ready or a.done.is_set())
            try:
                await trio.to_thread.run_sync(self._go_stop, a)
            finally:
                a.stopped.set()
                a.wakeup.set()
        await a.stopped.wait()
        with trio.move_on_after(self._stop_timeout):
            await a.done.wait()
        if not a.done.is_set():
            log.warning("neonize connect() for session %s did not return %g s after stop",
                        self.session_id, self._stop_timeout)

    def _go_stop(self, a: Attempt) -> None:
        with self._lock.write():
            self._connected = False
            a.go_stopped = True
            if a.go_started:
                try:
                    self._client.stop()
                except Exception:
                    log.exception("neonize stop failed (session %s)", self.session_id)
                # Go's connect unwinds after Stop and touches the same global maps on its way
                # out: keep everyone else out of Go until it has returned (bounded).
                if not a.connect_returned.wait(self._stop_settle):
                    log.info("neonize connect() of session %s still unwinding %g s after stop",
                             self.session_id, self._stop_settle)

    async def _wait_previous_thread(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            await trio.to_thread.run_sync(thread.join, self._stop_timeout)
            if thread.is_alive():
                raise ConnectFailed("the previous connection of this session is still shutting down")

    async def disconnect(self) -> None:
        if self._attempt is not None:
            with trio.CancelScope(shield=True):
                await self._stop(self._attempt)

    async def logout(self) -> None:
        a = self._attempt
        if a is None:
            raise NotConnected()
        await self._call(self._client.logout)
        await self.disconnect()

    async def aclose(self) -> None:
        """Stop for good (the factory's aclose calls this)."""
        self._closed = True
        await self.disconnect()

    async def pair_phone(self, phone_number: str) -> str:
        a = self._attempt
        if a is None or not self._running or a.stop_flag.is_set():
            raise NotConnected("pairing needs a running connection attempt")
        if a.connected_once or a.paired:
            raise TransportError("session is already paired")
        digits = nz().conv.phone_jid(phone_number).User
        # whatsmeow accepts PairPhone only once the QR flow is up
        await a.wait_until(lambda: a.qr_seen.is_set() or a.stop_flag.is_set() or a.done.is_set(),
                           trio.current_time() + self._pair_phone_wait)
        if not a.qr_seen.is_set() or a.stop_flag.is_set():
            raise NotConnected("WhatsApp has not offered pairing yet")

        def work() -> str:
            with self._lock.read():
                if a.go_stopped or not a.go_started:
                    raise NotConnected()
                return self._client.PairPhone(digits, True)
        return await self._in_thread(work)

    # -- operations ---------------------------------------------------------------

    async def _in_thread(self, fn: Callable[[], Any],
                         errors: Callable[[BaseException], TransportError] | None = None) -> Any:
        """`fn()` on a worker thread; a NeonizeError becomes `errors(exc)` (default `transport_error`)."""
        try:
            return await trio.to_thread.run_sync(fn, limiter=self._limiter)
        except nz().NeonizeError as exc:
            mapped = (errors or nz().conv.transport_error)(exc)
            reason = self._scrub(mapped.reason)
            if reason != mapped.reason:  # the proxy's secrets: keep them out of the chain too
                raise type(mapped)(reason) from None
            raise mapped from exc

    async def _call(self, fn: Callable[..., Any], *args: Any,
                    errors: Callable[[BaseException], TransportError] | None = None) -> Any:
        """`fn(*args)` on a worker thread under the shared lock, only while connected."""
        if not self._connected:
            raise NotConnected()

        def work() -> Any:
            with self._lock.read():
                if not self._connected:  # stop clears it under the exclusive lock
                    raise NotConnected()
                return fn(*args)
        return await self._in_thread(work, errors)

    async def send(self, message: OutboundMessage) -> SendResult:
        lib = nz()
        to = lib.conv.parse_jid(message.to)
        if not self._connected:
            raise NotConnected()

        def upload(data: bytes, media_type: Any) -> Any:
            with self._lock.read():
                if not self._connected:
                    raise NotConnected()
                return self._client.upload(data, media_type)
        built = await self._in_thread(lambda: lib.build.build_message(message, upload))
        return _sent(await self._call(self._client.send_message, to, built))

    async def is_on_whatsapp(self, phone_numbers: list[str]) -> list[OnWhatsApp]:
        conv = nz().conv
        numbers = ["+" + conv.phone_jid(p).User for p in phone_numbers]
        if not numbers:
            return []
        try:
            found = await self._call(self._client.is_on_whatsapp, *numbers)
        except TransportError as exc:
            if "returned nothing" not in exc.reason:  # neonize's text for an empty answer
                raise
            found = []
        return conv.on_whatsapp(numbers, found)

    async def send_presence(self, available: bool) -> None:
        presence = nz().enum.Presence
        await self._call(self._client.send_presence, presence.AVAILABLE if available else presence.UNAVAILABLE)

    async def subscribe_presence(self, jid: str) -> None:
        await self._call(self._client.subscribe_presence, nz().conv.parse_jid(jid))

    async def send_typing(self, chat: str, composing: bool) -> None:
        await self.send_chat_presence(chat, "composing" if composing else "paused")

    async def send_chat_presence(self, chat: str, state: ChatState) -> None:
        lib = nz()
        presence, media = lib.build.chat_presence(state)
        await self._call(self._client.send_chat_presence, lib.conv.parse_jid(chat), presence, media)

    async def mark_read(self, chat: str, message_ids: list[str], sender: str) -> None:
        lib = nz()
        if not message_ids:
            return
        chat_jid, sender_jid = lib.conv.parse_jid(chat), lib.conv.parse_jid(sender)
        await self._call(lambda: self._client.mark_read(*message_ids, chat=chat_jid, sender=sender_jid,
                                                        receipt=lib.enum.ReceiptType.READ))

    async def download_media(self, message: MessageReceived) -> bytes:
        """`download_any` on the received message (its `media_ref`): fetched and decrypted by whatsmeow."""
        proto = nz().conv.media_message(message.media_ref)
        data = await self._call(self._client.download_any, proto)
        if not data:
            raise TransportError("WhatsApp returned no media bytes")
        return bytes(data)

    # -- actions on earlier messages ------------------------------------------------------
    # `sender` (the target's author) defaults to this account: `get_me()` is safe inside `_call`.

    async def react(self, chat: str, message_id: str, emoji: str, *, sender: str | None = None) -> SendResult:
        chat_jid, author = self._jids(chat, sender)

        def work() -> Any:
            built = self._client.build_reaction(chat_jid, author or self._client.get_me().JID, message_id, emoji)
            return self._client.send_message(chat_jid, built)
        return _sent(await self._call(work))

    async def edit_message(self, chat: str, message_id: str, text: str, *,
                           caption_of: str | None = None) -> SendResult:
        chat_jid, _ = self._jids(chat, None)
        content = nz().build.edited_content(text, caption_of)
        return _sent(await self._call(self._client.edit_message, chat_jid, message_id, content))

    async def revoke_message(self, chat: str, message_id: str, *, sender: str | None = None) -> SendResult:
        chat_jid, author = self._jids(chat, sender)
        return _sent(await self._call(lambda: self._client.revoke_message(
            chat_jid, author or self._client.get_me().JID, message_id)))

    async def vote_poll(self, chat: str, poll_id: str, options: list[str], *,
                        sender: str | None = None) -> SendResult:
        lib = nz()
        chat_jid, author = self._jids(chat, sender)

        def work() -> Any:
            info = lib.build.poll_info(chat_jid, author or self._client.get_me().JID, poll_id,
                                       from_me=author is None)
            return self._client.send_message(chat_jid, self._client.build_poll_vote(info, list(options)))
        return _sent(await self._call(work))

    def _jids(self, chat: str, sender: str | None) -> tuple[Any, Any]:
        conv = nz().conv
        return conv.parse_jid(chat), None if sender is None else conv.parse_jid(sender)


def _sent(resp: Any) -> SendResult:
    sent_at = resp.Timestamp if resp.Timestamp > 0 else time.time()  # Go sends seconds
    return SendResult(message_id=resp.ID, timestamp_ms=int(sent_at * 1000))

