"""A client for the simulator's control channel, for tests, bench and scripts.

    async with open_sim_control("ws://127.0.0.1:8765") as sim:
        await sim.register("+15550001111", push_name="Ann")  # a phone on WhatsApp, no gateway session
        await sim.unregister("+15550003333")        # not on WhatsApp: sends to it fail
        await sim.wait_qr("my-session")             # the session is showing a QR
        phone = await sim.scan("my-session", "+15550002222")
        await sim.set_error_rate(0.1)               # one send in ten fails
        await sim.set_profile("+15550001111", about="Hi", picture=True)
        lid = await sim.set_addressing("+15550001111", "lid-only")  # its messages arrive by LID
        counts = await sim.record_counts()          # total / distinct / duplicates

`url` may be the simulator's base URL (what the gateway's `GATEWAY_SIM_URL`
holds) or the `/control` URL itself. Requests run one at a time per client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from actors.sim import (
    CONTROL_PATH,
    ControlRequest,
    RecordCounts,
    RecordEntry,
    SessionInfo,
    SimStats,
    control_encoder,
    control_reply_decoder,
)


class SimControlError(Exception):
    """The simulator refused a control request; `reason` is its message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def control_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.path.rstrip("/") == CONTROL_PATH:
        return url
    return urlunsplit(parts._replace(path=CONTROL_PATH))


class SimControl:
    def __init__(self, ws: WebSocketConnection) -> None:
        self._ws = ws
        self._next_id = 0
        self._lock = trio.Lock()

    async def request(self, op: str, **args: Any) -> Any:
        """Send one raw control request; returns its JSON result."""
        async with self._lock:
            self._next_id += 1
            payload = {k: v for k, v in args.items() if v is not None}
            await self._ws.send_message(control_encoder.encode(
                ControlRequest(id=self._next_id, op=op, args=payload)).decode())
            reply = control_reply_decoder.decode(await self._ws.get_message())
        if not reply.ok:
            raise SimControlError(reply.error or "control request failed")
        return reply.result

    # -- pairing ---------------------------------------------------------------

    async def scan(self, session_id: str, phone: str | None = None) -> str:
        """Scan the QR a session is showing with `phone` (default: its own number or a fresh one).

        Returns the E.164 number the session paired as."""
        return (await self.request("scan", session_id=session_id, phone=phone))["phone"]

    async def scan_code(self, code: str, phone: str | None = None) -> str:
        """Pair the session showing this QR string, or that asked for this pairing code."""
        return (await self.request("scan_code", code=code, phone=phone))["phone"]

    async def qr(self, session_id: str) -> str | None:
        """The QR code the session shows now, or None (paired, or not connected)."""
        return await self.request("qr", session_id=session_id)

    async def wait_qr(self, session_id: str, *, poll: float = 0.02) -> str:
        """Wait until the session shows a QR code; put a deadline around it."""
        while (code := await self.qr(session_id)) is None:
            await trio.sleep(poll)
        return code

    async def set_autopair(self, seconds: float | None) -> None:
        await self.request("set_autopair", seconds=seconds)

    async def set_receipt_delay(self, seconds: float) -> None:
        await self.request("set_receipt_delay", seconds=seconds)

    async def set_open_world(self, enabled: bool) -> None:
        """Open world (the default): every well-formed number is on WhatsApp. Closed: only numbers a
        session paired as or `register` put there."""
        await self.request("set_open_world", enabled=enabled)

    # -- accounts -----------------------------------------------------------------

    async def register(self, phone: str, *, push_name: str | None = None, verified_name: str | None = None) -> str:
        """Put a number on WhatsApp with no gateway session; returns its JID."""
        return (await self.request("register", phone=phone, push_name=push_name,
                                   verified_name=verified_name))["jid"]

    async def unregister(self, phone: str) -> str:
        """Take a number off WhatsApp, even in an open world: sends to it fail with RecipientError and
        on-whatsapp answers false. Its devices are logged out and it leaves its groups; `register` (or a
        session pairing as it) brings it back. Returns the number in E.164."""
        return (await self.request("unregister", phone=phone))["phone"]

    async def set_presence(self, phone: str, available: bool) -> None:
        await self.request("set_presence", phone=phone, available=available)

    async def add_contact(self, owner: str, phone: str, full_name: str | None = None) -> None:
        await self.request("add_contact", owner=owner, phone=phone, full_name=full_name)

    # -- identity -----------------------------------------------------------------

    async def identity(self, phone: str) -> dict[str, Any]:
        """What WhatsApp knows of a number: `phone`, `jid`, `lid`, `about`, `picture_id`, `picture_url`,
        `addressing` and `blocked` (the JIDs it blocked)."""
        return await self.request("identity", phone=phone)

    async def lid(self, phone: str) -> str:
        """The number's LID (`<15 digits>@lid`), the same for the whole run."""
        return (await self.identity(phone))["lid"]

    async def set_profile(self, phone: str, *, about: str | None = None,
                          picture: bool | None = None) -> dict[str, Any]:
        """Set the about text (at most 139 characters; "" clears it), put up a new profile picture (True: a
        new picture id each time) or take it down (False); None leaves that part. Returns `identity`."""
        return await self.request("set_profile", phone=phone, about=about, picture=picture)

    async def set_addressing(self, phone: str, mode: str) -> str:
        """How others get this number's messages and actions: "off" (by phone JID), "lid" (phone JID plus
        `sender_lid`) or "lid-only" (by LID alone, the 1:1 chat too). Returns its LID."""
        return (await self.request("set_addressing", phone=phone, mode=mode))["lid"]

    async def inject(self, sender: str, to: str, text: str, *, message_id: str | None = None) -> str:
        """Send a text from `sender`'s phone to a number or group; returns the message id."""
        return (await self.request("inject", sender=sender, to=to, text=text, message_id=message_id))["message_id"]

    # -- faults ---------------------------------------------------------------------

    async def drop(self, session_id: str | None = None) -> int:
        """Drop one session's connection, or (no session) every link; returns how many."""
        return await self.request("drop", session_id=session_id)

    async def logout(self, session_id: str | None = None, *, phone: str | None = None) -> int:
        """Unlink a session's device (or every device of `phone`): LoggedOut, pairing forgotten."""
        return await self.request("logout", session_id=session_id, phone=phone)

    async def set_latency(self, seconds: float, session_id: str | None = None) -> None:
        """Delay every operation (of one session, or all) by `seconds`; 0 removes it."""
        await self.request("set_latency", seconds=seconds, session_id=session_id)

    async def set_auto_read(self, enabled: bool) -> None:
        """On (the default), accounts read what they get by themselves; off, only `mark_read` reads."""
        await self.request("set_auto_read", enabled=enabled)

    async def set_error_rate(self, rate: float, session_id: str | None = None) -> None:
        """Fail this fraction of sends (of one session, or all) with an error; 0 removes it."""
        await self.request("set_error_rate", rate=rate, session_id=session_id)

    # -- the record and statistics --------------------------------------------------

    async def messages(self, *, offset: int = 0, limit: int | None = None, sender: str | None = None,
                       recipient: str | None = None, session_id: str | None = None) -> list[RecordEntry]:
        """Messages the network accepted, oldest first; sender/recipient as phones or JIDs."""
        result = await self.request("messages", offset=offset, limit=limit, sender=sender,
                                    recipient=recipient, session_id=session_id)
        return msgspec.convert(result, list[RecordEntry])

    async def record_counts(self) -> RecordCounts:
        return msgspec.convert(await self.request("record_counts"), RecordCounts)

    async def clear_record(self) -> None:
        await self.request("clear_record")

    async def stats(self) -> SimStats:
        return msgspec.convert(await self.request("stats"), SimStats)

    async def sessions(self) -> list[SessionInfo]:
        return msgspec.convert(await self.request("sessions"), list[SessionInfo])


@asynccontextmanager
async def open_sim_control(url: str, *, connect_timeout: float = 10.0) -> AsyncIterator[SimControl]:
    """Connect to the simulator's control channel for the duration of the block."""
    async with open_websocket_url(control_url(url), connect_timeout=connect_timeout) as ws:
        yield SimControl(ws)
