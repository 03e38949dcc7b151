"""The simulated WhatsApp network: accounts, devices, pairing, routing, receipts, the record.

No I/O and no clock of its own: links are `Outbox`es that queue frames, timers
go through a `Scheduler`, and wall-clock timestamps come from `now_ms`. The
server (`_server.py`) feeds it decoded frames; tests can drive it directly.
Social features (groups, presence, contacts) live in `_social.py`.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol

from actors import (
    Connected, LoggedOut, MediaContent, MessageReceived, PollContent, QRCode, Receipt, TransportEvent, is_group_jid,
)
from actors.sim import (
    DEFAULT_WINDOW, Attach, Creds, End, Paired, Push, RecordCounts, RecordEntry, SendOp, SessionInfo, SimStats,
)

from ._model import (
    Account, Device, Item, OpError, Outbox, ReceiptTicket, Slot, describe, jid_of, new_message_id, new_pair_code,
    new_qr_code, normalize_phone, record_text, recipient_error,
)
from ._actions import ActionsMixin
from ._groups import GroupsMixin
from ._identity import IdentityMixin
from ._social import SocialMixin

log = logging.getLogger("bench.simulator")

DEFAULT_QR_INTERVAL = 20.0
MAX_BACKLOG = 10_000  # per device; beyond it the oldest event is dropped and counted


class Scheduler(Protocol):
    def call_later(self, delay: float, fn: Callable[..., None], *args: Any) -> None: ...


def mask_proxy(url: str | None) -> str | None:
    """A proxy URL with its password replaced by `***` (what the simulator shows of it)."""
    if not url:
        return None
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"


def wall_ms() -> int:
    return int(time.time() * 1000)


class Network(ActionsMixin, IdentityMixin, GroupsMixin, SocialMixin):
    def __init__(self, scheduler: Scheduler, *, autopair: float | None = None, receipt_delay: float = 0.5,
                 qr_interval: float = DEFAULT_QR_INTERVAL, now_ms: Callable[[], int] = wall_ms,
                 rng: random.Random | None = None, open_world: bool = True) -> None:
        self.scheduler = scheduler
        self.open_world = open_world  # every well-formed number is on WhatsApp (created on first use)
        self.unregistered: set[str] = set()  # numbers taken off WhatsApp: not even an open world has them
        self.autopair = autopair
        self.receipt_delay = receipt_delay
        # A session's account reads what it gets by itself; off, it reads only what its session marks read.
        self.auto_read = True
        self.qr_interval = qr_interval
        self.now_ms = now_ms
        self.rng = rng or random.Random()
        self.window = DEFAULT_WINDOW
        self.links: set[Outbox] = set()
        self.windows: dict[int, int] = {}  # link id → credit window
        self.accounts: dict[str, Account] = {}  # E.164 → account
        self.devices: dict[str, Device] = {}
        self.revoked: set[str] = set()  # device ids logged out: their stale credentials get LoggedOut
        self.codes: dict[str, Slot] = {}  # current QR or pairing code → slot
        self.latency: dict[str | None, float] = {}  # session id (None: every session) → seconds
        self.error_rate: dict[str | None, float] = {}
        self.record: list[RecordEntry] = []
        self.sent: dict[tuple[str, str], int] = {}  # (sender jid, message id) → timestamp
        self.counters = dict(events_pushed=0, receipts=0, send_failures=0, backlog_dropped=0)
        self.media = MediaVault()  # media bytes sent, for their recipients to download
        super().__init__()

    # -- registry -----------------------------------------------------------

    def account(self, phone: str, *, push_name: str | None = None) -> Account:
        """The account of `phone`, made if need be: registering it, pairing as it or injecting from it puts the
        number (back) on WhatsApp."""
        acc = self.accounts.get(phone)
        if acc is None:
            acc = Account(phone, jid_of(phone), push_name=push_name or f"Sim {phone[-4:]}")
            self.accounts[phone] = acc
            self.unregistered.discard(phone)
        elif push_name:
            acc.push_name = push_name
        return acc

    def is_registered(self, phone: str | None) -> bool:
        """Whether `phone` (E.164, or None for a malformed number) is on WhatsApp."""
        if phone is None:
            return False
        return phone in self.accounts or (self.open_world and phone not in self.unregistered)

    def lookup(self, phone: str | None) -> Account | None:
        """The account of a number on WhatsApp (in an open world made on first use), else None."""
        if phone is None:
            return None
        acc = self.accounts.get(phone)
        if acc is None and self.is_registered(phone):
            acc = self.account(phone)
        return acc

    def unregister(self, phone: str) -> int:
        """Take `phone` off WhatsApp until it is registered or paired again: its devices are logged out
        (returns how many), it leaves its groups, and sends to it fail."""
        self.unregistered.add(phone)
        if phone not in self.accounts:
            return 0
        logged_out = self.logout(phone=phone, reason="account deleted")
        acc = self.accounts.pop(phone)
        for jid in list(acc.groups):
            group = self.groups.get(jid)
            if group is not None and acc.jid in group.roles:
                self._remove_member(group, acc.jid)
        return logged_out

    def fresh_phone(self) -> str:
        while True:  # +888 is unassigned; 10 random digits make clashes after a restart unlikely
            phone = "+888" + "".join(self.rng.choice("0123456789") for _ in range(10))
            if phone not in self.accounts:
                return phone

    # -- links and sessions ---------------------------------------------------

    def link_opened(self, link: Outbox, window: int) -> None:
        self.links.add(link)
        self.windows[link.id] = max(1, window)

    def link_closed(self, link: Outbox) -> None:
        for slot in list(link.slots.values()):
            self._detach(slot)
        link.slots.clear()
        self.links.discard(link)
        self.windows.pop(link.id, None)

    def attach(self, link: Outbox, frame: Attach) -> None:
        old = link.slots.pop(frame.session, None)
        if old is not None:
            self._detach(old)
        slot = Slot(link, frame.session, requested_phone=normalize_phone(frame.phone) if frame.phone else None,
                    proxy=mask_proxy(frame.proxy))
        link.slots[frame.session] = slot
        if frame.creds is not None:
            self._resume(slot, frame.creds)
            return
        self._rotate_qr(slot, slot.generation)
        if self.autopair is not None:
            if self.autopair <= 0:
                self.pair(slot, None)
            else:
                self.scheduler.call_later(self.autopair, self._autopair, slot, slot.generation)

    def _resume(self, slot: Slot, creds: Creds) -> None:
        device = self.devices.get(creds.device_id)
        if creds.device_id in self.revoked or (device is not None and (
                device.token != creds.token or device.account.phone != creds.phone)):
            self._end(slot, "logged_out", "device was logged out", notify=True)
            return
        if device is None:  # the simulator restarted: trust the device store, like a real server would
            phone = normalize_phone(creds.phone)
            if phone is None:
                self._end(slot, "logged_out", "invalid device credentials", notify=True)
                return
            device = Device(creds.device_id, creds.token, self.account(phone), slot.session_id)
            device.account.devices[device.device_id] = device
            self.devices[device.device_id] = device
        if device.slot is not None and device.slot is not slot:
            old = device.slot
            old.link.enqueue(End(session=old.session_id, kind="dropped", reason="stream replaced"))
            old.link.slots.pop(old.session_id, None)
            self._detach(old)
        self._bind(slot, device)

    def _bind(self, slot: Slot, device: Device) -> None:
        self._stop_pairing(slot)
        slot.device = device
        device.slot = slot
        device.session_id = slot.session_id
        acc = device.account
        device.backlog.appendleft(Item(Connected(jid=acc.jid, phone_number=acc.phone, push_name=acc.push_name),
                                       durable=False))
        self.pump(device)

    def detach(self, link: Outbox, session_id: str) -> None:
        slot = link.slots.pop(session_id, None)
        if slot is not None:
            self._detach(slot)

    def _detach(self, slot: Slot) -> None:
        slot.closed = True
        self._stop_pairing(slot)
        device = slot.device
        if device is not None and device.slot is slot:
            device.slot = None
            device.backlog.extendleft(reversed([i for i in slot.inflight if i.durable]))
            self.presence_offline(device)
        slot.inflight.clear()

    def _end(self, slot: Slot, kind: str, reason: str, *, notify: bool) -> None:
        """End a slot from the server side (fault, logout, stale credentials)."""
        if notify:
            slot.link.enqueue(Push(session=slot.session_id, event=LoggedOut(reason=reason)))
        slot.link.enqueue(End(session=slot.session_id, kind=kind, reason=reason))  # type: ignore[arg-type]
        if slot.link.slots.get(slot.session_id) is slot:
            del slot.link.slots[slot.session_id]
        self._detach(slot)

    # -- pairing --------------------------------------------------------------

    def _rotate_qr(self, slot: Slot, generation: int) -> None:
        if slot.closed or slot.device is not None or slot.generation != generation:
            return
        if slot.qr is not None:
            self.codes.pop(slot.qr, None)
        slot.qr = new_qr_code()
        self.codes[slot.qr] = slot
        slot.link.enqueue(Push(session=slot.session_id, event=QRCode(code=slot.qr)))
        self.scheduler.call_later(self.qr_interval, self._rotate_qr, slot, generation)

    def _autopair(self, slot: Slot, generation: int) -> None:
        if not slot.closed and slot.device is None and slot.generation == generation:
            self.pair(slot, None)

    def _stop_pairing(self, slot: Slot) -> None:
        slot.generation += 1
        for code in (slot.qr, slot.pair_code):
            if code is not None and self.codes.get(code) is slot:
                del self.codes[code]
        slot.qr = slot.pair_code = None

    def pair(self, slot: Slot, phone: str | None) -> Account:
        """The phone scanned this slot's QR (or entered its code): a new device for `phone`."""
        if slot.closed or slot.device is not None:
            raise OpError("error", f"session {slot.session_id} is not waiting to pair")
        phone = phone or slot.pair_code_phone or slot.requested_phone or self.fresh_phone()
        acc = self.account(phone)
        device = Device(secrets.token_hex(8), secrets.token_urlsafe(24), acc, slot.session_id)
        acc.devices[device.device_id] = device
        self.devices[device.device_id] = device
        slot.link.enqueue(Paired(session=slot.session_id,
                                 creds=Creds(phone=phone, device_id=device.device_id, token=device.token)))
        self._bind(slot, device)
        return acc

    def pair_phone(self, slot: Slot, phone: str) -> str:
        if slot.device is not None:
            raise OpError("error", "already paired")
        normalized = normalize_phone(phone)
        if normalized is None:
            raise OpError("error", f"not a phone number: {phone!r}")
        if slot.pair_code is not None:
            self.codes.pop(slot.pair_code, None)
        slot.pair_code, slot.pair_code_phone = new_pair_code(), normalized
        self.codes[slot.pair_code] = slot
        return slot.pair_code

    def revoke(self, device: Device) -> None:
        """Forget a pairing: the device's credentials stop working."""
        self.revoked.add(device.device_id)
        self.devices.pop(device.device_id, None)
        device.account.devices.pop(device.device_id, None)
        device.backlog.clear()
        slot = device.slot
        if slot is not None:
            if slot.link.slots.get(slot.session_id) is slot:
                del slot.link.slots[slot.session_id]
            self._detach(slot)

    # -- faults -------------------------------------------------------------------

    def drop(self, session_id: str | None) -> int:
        """Drop one session's connection (its `run` sees ConnectFailed), or every link."""
        if session_id is None:
            links = list(self.links)
            for link in links:
                link.close()
            return len(links)
        slots = self.find_slots(session_id)
        for slot in slots:
            self._end(slot, "dropped", "connection dropped by the simulator", notify=False)
        return len(slots)

    def logout(self, session_id: str | None = None, phone: str | None = None,
               reason: str = "logged out from the phone") -> int:
        """Unlink devices (by session or by account): online ones get LoggedOut, all forget their pairing."""
        if phone is not None:
            acc = self.accounts.get(normalize_phone(phone) or "")
            devices = list(acc.devices.values()) if acc else []
        else:
            devices = [d for d in self.devices.values() if d.session_id == session_id]
        for device in devices:
            if device.slot is not None:
                self._end(device.slot, "logged_out", reason, notify=True)
            self.revoke(device)
        return len(devices)

    # -- delivery ---------------------------------------------------------------

    def push(self, device: Device, item: Item) -> None:
        if device.slot is None and not item.durable:
            return
        if len(device.backlog) >= MAX_BACKLOG:
            device.backlog.popleft()
            self.counters["backlog_dropped"] += 1
        device.backlog.append(item)
        self.pump(device)

    def pump(self, device: Device) -> None:
        slot = device.slot
        if slot is None:
            return
        window = self.windows.get(slot.link.id, self.window)
        while device.backlog and len(slot.inflight) < window:
            item = device.backlog.popleft()
            slot.inflight.append(item)
            slot.link.enqueue(Push(session=slot.session_id, event=item.event))
            self.counters["events_pushed"] += 1
            ticket = item.ticket
            if ticket is not None and not ticket.done:
                ticket.done = True
                self._schedule_receipts(ticket, read=self.auto_read)

    def ack(self, link: Outbox, session_id: str, count: int) -> None:
        slot = link.slots.get(session_id)
        if slot is None or slot.device is None:
            return
        for _ in range(min(count, len(slot.inflight))):
            slot.inflight.popleft()
        self.pump(slot.device)

    def _schedule_receipts(self, ticket: ReceiptTicket, *, read: bool = True) -> None:
        # "delivered" when it reached a device, "read" as if a person then opened the chat.
        self.scheduler.call_later(self.receipt_delay, self._receipt, ticket, "delivered")
        if read:
            self.scheduler.call_later(2 * self.receipt_delay, self._receipt, ticket, "read")

    def _receipt(self, ticket: ReceiptTicket, kind: str) -> None:
        event = Receipt(message_ids=[ticket.message_id], chat=ticket.chat, sender=ticket.participant,
                        type=kind, timestamp_ms=self.now_ms())  # type: ignore[arg-type]
        self.counters["receipts"] += 1
        for device in list(ticket.sender.devices.values()):
            self.push(device, Item(event, durable=True))

    def deliver(self, recipient: Account, event: MessageReceived, ticket: ReceiptTicket | None) -> None:
        addressed = self.inbound(recipient, event)
        if addressed is None:
            return  # blocked: the sender's message is never delivered (and never gets a receipt)
        event = addressed  # type: ignore[assignment]
        if not recipient.devices:  # a phone without a gateway session reads everything it gets
            if ticket is not None:
                ticket.done = True
                self._schedule_receipts(ticket)
            return
        for device in list(recipient.devices.values()):
            self.push(device, Item(event, durable=True, ticket=ticket))

    def send(self, sender: Account, op: SendOp, *, session_id: str | None) -> tuple[str, int]:
        """Route one message; returns (message id, timestamp). Resends of a known id are recorded, not routed."""
        message = op.message
        if self.rng.random() < self.error_rate.get(session_id, self.error_rate.get(None, 0.0)):
            self.counters["send_failures"] += 1
            raise OpError("error", "simulated send failure")
        message_id = op.message_id or new_message_id()
        kind, text, data = describe(message)
        known = self.sent.get((sender.jid, message_id))
        if known is not None:
            self._record(message_id, sender, message.to, kind, known, session_id, text, duplicate=True)
            return message_id, known
        if is_group_jid(message.to):
            group = self.groups.get(message.to)
            if group is None:
                raise recipient_error(f"group {message.to} not found")
            if sender.jid not in group.roles:
                raise recipient_error(f"not a participant of {message.to}")
            self.check_group_send(sender, group)
            recipients = [self.accounts[p] for p in map(normalize_phone, group.roles)
                          if p is not None and p in self.accounts and p != sender.phone]
        else:
            phone = normalize_phone(message.to)
            if phone is None:
                raise recipient_error(f"invalid recipient {message.to!r}")
            recipient = self.lookup(phone)
            if recipient is None:
                raise recipient_error(f"{message.to} is not on WhatsApp")
            recipients = [recipient]
        ts = self.now_ms()
        self.sent[(sender.jid, message_id)] = ts
        if isinstance(message.content, PollContent):  # votes are checked against it (`_actions`)
            self.polls[(sender.jid, message_id)] = (list(message.content.options), message.content.selectable_count)
        self._record(message_id, sender, message.to, kind, ts, session_id, text, duplicate=False)
        is_group = is_group_jid(message.to)
        media_ref = None
        if isinstance(message.content, MediaContent):
            media_ref = self.media.put(message.content.data, (r.jid for r in recipients)).encode()
        for recipient in recipients:
            event = MessageReceived(message_id=message_id, chat=message.to if is_group else sender.jid,
                                    sender=sender.jid, sender_phone=sender.phone, push_name=sender.push_name,
                                    is_group=is_group, timestamp_ms=ts, type=kind, text=text, data=data,
                                    media_ref=media_ref)
            ticket = ReceiptTicket(sender, message_id, message.to if is_group else recipient.jid,
                                   recipient.jid if is_group else None)
            if not is_group:
                sender.contacts.setdefault(recipient.jid, None)
                recipient.contacts.setdefault(sender.jid, None)
            self.deliver(recipient, event, ticket)
        return message_id, ts

    def _record(self, message_id: str, sender: Account, to: str, kind: str, ts: int, session_id: str | None,
                text: str | None, *, duplicate: bool) -> None:
        self.record.append(RecordEntry(seq=len(self.record) + 1, message_id=message_id, sender=sender.jid,
                                       recipient=to, type=kind, timestamp_ms=ts, duplicate=duplicate,
                                       session_id=session_id, text=record_text(text)))

    def record_counts(self) -> RecordCounts:
        total = len(self.record)
        return RecordCounts(total=total, distinct=len(self.sent), duplicates=total - len(self.sent))

    # -- introspection ----------------------------------------------------------

    def find_slots(self, session_id: str) -> list[Slot]:
        return [s for link in self.links if (s := link.slots.get(session_id)) is not None]

    def sessions(self) -> list[SessionInfo]:
        return [SessionInfo(session_id=s.session_id, link=link.id, connected=s.device is not None,
                            phone=s.device.account.phone if s.device else None, qr=s.qr, proxy=s.proxy)
                for link in self.links for s in link.slots.values()]

    def statistics(self) -> SimStats:
        slots = [s for link in self.links for s in link.slots.values()]
        connected = sum(1 for s in slots if s.device is not None)
        c = self.counters
        return SimStats(links=len(self.links), sessions_attached=len(slots), sessions_connected=connected,
                        sessions_pairing=len(slots) - connected, accounts=len(self.accounts),
                        devices=len(self.devices), groups=len(self.groups), messages_routed=len(self.sent),
                        duplicates=len(self.record) - len(self.sent), events_pushed=c["events_pushed"],
                        receipts=c["receipts"], send_failures=c["send_failures"],
                        backlog=sum(len(d.backlog) for d in self.devices.values()),
                        backlog_dropped=c["backlog_dropped"])

    def notify(self, account: Account, event: TransportEvent) -> None:
        """Push an ephemeral event (presence, typing) to an account's online devices."""
        for device in list(account.devices.values()):
            if device.slot is not None:
                self.push(device, Item(event, durable=False))


MEDIA_VAULT_BYTES: Final = 256 * 1024 * 1024


class MediaVault:
    """The bytes of media the network carried, kept for their recipients to download, like WhatsApp's
    media servers. An LRU bounded in total bytes (`max_bytes`): the oldest go first, and a file larger
    than the whole vault is not kept (its download then fails, as an expired one does)."""

    def __init__(self, max_bytes: int = MEDIA_VAULT_BYTES) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._items: OrderedDict[str, tuple[bytes, frozenset[str]]] = OrderedDict()

    def put(self, data: bytes, readers: Iterable[str]) -> str:
        """Keep `data` for the accounts `readers` (JIDs); returns its media id."""
        media_id = secrets.token_hex(16)
        if len(data) > self.max_bytes:
            return media_id
        while self._items and self.size + len(data) > self.max_bytes:
            _, (old, _) = self._items.popitem(last=False)
            self.size -= len(old)
        self._items[media_id] = (data, frozenset(readers))
        self.size += len(data)
        return media_id

    def get(self, media_id: str, reader: str) -> bytes:
        """The bytes of `media_id` for the account `reader`; OpError if it never got them or they expired."""
        item = self._items.get(media_id)
        if item is None or reader not in item[1]:
            raise OpError("error", "media not found: expired, or never sent to this account")
        self._items.move_to_end(media_id)
        return item[0]
