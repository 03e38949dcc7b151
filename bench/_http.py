"""A lean HTTP/1.1 client over trio streams, for the load generator and bench's own calls.

Why not httpx or h11: on this machine an httpx client manages about 700
requests/s per core and h11 over trio about 3,000, which is slower than the
servers bench measures. Requests here are pre-built bytes and responses are
parsed just enough for a benchmark: the status line, `content-length`,
chunked bodies and `connection: close`. Servers under test are hypercorn
(gateway and baseline), whose answers always fit that.

`read_message` is shared with the webhook receiver, which parses requests
with the same framing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import trio

RECEIVE_SIZE: Final = 65536
MAX_HEAD: Final = 64 * 1024


class ProtocolError(Exception):
    """The peer sent something this parser does not accept, or closed mid-message."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"bench speaks plain http://HOST:PORT only, got {url!r}")
        return cls(parts.hostname, parts.port or 80)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def build_request(endpoint: Endpoint, method: str, path: str, *, headers: Mapping[str, str] | None = None,
                  body: bytes | None = None, json_body: Any = None) -> bytes:
    """The request's bytes, ready to send as many times as needed."""
    if json_body is not None:
        body = json.dumps(json_body, separators=(",", ":")).encode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: {endpoint.host}:{endpoint.port}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if json_body is not None:
        lines.append("Content-Type: application/json")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


class MessageReader:
    """Reads HTTP/1.1 messages (requests or responses) from one stream, keeping leftover bytes."""

    __slots__ = ("buf", "stream")

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def _fill(self) -> None:
        data = await self.stream.receive_some(RECEIVE_SIZE)
        if not data:
            raise ProtocolError("connection closed")
        self.buf += data

    async def read_message(self) -> tuple[bytes, bytes, bytes]:
        """(start line, lower-cased header block, body)."""
        buf = self.buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            if len(buf) > MAX_HEAD:
                raise ProtocolError("header block too large")
            await self._fill()
            buf = self.buf
        head = bytes(buf[:end])
        del buf[:end + 4]
        line_end = head.find(b"\r\n")
        start, headers = (head, b"") if line_end < 0 else (head[:line_end], head[line_end + 2:].lower())
        i = headers.find(b"content-length:")
        if i >= 0:
            j = headers.find(b"\r\n", i)
            length = int(headers[i + 15:j if j >= 0 else None])
            while len(self.buf) < length:
                await self._fill()
            body = bytes(self.buf[:length])
            del self.buf[:length]
            return start, headers, body
        if b"transfer-encoding: chunked" in headers:
            return start, headers, await self._chunked()
        return start, headers, b""

    async def _chunked(self) -> bytes:
        out = bytearray()
        while True:
            while (end := self.buf.find(b"\r\n")) < 0:
                await self._fill()
            size = int(bytes(self.buf[:end]).split(b";")[0], 16)
            del self.buf[:end + 2]
            while len(self.buf) < size + 2:
                await self._fill()
            out += self.buf[:size]
            del self.buf[:size + 2]
            if size == 0:
                return bytes(out)


@dataclass(frozen=True)
class Response:
    status: int
    headers: bytes  # lower-cased header block
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpConnection:
    """One keep-alive connection; reconnects by itself after the server closes it."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._stream: trio.SocketStream | None = None
        self._reader: MessageReader | None = None

    async def request(self, raw: bytes) -> Response:
        for attempt in (1, 2):
            if self._stream is None:
                self._stream = await trio.open_tcp_stream(self.endpoint.host, self.endpoint.port)
                self._reader = MessageReader(self._stream)
            assert self._reader is not None
            try:
                await self._stream.send_all(raw)
                start, headers, body = await self._reader.read_message()
            except (trio.BrokenResourceError, ProtocolError, OSError):
                await self.aclose()
                if attempt == 2:
                    raise
                continue  # a keep-alive connection the server had closed: once more on a new one
            if b"connection: close" in headers:
                await self.aclose()
            return Response(int(start[9:12]), headers, body)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        if self._stream is not None:
            stream, self._stream, self._reader = self._stream, None, None
            with trio.move_on_after(1):
                await stream.aclose()


class Client:
    """Bench's own API calls: JSON in and out, with up to `concurrency` connections for `many`."""

    def __init__(self, base_url: str, *, headers: Mapping[str, str] | None = None) -> None:
        self.endpoint = Endpoint.from_url(base_url)
        self.headers = dict(headers or {})
        self._idle: list[HttpConnection] = []

    def build(self, method: str, path: str, json_body: Any = None, headers: Mapping[str, str] | None = None
              ) -> bytes:
        return build_request(self.endpoint, method, path, headers={**self.headers, **(headers or {})},
                             json_body=json_body)

    async def send(self, raw: bytes, timeout: float = 60.0) -> Response:
        conn = self._idle.pop() if self._idle else HttpConnection(self.endpoint)
        try:
            with trio.fail_after(timeout):
                response = await conn.request(raw)
        except BaseException:
            await conn.aclose()
            raise
        self._idle.append(conn)
        return response

    async def call(self, method: str, path: str, json_body: Any = None, *,
                   headers: Mapping[str, str] | None = None, timeout: float = 60.0) -> Response:
        return await self.send(self.build(method, path, json_body, headers), timeout)

    async def many(self, requests: Sequence[bytes], concurrency: int, *, on_done: Any = None) -> list[Response]:
        """Send every request, `concurrency` at a time; answers in request order."""
        results: list[Response | None] = [None] * len(requests)
        position = iter(range(len(requests)))

        async def lane() -> None:
            for i in position:
                results[i] = await self.send(requests[i])
                if on_done is not None:
                    on_done(results[i])

        async with trio.open_nursery() as nursery:
            for _ in range(max(1, min(concurrency, len(requests)))):
                nursery.start_soon(lane)
        return [r for r in results if r is not None]

    async def aclose(self) -> None:
        while self._idle:
            await self._idle.pop().aclose()
