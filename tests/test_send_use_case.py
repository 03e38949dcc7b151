"""The send use case's order of checks: a refused send costs no I/O, and I/O refusals give tokens back.

The store, the DNS resolver and the media decoder are replaced by doubles that
record every call (and, where a call must not happen, fail the test), so
"no I/O" is observed, not assumed.
"""

from __future__ import annotations

import base64
import time

import msgspec
import pytest
import trio

from actors import Supervisor
from gateway import Config
from gateway._auth import SessionPrincipal
from gateway._clock import SYSTEM_CLOCK
from gateway._compose import Composer
from gateway._control import LocalGate, SessionControl
from gateway._limits import RateGuard
from gateway._ports import SINGLE_NODE
from gateway._requests import SendMessage
from gateway._send import Idempotency, Messages, Outcome
from gateway.errors import RateLimitExceeded, SessionNotConnected, ValidationError

from ._fake_transport import FakeFactory

WHO = SessionPrincipal(user_id="u1", session_id="s1", key_id="k1")
# Everything that would cost I/O at once: a URL to resolve, base64 to decode, a message to quote.
HEAVY = {"to": "+15551234567", "video": {"url": "https://media.example.com/cat.mp4"}, "replyTo": "m-earlier"}
HEAVY_DATA = {"to": "+15551234567", "image": {"data": base64.b64encode(b"\xff\xd8\xff" + b"0" * 64).decode()},
              "replyTo": "m-earlier"}


class Calls:
    def __init__(self) -> None:
        self.log: list[str] = []


class RecordingStore:
    """Records each store call; `get_message`, `get_idempotency` find nothing and `create_messages` succeeds."""

    def __init__(self, calls: Calls) -> None:
        self._calls = calls

    def __getattr__(self, name: str):
        async def call(*args, **kwargs):
            self._calls.log.append(f"store.{name}")
            return None

        return call


class OpenGate:
    """A session that can send (the rate and I/O steps are under test, not the state check)."""

    def __init__(self, calls: Calls) -> None:
        self._calls = calls
        self.due_in: list[float] = []

    async def require_sendable(self, session_id: str) -> None:
        return None

    def nudge(self, session_id: str, due_in: float = 0.0) -> None:
        self._calls.log.append("nudge")
        self.due_in.append(due_in)


@pytest.fixture
def calls(monkeypatch) -> Calls:
    calls = Calls()

    async def getaddrinfo(*args, **kwargs):
        calls.log.append("dns")
        return [(2, 1, 6, "", ("93.184.216.34", 443))]

    def decode_base64(data: str) -> bytes:
        calls.log.append("decode")
        return base64.b64decode(data)

    def which(tool: str) -> str:
        calls.log.append("which")
        return f"/usr/bin/{tool}"

    monkeypatch.setattr(trio.socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr("gateway._compose.decode_base64", decode_base64)
    monkeypatch.setattr("shutil.which", which)
    return calls


def service(calls: Calls, gate, rates: RateGuard) -> Messages:
    store = RecordingStore(calls)
    composer = Composer(store, allow_private_urls=False, needs_ffmpeg=True)  # type: ignore[arg-type]
    return Messages(store, gate, rates, composer, queue_ttl=3600, clock=SYSTEM_CLOCK)  # type: ignore[arg-type]


def answer(outcome: Outcome) -> bytes:
    return b'{"accepted": %d}' % len(outcome.records)


def request(body: dict) -> SendMessage:
    return msgspec.convert(body, SendMessage)


def disconnected_gate(calls: Calls) -> LocalGate:
    """The real one-node gate, over a supervisor that runs no actor for the session."""
    store = RecordingStore(calls)
    supervisor = Supervisor(FakeFactory([]), None)  # type: ignore[arg-type]
    control = SessionControl(store, supervisor, RateGuard(Config()), SINGLE_NODE,  # type: ignore[arg-type]
                             data_dir="/nonexistent", qr_wait=0, command_timeout=1, clock=SYSTEM_CLOCK)
    return LocalGate(control)


@pytest.mark.parametrize("body", [HEAVY, HEAVY_DATA])
async def test_a_send_to_a_disconnected_session_does_no_io(calls: Calls, body: dict) -> None:
    messages = service(calls, disconnected_gate(calls), RateGuard(Config()))
    with trio.fail_after(5):
        with pytest.raises(SessionNotConnected):
            await messages.send_one(WHO, request(body), None, answer)
        with pytest.raises(SessionNotConnected):
            await messages.send_batch(WHO, [msgspec.json.encode(body)], None, answer)
    assert calls.log == []


@pytest.mark.parametrize("body", [HEAVY, HEAVY_DATA])
async def test_a_rate_limited_send_does_no_io(calls: Calls, body: dict) -> None:
    rates = RateGuard(Config(limit_send="2/minute"))
    await rates.send(WHO.session_id, 2)  # the bucket is empty
    messages = service(calls, OpenGate(calls), rates)
    with trio.fail_after(5):
        with pytest.raises(RateLimitExceeded) as refused:
            await messages.send_one(WHO, request(body), None, answer)
        with pytest.raises(RateLimitExceeded):
            await messages.send_batch(WHO, [msgspec.json.encode(body)] * 2, None, answer)
    assert refused.value.decision.remaining == 0
    assert calls.log == []


async def test_an_allowed_send_does_its_io_after_the_checks(calls: Calls) -> None:
    """The control: the doubles above do see the I/O when the send goes through."""
    messages = service(calls, OpenGate(calls), RateGuard(Config()))
    with trio.fail_after(5):
        reply = await messages.send_one(WHO, request(HEAVY), None, answer)
        assert reply.status == 202 and reply.rate is not None
        assert calls.log == ["which", "which", "dns", "store.get_message", "store.create_messages", "nudge"]
        calls.log.clear()
        await messages.send_one(WHO, request(HEAVY_DATA), Idempotency.of("k", b"body"), answer)
    assert calls.log == ["store.get_idempotency", "decode", "store.get_message", "store.create_messages",
                         "nudge"]


async def test_tokens_come_back_when_validation_with_io_refuses(calls: Calls, monkeypatch) -> None:
    rates = RateGuard(Config(limit_send="2/minute"))
    messages = service(calls, OpenGate(calls), rates)
    bad = {"to": "+15551234567", "image": {"data": base64.b64encode(b"not an image").decode()}}
    with trio.fail_after(5):
        for _ in range(3):  # more refusals than the limit allows: each one's token came back
            with pytest.raises(ValidationError):
                await messages.send_one(WHO, request(bad), None, answer)
        batch = [msgspec.json.encode(bad), msgspec.json.encode({"to": "+15551234567", "text": "hi"})]
        reply = await messages.send_batch(WHO, batch, None, answer)
        assert reply.body == b'{"accepted": 1}'
        assert reply.rate is not None and reply.rate.remaining == 0  # two charged, the refused one given back
        await messages.send_one(WHO, request({"to": "+15551234567", "text": "hi"}), None, answer)
        with pytest.raises(RateLimitExceeded):
            await messages.send_one(WHO, request({"to": "+15551234567", "text": "hi"}), None, answer)


async def test_the_nudge_says_when_the_first_message_is_due(calls: Calls) -> None:
    """A sender idle until later need not look at the queue for a message scheduled after that."""
    gate = OpenGate(calls)
    messages = service(calls, gate, RateGuard(Config()))
    in_an_hour = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    in_two = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7200))
    later = {"to": "+15551234567", "text": "later", "sendAt": in_two}
    with trio.fail_after(5):
        await messages.send_one(WHO, request({"to": "+15551234567", "text": "soon", "sendAt": in_an_hour}), None,
                                answer)
        await messages.send_batch(WHO, [msgspec.json.encode(later), msgspec.json.encode(later)], None, answer)
        await messages.send_batch(WHO, [msgspec.json.encode(later), b'{"to": "+15551234567", "text": "now"}'], None,
                                  answer)
        await messages.send_one(WHO, request({"to": "+15551234567", "text": "now"}), None, answer)
    first, batch, mixed, now = gate.due_in
    assert 3598 < first <= 3600  # the whole second is dropped from sendAt: within 2 s of an hour
    assert 7198 < batch <= 7200
    assert mixed == 0 and now == 0
