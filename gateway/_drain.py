"""Keep-alive connections survive answers sent before the request body was read.

The gateway answers some requests before it reads their body: 413 from
`Content-Length`, 401 before the body of an unauthenticated request, 415,
429, and the framework's 404 and 405. HTTP/1.1 then requires the rest of
the body to be read (or the connection closed) before the next request on the
connection, and hypercorn 0.18 does neither: a pooled client's next request
(httpx, requests/urllib3, undici) hangs. urllib3 writes headers and body
separately, so even an ordinary 401 triggered it.

`DrainUnreadBody` wraps Quart's ASGI app (behind the lean lane). When the app
starts an answer while the body is still arriving, the answer waits until the
rest has arrived (the framework's own reader takes it, within its body cap),
up to `DRAIN_LIMIT` more bytes within `DRAIN_TIMEOUT` seconds, so the client
reads its answer and reuses the connection. A bigger or slower body gets the
answer with `Connection: close` instead, and the server closes after sending
it. The lean lane, which reads bodies itself, drains what it did not read with
`drain_unread`, under the same limits, and closes the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

import trio

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

DRAIN_LIMIT: Final = 8 * 1024 * 1024  # bytes read and dropped to keep a connection; beyond, it is closed
DRAIN_TIMEOUT: Final = 5.0  # seconds the rest of a body may take to arrive
WATCH_KEY: Final = "gateway.body_watch"  # where the scope carries the request's `_BodyWatch`


class DrainUnreadBody:
    def __init__(self, app: App, *, limit: int = DRAIN_LIMIT, timeout: float = DRAIN_TIMEOUT) -> None:
        self._app = app
        self._limit = limit
        self._timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        body = _BodyWatch(self._limit)
        scope = {**scope, WATCH_KEY: body}

        async def watched_receive() -> Message:
            return body.saw(await receive())

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                if not body.complete.is_set():
                    # Quart keeps reading the body while the handler runs: wait for it to end.
                    body.draining = True
                    with trio.move_on_after(self._timeout):
                        await body.complete.wait()
                if not body.fully_read:
                    message = dict(message)
                    message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        await self._app(scope, watched_receive, guarded_send)


class _BodyWatch:
    """What of the request body has arrived; `complete` is set at its end, or once draining is too costly."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.complete = trio.Event()
        self.fully_read = False
        self.draining = False
        self._drained = 0

    def saw(self, message: Message) -> Message:
        if message["type"] != "http.request":
            self.complete.set()  # the client went away
        elif not message.get("more_body", False):
            self.fully_read = True
            self.complete.set()
        elif self.draining:
            self._drained += len(message.get("body", b""))
            if self._drained > self.limit:
                self.complete.set()
        return message


async def drain_unread(scope: Scope, receive: Receive, *, timeout: float = DRAIN_TIMEOUT) -> bool:
    """Read and drop what is left of the request body before answering (an app that reads no body of its own
    calls this). Past `DRAIN_LIMIT` (or the watch's limit) or `timeout` seconds it gives up and answers False:
    the answer must then close the connection (behind `DrainUnreadBody`, `guarded_send` sees to that)."""
    watch = scope.get(WATCH_KEY)
    if watch is not None and watch.complete.is_set():
        return watch.fully_read
    limit = watch.limit if watch is not None else DRAIN_LIMIT
    dropped = 0
    with trio.move_on_after(timeout):
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return True  # the end of the body, or the client left (nothing more will come)
            dropped += len(message.get("body", b""))
            if dropped > limit:
                break
    if watch is not None:
        watch.complete.set()  # not fully read: `guarded_send` closes the connection after the answer
    return False
