"""Reason phrases on the HTTP/1.1 status lines hypercorn writes (`HTTP/1.1 409 Conflict`).

ASGI has no field for a reason phrase, and hypercorn's h11 protocol builds
every `h11.Response` without one, so h11 writes `HTTP/1.1 409 ` with an empty
reason. RFC 9112 allows that, but people and tools read status lines (`curl -v`,
proxy and load-balancer logs, health checks that match `200 OK`, clients that
show the reason as the error text), and a blank one reads as a broken server.

hypercorn has no setting or hook for it, so `install_reason_phrases()` wraps
`H11Protocol._send_h11_event`: the one method through which hypercorn sends
every HTTP/1.1 event, in every release our pin allows (0.17.0 to 0.18.0).
That covers the app's answers, hypercorn's own error answers (400, 431 from h11)
and `100 Continue`. The wrapper gives an `h11.Response` or
`h11.InformationalResponse` whose reason is empty the `http.HTTPStatus` phrase
for its code and passes every other event through untouched; a code HTTPStatus
does not know keeps its empty reason. A hypercorn without that method keeps
serving as before, with a warning in the log. HTTP/2 has no reason phrase.

`serve()` installs it once per process, before hypercorn starts; installing
again changes nothing.
"""

from __future__ import annotations

import functools
import inspect
import logging
from http import HTTPStatus
from typing import Any, Final

import h11

log = logging.getLogger(__name__)

REASONS: Final[dict[int, bytes]] = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}
_WRAPPED: Final = "_gateway_adds_reason_phrases"  # marks our wrapper, so a second install is a no-op


def with_reason(event: Any) -> Any:
    """`event` with the standard reason phrase if it is a status line without one; else `event` itself."""
    if not isinstance(event, (h11.Response, h11.InformationalResponse)) or event.reason:
        return event
    reason = REASONS.get(event.status_code)
    if reason is None:
        return event
    return type(event)(headers=event.headers, status_code=event.status_code,
                       http_version=event.http_version, reason=reason)


def install_reason_phrases() -> bool:
    """Make hypercorn's HTTP/1.1 status lines carry reason phrases.

    False, with a warning, when this hypercorn has no `_send_h11_event` to wrap."""
    from hypercorn.protocol.h11 import H11Protocol

    send = getattr(H11Protocol, "_send_h11_event", None)
    if send is None or not inspect.iscoroutinefunction(send):
        log.warning("hypercorn has no H11Protocol._send_h11_event: HTTP/1.1 status lines have no reason phrase")
        return False
    if getattr(send, _WRAPPED, False):
        return True

    @functools.wraps(send)
    async def send_with_reason(self: H11Protocol, event: Any) -> None:
        await send(self, with_reason(event))

    setattr(send_with_reason, _WRAPPED, True)
    H11Protocol._send_h11_event = send_with_reason  # type: ignore[method-assign]
    return True
