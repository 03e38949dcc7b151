"""Prometheus metrics: one registry per app, live numbers read at scrape time.

`GatewayMetrics` owns a private `CollectorRegistry` (never the global one, so
several apps in one process do not collide). Two kinds of numbers go in it:

- pushed: request latency by method, route (the URL rule, so ids do not
  become labels) and status, observed by the app's after-request hook;
- pulled: everything the gateway's components already count is read from
  them when /metrics is scraped (`supervisor.statistics()`, each actor's
  `statistics()`, `rates.rejections`, the event bus, the webhook dispatcher's
  `statistics()`: `gateway_webhook_attempts_total{outcome}` and
  `gateway_webhook_deliveries_total{result}`). Nothing is copied on the hot path.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

import trio

from actors import SessionState

if TYPE_CHECKING:
    from ._gateway import Gateway

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
# Seconds. The gateway answers most requests in 1-20 ms; the tail buckets catch store stalls.
LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1,
                          0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED_ROUTE: Final = "unmatched"  # 404s for paths with no route: one label value, not one per path
WEBHOOK_RESULTS: Final = ("delivered", "retried", "dead")
STORE_REFRESH: Final = 1.0  # seconds between two reads of the store's queue depths

log = logging.getLogger("gateway.metrics")


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.request_seconds = Histogram(
            "gateway_http_request_duration_seconds", "HTTP request latency, by method, route and status.",
            ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._children: dict[tuple[str, str, int], Any] = {}
        self._gateway: Callable[[], Gateway | None] = lambda: None
        self.queue_depths: dict[str, int] = {}
        self._depths_at = -math.inf
        self.registry.register(_GatewayCollector(self))

    async def refresh_store(self) -> None:
        """Read the store's durable backlogs (at most once a second): scrapes must not load the database."""
        gateway = self._gateway()
        if gateway is None or trio.current_time() - self._depths_at < STORE_REFRESH:
            return
        self._depths_at = trio.current_time()
        try:
            self.queue_depths = await gateway.store.queue_depths()
        except Exception:  # the scrape still answers; the gauges keep their last reading
            log.exception("could not read queue depths for /metrics")

    def bind(self, gateway: Callable[[], Gateway | None]) -> None:
        """Where the live components are found at scrape time (None while starting or stopping)."""
        self._gateway = gateway

    # -- pushed ------------------------------------------------------------------------

    def observe_request(self, method: str, route: str | None, status: int, seconds: float) -> None:
        key = (method, route or UNMATCHED_ROUTE, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.request_seconds.labels(key[0], key[1], str(status))
        child.observe(seconds)

    # -- scraping ------------------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _GatewayCollector(Collector):
    """Reads the live components each time the registry is collected."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []  # families depend on what the gateway has; collect() at registration would be too early

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        gateway = m._gateway()
        yield from _webhook_families(gateway)
        if gateway is None:
            return
        if m.queue_depths:
            depth = GaugeMetricFamily("gateway_queue_depth", "Durable backlogs in the store (store-wide: in "
                                      "cluster mode, every node's), read at most once a second.", labels=["queue"])
            for queue, count in sorted(m.queue_depths.items()):
                depth.add_metric([queue], count)
            yield depth
        yield from _supervisor_families(gateway)
        yield from _rate_families(gateway)
        bus = gateway.bus
        events = CounterMetricFamily("gateway_events_published", "Gateway events published on the internal bus.")
        events.add_metric([], bus.published)
        yield events
        subscribers = getattr(bus, "_subs", ())
        yield _gauge("gateway_event_subscribers", "Live subscribers of the internal event bus.", len(subscribers))
        yield _gauge("gateway_event_subscriber_queue_depth", "Events waiting in subscribers' buffers, summed.",
                     sum(s.receive.statistics().current_buffer_used for s in subscribers))


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def _actors(gateway: Gateway) -> list[Any]:
    # The supervisor has no public iteration yet; its entries map session ids to their current actor.
    entries = getattr(gateway.supervisor, "_entries", {})
    return [e.actor for e in list(entries.values()) if e.actor is not None]


def _supervisor_families(gateway: Gateway) -> Iterator[Metric]:
    stats = gateway.supervisor.statistics()
    yield _gauge("gateway_sessions_supervised", "Sessions with a running actor.", stats.sessions)
    states = GaugeMetricFamily("gateway_sessions", "Supervised sessions by state.", labels=["state"])
    for state in SessionState:
        states.add_metric([state.value], stats.by_state.get(state.value, 0))
    yield states
    restarts = CounterMetricFamily("gateway_actor_restarts", "Session actors restarted after a crash.")
    restarts.add_metric([], stats.restarts)
    yield restarts
    loops = CounterMetricFamily("gateway_actor_crash_loops", "Sessions marked FAILED after a crash loop.")
    loops.add_metric([], stats.crash_loops)
    yield loops
    mailbox_total = mailbox_max = backlog_total = backlog_max = 0
    for actor in _actors(gateway):
        a = actor.statistics()
        mailbox_total += a.mailbox_depth
        mailbox_max = max(mailbox_max, a.mailbox_depth)
        backlog_total += a.event_backlog
        backlog_max = max(backlog_max, a.event_backlog)
    yield _gauge("gateway_actor_mailbox_depth", "Commands waiting in session mailboxes, summed over sessions.",
                 mailbox_total)
    yield _gauge("gateway_actor_mailbox_depth_max", "The fullest session mailbox.", mailbox_max)
    yield _gauge("gateway_actor_event_backlog", "Transport events waiting for their actor, summed over sessions.",
                 backlog_total)
    yield _gauge("gateway_actor_event_backlog_max", "The longest transport event backlog of one session.",
                 backlog_max)


def _rate_families(gateway: Gateway) -> Iterator[Metric]:
    rejected = CounterMetricFamily("gateway_ratelimit_rejections", "Requests refused by a rate limit, by scope.",
                                   labels=["scope"])
    for scope, count in sorted(gateway.rates.rejections.items()):
        rejected.add_metric([scope], count)
    yield rejected
    limiter = gateway.rates.limiter.statistics()
    yield _gauge("gateway_ratelimit_keys", "Rate-limit buckets held in memory.", limiter.keys_tracked)
    forced = CounterMetricFamily("gateway_ratelimit_forced_evictions",
                                 "Buckets dropped early at the memory cap (each let a client start over).")
    forced.add_metric([], limiter.forced_evictions)
    yield forced


def _webhook_families(gateway: Gateway | None) -> Iterator[Metric]:
    by_outcome: Counter[str] = Counter()
    by_result: Counter[str] = Counter({r: 0 for r in WEBHOOK_RESULTS})
    in_flight = None
    if gateway is not None:
        stats = gateway.dispatcher.statistics()
        by_outcome.update(stats.outcomes)
        for result in WEBHOOK_RESULTS:
            by_result[result] += getattr(stats, result)
        in_flight = stats.in_flight
    family = CounterMetricFamily("gateway_webhook_attempts", "Webhook delivery attempts, by outcome.",
                                 labels=["outcome"])
    for outcome, count in sorted(by_outcome.items()):
        family.add_metric([outcome], count)
    yield family
    family = CounterMetricFamily("gateway_webhook_deliveries", "Webhook deliveries that ended or were retried.",
                                 labels=["result"])
    for result, count in sorted(by_result.items()):
        family.add_metric([result], count)
    yield family
    if in_flight is not None:
        yield _gauge("gateway_webhook_in_flight", "Webhook attempts under way.", in_flight)
