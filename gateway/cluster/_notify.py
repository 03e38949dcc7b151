"""Node-to-node nudges over PostgreSQL LISTEN/NOTIFY.

News that travels between nodes:
- `q`: "these sessions have new queued messages". Any node accepts a send and
  persists it; the owner's sender must look at its queue now rather than at
  the next poll;
- `r`: "leases were released" (a node handed sessions over or left), so the
  others run a lease round now and the sessions are back online in
  milliseconds instead of a heartbeat interval;
- other kinds (`w`, `e`: the event stream relay, `_relay.py`) are handed to
  whoever registered them with `on(kind, handler)`, in the order sent.

Publishing is coalesced: `publish_nowait` only adds to a set, and one task
sends whatever gathered as a single `pg_notify` (payloads up to 7,900 bytes),
so a burst of sends costs a handful of statements, not one per message, and
NOTIFY's commit-time lock is taken rarely.

Listening needs a connection of its own that never goes back to the pool. It
lives in one worker thread, blocked in psycopg's `notifies()`, and hands each
batch to trio through the trio token. If that connection breaks, the thread
ends, the task logs it and reconnects with backoff; nothing is lost for
good, because the lease keeper polls for due messages every round.

The channel is per database schema, so deployments (and tests) sharing a
database in different schemas do not hear each other.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

import psycopg
import trio
from psycopg import sql

from ..store import Store

log = logging.getLogger("gateway.cluster")

QUEUE: Final = "q"
RELEASED: Final = "r"
_MAX_PAYLOAD: Final = 7900  # PostgreSQL's limit is 8000 bytes
MAX_BODY: Final = _MAX_PAYLOAD - 2
_FLUSH_DELAY: Final = 0.002  # gather a burst into one notification
_WAIT: Final = 1.0  # how often the listening thread checks whether it should stop
_RECONNECT_MAX: Final = 10.0


class Notifier:
    def __init__(self, url: str, store: Store, *, node_id: str, on_queue: Callable[[list[str]], None],
                 on_released: Callable[[], None]) -> None:
        self._url = url
        self._store = store
        self._on_queue = on_queue
        self._on_released = on_released
        self._node = node_id  # a node does not act on its own "released" news
        self._channel = ""
        self._pending: set[str] = set()
        self._released = False
        self._messages: list[str] = []  # other kinds, already formatted, sent in order
        self._handlers: dict[str, Callable[[str], None]] = {}
        self._flushers: list[Callable[[], None]] = []
        self._wake = trio.Event()
        self.sent = 0
        self.received = 0

    def publish_nowait(self, session_id: str) -> None:
        """Tell the owner (wherever it is) that the session has new queued messages."""
        self._pending.add(session_id)
        self._wake.set()

    def released_nowait(self) -> None:
        """Tell every node that leases were released."""
        self._released = True
        self._wake.set()

    def send_nowait(self, kind: str, body: str) -> None:
        """Send `body` to every node's `kind` handler (this node's too). At most `MAX_BODY` bytes."""
        if len(body.encode()) > MAX_BODY:
            raise ValueError(f"a notification body is at most {MAX_BODY} bytes")
        self._messages.append(f"{kind}:{body}")
        self._wake.set()

    def wake_nowait(self) -> None:
        """Flush soon: a flusher (see `add_flusher`) has something to send."""
        self._wake.set()

    def add_flusher(self, flush: Callable[[], None]) -> None:
        """Call `flush()` right before each batch goes out, so it can add what it gathered."""
        self._flushers.append(flush)

    def on(self, kind: str, handler: Callable[[str], None]) -> None:
        """Call `handler(body)` for each notification of `kind` (a single letter, not q or r)."""
        self._handlers[kind] = handler

    async def announce_released(self) -> None:
        """`released_nowait`, sent now (a node leaving cannot wait for the publishing task)."""
        await self._store.query_one("SELECT pg_notify(%s, %s)", (self._channel, f"{RELEASED}:{self._node}"))
        self.sent += 1

    async def run(self, *, task_status: trio.TaskStatus[Notifier] = trio.TASK_STATUS_IGNORED) -> None:
        schema = (await self._store.query_one("SELECT current_schema()"))[0] or "public"
        self._channel = f"gateway:{schema}"
        async with trio.open_nursery() as nursery:
            ready = trio.Event()
            nursery.start_soon(self._listen_forever, ready)
            with trio.move_on_after(10):
                await ready.wait()
            nursery.start_soon(self._publish_forever)
            task_status.started(self)

    # -- publishing --------------------------------------------------------------

    async def _publish_forever(self) -> None:
        while True:
            await self._wake.wait()
            await trio.sleep(_FLUSH_DELAY)
            self._wake = trio.Event()
            for flush in self._flushers:
                flush()
            pending, self._pending = self._pending, set()
            released, self._released = self._released, False
            messages, self._messages = self._messages, []
            try:
                for payload in _payloads(pending, self._node if released else None) + messages:
                    await self._store.query_one("SELECT pg_notify(%s, %s)", (self._channel, payload))
                    self.sent += 1
            except Exception:
                # The owner's poll finds these messages anyway; a lost nudge costs latency only.
                log.exception("could not notify other nodes")

    # -- listening ------------------------------------------------------------------

    async def _listen_forever(self, ready: trio.Event) -> None:
        failures = 0
        token = trio.lowlevel.current_trio_token()
        while True:
            stop = threading.Event()
            try:
                await trio.to_thread.run_sync(self._listen, token, stop, ready, abandon_on_cancel=True)
            except Exception:
                log.exception("notification listener crashed")
            finally:
                stop.set()  # an abandoned (cancelled) thread notices within _WAIT and closes its connection
            failures += 1
            delay = min(_RECONNECT_MAX, 0.5 * 2 ** min(failures, 5))
            log.warning("notification listener disconnected; reconnecting in %.1f s", delay)
            self._on_released()  # a round now re-checks the leases and polls the queues
            await trio.sleep(delay)

    def _listen(self, token: trio.lowlevel.TrioToken, stop: threading.Event, ready: trio.Event) -> None:
        try:
            conn = psycopg.connect(self._url, autocommit=True)
        except psycopg.Error as exc:
            log.warning("notification listener cannot connect: %s", str(exc).strip())
            return
        try:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            trio.from_thread.run_sync(ready.set, trio_token=token)
            while not stop.is_set():
                batch = [n.payload for n in conn.notifies(timeout=_WAIT, stop_after=1)]
                if not batch:
                    continue
                batch += [n.payload for n in conn.notifies(timeout=_FLUSH_DELAY, stop_after=256)]
                trio.from_thread.run_sync(self._deliver, batch, trio_token=token)
        except (psycopg.Error, trio.RunFinishedError) as exc:
            if not stop.is_set():
                log.warning("notification listener failed: %s", str(exc).strip())
        finally:
            conn.close()

    def _deliver(self, payloads: list[str]) -> None:
        self.received += len(payloads)
        sessions: list[str] = []
        released = False
        for payload in payloads:
            kind, _, rest = payload.partition(":")
            if kind == QUEUE:
                sessions += [s for s in rest.split(",") if s]
            elif kind == RELEASED:
                released = released or rest != self._node
            elif (handler := self._handlers.get(kind)) is not None:
                try:
                    handler(rest)
                except Exception:
                    log.exception("notification handler failed", extra={"fields": {"kind": kind}})
        if sessions:
            self._on_queue(list(dict.fromkeys(sessions)))
        if released:
            self._on_released()


def _payloads(sessions: set[str], released_by: str | None) -> list[str]:
    out = [f"{RELEASED}:{released_by}"] if released_by is not None else []
    chunk: list[str] = []
    size = 0
    for sid in sorted(sessions):
        if chunk and size + len(sid) + 1 > _MAX_PAYLOAD:
            out.append(QUEUE + ":" + ",".join(chunk))
            chunk, size = [], 0
        chunk.append(sid)
        size += len(sid) + 1
    if chunk:
        out.append(QUEUE + ":" + ",".join(chunk))
    return out
