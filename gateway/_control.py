"""Session control: what the API asks of a session's live connection.

`SessionControl` connects (starting the actor and waiting briefly for a QR
code), disconnects, removes, and hands out the QR and pairing codes; at
start-up it brings back every session that was meant to be online. Where
a session runs is `Ownership`'s question: one node runs every session, a
cluster node takes the session's lease before it starts it here.

`LocalGate` is the one-node `SessionGate`: it asks the actor, without I/O.

Proxies are decided here too. A session connects to WhatsApp through its own
`proxy_url`, else through GATEWAY_PROXY_URL, else directly; `start` puts that
URL in the SessionSpec. A transport keeps the spec it was made with, so an
actor whose proxy changed is replaced: at once when it is online
(`apply_proxy`: it reconnects with its stored pairing), on its next start when
it is not. The URL rules, shared by the API and the setting, are
`parse_proxy_url` (check and normalize), `mask_proxy_url` (what answers show)
and `redact_proxy` (what a reason or a log line may carry). They do no I/O: a
proxy's host name is resolved by the transport when it connects.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import trio

from actors import (
    Connect,
    Disconnect,
    Logout,
    NotConnected,
    SessionActor,
    SessionSpec,
    SessionState,
    Supervisor,
    Transport,
    TransportError,
)

from ._clock import Clock
from ._limits import RateGuard
from ._ports import Ownership
from ._requests import MAX_PROXY_URL
from .errors import (
    Conflict,
    ConnectionFailed,
    OwnedElsewhere,
    QrNotAvailable,
    SessionNotConnected,
    SessionNotFound,
    TryAgainLater,
    ValidationError,
)
from .store import SessionRecord, Store

log = logging.getLogger("gateway.live")

PAIRING_DEADLINE = 30.0
SHORT_REASON_MAX = 120
_PAIRING_ENDED = (SessionState.CONNECTED, SessionState.FAILED, SessionState.LOGGED_OUT)

PROXY_SCHEMES: Final = ("http", "https", "socks5")
MASK: Final = "***"
# Where a session's proxy comes from: its own `proxy_url`, or GATEWAY_PROXY_URL.
ProxySource = Literal["session", "default"]
_HOST_LABEL: Final = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
# RFC 3986 userinfo, plus `@` (an email as the user name; the host starts after the last `@`)
_USERINFO: Final = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})+")


class BadProxyURL(ValueError):
    """A proxy URL that cannot be used. The message says why and never repeats the URL, which may carry a
    password."""


def parse_proxy_url(raw: str) -> str:
    """`raw` checked and normalized to `scheme://[user[:password]@]host:port` (scheme and host lower case).

    Private and loopback addresses are accepted: a proxy is often on the LAN or on the host itself,
    and only the account's token may set one. Unspecified, multicast and link-local addresses (the
    cloud metadata address among them) are refused: no proxy lives there.
    """
    if not raw:
        raise BadProxyURL("is empty (null clears it)")
    if len(raw) > MAX_PROXY_URL:
        raise BadProxyURL(f"longer than {MAX_PROXY_URL} characters")
    if any(c.isspace() or not c.isprintable() for c in raw):
        raise BadProxyURL("must not contain spaces or control characters")
    if "?" in raw or "#" in raw:
        raise BadProxyURL("must not have a query or a fragment (percent-encode ? and # in a password)")
    scheme, sep, rest = raw.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in PROXY_SCHEMES:
        raise BadProxyURL("must be scheme://[user:password@]host:port with scheme http, https or socks5")
    netloc, slash, path = rest.partition("/")
    if slash and path:
        raise BadProxyURL("must not have a path (percent-encode / in a password)")
    userinfo, at, hostport = netloc.rpartition("@")
    if at and not (_USERINFO.fullmatch(userinfo) and userinfo.partition(":")[0]):
        raise BadProxyURL("credentials must be user or user:password, with a user name, in ASCII letters, "
                          "digits, -._~!$&'()*+,;=@ and %XX escapes")
    try:
        parts = urlsplit(f"{scheme}://{hostport}")
        host, port = parts.hostname, parts.port
    except ValueError:
        raise BadProxyURL("has a malformed host or port (the port is a number from 1 to 65535)") from None
    if not host:
        raise BadProxyURL("has no host")
    if not port:
        raise BadProxyURL("needs a port from 1 to 65535 (e.g. :1080)")
    _check_proxy_host(host)
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{userinfo + '@' if at else ''}{shown}:{port}"


def _check_proxy_host(host: str) -> None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        labels = host.split(".")
        if len(host) > 253 or labels[-1].isdigit() or not all(_HOST_LABEL.fullmatch(x) for x in labels):
            raise BadProxyURL("host must be an IP address or an ASCII host name (IDNA names as xn--...)") from None
        return
    if "%" in host:
        raise BadProxyURL("host must not name a network interface (%zone)")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_multicast or ip.is_link_local:
        raise BadProxyURL("host must not be an unspecified, multicast or link-local address (169.254.0.0/16 "
                          "and fe80::/10 hold cloud metadata services, never a proxy)")


def _mask_userinfo(userinfo: str) -> str:
    # A user name without a password is the credential itself (a token): it is hidden too.
    user, colon, _ = userinfo.partition(":")
    return f"{user}:{MASK}" if colon else MASK


def mask_proxy_url(url: str | None) -> str | None:
    """What may be shown of a proxy URL: `scheme://user:***@host:port` (`***@` for a lone user name)."""
    if not url:
        return None
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostport = rest.rpartition("@")
    return f"{scheme}{sep}{_mask_userinfo(userinfo)}@{hostport}" if at else url


def redact_proxy(text: str, url: str | None) -> str:
    """`text` (an error reason, a log field) with the credentials of `url` masked wherever its
    `user:password@` appears: a transport may quote the proxy URL in an error."""
    userinfo, at, _ = (url or "").partition("://")[2].rpartition("@")
    return text.replace(f"{userinfo}@", f"{_mask_userinfo(userinfo)}@") if at and text else text


def short_reason(raw: str) -> str:
    """The readable head of a transport's error chain (`a: b: c` → `a`), at most SHORT_REASON_MAX characters."""
    head = raw.strip().splitlines()[0] if raw.strip() else raw
    head = head.split(": ", 1)[0] if len(head) > SHORT_REASON_MAX else head
    return head if len(head) <= SHORT_REASON_MAX else head[:SHORT_REASON_MAX - 1] + "…"


class SessionControl:
    def __init__(self, store: Store, supervisor: Supervisor, rates: RateGuard, ownership: Ownership, *,
                 data_dir: str, qr_wait: float, command_timeout: float, clock: Clock,
                 default_proxy_url: str | None = None) -> None:
        """`default_proxy_url` is GATEWAY_PROXY_URL as `parse_proxy_url` left it (None: unset)."""
        self._store = store
        self._supervisor = supervisor
        self._rates = rates
        self._ownership = ownership
        self._data_dir = data_dir
        self._qr_wait = qr_wait
        self._command_timeout = command_timeout
        self._clock = clock
        self._default_proxy_url = default_proxy_url

    def actor(self, session_id: str) -> SessionActor | None:
        return self._supervisor.get(session_id)

    def proxy_for(self, record: SessionRecord) -> tuple[str, ProxySource] | None:
        """The proxy the session connects through and where it comes from; None: directly."""
        if record.proxy_url:
            return record.proxy_url, "session"
        if self._default_proxy_url:
            return self._default_proxy_url, "default"
        return None

    def spec_for(self, record: SessionRecord) -> SessionSpec:
        proxy = self.proxy_for(record)
        return SessionSpec(session_id=record.id, phone_number=record.phone_number, data_dir=self._data_dir,
                           proxy_url=proxy[0] if proxy else None)

    async def start(self, record: SessionRecord, *, resume: bool = False) -> SessionActor:
        """Run the session's actor here, in its persisted state, with its own send rate and proxy.

        An actor that runs already is kept, unless it is offline and was made with another spec (its
        proxy or number changed since): it is replaced, so that this start connects as the record says."""
        self._rates.set_send_rate(record.id, record.send_limit)
        spec = self.spec_for(record)
        actor = self.actor(record.id)
        if actor is not None and actor.spec != spec and not _online(actor):
            await self._supervisor.stop(record.id)
        return await self._supervisor.start(spec, state=record.status, resume=resume)

    async def apply_proxy(self, record: SessionRecord) -> bool:
        """Give a session whose proxy changed its new one. Its actor here, if it is online, disconnects
        and connects again through the new proxy with its stored pairing (no new QR code); an offline
        one takes it on its next start. True when it reconnected."""
        actor = self.actor(record.id)
        spec = self.spec_for(record)
        if actor is None or actor.spec.proxy_url == spec.proxy_url or not _online(actor):
            return False
        log.info("reconnecting through a new proxy", extra={"fields": {
            "session": record.id, "proxy": mask_proxy_url(spec.proxy_url) or "none"}})
        with trio.move_on_after(self._command_timeout):
            try:
                await self._supervisor.disconnect(record.id)
            except (KeyError, trio.WouldBlock):
                pass  # stopping it below ends the connection all the same
        await self._supervisor.stop(record.id)
        await self.start(await self._fresh(record.id), resume=True)
        return True

    def nudge(self, session_id: str, due_in: float = 0.0) -> None:
        """Wake the sender of the session's actor here, if it runs here, by `due_in` seconds. Never blocks."""
        actor = self.actor(session_id)
        if actor is not None:
            actor.nudge(due_in)

    async def stop(self, session_id: str) -> None:
        """Stop the session's actor here (it keeps its persisted state)."""
        await self._supervisor.stop(session_id)

    async def restore(self) -> int:
        """Start an actor, connecting, for every session that was meant to be online (one node)."""
        count = 0
        for record in await self._store.list_sessions_to_connect():
            try:
                await self.start(record, resume=True)
                count += 1
            except Exception:
                log.exception("could not restore session", extra={"fields": {"session": record.id}})
        return count

    def require_connected(self, session_id: str) -> Transport:
        """The live transport of a CONNECTED session, else SessionNotConnected."""
        actor = self.actor(session_id)
        if actor is None or actor.state is not SessionState.CONNECTED:
            state = actor.state.value if actor else "not running"
            raise SessionNotConnected(f"Session is {state}; connect it first (POST .../connect)")
        return actor.transport

    async def connect(self, record: SessionRecord) -> tuple[SessionRecord, str | None]:
        # Wanted online before it is taken: a lease round must never see this node holding a
        # session that nobody wants and nothing runs, and release it under us.
        if not record.connect_on_start:
            await self._store.update_session(record.id, {"connect_on_start": True}, self._clock.now_ms())
        if not self._ownership.holds(record.id) and not await self._ownership.take(record.id):
            raise OwnedElsewhere()
        if record.status is not SessionState.CONNECTED or self.actor(record.id) is None:
            actor = await self.start(record)
            try:
                self._supervisor.send_nowait(record.id, Connect())
            except trio.WouldBlock:
                raise TryAgainLater("The session is busy; try again shortly") from None
            # Wait for this attempt: a QR, or an end reached after the Connect (an actor that starts
            # in its persisted FAILED or LOGGED_OUT state has not tried again yet).
            moved = False
            with trio.move_on_after(self._qr_wait):
                while actor.qr is None and not (moved and actor.state in _PAIRING_ENDED):
                    await actor.qr_changed.wait()
                    moved = True
            if actor.state is SessionState.FAILED:
                raw = redact_proxy(actor.reason or "no reason given", actor.spec.proxy_url)
                log.warning("connect failed", extra={"fields": {"session": record.id, "reason": raw}})
                raise ConnectionFailed(short_reason(raw), reason=raw)
        actor = self.actor(record.id)
        return await self._fresh(record.id), actor.qr if actor else None

    async def disconnect(self, record: SessionRecord) -> SessionRecord:
        at = self._clock.now_ms()
        await self._store.update_session(record.id, {"connect_on_start": False}, at)
        if self.actor(record.id) is not None:
            await self._ask(record.id, Disconnect())
        elif record.status in (SessionState.CONNECTED, SessionState.CONNECTING):
            # Persisted as live but no actor here (e.g. it crashed out): make the record honest.
            await self._store.update_session(record.id, {"status": SessionState.DISCONNECTED}, at)
        return await self._fresh(record.id)

    async def logout(self, record: SessionRecord) -> SessionRecord:
        """Unlink this device from WhatsApp. The session stays, LOGGED_OUT; connecting again shows a new QR."""
        await self._store.update_session(record.id, {"connect_on_start": False}, self._clock.now_ms())
        if self.actor(record.id) is None:
            if not self._ownership.holds(record.id) and not await self._ownership.take(record.id):
                raise OwnedElsewhere()
            await self.start(record)  # with its stored device, so that WhatsApp hears of the logout
        await self._ask(record.id, Logout())
        return await self._fresh(record.id)

    async def remove(self, record: SessionRecord) -> None:
        """Log the session out of WhatsApp (best effort) and stop its actor, before deletion."""
        if self.actor(record.id) is not None:
            with trio.move_on_after(self._command_timeout):
                try:
                    await self._supervisor.disconnect(record.id, logout=True)
                except (KeyError, trio.WouldBlock):
                    pass
            await self._supervisor.stop(record.id)
        await self._ownership.release(record.id)

    def qr(self, record: SessionRecord) -> str:
        actor = self.actor(record.id)
        if actor is None or actor.state is not SessionState.CONNECTING or actor.qr is None:
            state = actor.state if actor else record.status
            if state is SessionState.CONNECTED:
                raise QrNotAvailable("Session is CONNECTED: it is paired already, no QR code is needed.")
            if state is SessionState.CONNECTING:
                raise QrNotAvailable("Session is CONNECTING and its QR code has not arrived yet; retry in a moment.")
            reason = (actor.reason if actor else record.status_reason) or ""
            because = f" ({short_reason(reason)})" if reason else ""
            raise QrNotAvailable(f"Session is {state.value}{because}; a QR code exists only while it is "
                                 "CONNECTING and unpaired. Call connect to get one.")
        return actor.qr

    async def pairing_code(self, record: SessionRecord, phone_number: str) -> str:
        actor = self.actor(record.id)
        if actor is None or actor.state is SessionState.CONNECTED or not actor.wants_connection:
            raise Conflict("A pairing code can be requested only while the session is CONNECTING "
                           "and unpaired; call connect first")
        try:
            with trio.fail_after(PAIRING_DEADLINE):
                return await actor.transport.pair_phone(phone_number)
        except trio.TooSlowError:
            raise TryAgainLater("WhatsApp did not answer in time", retry_after=5) from None
        except NotConnected as exc:
            raise Conflict(f"Session is not ready for pairing: {exc.reason}") from None
        except TransportError as exc:  # WhatsApp refused the number: the caller's input is at fault
            raise ValidationError.at("$.phoneNumber", exc.reason) from None

    async def _ask(self, session_id: str, command: Any) -> None:
        try:
            self._supervisor.send_nowait(session_id, command)
        except KeyError:
            return
        except trio.WouldBlock:
            raise TryAgainLater("The session is busy; try again shortly") from None
        with trio.move_on_after(self._command_timeout):
            await command.done.wait()

    async def _fresh(self, session_id: str) -> SessionRecord:
        record = await self._store.get_session(session_id)
        if record is None:
            raise SessionNotFound()
        return record


def _online(actor: SessionActor) -> bool:
    """Connected, or trying to be: what a change of proxy must interrupt."""
    return actor.wants_connection or actor.state in (SessionState.CONNECTED, SessionState.CONNECTING)


class LocalGate:
    """One node: the session may send when its actor here is CONNECTED. No I/O."""

    def __init__(self, control: SessionControl) -> None:
        self._control = control

    async def require_sendable(self, session_id: str) -> None:
        self._control.require_connected(session_id)

    def nudge(self, session_id: str, due_in: float = 0.0) -> None:
        self._control.nudge(session_id, due_in)
