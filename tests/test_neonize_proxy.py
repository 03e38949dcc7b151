"""A session's proxy on the neonize transport: the URL check and masking (pure), the ProxySettings every
connect() gets over the fake client, refusals (ours and whatsmeow's) as ConnectFailed that will not be
retried, and no password in any reason or log line; then real Go, offline: why `set_proxy_address` cannot
be used before a connect, and a dial through a proxy that is not there."""

from __future__ import annotations

import logging
import socket
import uuid
from typing import Any

import pytest
import trio

pytest.importorskip("neonize.proto.Neonize_pb2")

from neonize.client import ProxySettings  # noqa: E402
from neonize.exc import NeonizeError  # noqa: E402

from actors import ConnectFailed, SessionSpec  # noqa: E402
from actors.neonize import GO_LOCK, NeonizeTransport, NeonizeTransportFactory, RWLock, _proxy  # noqa: E402

from .test_neonize_transport import FakeClient, Runner  # noqa: E402

SECRET = "s3cr%40t!pw"  # percent-encoded "@": the decoded form must not leak either
URL = f"socks5://bob:{SECRET}@proxy.example:1080"


def with_proxy(fake: FakeClient, url: str | None) -> NeonizeTransport:
    spec = SessionSpec(session_id=f"proxy-{uuid.uuid4().hex[:8]}", proxy_url=url)
    return NeonizeTransport(spec, client=fake, lock=RWLock(), stop_timeout=5.0)


def assert_no_secret(text: str) -> None:
    for piece in (SECRET, "s3cr@t!pw", "bob:"):
        assert piece not in text


# -- pure -----------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["http://proxy.example:3128", "https://u:p@10.0.0.1:8443", URL,
                                 "SOCKS5://[2001:db8::1]:1080", "http://proxy.example/"])
def test_http_https_and_socks5_urls_pass(url):
    _proxy.check(url)


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://bob:hunter22@proxy.example:21", "'ftp' is not one of http, https, socks5"),
    ("socks4://bob:hunter22@proxy.example:1080", "'socks4' is not one of"),
    ("bob:hunter22@proxy.example:1080", "must start with"),  # no scheme: its "scheme" would be the user
    ("http://bob:hunter22@proxy.example:99999", "not a valid URL"),
    ("http://bob:hunter22@[::1:1080", "not a valid URL"),
    ("http://bob:hunter22@:8080", "names no host"),
    ("http://bob:hunter22@proxy.example:8080\n", "control characters"),
])
def test_other_urls_are_refused_for_good_without_their_secret(url, why):
    with pytest.raises(ConnectFailed) as exc:
        _proxy.check(url)
    assert why in exc.value.reason and not exc.value.retryable
    assert "hunter22" not in exc.value.reason and "bob" not in exc.value.reason


def test_masking_hides_credentials_and_keeps_where_the_proxy_is():
    assert _proxy.masked(URL) == "socks5://***@proxy.example:1080"
    assert _proxy.masked("HTTP://proxy.example:3128/x?y") == "http://proxy.example:3128"
    assert _proxy.masked("http://bob:pa/ss@w@rd@proxy.example:8080") == "http://***@proxy.example:8080"
    assert _proxy.masked("bob:pw@host") == "<proxy URL>"


def test_scrub_removes_the_url_and_each_form_of_its_password():
    go = f'parse "{URL}": invalid port'  # Go's url.Parse error quotes the whole URL
    assert _proxy.scrub(go, URL) == 'parse "socks5://***@proxy.example:1080": invalid port'
    text = _proxy.scrub(f"auth bob:{SECRET} / s3cr@t!pw / {SECRET}", URL)
    assert_no_secret(text)
    quoted = 'http://u:a"b\\c@h:1'  # Go's %q escapes `"` and `\\`
    assert _proxy.scrub('parse "http://u:a\\"b\\\\c@h:1": bad', quoted) == 'parse "http://***@h:1": bad'
    assert _proxy.scrub("nothing secret here", None) == "nothing secret here"
    assert _proxy.refused_by_go('unsupported proxy scheme "socks4"') and _proxy.refused_by_go('parse "x": bad')
    assert not _proxy.refused_by_go("failed to dial whatsapp web websocket: EOF")


# -- over the fake client ---------------------------------------------------------------------

async def test_every_connect_gets_the_proxy_settings():
    with trio.fail_after(10):
        fake = FakeClient(connect_error="failed to dial whatsapp web websocket: proxyconnect tcp: "
                                        "dial tcp 10.0.0.1:1080: connect: connection refused")
        t = with_proxy(fake, URL)
        send, _ = trio.open_memory_channel[Any](4)
        for _ in range(2):
            with pytest.raises(ConnectFailed) as exc:
                await t.run(send)
            assert exc.value.retryable and "proxyconnect" in exc.value.reason  # a proxy that is down: retry
        assert fake.proxies == [ProxySettings(proxy_address=URL)] * 2
        without = FakeClient(connect_error="failed to dial whatsapp web websocket: EOF")
        with pytest.raises(ConnectFailed):
            await with_proxy(without, None).run(send)
        assert without.proxies == [None]


async def test_a_refused_url_never_reaches_go_and_is_not_retried(caplog):
    caplog.set_level(logging.DEBUG)
    with trio.fail_after(10):
        fake = FakeClient()
        t = with_proxy(fake, "ftp://bob:hunter22@proxy.example:21")
        send, _ = trio.open_memory_channel[Any](4)
        with pytest.raises(ConnectFailed) as exc:
            await t.run(send)
        assert not exc.value.retryable and "'ftp'" in exc.value.reason
        assert fake.connects == 0 and "hunter22" not in caplog.text


async def test_whatsmeow_refusing_the_proxy_ends_for_good_with_a_masked_reason(caplog):
    caplog.set_level(logging.DEBUG)
    with trio.fail_after(10):
        fake = FakeClient(connect_error=f'parse "{URL}": invalid character " " in host name')
        t = with_proxy(fake, URL)
        send, _ = trio.open_memory_channel[Any](4)
        runner = Runner()
        async with trio.open_nursery() as nursery:
            await nursery.start(runner, t, send)
            await runner.done.wait()
        err = runner.error
        assert isinstance(err, ConnectFailed) and not err.retryable
        assert err.reason.startswith("proxy socks5://***@proxy.example:1080 refused: parse ")
        assert_no_secret(err.reason)
        assert_no_secret(caplog.text)


async def test_a_go_error_naming_the_proxy_credentials_is_scrubbed():
    with trio.fail_after(10):
        fake = FakeClient(connect_error=f"failed to dial whatsapp web websocket: socks connect bob:{SECRET}@"
                                        "proxy.example:1080: username/password authentication failed")
        t = with_proxy(fake, URL)
        send, _ = trio.open_memory_channel[Any](4)
        with pytest.raises(ConnectFailed) as exc:
            await t.run(send)
        assert exc.value.retryable and "***@proxy.example:1080" in exc.value.reason
        assert_no_secret(exc.value.reason)


async def test_the_factory_hands_a_changed_proxy_to_the_next_run(tmp_path):
    factory = NeonizeTransportFactory(data_dir=str(tmp_path))
    session = f"respec-{uuid.uuid4().hex[:8]}"
    t = factory.create(SessionSpec(session_id=session))
    again = factory.create(SessionSpec(session_id=session, proxy_url=URL))
    assert again is t and t.spec.proxy_url == URL and t._proxy_settings() == ProxySettings(proxy_address=URL)
    with pytest.raises(ValueError):
        t.respec(SessionSpec(session_id="another"))
    await factory.aclose()


# -- real Go, offline -----------------------------------------------------------------------------

def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_real_go_applies_the_proxy_only_through_connect(tmp_path):
    """neonize's `set_proxy_address` finds no Go client before a connect (nor after its stop); a connect
    given ProxySettings dials through the proxy: here nothing listens, so the dial fails at the proxy."""
    with trio.fail_after(60):
        factory = NeonizeTransportFactory(data_dir=str(tmp_path))
        url = f"socks5://bob:{SECRET}@127.0.0.1:{closed_port()}"
        t = factory.create(SessionSpec(session_id=f"realproxy-{uuid.uuid4().hex[:8]}", proxy_url=url))
        with GO_LOCK.read(), pytest.raises(NeonizeError, match="client not found"):
            t.client.set_proxy_address(url)
        send, _ = trio.open_memory_channel[Any](4)
        runner = Runner()
        async with trio.open_nursery() as nursery:
            await nursery.start(runner, t, send)
            with trio.move_on_after(20):
                await runner.done.wait()
            if not runner.done.is_set():
                await t.disconnect()
                pytest.skip("the dial through a closed local port did not fail here")
        err = runner.error
        assert isinstance(err, ConnectFailed) and err.retryable
        assert "socks connect tcp 127.0.0.1:" in err.reason and "connection refused" in err.reason
        assert_no_secret(err.reason)
        await factory.aclose()


def test_a_session_spec_never_shows_the_proxy_password():
    from actors._transport import SessionSpec

    spec = SessionSpec(session_id="s1", phone_number="+15550001111", proxy_url="socks5://bob:s3cret@10.0.0.1:1080")
    for text in (repr(spec), str(spec), f"{[spec]}"):
        assert "s3cret" not in text and "bob" not in text
        assert "proxy_url='socks5://***@10.0.0.1:1080'" in text and "session_id='s1'" in text
        assert "phone_number='+15550001111'" in text and "data_dir=" in text
    assert spec.proxy_url == "socks5://bob:s3cret@10.0.0.1:1080"  # the transport still gets it whole
    assert "proxy_url=None" in repr(SessionSpec(session_id="s2"))
