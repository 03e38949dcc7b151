"""A sender's view of its queue: search it, cancel what is not sent yet, reschedule, and count it.

Every change is one conditional write in the store, guarded by `status =
'queued'`, the same guard the session's actor claims a message with
(`claim_next_message`, queued → sending). So a cancel or a reschedule racing
the claim has exactly one winner, on any node: the loser changes nothing and
is told which state the message is in. No cluster routing is needed, as these
writes touch only the store; a cancelled message is simply never claimed.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from ._auth import SessionPrincipal
from ._clock import Clock
from ._compose import parse_send_at
from ._events import Collector, EventRecorder
from ._outbound import message_event
from ._ports import SessionGate
from .errors import Conflict, NotFound, ValidationError
from .store import MessageRecord, MessageStatus, QueueDepth, Store

CANCELLED_ONE: Final = "cancelled by the sender"
CANCELLED_ALL: Final = "cancelled with the rest of the session's queue"


class MessageQuery(NamedTuple):
    """What `GET /messages` filters by (None: any). Times are epoch ms, `since <= created_at < until`."""

    status: MessageStatus | None = None
    to_jid: str | None = None
    since: int | None = None
    until: int | None = None


class Queue:
    def __init__(self, store: Store, gate: SessionGate, recorder: EventRecorder, *, queue_ttl: float,
                 clock: Clock) -> None:
        self._store = store
        self._gate = gate
        self._recorder = recorder
        self._ttl_ms = int(queue_ttl * 1000)
        self._clock = clock

    async def search(self, who: SessionPrincipal, query: MessageQuery, *, before: str | None,
                     limit: int) -> list[MessageRecord]:
        """The session's messages matching `query`, newest first, one page."""
        return await self._store.list_messages(who.session_id, before=before, limit=limit, status=query.status,
                                               to_jid=query.to_jid, since=query.since, until=query.until)

    async def cancel(self, who: SessionPrincipal, message_id: str) -> MessageRecord:
        """Cancel a queued (ready or scheduled) message; Conflict naming its status if it is past that."""
        await self._own(who, message_id)
        at = self._clock.now_ms()
        collect = Collector(message_event("message.status", at))
        cancelled = await self._store.cancel_message(message_id, at, reason=CANCELLED_ONE, events=collect)
        if cancelled is None:
            raise Conflict(_too_late(await self._own(who, message_id), "cancelled"))
        self._recorder.published(collect.events)
        return cancelled

    async def cancel_all(self, who: SessionPrincipal) -> int:
        """Cancel every queued message of the session (scheduled ones included); returns how many."""
        at = self._clock.now_ms()
        collect = Collector(message_event("message.status", at))
        count = await self._store.cancel_queued_messages(who.session_id, at, reason=CANCELLED_ALL, events=collect)
        self._recorder.published(collect.events)
        return count

    async def reschedule(self, who: SessionPrincipal, message_id: str, send_at: str) -> MessageRecord:
        """Move a scheduled message's send time (validated as `sendAt` on a send, and in the future)."""
        now = self._clock.now_ms()
        at = parse_send_at(send_at, "$.sendAt", now_ms=now)
        if at is None:
            raise ValidationError.at("$.sendAt", "must be in the future")
        record = await self._own(who, message_id)
        if record.status is MessageStatus.QUEUED and record.send_at is None:
            raise Conflict("The message is not scheduled: it is queued to be sent now; cancel it instead")
        moved = await self._store.reschedule_message(message_id, at, at + self._ttl_ms, now)
        if moved is None:
            current = await self._own(who, message_id)
            if current.status is MessageStatus.QUEUED:  # put back after an interrupted send: no longer scheduled
                raise Conflict("The message is not scheduled: it is queued to be sent now; cancel it instead")
            raise Conflict(_too_late(current, "rescheduled"))
        self._gate.nudge(who.session_id)  # an earlier time than the sender is waiting for takes effect now
        return moved

    async def depths(self, session_ids: list[str]) -> dict[str, QueueDepth]:
        """Queued and still-scheduled counts per session, in one store query."""
        return await self._store.session_queue_depths(session_ids, self._clock.now_ms())

    async def _own(self, who: SessionPrincipal, message_id: str) -> MessageRecord:
        record = await self._store.get_message(message_id)
        if record is None or record.session_id != who.session_id:
            raise NotFound("No message with that id in this session")
        return record


def _too_late(record: MessageRecord, what: str) -> str:
    status = record.status
    if status is MessageStatus.SENDING:
        return f"The message is already being sent (status sending) and can no longer be {what}"
    if status is MessageStatus.CANCELLED:
        return f"The message was already cancelled and can no longer be {what}"
    if status is MessageStatus.FAILED:
        return f"The message has failed (status failed) and can no longer be {what}"
    return f"The message was already sent (status {status.value}) and can no longer be {what}"
