"""The gateway's domain errors: what went wrong, in the caller's terms, with no HTTP in sight.

Services raise these; the HTTP edge maps each of them (and each transport
error from `actors`) to a status, a code and the error envelope through one
table, `gateway.api._errors.ERRORS`. Every class here has a docstring saying
when it is raised; the data a caller needs (the field path of a bad value,
how long to wait) travels as attributes.
"""

from __future__ import annotations

import functools
import re
from typing import Any, ClassVar, Final

import msgspec
import msgspec.inspect as mi

from ratelimit import Decision

from ._requests import CONTENT_KEYS, PATTERN_MEANINGS, SendMessage


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    """One problem with the request, e.g. a field that failed validation."""

    message: str
    path: str | None = None


class GatewayError(Exception):
    """Base of every error reported to a caller on purpose.

    `details` name the fields at fault; `retry_after` (whole seconds) says that
    the same request may succeed later.
    """

    default_message: ClassVar[str] = "The request failed"

    def __init__(self, message: str | None = None, *, details: list[ErrorDetail] | None = None,
                 retry_after: int | None = None) -> None:
        self.message = message or self.default_message
        self.details = details or []
        self.retry_after = retry_after
        super().__init__(self.message)


class Unauthorized(GatewayError):
    """Credentials are missing, malformed, unknown or of the wrong kind."""

    default_message = "Missing or invalid auth"


class Forbidden(GatewayError):
    """The credential is valid but may not do this (e.g. a session key changing `sendLimit`)."""

    default_message = "Not allowed"


class NotFound(GatewayError):
    """The thing named (a message, a delivery, a contact) does not exist for this caller."""

    default_message = "Resource does not exist"


class SessionNotFound(NotFound):
    """The session does not exist, or the caller may not know that it exists."""

    default_message = "Session does not exist"


class SessionNotConnected(GatewayError):
    """The operation needs a CONNECTED session and this one is not."""

    default_message = "Session not connected"


class Conflict(GatewayError):
    """The request conflicts with the current state of what it names."""

    default_message = "Conflicts with the current state"


class QrNotAvailable(Conflict):
    """The session has no QR code now: it is not CONNECTING, or the code has not arrived yet."""

    default_message = "No QR code: the session is not waiting for a scan"


class ValidationError(GatewayError):
    """The body, a parameter or a query value is invalid; details name the path."""

    default_message = "Invalid request body or params"

    @classmethod
    def at(cls, path: str, message: str) -> ValidationError:
        return cls(f"{message} at {path}", details=[ErrorDetail(message=message, path=path)])


class IdempotencyKeyReused(GatewayError):
    """An Idempotency-Key came back within 24 h with a different request body."""

    default_message = "Idempotency-Key was used with another body"


class MediaToolUnavailable(GatewayError):
    """A media type needs ffmpeg/ffprobe on the gateway host and they are not installed."""

    default_message = "This media type needs ffmpeg on the gateway host"


class RateLimitExceeded(GatewayError):
    """A rate limit refused the request; `decision` says which and when to come back."""

    default_message = "Too many requests"

    def __init__(self, message: str, *, decision: Decision) -> None:
        super().__init__(message, retry_after=decision.retry_after_seconds)
        self.decision = decision


class WhatsAppError(GatewayError):
    """WhatsApp (the transport) failed or did not answer in time."""

    default_message = "WhatsApp refused or failed the request"


class ConnectionFailed(GatewayError):
    """Connecting a session failed at once (it is FAILED); `reason` is WhatsApp's own text, in full."""

    default_message = "Connecting the session failed"

    def __init__(self, summary: str, *, reason: str) -> None:
        super().__init__(f"Connecting the session failed: {summary}",
                         details=[ErrorDetail(message=reason, path=None)])
        self.reason = reason


class TryAgainLater(GatewayError):
    """Nothing is wrong with the request, but it cannot be served right now (busy, moving, starting)."""

    default_message = "Service unavailable"

    def __init__(self, message: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(message, retry_after=retry_after)


class OwnedElsewhere(TryAgainLater):
    """Cluster mode: another node took the session just as this one was about to run it.

    The HTTP edge routes the request again, to that node; only a request that
    cannot be routed again sees this error."""

    default_message = "Another node took this session a moment ago; retry"


def validation_error_from_msgspec(exc: msgspec.ValidationError | msgspec.DecodeError,
                                  prefix: str = "$", body: type | None = None) -> ValidationError:
    """Turn msgspec's "<message> - at `$.a.b`" into a detail with that path.

    `body` is the type that was decoded: an unknown field then lists the fields
    accepted at that path, which msgspec does not say."""
    text = str(exc)
    path = prefix
    inner = "$"
    msg = text
    head, sep, tail = text.rpartition(" - at `")
    if sep and tail.endswith("`"):
        msg = head
        inner = tail[:-1]
        path = prefix + inner[1:] if inner.startswith("$") else inner
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        msg = f"Malformed JSON: {msg}"
    for pattern, meaning in PATTERN_MEANINGS.items():
        if msg == f"Expected `str` matching regex {pattern!r}":
            msg = meaning
    unknown = _UNKNOWN_FIELD.fullmatch(msg)
    struct = _struct_at(body, inner) if unknown and body is not None else None
    if unknown and struct is not None:
        msg = f"unknown field `{unknown[1]}`; {accepted_fields(struct)}"
    return ValidationError(f"{msg} at {path}", details=[ErrorDetail(message=msg, path=path)])


_UNKNOWN_FIELD: Final = re.compile(r"Object contains unknown field `(.*)`")
_STEP: Final = re.compile(r"\.([^.\[]+)|\[(\d+)\]")  # one step of a msgspec path: `.name` or `[3]`


def accepted_fields(struct: type[msgspec.Struct]) -> str:
    """What an object of type `struct` may hold, in the API's spelling (camelCase)."""
    fields = msgspec.structs.fields(struct)
    if issubclass(struct, SendMessage):
        required = " and ".join(f"`{f.encode_name}`" for f in fields if f.required)
        content = ", ".join(f.encode_name for f in fields if f.encode_name in CONTENT_KEYS)
        optional = ", ".join(f.encode_name for f in fields if not f.required and f.encode_name not in CONTENT_KEYS)
        return f"a message has {required} and exactly one of: {content} (and optionally {optional})"
    return "accepted fields: " + ", ".join(f.encode_name for f in fields)


def _struct_at(body: type, path: str) -> type[msgspec.Struct] | None:
    """The Struct type that msgspec's `path` (`$`, `$.image`, `$[0].poll`) names inside `body`, if any."""
    node: Any = _type_info(body)
    for name, index in _STEP.findall(path):
        node = _unwrap(node)
        if name and isinstance(node, mi.StructType):
            node = next((f.type for f in node.fields if f.encode_name == name), None)
        elif index and isinstance(node, mi.CollectionType):
            node = node.item_type
        else:
            return None
    node = _unwrap(node)
    return node.cls if isinstance(node, mi.StructType) else None


@functools.cache  # one entry per request type: the module-level body types, a fixed handful
def _type_info(body: type) -> mi.Type:
    return mi.type_info(body)


def _unwrap(node: Any) -> Any:
    """Through `Annotated` metadata and `X | None` to the one member that holds fields or items."""
    if isinstance(node, mi.Metadata):
        node = node.type
    if isinstance(node, mi.UnionType):
        members = [t for t in map(_unwrap, node.types) if isinstance(t, (mi.StructType, mi.CollectionType))]
        if len(members) == 1:
            node = members[0]
    return node
