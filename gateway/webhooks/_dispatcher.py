"""The delivery engine: a nursery of senders draining the webhook outbox.

One loop claims due deliveries from the `DeliveryStore` and starts one sender
task per delivery. The store is never asked for more deliveries of an
endpoint than that endpoint may start, so an endpoint that hangs (a
blackhole) or fails only ever occupies its own slots. Endpoints are in one of
three standings, kept in memory:

- confirmed: answered 2xx since start and not failed since. Up to
  `per_endpoint` attempts at once, drawn from all of `max_in_flight`;
- unknown (no answer yet since start) and failing (the last attempt said the
  endpoint is in trouble: no answer, 408, 429 or 5xx): `unconfirmed_per_endpoint`
  (1) attempt at once, a slow start that a 2xx ends. Together these use at
  most `unconfirmed_share` of `max_in_flight`, so confirmed endpoints keep the
  rest however many dead endpoints there are.

Each fill claims first for unknown and failing endpoints (oldest due first,
within their share), then tops up with confirmed ones.

Every attempt also has a hard deadline (`attempt_timeout`), whatever the client does.

Each attempt is signed afresh (Standard Webhooks; same `webhook-id` every
time), posted, judged by the `RetryPolicy`, and recorded; the record sets the
next attempt time, or marks the delivery delivered or dead. Claims are leases
longer than an attempt can last, so after a crash or restart whatever was in
flight becomes claimable again: delivery is at least once, and receivers
deduplicate on `webhook-id`.

When an endpoint answers 2xx after failing (or for the first time since
start), its waiting retries are made due at once, so a receiver that was down
for hours gets its backlog within seconds of coming back, not hours later.

Time: trio's clock drives every wait and deadline. Persisted times are wall
milliseconds from `TrioWallClock`, which is anchored to the system clock once
and then advances with trio's clock (so tests on the MockClock move it too).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

import trio

from .._netguard import UnsafeURL
from ._client import PostError, WebhookClient
from ._policy import AttemptResult, Decision, Failure, RetryPolicy, Verdict, classify
from ._resolver import CheckedResolver, Resolver
from ._signing import InvalidSecret, webhook_headers
from ._store import AttemptRecord, Delivery, DeliveryStatus, DeliveryStore

log = logging.getLogger("gateway.webhooks")

SECONDS: Final = 1.0
DEFAULT_MAX_IN_FLIGHT: Final = 128
DEFAULT_PER_ENDPOINT: Final = 8
DEFAULT_UNCONFIRMED_PER_ENDPOINT: Final = 1
DEFAULT_UNCONFIRMED_SHARE: Final = 0.5
DEFAULT_ATTEMPT_TIMEOUT: Final = 30 * SECONDS  # resolve + connect + exchange, hard cap
LEASE_MARGIN: Final = 60 * SECONDS  # the lease is attempt_timeout + this: it outlives an attempt and its record
DEFAULT_POLL_INTERVAL: Final = 5 * SECONDS  # finds rows written by other processes without a wake()
STANDING_TTL: Final = 3600 * SECONDS  # an endpoint not heard from for this long is unknown again
_RECORD_TIMEOUT: Final = 10 * SECONDS
_STORE_RETRY: Final = (0.5 * SECONDS, 30 * SECONDS)  # backoff when the store itself fails
_MIN_WAIT: Final = 0.01 * SECONDS
_DETAIL_CHARS: Final = 200
_HEADERS_BASE: Final = (("content-type", "application/json"),)


class TrioWallClock:
    """Wall-clock milliseconds that advance with trio's clock.

    Anchored to `time.time()` (or `start_ms`) on first use inside trio. Share
    one instance between dispatchers that must agree on time (a test's restart).
    """

    def __init__(self, start_ms: int | None = None) -> None:
        self._start_ms = start_ms
        self._offset: float | None = None

    def __call__(self) -> int:
        now = trio.current_time()
        if self._offset is None:
            start = time.time() * 1000 if self._start_ms is None else self._start_ms
            self._offset = start - now * 1000
        return int(now * 1000 + self._offset)


@dataclass(frozen=True)
class DispatcherStatistics:
    in_flight: int
    busy_endpoints: int  # endpoints with at least one attempt in flight
    failing_endpoints: int  # endpoints held to `unconfirmed_per_endpoint` until they answer 2xx
    attempts: int
    delivered: int
    retried: int  # attempts that failed and were scheduled again
    dead: int
    expedited: int  # retries made due early because their endpoint recovered
    outcomes: dict[str, int] = field(default_factory=dict)  # `2xx`, `5xx`, `429`, `timeout`, `connect`...
    store_errors: int = 0
    fenced: int = 0  # results dropped because the claim had expired


class Dispatcher:
    """Delivers the outbox. Start it with `await nursery.start(dispatcher.run)` or `open_dispatcher`.

    - `store`, `client`, `policy`: the outbox, the HTTP client and the retry policy;
    - `resolver` (default: the SSRF guard with `allow_private`) gives the addresses to connect to;
    - `max_in_flight`, `per_endpoint`, `unconfirmed_per_endpoint`, `unconfirmed_share`:
      concurrency, see the module docstring. Give the client at least
      `per_endpoint` idle connections per origin, or keep-alive is wasted;
    - `attempt_timeout`: the hard cap of one attempt; `lease` (default
      `attempt_timeout + 60 s`): how long a claim lasts, so how long a crash
      delays what was in flight;
    - `poll_interval`: the longest sleep without a `wake()`;
    - `clock`: wall milliseconds for persisted times (default `TrioWallClock()`).
    """

    def __init__(self, store: DeliveryStore, client: WebhookClient, policy: RetryPolicy | None = None, *,
                 resolver: Resolver | None = None, allow_private: bool = False,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, per_endpoint: int = DEFAULT_PER_ENDPOINT,
                 unconfirmed_per_endpoint: int = DEFAULT_UNCONFIRMED_PER_ENDPOINT,
                 unconfirmed_share: float = DEFAULT_UNCONFIRMED_SHARE,
                 attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT, lease: float | None = None,
                 poll_interval: float = DEFAULT_POLL_INTERVAL, clock: Callable[[], int] | None = None) -> None:
        if max_in_flight < 1 or per_endpoint < 1 or unconfirmed_per_endpoint < 1:
            raise ValueError("max_in_flight, per_endpoint and unconfirmed_per_endpoint must be at least 1")
        if not 0 < unconfirmed_share <= 1:
            raise ValueError("unconfirmed_share must be in (0, 1]")
        lease = attempt_timeout + LEASE_MARGIN if lease is None else lease
        if lease <= attempt_timeout + _RECORD_TIMEOUT:
            raise ValueError("lease must outlast an attempt and its record")
        self._store = store
        self._client = client
        self._policy = policy or RetryPolicy()
        self._resolver = resolver or CheckedResolver(allow_private=allow_private)
        self._max_in_flight = max_in_flight
        self._per_endpoint = per_endpoint
        self._probe_slots = min(unconfirmed_per_endpoint, per_endpoint)
        self._unconfirmed_cap = max(1, int(max_in_flight * unconfirmed_share))
        self._attempt_timeout = attempt_timeout
        self._lease_ms = int(lease * 1000)
        self._poll_interval = poll_interval
        self._clock = clock or TrioWallClock()
        self._wakeup = trio.Event()
        self._busy: Counter[str] = Counter()
        self._in_flight = 0
        # endpoint -> trio time of its last verdict, oldest first (so forgetting is cheap)
        self._confirmed: dict[str, float] = {}  # answered 2xx, and not failed since
        self._failing: dict[str, float] = {}  # the last endpoint-level verdict was "retry"
        self._counts: Counter[str] = Counter()
        self._outcomes: Counter[str] = Counter()

    # public surface

    def wake(self) -> None:
        """New deliveries were written (or redelivery asked): look for due work now. Never blocks."""
        self._wakeup.set()

    notify_nowait = wake

    def statistics(self) -> DispatcherStatistics:
        c = self._counts
        return DispatcherStatistics(
            in_flight=self._in_flight, busy_endpoints=len(self._busy), failing_endpoints=len(self._failing),
            attempts=c["attempts"], delivered=c["delivered"], retried=c["retried"], dead=c["dead"],
            expedited=c["expedited"], outcomes=dict(self._outcomes), store_errors=c["store_errors"],
            fenced=c["fenced"])

    async def run(self, *, task_status: trio.TaskStatus[Dispatcher] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver until cancelled. In-flight attempts are cancelled with it; their leases bring them back."""
        failures = 0
        async with trio.open_nursery() as nursery:
            task_status.started(self)
            while True:
                self._wakeup = trio.Event()  # before looking, so a wake() during the look is kept
                try:
                    claimed = await self._fill(nursery)
                    wait = await self._time_to_next(claimed)
                    failures = 0
                except Exception:
                    failures += 1
                    self._counts["store_errors"] += 1
                    wait = min(_STORE_RETRY[1], _STORE_RETRY[0] * 2 ** min(failures - 1, 10))
                    log.exception("webhook outbox unavailable; retrying in %.1f s", wait)
                with trio.move_on_after(wait):
                    await self._wakeup.wait()

    # the claim loop

    def _views(self) -> tuple[dict[str, int], dict[str, int], int]:
        """Free slots as the store sees them: (unconfirmed view, confirmed view, unconfirmed share left).

        In the unconfirmed view an endpoint not listed is unknown and gets
        `default_room=probe slots`; confirmed endpoints are listed with 0 (they
        have their own view). The confirmed view lists only confirmed endpoints.
        """
        unconfirmed: dict[str, int] = dict.fromkeys(self._confirmed, 0)
        confirmed: dict[str, int] = {}
        busy_unconfirmed = 0
        for ep in self._confirmed:
            confirmed[ep] = self._per_endpoint - self._busy.get(ep, 0)
        for ep, n in self._busy.items():
            if ep not in self._confirmed:
                unconfirmed[ep] = max(0, self._probe_slots - n)
                busy_unconfirmed += n
        return unconfirmed, confirmed, self._unconfirmed_cap - busy_unconfirmed

    def _forget_stale(self) -> None:
        # URLs change and endpoints go away: standing is kept only while there is news of it.
        horizon = trio.current_time() - STANDING_TTL
        for standing in (self._confirmed, self._failing):
            while standing:
                endpoint, seen = next(iter(standing.items()))
                if seen > horizon or endpoint in self._busy:
                    break
                del standing[endpoint]

    @staticmethod
    def _note(standing: dict[str, float], endpoint: str) -> None:
        standing.pop(endpoint, None)
        standing[endpoint] = trio.current_time()

    async def _fill(self, nursery: trio.Nursery) -> int:
        self._forget_stale()
        free = self._max_in_flight - self._in_flight
        if free <= 0:
            return 0
        now = self._clock()
        lease_until = now + self._lease_ms
        unconfirmed, _, spare = self._views()
        claimed = 0
        if min(free, spare) > 0:
            batch = await self._store.claim_due(now, limit=min(free, spare), room=unconfirmed,
                                                default_room=self._probe_slots, lease_until_ms=lease_until)
            self._start(nursery, batch)
            claimed += len(batch)
        free = self._max_in_flight - self._in_flight
        if free > 0 and self._confirmed:
            _, confirmed, _ = self._views()
            batch = await self._store.claim_due(now, limit=free, room=confirmed, default_room=0,
                                                lease_until_ms=lease_until)
            self._start(nursery, batch)
            claimed += len(batch)
        return claimed

    def _start(self, nursery: trio.Nursery, batch: list[Delivery]) -> None:
        for delivery in batch:
            self._busy[delivery.endpoint] += 1
            self._in_flight += 1
            nursery.start_soon(self._send, delivery, name=f"webhook {delivery.id}")

    async def _time_to_next(self, claimed: int) -> float:
        if self._in_flight >= self._max_in_flight:
            return self._poll_interval  # a finishing sender wakes us
        unconfirmed, confirmed, spare = self._views()
        if spare > 0:  # one view for both: unknown endpoints get probe slots, the others what they have
            room = {**unconfirmed, **confirmed}
            due = await self._store.next_due_at(room=room, default_room=self._probe_slots)
        else:  # only confirmed endpoints may start anything until an unconfirmed attempt ends
            due = await self._store.next_due_at(room=confirmed, default_room=0)
        if due is None:
            return self._poll_interval
        wait = (due - self._clock()) / 1000
        if wait <= 0 and claimed:
            return 0.0  # more may be due than one claim returned
        # Floor: a store whose next_due_at disagrees with claim_due must not make us spin.
        return min(max(wait, _MIN_WAIT), self._poll_interval)

    # one sender

    async def _send(self, delivery: Delivery) -> None:
        try:
            await self._attempt_and_record(delivery)
        except Exception:
            # The lease brings the delivery back; one broken delivery never takes down the nursery.
            self._counts["store_errors"] += 1
            log.exception("webhook attempt could not be recorded", extra={"fields": {"delivery": delivery.id}})
        finally:
            self._busy[delivery.endpoint] -= 1
            if self._busy[delivery.endpoint] <= 0:
                del self._busy[delivery.endpoint]
            self._in_flight -= 1
            self._wakeup.set()  # a slot is free

    async def _attempt_and_record(self, delivery: Delivery) -> None:
        attempt = delivery.attempts + 1
        started = self._clock()
        result = await self._attempt(delivery)
        finished = self._clock()
        outcome = self._policy.decide(attempt, result, now=finished / 1000)
        next_at = None if outcome.delay is None else finished + int(outcome.delay * 1000)
        record = AttemptRecord(
            delivery_id=delivery.id, attempt=attempt, claimed_until=delivery.claimed_until, started_at=started,
            finished_at=finished, outcome=DeliveryStatus(outcome.decision.value), next_attempt_at=next_at,
            status_code=result.status, error=None if outcome.decision is Decision.DELIVERED else outcome.reason)
        # Shielded: an answer in hand is recorded even during shutdown, or it would be sent again.
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + _RECORD_TIMEOUT
            applied = await self._store.record_attempt(record)
        if scope.cancelled_caught:
            raise TimeoutError("recording the attempt timed out")
        self._count(delivery, attempt, result, outcome.decision, applied, outcome.reason)
        endpoint = delivery.endpoint
        if outcome.decision is Decision.DELIVERED:
            self._failing.pop(endpoint, None)
            known = endpoint in self._confirmed
            self._note(self._confirmed, endpoint)
            if not known:
                # First 2xx since start or since failing: the waiting retries need not wait any more.
                moved = await self._store.expedite(endpoint, self._clock())
                self._counts["expedited"] += moved
                if moved:
                    log.info("endpoint answers again; %d waiting retries are due now", moved,
                             extra={"fields": {"endpoint": endpoint}})
                    self.wake()
        elif classify(result) is Verdict.RETRY:  # the endpoint is in trouble, not just this payload
            self._confirmed.pop(endpoint, None)
            self._note(self._failing, endpoint)

    async def _attempt(self, delivery: Delivery) -> AttemptResult:
        with trio.move_on_after(self._attempt_timeout):
            try:
                addresses = await self._resolver.resolve(delivery.endpoint)
            except UnsafeURL as exc:
                failure = Failure.DNS if "does not resolve" in str(exc) else Failure.BLOCKED
                return AttemptResult(failure=failure, detail=str(exc))
            try:
                headers = webhook_headers(delivery.id, self._clock() // 1000, delivery.payload, delivery.secret)
            except InvalidSecret as exc:
                return AttemptResult(failure=Failure.INVALID, detail=str(exc))
            headers += _HEADERS_BASE
            try:
                response = await self._client.post(delivery.endpoint, addresses, delivery.payload, headers)
            except PostError as exc:
                return AttemptResult(failure=exc.failure, detail=str(exc))
            except (OSError, trio.BrokenResourceError) as exc:
                return AttemptResult(failure=Failure.CONNECTION_LOST, detail=str(exc))
            except Exception as exc:
                # A bug must cost an attempt, not loop unrecorded once per lease forever.
                log.exception("webhook client failed", extra={"fields": {"delivery": delivery.id}})
                return AttemptResult(failure=Failure.INTERNAL, detail=repr(exc))
            detail = "" if 200 <= response.status < 300 else _excerpt(response.body_prefix)
            return AttemptResult(status=response.status, retry_after=response.header("retry-after"),
                                 detail=detail)
        return AttemptResult(failure=Failure.TIMEOUT, detail=f"no answer within {self._attempt_timeout:g} s")

    def _count(self, delivery: Delivery, attempt: int, result: AttemptResult, decision: Decision,
               applied: bool, reason: str) -> None:
        self._counts["attempts"] += 1
        self._outcomes[result.label] += 1
        if not applied:
            self._counts["fenced"] += 1
            log.warning("attempt result dropped: the claim had expired",
                        extra={"fields": {"delivery": delivery.id, "attempt": attempt}})
            return
        if decision is Decision.DELIVERED:
            self._counts["delivered"] += 1
        elif decision is Decision.RETRY:
            self._counts["retried"] += 1
        else:
            self._counts["dead"] += 1
            log.warning("webhook dead-lettered: %s", reason, extra={"fields": {
                "delivery": delivery.id, "session": delivery.session_id, "attempts": attempt}})


def _excerpt(body: bytes) -> str:
    return body[:_DETAIL_CHARS].decode("utf-8", "replace").strip()


@asynccontextmanager
async def open_dispatcher(store: DeliveryStore, client: WebhookClient, policy: RetryPolicy | None = None,
                          **options: object) -> AsyncIterator[Dispatcher]:
    """Run a Dispatcher for the duration of the block; it stops (cancelled) when the block ends."""
    async with trio.open_nursery() as nursery:
        dispatcher: Dispatcher = await nursery.start(
            Dispatcher(store, client, policy, **options).run)  # type: ignore[arg-type]
        yield dispatcher
        nursery.cancel_scope.cancel()
