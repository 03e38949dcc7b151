"""Media by URL: the SSRF guard on every redirect hop, size caps, content types, a slow server."""

from __future__ import annotations

from contextlib import asynccontextmanager

import httpx
import pytest
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from gateway import _media
from gateway._media import MediaError, fetch, resolve_mimetype, sniff

from .test_api_messages import PNG, Env, env  # noqa: F401  (the `env` fixture)


async def _lifespan(receive, send) -> None:
    while True:
        kind = (await receive())["type"].rsplit(".", 1)[-1]
        await send({"type": f"lifespan.{kind}.complete"})
        if kind == "shutdown":
            return


def routes_app(routes):
    """An ASGI app answering `routes[path] = (status, headers, body, delay)`."""

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        status, headers, body, delay = routes.get(scope["path"], (404, [], b"nope", 0))
        if delay:
            await trio.sleep(delay)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode(), v.encode()) for k, v in headers]})
        await send({"type": "http.response.body", "body": body})

    return app


@asynccontextmanager
async def media_server(routes):
    cfg = HyperConfig()
    cfg.bind = ["127.0.0.1:0"]
    cfg.accesslog = None
    async with trio.open_nursery() as nursery:
        [base] = await nursery.start(serve, routes_app(routes), cfg)
        yield base
        nursery.cancel_scope.cancel()


async def test_fetch_ok_and_type_checked():
    routes = {"/a.png": (200, [("content-type", "image/png")], PNG, 0)}
    async with media_server(routes) as base, httpx.AsyncClient() as client:
        data, declared = await fetch(client, base + "/a.png", "image", allow_private=True, timeout=5)
        assert data == PNG and resolve_mimetype("image", data, declared) == "image/png"
        with pytest.raises(MediaError, match="non-public"):
            await fetch(client, base + "/a.png", "image", allow_private=False, timeout=5)
        with pytest.raises(MediaError, match="HTTP 404"):
            await fetch(client, base + "/missing", "image", allow_private=True, timeout=5)


async def test_redirect_to_loopback_is_refused(monkeypatch):
    """A public URL answering 302 → http://127.0.0.1/... must not be followed."""
    real = _media.resolve_checked

    async def resolver(url, *, allow_private):
        if httpx.URL(url).host == "cdn.example.com":
            return ["93.184.216.34"]  # pretend the first hop is public
        return await real(url, allow_private=allow_private)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "cdn.example.com":
            return httpx.Response(302, headers={"Location": "http://127.0.0.1:9/admin.png"})
        raise AssertionError(f"followed the redirect to {request.url}")

    monkeypatch.setattr(_media, "resolve_checked", resolver)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(MediaError, match="refused.*non-public"):
            await fetch(client, "https://cdn.example.com/pic.png", "image", allow_private=False, timeout=5)


async def test_too_many_redirects():
    routes = {"/loop": (302, [("location", "/loop")], b"", 0)}
    async with media_server(routes) as base, httpx.AsyncClient() as client:
        with pytest.raises(MediaError, match="redirected more than"):
            await fetch(client, base + "/loop", "image", allow_private=True, timeout=5)


async def test_oversize_by_header_and_by_stream():
    big = b"\xff\xd8\xff" + bytes(5 * 1024 * 1024)
    routes = {"/big.jpg": (200, [("content-type", "image/jpeg")], big, 0),
              "/sticker.webp": (200, [], b"RIFF0000WEBP" + bytes(600_000), 0)}
    async with media_server(routes) as base, httpx.AsyncClient() as client:
        with pytest.raises(MediaError, match="5.0 MB"):
            await fetch(client, base + "/big.jpg", "image", allow_private=True, timeout=5)
        with pytest.raises(MediaError, match="sticker"):
            await fetch(client, base + "/sticker.webp", "sticker", allow_private=True, timeout=5)


def streamed_app(body: bytes, chunk: int):
    """An ASGI app streaming `body` in chunks, with no Content-Length (chunked)."""

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"image/jpeg")]})
        for at in range(0, len(body), chunk):
            await send({"type": "http.response.body", "body": body[at:at + chunk], "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


async def test_a_smaller_cap_of_the_callers_stops_the_download_there():
    """A group picture is at most 1 MiB: a URL is refused by its Content-Length, or once 1 MiB has been read,
    not after the image cap (5 MiB)."""
    routes = {"/big.jpg": (200, [("content-type", "image/jpeg"), ("content-length", "1200003")],
                           b"\xff\xd8\xff" + bytes(1_200_000), 0),
              "/ok.jpg": (200, [("content-type", "image/jpeg")], b"\xff\xd8\xff" + bytes(1_000_000), 0)}
    async with media_server(routes) as base, httpx.AsyncClient() as client:
        with pytest.raises(MediaError, match=r"is 1.1 MB; at most 1.0 MB is accepted here"):
            await fetch(client, base + "/big.jpg", "image", allow_private=True, timeout=5, max_bytes=1 << 20)
        data, _ = await fetch(client, base + "/ok.jpg", "image", allow_private=True, timeout=5, max_bytes=1 << 20)
        assert len(data) == 1_000_003
    cfg = HyperConfig()
    cfg.bind = ["127.0.0.1:0"]
    cfg.accesslog = None
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            [base] = await nursery.start(serve, streamed_app(bytes(3 << 20), 64 << 10), cfg)
            async with httpx.AsyncClient() as client:  # under the image cap (5 MiB), over the caller's
                with pytest.raises(MediaError, match="larger than 1.0 MB, the most accepted here"):
                    await fetch(client, base + "/s.jpg", "image", allow_private=True, timeout=5, max_bytes=1 << 20)
            nursery.cancel_scope.cancel()


async def test_slow_server_times_out():
    routes = {"/slow.png": (200, [("content-type", "image/png")], PNG, 10)}
    async with media_server(routes) as base, httpx.AsyncClient() as client:
        with trio.fail_after(5), pytest.raises(MediaError, match="longer than 0.5s"):
            await fetch(client, base + "/slow.png", "image", allow_private=True, timeout=0.5)


@pytest.mark.parametrize("kind,data,declared,expected", [
    ("image", PNG, "image/jpeg", "image/png"),  # the bytes win over a wrong header
    ("document", b"%PDF-1.7", None, "application/pdf"),
    ("document", b"anything", "text/csv", "text/csv"),
    ("audio", b"\x00\x00\x00\x18ftypM4A ", None, "audio/mp4"),
])
def test_mimetypes(kind, data, declared, expected):
    assert resolve_mimetype(kind, data, declared) == expected


@pytest.mark.parametrize("kind,data,declared", [
    ("image", b"GIF89a", "image/gif"),
    ("video", b"not a video", "video/x-msvideo"),
    ("sticker", b"\xff\xd8\xff", None),
])
def test_wrong_types_are_refused(kind, data, declared):
    with pytest.raises(MediaError, match="must be one of"):
        resolve_mimetype(kind, data, declared)


def test_sniff_unknown():
    assert sniff(b"hello") is None


async def test_url_media_through_the_api(tmp_path):
    """URL media is downloaded at send time; a slow or refused URL fails the message with a reason."""
    from gateway import Config, create_app
    from gateway.app import running_gateway

    from ._fake_transport import FakeFactory
    from .conftest import make_account
    from .test_api_sessions import BASE, bearer, create

    routes = {"/a.png": (200, [("content-type", "image/png")], PNG, 0),
              "/slow.png": (200, [], PNG, 10),
              "/redirect": (302, [("location", "http://169.254.169.254/latest/meta-data")], b"", 0)}
    config = Config(database_url=f"sqlite:///{tmp_path}/g.db", transport="sim", allow_private_urls=True,
                    media_timeout=0.5, send_min_gap=0, send_jitter=0)
    factory = FakeFactory(["connect"])
    app = create_app(config, transport_factory=factory)
    async with media_server(routes) as base, app.test_app():
        gw = running_gateway(app)
        account = await make_account(gw)
        client = app.test_client()
        s = await create(client, account)
        await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
        e = Env(app, factory, account, s)
        with trio.fail_after(5):
            while gw.control.actor(s["id"]).state.value != "CONNECTED":
                await trio.sleep(0.01)
        ok = await (await e.send({"to": "1234567890", "image": {"url": base + "/a.png", "caption": "c"}})).get_json()
        await e.wait_status(ok["messageId"], "sent")
        assert e.transport.sent[-1].content.data == PNG
        slow = await (await e.send({"to": "1234567890", "image": {"url": base + "/slow.png"}})).get_json()
        failed = await e.wait_status(slow["messageId"], "failed")
        assert "longer than 0.5s" in failed["statusReason"]


@pytest.mark.parametrize("kind,data,declared", [
    ("sticker", PNG, "image/png"),  # WhatsApp stickers are WebP
    ("video", bytes(range(256)) * 80, "video/mp4"),  # 20 KB that only claim to be a video
    ("audio", bytes(range(256)) * 80, "audio/ogg"),
    ("image", bytes(range(256)) * 80, "image/jpeg"),
])
def test_the_bytes_must_be_what_the_kind_needs(kind, data, declared):
    with pytest.raises(MediaError, match="must be one of"):
        resolve_mimetype(kind, data, declared)


def test_audio_without_a_container_is_recognised_by_its_frame_header():
    assert resolve_mimetype("audio", b"\xff\xf1\x50\x80" + bytes(60), None) == "audio/aac"
