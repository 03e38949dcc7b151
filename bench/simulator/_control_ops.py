"""What the control channel can ask of the network: pairing, accounts, identity, faults, the record.

Each public method of `ControlOps` is one control operation; its keyword
arguments are the request's `args`. The control client (`control.py`) is the
documented way to call them.
"""

from __future__ import annotations

from typing import Any

from actors import OutboundMessage, TextContent
from actors.sim import RecordCounts, RecordEntry, SendOp, SessionInfo, SimStats

from ._identity import picture_url
from ._model import Account, OpError, Slot, jid_of, normalize_phone
from ._network import Network


class ControlOps:
    def __init__(self, network: Network) -> None:
        self.net = network

    def dispatch(self, op: str, args: dict[str, Any]) -> object:
        method = getattr(self, op, None) if not op.startswith("_") and op != "dispatch" else None
        if method is None or not callable(method):
            raise OpError("error", f"unknown control operation {op!r}")
        return method(**args)

    # -- pairing --------------------------------------------------------------

    def _pairing_slot(self, session_id: str) -> Slot:
        slots = [s for s in self.net.find_slots(session_id) if s.device is None]
        if not slots:
            raise OpError("error", f"session {session_id!r} is not waiting to pair")
        if len(slots) > 1:
            raise OpError("error", f"session {session_id!r} is pairing on {len(slots)} links; scan its code instead")
        return slots[0]

    def _paired(self, slot: Slot, phone: str | None) -> dict[str, str]:
        normalized = normalize_phone(phone) if phone else None
        if phone and normalized is None:
            raise OpError("error", f"not a phone number: {phone!r}")
        acc = self.net.pair(slot, normalized)
        return {"session_id": slot.session_id, "phone": acc.phone, "jid": acc.jid}

    def scan(self, session_id: str, phone: str | None = None) -> dict[str, str]:
        """The phone `phone` scans this session's QR (no phone: the session's own number or a fresh one)."""
        return self._paired(self._pairing_slot(session_id), phone)

    def scan_code(self, code: str, phone: str | None = None) -> dict[str, str]:
        """Pair by the QR string, or by a pairing code from `pair_phone` (dash optional)."""
        slot = self.net.codes.get(code) or self.net.codes.get(code.replace("-", "").upper())
        if slot is None:
            raise OpError("error", "no session shows this code")
        return self._paired(slot, phone)

    def qr(self, session_id: str) -> str | None:
        slots = [s for s in self.net.find_slots(session_id) if s.qr is not None]
        return slots[0].qr if slots else None

    def set_autopair(self, seconds: float | None = None) -> None:
        self.net.autopair = seconds

    def set_receipt_delay(self, seconds: float) -> None:
        self.net.receipt_delay = float(seconds)

    def set_auto_read(self, enabled: bool) -> None:
        """On (the default), a session's account reads every message it gets after two receipt delays;
        off, only the messages its session marks read (`mark_read`) turn `read` for their sender."""
        if not isinstance(enabled, bool):
            raise OpError("error", "enabled must be true or false")
        self.net.auto_read = enabled

    def set_open_world(self, enabled: bool) -> None:
        """Open world (the default): every well-formed number is on WhatsApp. Closed: only registered ones."""
        if not isinstance(enabled, bool):
            raise OpError("error", "enabled must be true or false")
        self.net.open_world = enabled

    # -- accounts ---------------------------------------------------------------

    def register(self, phone: str, push_name: str | None = None, verified_name: str | None = None) -> dict[str, str]:
        """An account on WhatsApp without a gateway session: a phone that reads what it gets."""
        normalized = normalize_phone(phone)
        if normalized is None:
            raise OpError("error", f"not a phone number: {phone!r}")
        acc = self.net.account(normalized, push_name=push_name)
        if verified_name is not None:
            acc.verified_name = verified_name
        return {"phone": acc.phone, "jid": acc.jid}

    def unregister(self, phone: str) -> dict[str, object]:
        """Take a number off WhatsApp (open world or not): sends to it fail, on-whatsapp answers false.
        Its devices are logged out and it leaves its groups; `register` or pairing as it brings it back."""
        normalized = normalize_phone(phone)
        if normalized is None:
            raise OpError("error", f"not a phone number: {phone!r}")
        return {"phone": normalized, "jid": jid_of(normalized), "logged_out": self.net.unregister(normalized)}

    def set_presence(self, phone: str, available: bool) -> None:
        acc = self.net.lookup(normalize_phone(phone))
        if acc is None:
            raise OpError("error", f"{phone} is not on WhatsApp")
        self.net.set_presence(acc, available)

    def add_contact(self, owner: str, phone: str, full_name: str | None = None) -> None:
        self.net.add_contact(owner, phone, full_name)

    # -- identity -----------------------------------------------------------------

    def _on_whatsapp(self, phone: object) -> Account:
        acc = self.net.lookup(normalize_phone(phone)) if isinstance(phone, str) else None
        if acc is None:
            raise OpError("error", f"{phone!r} is not on WhatsApp")
        return acc

    def identity(self, phone: str) -> dict[str, object]:
        """What WhatsApp knows of a number on it: its LID, about text, picture, addressing and blocklist."""
        acc = self._on_whatsapp(phone)
        return {"phone": acc.phone, "jid": acc.jid, "lid": self.net.lid_of(acc), "about": acc.about,
                "picture_id": acc.picture_id, "picture_url": picture_url(acc.picture_id),
                "addressing": acc.addressing, "blocked": self.net.blocklist(acc)}

    def set_profile(self, phone: str, about: str | None = None, picture: bool | None = None) -> dict[str, object]:
        """Set the account's about text (at most 139 characters; "" clears it) and put up a new profile
        picture (`picture` true: a new picture id each time) or take it down (false); an argument left
        out leaves that part as it is. Returns `identity`."""
        if about is not None and not isinstance(about, str):
            raise OpError("error", "about must be a string")
        if picture is not None and not isinstance(picture, bool):
            raise OpError("error", "picture must be true or false")
        acc = self._on_whatsapp(phone)
        self.net.set_profile(acc, about=about, picture=picture)
        return self.identity(acc.phone)

    def set_addressing(self, phone: str, mode: str) -> dict[str, object]:
        """How the account's messages and actions reach others: "off" (by phone JID), "lid" (phone JID
        and `sender_lid`) or "lid-only" (by LID alone, a 1:1 chat too). Returns `identity`."""
        if not isinstance(mode, str):
            raise OpError("error", "mode must be a string")
        acc = self._on_whatsapp(phone)
        self.net.set_addressing(acc, mode)
        return self.identity(acc.phone)

    def inject(self, sender: str, to: str, text: str, message_id: str | None = None) -> dict[str, object]:
        """A message typed on `sender`'s phone (registered on the fly) to a number or group."""
        phone = normalize_phone(sender)
        if phone is None:
            raise OpError("error", f"not a phone number: {sender!r}")
        target = to if "@" in to else jid_of(normalize_phone(to) or to)
        op = SendOp(message=OutboundMessage(to=target, content=TextContent(body=text)), message_id=message_id)
        message_id, ts = self.net.send(self.net.account(phone), op, session_id=None)
        return {"message_id": message_id, "timestamp_ms": ts}

    # -- faults -------------------------------------------------------------------

    def drop(self, session_id: str | None = None) -> int:
        return self.net.drop(session_id)

    def logout(self, session_id: str | None = None, phone: str | None = None) -> int:
        if session_id is None and phone is None:
            raise OpError("error", "logout needs session_id or phone")
        return self.net.logout(session_id, phone)

    def set_latency(self, seconds: float, session_id: str | None = None) -> None:
        self._set(self.net.latency, session_id, float(seconds))

    def set_error_rate(self, rate: float, session_id: str | None = None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise OpError("error", "rate must be between 0 and 1")
        self._set(self.net.error_rate, session_id, float(rate))

    @staticmethod
    def _set(table: dict[str | None, float], key: str | None, value: float) -> None:
        if value:
            table[key] = value
        else:
            table.pop(key, None)

    # -- the record and statistics -----------------------------------------------

    def messages(self, offset: int = 0, limit: int | None = None, sender: str | None = None,
                 recipient: str | None = None, session_id: str | None = None) -> list[RecordEntry]:
        sender_jid = jid_of(normalize_phone(sender) or sender) if sender and "@" not in sender else sender
        recipient_jid = (jid_of(normalize_phone(recipient) or recipient)
                         if recipient and "@" not in recipient else recipient)
        out = [e for e in self.net.record[offset:]
               if (sender_jid is None or e.sender == sender_jid)
               and (recipient_jid is None or e.recipient == recipient_jid)
               and (session_id is None or e.session_id == session_id)]
        return out if limit is None else out[:limit]

    def record_counts(self) -> RecordCounts:
        return self.net.record_counts()

    def clear_record(self) -> None:
        self.net.record.clear()
        self.net.sent.clear()

    def stats(self) -> SimStats:
        return self.net.statistics()

    def sessions(self) -> list[SessionInfo]:
        return self.net.sessions()
