"""The lease keeper: which sessions this node owns, kept true on both clocks.

One task per node, in the app's nursery. Every `interval` (a quarter of the
lease TTL) it runs a round:

1. Heartbeat: one transaction extends the node's row and every lease it still
   holds, on the database's clock, and counts live nodes and wanted sessions.
   A lease missing from the answer (expired, or taken by another node with a
   higher epoch) is lost: its actor is stopped at once.
2. Spread: a node owns at most its fair share, `ceil(wanted / live nodes)`, of
   the sessions that want to be online. Below it, it takes free leases (never
   held, or expired) and resumes those sessions; above it, it hands a few
   CONNECTED sessions back (stop the actor, then release the lease and tell
   the others), so a node that joins gets work within a few rounds.
3. Housekeeping: sessions held but no longer wanted and idle are released;
   sessions with due messages are nudged (the fallback for lost
   notifications); old dead node rows are forgotten.

The local side of a lease is a deadline on trio's clock (CLOCK_MONOTONIC,
which keeps running while a process is stopped): the instant the heartbeat
was sent + TTL - `margin`. The database cannot expire the lease before
that instant, so while it has not passed, nobody else can own the session.
A watchdog stops every actor whose deadline passes without a renewal (a
paused process, a database that stopped answering), and `fence()` refuses
to vouch for such a lease, so nothing is sent or written under it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

import msgspec
import trio

from .._clock import now_ms
from ..store import Fence, Store

log = logging.getLogger("gateway.cluster")

DEFAULT_TTL: Final = 10.0
FORGET_DEAD_NODES_AFTER: Final = 3600.0
_MAX_PARALLEL_RESUMES: Final = 16
_STORE_RETRY_MAX: Final = 5.0
_LEAVE_ROUND_WAIT: Final = 3.0  # leave() waits this long for a round in flight


class LeaseHost(Protocol):
    """What the keeper drives: the node's sessions (`gateway.cluster.NodeSessions`)."""

    async def resume(self, session_id: str) -> bool:
        """Start the session's actor here as its new owner; False if it should not run (release it)."""

    async def stop(self, session_id: str) -> None:
        """Stop the session's actor now: the lease is lost or handed over."""

    def idle(self, session_id: str) -> bool:
        """True when the session's actor is neither connected nor trying to be (or there is none)."""

    def movable(self, session_id: str) -> bool:
        """True when handing the session over costs only a reconnect (it is CONNECTED, not pairing)."""

    def nudge(self, session_id: str) -> None:
        """The session's queue has due messages."""


@dataclass
class _Lease:
    epoch: int
    deadline: float  # trio time after which this node must not act on the lease
    since: float  # trio time it was asked for: a heartbeat sent before that cannot know of it


class KeeperStatistics(msgspec.Struct, frozen=True, kw_only=True):
    node_id: str
    leases: int
    live_nodes: int
    wanted: int
    fair_share: int
    rounds: int
    acquired: int
    lost: int  # leases that expired or were taken while this node thought it held them
    handed_over: int  # leases given away to spread sessions, or because the node left
    released: int  # leases dropped because their session no longer wants to be online
    expired_locally: int  # leases whose local deadline passed without a renewal
    store_errors: int
    last_renewal_age: float | None  # seconds since the last successful heartbeat


class LeaseKeeper:
    def __init__(self, store: Store, *, node_id: str, ttl: float = DEFAULT_TTL,
                 interval: float | None = None, margin: float | None = None,
                 on_released: Callable[[], None] | None = None,
                 on_round: Callable[[], None] | None = None) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.node_id = node_id
        self.ttl = ttl
        self.interval = ttl / 4 if interval is None else interval
        # Room for clock-rate drift and for a send already under way when the deadline passes.
        self.margin = ttl / 5 if margin is None else margin
        if self.interval * 2 >= ttl - self.margin:
            raise ValueError("the lease must survive at least two missed heartbeats")
        self._store = store
        self._host: LeaseHost | None = None  # given to `run`: the sessions it drives are built after the keeper
        self._on_released = on_released or (lambda: None)
        self._on_round = on_round or (lambda: None)  # after each successful round
        self._leases: dict[str, _Lease] = {}
        self._changed = trio.Event()  # a deadline moved or a lease came or went
        self._poke = trio.Event()
        self._renewed_at: float | None = None
        self._rounds_scope = trio.CancelScope()
        self._rounds_done = trio.Event()
        self._live_nodes = 0
        self._wanted = 0
        self._counts: dict[str, int] = dict.fromkeys(
            ("rounds", "acquired", "lost", "handed_over", "released", "expired_locally", "store_errors"), 0)

    # -- the read side: no I/O, used on every send ---------------------------------

    def fence(self, session_id: str) -> Fence | None:
        """The fence for a write as this session's owner, or None if this node may not act for it."""
        lease = self._leases.get(session_id)
        if lease is None or lease.deadline <= trio.current_time():
            return None
        return Fence(self.node_id, lease.epoch)

    def write_fence(self, session_id: str) -> tuple[bool, Fence | None]:
        """`Ownership`: (may this node write as the session's owner, under which fence)."""
        fence = self.fence(session_id)
        return fence is not None, fence

    def holds(self, session_id: str) -> bool:
        return self.fence(session_id) is not None

    def held(self) -> list[str]:
        return list(self._leases)

    async def wait_owned(self, session_id: str) -> None:
        """Return at once (no checkpoint) while the lease is valid; else wait, normally until stopped."""
        while not self.holds(session_id):
            await self._changed.wait()

    def poke(self) -> None:
        """Run a round now (another node released sessions, or left)."""
        self._poke.set()

    def statistics(self) -> KeeperStatistics:
        age = None if self._renewed_at is None else trio.current_time() - self._renewed_at
        return KeeperStatistics(node_id=self.node_id, leases=len(self._leases), live_nodes=self._live_nodes,
                                wanted=self._wanted, fair_share=self._fair_share(), last_renewal_age=age,
                                **self._counts)

    # -- taking one lease on request (connect) ------------------------------------------

    async def acquire(self, session_id: str) -> Fence | None:
        """Take the session's lease now if it is free; the fence, or None if another node holds it."""
        if (fence := self.fence(session_id)) is not None:
            return fence
        started = trio.current_time()
        got = await self._store.acquire_leases(self.node_id, self.ttl, session_ids=[session_id])
        if session_id not in got:
            return None
        self._hold(session_id, got[session_id], started)
        self._counts["acquired"] += 1
        return Fence(self.node_id, got[session_id])

    async def take(self, session_id: str) -> bool:
        """`Ownership`: hold the session's lease to run it here (connect). What its last owner left
        mid-send is queued again. False when another node holds it."""
        if self.holds(session_id):
            return True
        if await self.acquire(session_id) is None:
            return False
        await self._store.requeue_interrupted([session_id], now_ms(), node_id=self.node_id)
        return True

    @property
    def _sessions(self) -> LeaseHost:
        assert self._host is not None, "rounds run only under run()"
        return self._host

    def nudge_held(self, session_ids: list[str]) -> None:
        """Due messages were announced for these sessions: wake the senders of those held here."""
        if self._host is None:
            return
        for sid in session_ids:
            if self.holds(sid):
                self._host.nudge(sid)

    async def release(self, session_id: str) -> None:
        """Give one lease back (the actor is already stopped)."""
        if self._leases.pop(session_id, None) is not None:
            self._signal()
            await self._store.release_leases(self.node_id, [session_id])
            self._on_released()

    # -- the loop ------------------------------------------------------------------------

    async def run(self, sessions: LeaseHost, *, address: str, token: str, host: str, pid: int,
                  task_status: trio.TaskStatus[LeaseKeeper] = trio.TASK_STATUS_IGNORED) -> None:
        """Join, then keep this node's share of the sessions running on `sessions` until cancelled."""
        self._host = sessions
        await self._store.register_node(self.node_id, address=address, token=token, host=host, pid=pid, ttl=self.ttl)
        log.info("joined the cluster", extra={"fields": {"node": self.node_id, "address": address,
                                                          "lease_ttl": self.ttl}})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watchdog)
            task_status.started(self)
            # One interval before taking sessions, so that nodes starting together see each other
            # and share from the first round instead of one taking everything and handing it back.
            with trio.move_on_after(self.interval):
                await self._poke.wait()
            with self._rounds_scope:  # leave() ends the rounds before it marks this node gone
                await self._rounds()
            self._rounds_done.set()
            await trio.sleep_forever()

    async def _rounds(self) -> None:
        failures = 0
        while True:
            self._poke = trio.Event()
            try:
                await self._round()
                self._on_round()
                failures = 0
                wait = self.interval
            except Exception:
                failures += 1
                self._counts["store_errors"] += 1
                wait = min(_STORE_RETRY_MAX, self.interval / 4 * failures)
                log.exception("lease round failed; retrying in %.1f s", wait)
            with trio.move_on_after(wait):
                await self._poke.wait()

    async def leave(self) -> None:
        """Graceful exit (actors already stopped): release every lease and mark the node dead."""
        self._rounds_scope.cancel()  # a renewal in flight would bring this node back to life
        with trio.move_on_after(_LEAVE_ROUND_WAIT):
            await self._rounds_done.wait()
        handed = len(self._leases)
        self._leases.clear()
        self._signal()
        await self._store.leave_cluster(self.node_id)
        self._counts["handed_over"] += handed
        log.info("left the cluster", extra={"fields": {"node": self.node_id, "handed_over": handed}})

    async def _round(self) -> None:
        self._counts["rounds"] += 1
        sent_at = trio.current_time()
        renewal = await self._store.renew_node(self.node_id, self.ttl)
        self._renewed_at = sent_at
        self._live_nodes, self._wanted = renewal.live_nodes, renewal.wanted
        in_db = {h.session_id: h for h in renewal.leases}
        # Leases taken while the heartbeat was on its way (a connect) are judged next round.
        known = {sid: lease for sid, lease in self._leases.items() if lease.since <= sent_at}
        lost = [sid for sid, lease in known.items() if sid not in in_db or in_db[sid].epoch != lease.epoch]
        for sid in lost:
            del self._leases[sid]
            del known[sid]
        for lease in known.values():
            lease.deadline = sent_at + self.ttl - self.margin
        self._signal()
        if lost:
            self._counts["lost"] += len(lost)
            log.warning("leases lost", extra={"fields": {"node": self.node_id, "sessions": len(lost)}})
            await self._stop_all(lost)
        # Held in the database but not here (dropped by the watchdog while the database was away):
        # give them back rather than keep sessions nobody runs.
        stale = [sid for sid in in_db if sid not in self._leases]
        unwanted = [sid for sid in known if not in_db[sid].wanted and self._sessions.idle(sid)]
        if unwanted:
            await self._stop_all(unwanted)
            for sid in unwanted:
                self._leases.pop(sid, None)
            self._signal()
            self._counts["released"] += len(unwanted)
        if stale or unwanted:
            await self._store.release_leases(self.node_id, stale + unwanted)
            self._on_released()
        await self._spread({sid for sid, h in in_db.items() if h.wanted and sid in self._leases})
        await self._nudge_due()
        if self._counts["rounds"] % 240 == 1:
            await self._store.forget_nodes(FORGET_DEAD_NODES_AFTER)

    def _fair_share(self) -> int:
        return math.ceil(self._wanted / max(1, self._live_nodes))

    async def _spread(self, wanted_here: set[str]) -> None:
        fair = self._fair_share()
        if len(wanted_here) < fair:
            started = trio.current_time()
            got = await self._store.acquire_leases(self.node_id, self.ttl, limit=fair - len(wanted_here))
            if got:
                for sid, epoch in got.items():
                    self._hold(sid, epoch, started)
                self._counts["acquired"] += len(got)
                log.info("leases acquired", extra={"fields": {"node": self.node_id, "sessions": len(got),
                                                               "fair_share": fair}})
                await self._resume_all(list(got))
        elif len(wanted_here) > fair:
            # A few per round: handing over is a reconnect for each session, so spread it out.
            excess = len(wanted_here) - fair
            give = [sid for sid in sorted(wanted_here) if self._sessions.movable(sid)][:max(1, excess // 2)]
            if give:
                await self._stop_all(give)
                for sid in give:
                    self._leases.pop(sid, None)
                self._signal()
                await self._store.release_leases(self.node_id, give)
                self._counts["handed_over"] += len(give)
                self._on_released()
                log.info("sessions handed over", extra={"fields": {"node": self.node_id, "sessions": len(give),
                                                                    "fair_share": fair}})

    async def _resume_all(self, session_ids: list[str]) -> None:
        limiter = trio.CapacityLimiter(_MAX_PARALLEL_RESUMES)
        refused: list[str] = []

        async def resume(sid: str) -> None:
            async with limiter:
                try:
                    ok = await self._sessions.resume(sid)
                except Exception:
                    log.exception("could not resume session", extra={"fields": {"session": sid}})
                    ok = False
                if not ok:
                    refused.append(sid)

        async with trio.open_nursery() as nursery:
            for sid in session_ids:
                nursery.start_soon(resume, sid)
        if refused:
            for sid in refused:
                self._leases.pop(sid, None)
            self._signal()
            await self._store.release_leases(self.node_id, refused)

    async def _stop_all(self, session_ids: list[str]) -> None:
        async def stop(sid: str) -> None:
            try:
                await self._sessions.stop(sid)
            except Exception:
                log.exception("could not stop session", extra={"fields": {"session": sid}})

        async with trio.open_nursery() as nursery:
            for sid in session_ids:
                nursery.start_soon(stop, sid)

    async def _nudge_due(self) -> None:
        if self._leases:
            for sid in await self._store.sessions_with_due_messages(list(self._leases), now_ms()):
                if sid in self._leases:
                    self._sessions.nudge(sid)

    def _hold(self, session_id: str, epoch: int, asked_at: float) -> None:
        self._leases[session_id] = _Lease(epoch, asked_at + self.ttl - self.margin, asked_at)
        self._signal()

    def _signal(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _watchdog(self) -> None:
        """Stop every session whose local deadline passes without a renewal."""
        while True:
            changed = self._changed
            soonest = min((lease.deadline for lease in self._leases.values()), default=math.inf)
            with trio.move_on_at(soonest):
                await changed.wait()
                continue
            now = trio.current_time()
            expired = [sid for sid, lease in self._leases.items() if lease.deadline <= now]
            for sid in expired:
                del self._leases[sid]
            self._signal()
            self._counts["expired_locally"] += len(expired)
            log.error("leases expired locally: no heartbeat for a whole lease; stopping their sessions",
                      extra={"fields": {"node": self.node_id, "sessions": len(expired)}})
            await self._stop_all(expired)
