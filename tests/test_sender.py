"""The paced sender's idle wait: woken by nudges, with no store call for a message due after its wake-up.

The queue is a double on trio's clock that counts the sender's calls, and time only moves when every task
is blocked (`autojump_clock`), so "at the moment it was due, and not one store call sooner" is observed.
"""

from __future__ import annotations

import random

import trio
import trio.testing

from actors._messages import OutboundMessage, SendResult, TextContent
from actors.core._outbox import Claimed, Pacing, Sender


class ClockQueue:
    """Messages due at trio times; each claim and each due-time read is counted."""

    def __init__(self) -> None:
        self.due: dict[str, float] = {}
        self.claims = 0
        self.due_reads = 0
        self.done: list[tuple[str, float]] = []

    def add(self, message_id: str, due_in: float) -> float:
        self.due[message_id] = trio.current_time() + due_in
        return due_in

    async def claim_next(self, session_id: str) -> Claimed | None:
        self.claims += 1
        now = trio.current_time()
        ready = sorted((at, mid) for mid, at in self.due.items() if at <= now)
        if not ready:
            return None
        del self.due[ready[0][1]]
        return Claimed(ready[0][1], "15551234567@s.whatsapp.net")

    async def seconds_until_due(self, session_id: str) -> float | None:
        self.due_reads += 1
        await trio.sleep(0)  # a store read: a checkpoint, during which a nudge can come
        return min(self.due.values()) - trio.current_time() if self.due else None

    async def prepare(self, session_id: str, claimed: Claimed) -> OutboundMessage:
        return OutboundMessage(to=claimed.to, content=TextContent(body="hi"), id_hint=claimed.message_id)

    async def sent(self, session_id: str, claimed: Claimed, result: SendResult) -> None:
        self.done.append((claimed.message_id, trio.current_time()))

    async def failed(self, session_id: str, claimed: Claimed, reason: str) -> None:
        raise AssertionError(reason)

    async def requeue(self, session_id: str, claimed: Claimed) -> None:
        raise AssertionError("requeued")

    async def wait_owned(self, session_id: str) -> None:
        return None


class Transport:
    async def send(self, message: OutboundMessage) -> SendResult:
        return SendResult(message_id=f"wa-{message.id_hint}", timestamp_ms=0)


async def _transport() -> Transport:
    return Transport()


async def _started(queue: ClockQueue, nursery: trio.Nursery) -> Sender:
    sender = Sender("s1", queue, Pacing(min_gap=0, jitter=0), random.Random(1))  # type: ignore[arg-type]
    nursery.start_soon(sender.run, _transport)
    await trio.testing.wait_all_tasks_blocked()
    return sender


async def _until_done(queue: ClockQueue, count: int, *, within: float) -> None:
    """Until `count` messages were sent (on the mock clock: `within` seconds of it at most)."""
    with trio.fail_after(within):
        while len(queue.done) < count:
            await trio.sleep(0.01)


async def test_a_message_scheduled_after_the_wake_up_costs_no_store_call(autojump_clock) -> None:
    queue = ClockQueue()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        queue.add("m1", 100)
        sender = await _started(queue, nursery)
        assert (queue.claims, queue.due_reads) == (1, 1)  # looked once, and now waits for m1
        for i in range(50):  # later than m1: the sender keeps sleeping until m1
            sender.nudge(queue.add(f"later{i}", 200 + i))
            await trio.testing.wait_all_tasks_blocked()
        assert (queue.claims, queue.due_reads) == (1, 1)
        await _until_done(queue, 1, within=150)
        assert queue.done == [("m1", start + 100)]
        nursery.cancel_scope.cancel()


async def test_an_earlier_message_moves_the_wake_up_without_a_store_call(autojump_clock) -> None:
    queue = ClockQueue()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        queue.add("m1", 100)
        sender = await _started(queue, nursery)
        sender.nudge(queue.add("m0", 30))
        await trio.testing.wait_all_tasks_blocked()
        assert (queue.claims, queue.due_reads) == (1, 1)
        await _until_done(queue, 2, within=150)
        assert queue.done == [("m0", start + 30), ("m1", start + 100)]
        nursery.cancel_scope.cancel()


async def test_a_message_due_now_is_sent_now(autojump_clock) -> None:
    queue = ClockQueue()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        sender = await _started(queue, nursery)  # nothing scheduled: it waits for a nudge alone
        assert (queue.claims, queue.due_reads) == (1, 1)
        await trio.sleep(5)
        sender.nudge(queue.add("now", 0))
        await _until_done(queue, 1, within=1)
        assert queue.done == [("now", start + 5)]
        nursery.cancel_scope.cancel()


async def test_a_nudge_during_the_due_time_read_is_not_lost(autojump_clock) -> None:
    """The read may have missed the new message: the sender looks again instead of trusting it."""
    queue = ClockQueue()
    start = trio.current_time()
    original = queue.seconds_until_due
    nudged = False

    async def read_then_nudged(session_id: str) -> float | None:
        nonlocal nudged
        answer = await original(session_id)  # sees nothing scheduled
        if not nudged:
            nudged = True
            sender.nudge(queue.add("m1", 10))
        return answer

    queue.seconds_until_due = read_then_nudged  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        sender = Sender("s1", queue, Pacing(min_gap=0, jitter=0), random.Random(1))  # type: ignore[arg-type]
        nursery.start_soon(sender.run, _transport)
        await _until_done(queue, 1, within=30)
        assert queue.done == [("m1", start + 10)]
        nursery.cancel_scope.cancel()
