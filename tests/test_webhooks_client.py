"""The webhook HTTP client against real receivers on 127.0.0.1.

Timeouts run on a MockClock that jumps only after 20 ms of real idleness, so
loopback I/O always completes first and a test that waits 15 s takes 20 ms.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import h11
import pytest
import trio
import trio.testing
import trustme
from standardwebhooks.webhooks import Webhook
from tenacity.wait import wait_fixed

from gateway._events import make_event
from gateway._netguard import UnsafeURL
from gateway._security import new_webhook_secret
from gateway.webhooks import (
    CheckedResolver, DeliveryStatus, Failure, H11Client, MemoryDeliveryStore, PostError, RetryPolicy, new_delivery,
    open_dispatcher, webhook_headers,
)
from gateway.webhooks import _client as client_module

BODY = b'{"event":"message.sent","sessionId":"s1","timestamp":"2026-01-01T00:00:00.000Z","data":{}}'


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.02)


@dataclass
class Seen:
    connection: int
    target: str
    headers: dict[str, str]
    body: bytes


# What the receiver does with request number n (1-based): a status (answered and kept alive),
# or one of "close" (answer with Connection: close), "silent", "hangup", "big", "drop-after",
# "reset-after", "stall-body".
Behaviour = Callable[[int], "int | str"]


@dataclass
class Receiver:
    behaviour: Behaviour = lambda n: 200
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    closed: int = 0
    port: int = 0

    async def serve(self, nursery: trio.Nursery, ssl_context: ssl.SSLContext | None = None) -> None:
        if ssl_context is None:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        else:
            listeners = await trio.open_ssl_over_tcp_listeners(0, ssl_context, host="127.0.0.1")
        sock = listeners[0].socket if ssl_context is None else listeners[0].transport_listener.socket
        self.port = sock.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, self._handle, listeners)

    async def _handle(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        number = self.connections
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = None, b""
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await stream.receive_some(65536)
                        if not data and conn.their_state is h11.IDLE:
                            return
                        conn.receive_data(data)
                    elif isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:
                        return
                assert request is not None
                self.seen.append(Seen(number, request.target.decode(),
                                      {k.decode(): v.decode() for k, v in request.headers}, body))
                action = self.behaviour(len(self.seen))
                if action == "silent":
                    await trio.sleep_forever()
                if action == "hangup":
                    return
                if action == "stall-body":
                    await stream.send_all(conn.send(h11.Response(status_code=202, headers=[
                        ("content-length", "100")])) + conn.send(h11.Data(data=b"accepted, ")))
                    await trio.sleep_forever()
                headers = [("content-type", "text/plain")]
                payload = b"ok"
                if action == "close":
                    headers.append(("connection", "close"))
                if action == "big":
                    payload = b"x" * (1024 * 1024)
                status = action if isinstance(action, int) else 200
                await stream.send_all(conn.send(h11.Response(status_code=status, headers=[
                    *headers, ("content-length", str(len(payload)))])))
                await stream.send_all(conn.send(h11.Data(data=payload)) + conn.send(h11.EndOfMessage()))
                if action == "reset-after":
                    sock = stream.socket  # type: ignore[attr-defined]
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.close()  # an RST, not a FIN
                    return
                if action in ("close", "drop-after"):
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, h11.RemoteProtocolError):
            pass
        finally:
            self.closed += 1
            await trio.aclose_forcefully(stream)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/in?x=1"


async def post(client: H11Client, url: str, addresses=("127.0.0.1",), body: bytes = BODY):
    return await client.post(url, list(addresses), body, [("content-type", "application/json")])


async def test_keep_alive_reuses_one_connection(clock):
    receiver = Receiver()
    client = H11Client()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await receiver.serve(nursery)
            for _ in range(5):
                response = await post(client, receiver.url)
                assert (response.status, response.body_prefix, response.truncated) == (200, b"ok", False)
                assert response.header("Content-Type") == "text/plain"
            assert receiver.connections == 1
            assert [s.connection for s in receiver.seen] == [1] * 5
            first = receiver.seen[0]
            assert first.target == "/hooks/in?x=1"
            assert first.headers["host"] == f"127.0.0.1:{receiver.port}"
            assert first.headers["content-length"] == str(len(BODY)) and first.body == BODY
            stats = client.statistics()
            assert (stats.requests, stats.connections_opened, stats.connections_reused) == (5, 1, 4)
            await client.aclose()
            nursery.cancel_scope.cancel()


async def test_concurrent_posts_use_parallel_connections_then_pool_them(clock):
    receiver = Receiver()
    client = H11Client(max_idle_per_origin=3)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await receiver.serve(nursery)
            async with trio.open_nursery() as senders:
                for _ in range(6):
                    senders.start_soon(post, client, receiver.url)
            assert len(receiver.seen) == 6
            assert client.statistics().idle_connections <= 3
            nursery.cancel_scope.cancel()


async def test_connection_close_is_honoured(clock):
    receiver = Receiver(lambda n: "close" if n == 1 else 200)
    client = H11Client()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await receiver.serve(nursery)
            assert (await post(client, receiver.url)).status == 200
            assert (await post(client, receiver.url)).status == 200
            assert [s.connection for s in receiver.seen] == [1, 2]
            assert client.statistics().connections_reused == 0
            nursery.cancel_scope.cancel()


async def test_server_closing_an_idle_connection_is_noticed_before_reuse(clock):
    receiver = Receiver(lambda n: "drop-after" if n == 1 else 200)
    client = H11Client()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await receiver.serve(nursery)
            assert (await post(client, receiver.url)).status == 200
            while receiver.closed < 1:  # the server's FIN is on its way
                await trio.sleep(0.001)
            assert (await post(client, receiver.url)).status == 200
            # the request went once, on a fresh connection: nothing was sent on the dead one
            assert [s.connection for s in receiver.seen] == [1, 2]
            nursery.cancel_scope.cancel()


async def test_a_request_that_could_not_be_written_is_resent_once_on_a_fresh_connection(clock, monkeypatch):
    monkeypatch.setattr(client_module, "_peer_closed", lambda conn: False)  # lose the race on purpose
    receiver = Receiver(lambda n: "reset-after" if n == 1 else 200)
    client = H11Client()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await receiver.serve(nursery)
            assert (await post(client, receiver.url)).status == 200
            while receiver.closed < 1:
                await trio.sleep(0.001)
            assert (await post(client, receiver.url)).status == 200
            assert [s.connection for s in receiver.seen] == [1, 2]
            assert client.statistics().stale_retries == 1
            nursery.cancel_scope.cancel()


async def test_a_request_written_to_a_closing_connection_is_not_resent(clock, monkeypatch):
    """Once written whole it may have been received: it counts as an attempt, never a silent resend."""
    monkeypatch.setattr(client_module, "_peer_closed", lambda conn: False)
    receiver = Receiver(lambda n: "drop-after" if n == 1 else 200)
    client = H11Client()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await receiver.serve(nursery)
            assert (await post(client, receiver.url)).status == 200
            while receiver.closed < 1:
                await trio.sleep(0.001)
            with pytest.raises(PostError) as info:
                await post(client, receiver.url)
            assert info.value.failure is Failure.CONNECTION_LOST and info.value.maybe_delivered
            assert len(receiver.seen) == 1
            assert (await post(client, receiver.url)).status == 200  # the next one takes a fresh connection
            nursery.cancel_scope.cancel()


async def test_idle_connections_expire(clock):
    receiver = Receiver()
    client = H11Client(keepalive_expiry=4)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await receiver.serve(nursery)
            await post(client, receiver.url)
            await trio.sleep(3)
            await post(client, receiver.url)
            await trio.sleep(5)
            await post(client, receiver.url)
            assert [s.connection for s in receiver.seen] == [1, 1, 2]
            nursery.cancel_scope.cancel()


async def test_response_timeout_counts_as_maybe_delivered(clock):
    receiver = Receiver(lambda n: "silent")
    client = H11Client(timeout=15)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await receiver.serve(nursery)
            start = trio.current_time()
            with pytest.raises(PostError) as info:
                await post(client, receiver.url)
            assert info.value.failure is Failure.TIMEOUT and info.value.maybe_delivered
            assert trio.current_time() - start == pytest.approx(15, abs=0.5)
            assert len(receiver.seen) == 1  # sent once, never again by the client
            nursery.cancel_scope.cancel()


async def test_an_answer_whose_body_stalls_is_still_an_answer(clock):
    receiver = Receiver(lambda n: "stall-body" if n == 1 else 200)
    client = H11Client(timeout=15)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await receiver.serve(nursery)
            start = trio.current_time()
            response = await post(client, receiver.url)
            assert (response.status, response.body_prefix, response.truncated) == (202, b"accepted, ", True)
            assert trio.current_time() - start == pytest.approx(15, abs=0.5)
            assert (await post(client, receiver.url)).status == 200
            assert [s.connection for s in receiver.seen] == [1, 2]  # the stalled one was not pooled
            nursery.cancel_scope.cancel()


async def test_hangup_before_answer_is_not_retried_by_the_client(clock):
    receiver = Receiver(lambda n: "hangup")
    client = H11Client()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await receiver.serve(nursery)
            with pytest.raises(PostError) as info:
                await post(client, receiver.url)
            assert info.value.failure is Failure.CONNECTION_LOST and info.value.maybe_delivered
            assert len(receiver.seen) == 1
            nursery.cancel_scope.cancel()


async def test_connect_refused():
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    with trio.fail_after(30), pytest.raises(PostError) as info:
        await post(H11Client(), f"http://127.0.0.1:{port}/")
    assert info.value.failure is Failure.CONNECT and not info.value.maybe_delivered


async def test_connect_timeout(clock):
    # A listener whose accept queue is full and never drained: the kernel drops further SYNs.
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    port = full.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        client = H11Client(connect_timeout=5, timeout=15)
        with trio.fail_after(60):
            start = trio.current_time()
            with pytest.raises(PostError) as info:
                await post(client, f"http://127.0.0.1:{port}/")
            assert info.value.failure is Failure.CONNECT and not info.value.maybe_delivered
            assert "timed out" in str(info.value)
            assert trio.current_time() - start == pytest.approx(5, abs=0.5)
    finally:
        for s in fillers:
            s.close()
        full.close()


async def test_response_body_is_capped_and_its_connection_dropped(clock):
    receiver = Receiver(lambda n: "big" if n == 1 else 200)
    client = H11Client(max_response_body=1000)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await receiver.serve(nursery)
            response = await post(client, receiver.url)
            assert response.status == 200 and response.truncated and len(response.body_prefix) == 1000
            assert (await post(client, receiver.url)).status == 200
            assert [s.connection for s in receiver.seen] == [1, 2]
            nursery.cancel_scope.cancel()


async def test_connects_only_to_the_given_addresses(clock):
    """The URL's host is never resolved by the client: it dials the checked address and names the host."""
    receiver = Receiver()
    client = H11Client()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await receiver.serve(nursery)
            url = f"http://hooks.invalid:{receiver.port}/in"
            assert (await post(client, url, addresses=["127.0.0.1"])).status == 200
            assert receiver.seen[0].headers["host"] == f"hooks.invalid:{receiver.port}"
            # a pooled connection is reused only while its address is still among the checked ones
            with pytest.raises(PostError) as info:
                await post(client, url, addresses=["127.255.255.254"])  # nothing listens there
            assert info.value.failure in (Failure.CONNECT, Failure.TIMEOUT)
            assert len(receiver.seen) == 1
            nursery.cancel_scope.cancel()


async def test_ssrf_guard_refuses_loopback_unless_allowed(clock):
    receiver = Receiver()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await receiver.serve(nursery)
            with pytest.raises(UnsafeURL, match="non-public"):
                await CheckedResolver(allow_private=False).resolve(receiver.url)
            with pytest.raises(UnsafeURL, match="non-public"):
                await CheckedResolver(allow_private=False).resolve(f"http://localhost:{receiver.port}/")
            addresses = await CheckedResolver(allow_private=True).resolve(receiver.url)
            assert addresses == ["127.0.0.1"]
            assert (await post(H11Client(), receiver.url, addresses=addresses)).status == 200
            nursery.cancel_scope.cancel()


async def test_https_verifies_the_url_host_over_the_checked_address(clock):
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.example.test").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    receiver = Receiver()
    client = H11Client(ssl_context=client_ctx)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await receiver.serve(nursery, ssl_context=server_ctx)
            url = f"https://hooks.example.test:{receiver.port}/in"
            for _ in range(3):
                assert (await post(client, url)).status == 200
            assert receiver.connections == 1
            with pytest.raises(PostError) as info:  # the certificate does not name this host
                await post(client, f"https://other.example.test:{receiver.port}/in")
            assert info.value.failure is Failure.TLS and not info.value.maybe_delivered
            untrusting = H11Client(ssl_context=ssl.create_default_context())
            with pytest.raises(PostError) as info:
                await post(untrusting, url)
            assert info.value.failure is Failure.TLS
            nursery.cancel_scope.cancel()


async def test_end_to_end_through_the_dispatcher_verified_by_standardwebhooks():
    """Real client, real receiver, real clock: every delivery arrives once and verifies."""
    secret = new_webhook_secret()
    receiver = Receiver(lambda n: 503 if n % 7 == 0 else 200)  # a few fail once and are retried
    store = MemoryDeliveryStore()
    client = H11Client()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await receiver.serve(nursery)
            url = f"http://127.0.0.1:{receiver.port}/in"
            now = int(time.time() * 1000)
            ids = []
            for i in range(40):
                d = new_delivery(make_event("message.sent", "s1", {"n": i}), endpoint=url, secret=secret, now_ms=now)
                store.add(d)
                ids.append(d.id)
            async with open_dispatcher(store, client, RetryPolicy(wait=wait_fixed(0.05)),
                                       allow_private=True, per_endpoint=4) as dispatcher:
                dispatcher.wake()
                while store.count(DeliveryStatus.DELIVERED) < 40:
                    await trio.sleep(0.01)
            accepted = {}
            for seen in receiver.seen:
                Webhook(secret).verify(seen.body, seen.headers)
                assert seen.headers["content-type"] == "application/json"
                accepted.setdefault(seen.headers["webhook-id"], []).append(seen)
            assert set(accepted) == set(ids)
            assert dispatcher.statistics().delivered == 40
            assert receiver.connections <= 8  # kept alive, not one connection per delivery
            await client.aclose()
            nursery.cancel_scope.cancel()


def test_headers_helper_is_what_the_dispatcher_sends():
    headers = dict(webhook_headers("msg_x", 1, b"{}", new_webhook_secret()))
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
