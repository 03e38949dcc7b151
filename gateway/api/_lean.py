"""The lean lane: the JSON API's routes served by a plain ASGI callable in front of Quart.

Quart's request machinery (its Request and context objects, werkzeug's URL
map, signals, before/after hooks) costs about as much per request as all of
the gateway's own work on a send. So `LeanLane` wraps Quart's `asgi_app` (its
documented middleware point) and answers a request itself when its method and
path match one of the API's declared routes: it builds a `RequestInfo` from
the scope, reads the body under the route's cap, and runs the very function a
Quart view runs (`_routing.serve`), so auth, decoding, limits, cluster
routing and the handler are one piece of code whichever way a request comes.
Errors leave through the same table (`answer_for`), the answer carries the
same CORS headers (`CorsPolicy`) and is observed by the same metrics.

Anything else goes to Quart unchanged: pages, the docs, the WebSocket
stream, `HEAD` and `OPTIONS` (preflights), and a path that matches no route
(Quart answers its 404 or 405 in the envelope).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import trio

from .._drain import drain_unread
from .._request import RequestInfo
from ._cors import CorsPolicy
from ._errors import PayloadTooLarge, answer_for
from ._routing import JSON, Answered, RouteSpec, serve

if TYPE_CHECKING:
    from .._gateway import Gateway
    from .._metrics import GatewayMetrics

log = logging.getLogger("gateway.http")

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
_PARAM: Final = re.compile(r"<([a-z_]+)>")
_JSON_HEADER: Final = (b"content-type", JSON.encode())


class ClientGone(Exception):
    """The client went away before its body arrived."""


class _Node:
    """One path segment's position in the route tree: static children, parameter children, routes ending here."""

    __slots__ = ("static", "params", "routes")

    def __init__(self) -> None:
        self.static: dict[str, _Node] = {}
        self.params: list[tuple[str, _Node]] = []
        self.routes: dict[str, RouteSpec] = {}

    def add(self, segments: list[str], spec: RouteSpec) -> None:
        node = self
        for segment in segments:
            m = _PARAM.fullmatch(segment)
            if m is None:
                node = node.static.setdefault(segment, _Node())
                continue
            for name, child in node.params:
                if name == m.group(1):
                    node = child
                    break
            else:
                child = _Node()
                node.params.append((m.group(1), child))
                node = child
        node.routes[spec.method] = spec

    def find(self, segments: list[str], at: int, method: str, params: dict[str, str]
             ) -> tuple[RouteSpec, dict[str, str]] | None:
        """As werkzeug matches: segment by segment, a static segment before a parameter, backtracking."""
        if at == len(segments):
            spec = self.routes.get(method)
            return (spec, dict(params)) if spec is not None else None
        segment = segments[at]
        child = self.static.get(segment)
        if child is not None:
            found = child.find(segments, at + 1, method, params)
            if found is not None:
                return found
        if segment:
            for name, node in self.params:
                params[name] = segment
                found = node.find(segments, at + 1, method, params)
                del params[name]
                if found is not None:
                    return found
        return None


class LeanLane:
    def __init__(self, inner: ASGIApp, routes: list[RouteSpec], get_gateway: Callable[[], Gateway], *,
                 cors: CorsPolicy, metrics: GatewayMetrics) -> None:
        self._inner = inner
        self._get_gateway = get_gateway
        self._cors = cors
        self._metrics = metrics
        self._root = _Node()
        for spec in routes:
            self._root.add(spec.path.split("/"), spec)

    def match(self, method: str, path: str) -> tuple[RouteSpec, dict[str, str]] | None:
        """The route werkzeug would pick for `method` and `path`, with its parameters; None for any other
        request (Quart then answers it, or its 404 or 405)."""
        return self._root.find(path.split("/"), 0, method, {})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        found = self.match(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if found is None:
            await self._inner(scope, receive, send)
            return
        spec, params = found
        started = trio.current_time()
        req = RequestInfo.from_scope(scope)

        consumed = False

        async def read_body(cap: int) -> bytes:
            nonlocal consumed
            data = await _read_body(receive, cap)
            consumed = True
            return data

        try:
            response = await serve(spec, self._get_gateway, req, read_body, params)
            if isinstance(response, Answered):
                status, body = response.status, response.body
                headers = [(b"content-type", response.content_type.encode()),
                           (b"content-length", str(len(body)).encode())]
                headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
            else:  # a Quart Response (an image, a file, an answer proxied from the owner)
                status = response.status_code
                headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
                body = await response.get_data()
        except ClientGone:
            return
        except Exception as exc:  # noqa: BLE001 - every error leaves as the envelope
            answer = answer_for(exc)
            if answer.status == 500:  # raised on purpose nowhere: a bug, logged with its traceback
                log.error("unhandled error on %s %s", req.method, req.path, exc_info=exc)
            status, body = answer.status, answer.body
            headers = [_JSON_HEADER, (b"content-length", str(len(body)).encode())]
            headers += [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in answer.headers.items()]
        # Answered without the body (a GET, or refused first): the connection must stay usable, or be closed.
        if not consumed and not await drain_unread(scope, receive):
            headers.append((b"connection", b"close"))
        headers += self._cors.answer_headers(req.headers.get("Origin"), headers)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self._metrics.observe_request(req.method, spec.path, status, trio.current_time() - started)


async def _read_body(receive: Any, cap: int) -> bytes:
    """The whole request body, refused (413) as soon as it passes `cap` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            raise PayloadTooLarge(f"Request body is larger than {cap} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
