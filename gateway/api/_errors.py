"""The one table from errors to HTTP: status, code, message and the envelope.

Every error answer has the shape
`{"success": false, "error": {"code": ..., "message": ..., "details": [...]}}`.
Services raise domain errors (`gateway.errors`), transports raise theirs
(`actors.TransportError` and its kinds), and the edge raises the few that only
HTTP has (a body too large, a route that does not exist). `answer_for` is the
only place any of them becomes a status; the OpenAPI document reads the same
table, so the documented codes are the answered ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, NamedTuple

import msgspec

from actors import GroupNotFound, MediaToolMissing, NotAuthorized, NotConnected, RecipientError, TransportError
from ratelimit import rate_limit_headers

from ..errors import (
    Conflict, ConnectionFailed, ErrorDetail, Forbidden, GatewayError, IdempotencyKeyReused, MediaToolUnavailable, NotFound,
    QrNotAvailable, RateLimitExceeded, SessionNotConnected, SessionNotFound, TryAgainLater, Unauthorized,
    ValidationError, WhatsAppError,
)


class ErrorBody(msgspec.Struct):
    code: str
    message: str
    details: list[ErrorDetail] = []


class ErrorEnvelope(msgspec.Struct):
    error: ErrorBody
    success: bool = False


# -- errors only the HTTP edge raises --------------------------------------------------

class HttpError(GatewayError):
    """Raised by the edge itself, about the HTTP request rather than what it asks for."""


class RouteNotFound(HttpError):
    """No route has this path."""

    default_message = "No such route"


class MethodNotAllowed(HttpError):
    """The path exists, the method does not; `allow` lists the methods that do."""

    default_message = "Method not allowed on this route"

    def __init__(self, message: str, *, allow: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.allow = sorted(allow)


class PayloadTooLarge(HttpError):
    """The body is over the route's cap (checked from Content-Length before it is read, and after)."""

    default_message = "Request body too large"


class UnsupportedMediaType(HttpError):
    """A JSON route got a body declared as something else (text/plain, a form, XML, ...)."""

    default_message = "The body must be application/json"


class InternalError(HttpError):
    """Anything not raised on purpose; its traceback is logged, never sent."""

    default_message = "Internal server error"


class OtherHttpError(HttpError):
    """A protocol-level refusal from the framework that has no entry of its own (its status and name kept)."""

    def __init__(self, status: int, name: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = name.upper().replace(" ", "_")


class Mapping(NamedTuple):
    status: int
    code: str
    description: str


# Looked up along each exception's MRO, so a subclass without an entry answers as its parent.
ERRORS: Final[dict[type[BaseException], Mapping]] = {
    Unauthorized: Mapping(401, "UNAUTHORIZED", "Missing or invalid auth"),
    Forbidden: Mapping(403, "FORBIDDEN", "Not allowed"),
    NotFound: Mapping(404, "NOT_FOUND", "Resource does not exist"),
    RouteNotFound: Mapping(404, "NOT_FOUND", "No such route"),
    SessionNotFound: Mapping(404, "SESSION_NOT_FOUND", "Session does not exist"),
    MethodNotAllowed: Mapping(405, "METHOD_NOT_ALLOWED", "Method not allowed on this route"),
    SessionNotConnected: Mapping(409, "SESSION_DISCONNECTED", "Session not connected"),
    NotConnected: Mapping(409, "SESSION_DISCONNECTED", "Session not connected"),
    Conflict: Mapping(409, "CONFLICT", "Conflicts with the current state"),
    QrNotAvailable: Mapping(409, "QR_NOT_AVAILABLE", "No QR code: the session is not waiting for a scan"),
    PayloadTooLarge: Mapping(413, "PAYLOAD_TOO_LARGE", "Request body too large"),
    UnsupportedMediaType: Mapping(415, "UNSUPPORTED_MEDIA_TYPE", "The body must be application/json"),
    ValidationError: Mapping(422, "VALIDATION_ERROR", "Invalid request body or params"),
    RecipientError: Mapping(422, "VALIDATION_ERROR", "WhatsApp refused the recipient or group"),
    GroupNotFound: Mapping(404, "GROUP_NOT_FOUND", "No such group, or this account is not in it"),
    NotAuthorized: Mapping(403, "FORBIDDEN", "WhatsApp refused: this account may not do that (not an admin?)"),
    IdempotencyKeyReused: Mapping(422, "IDEMPOTENCY_KEY_REUSED", "Idempotency-Key was used with another body"),
    MediaToolUnavailable: Mapping(422, "MEDIA_TOOL_MISSING", "This media type needs ffmpeg on the gateway host"),
    MediaToolMissing: Mapping(422, "MEDIA_TOOL_MISSING", "This media type needs ffmpeg on the gateway host"),
    RateLimitExceeded: Mapping(429, "RATE_LIMITED", "Too many requests"),
    InternalError: Mapping(500, "INTERNAL_ERROR", "Internal server error"),
    WhatsAppError: Mapping(502, "WHATSAPP_ERROR", "WhatsApp refused or failed the request"),
    ConnectionFailed: Mapping(502, "CONNECT_FAILED", "Connecting the session failed"),
    TransportError: Mapping(502, "WHATSAPP_ERROR", "WhatsApp refused or failed the request"),
    TryAgainLater: Mapping(503, "SERVICE_UNAVAILABLE", "Service unavailable"),
}
_INTERNAL: Final = ERRORS[InternalError]
_ENCODER: Final = msgspec.json.Encoder()


def mapping_of(kind: type[BaseException]) -> Mapping:
    for cls in kind.__mro__:
        found = ERRORS.get(cls)
        if found is not None:
            return found
    return _INTERNAL


class Described(NamedTuple):
    status: int
    code: str
    message: str
    details: list[ErrorDetail]
    headers: dict[str, str]


class Answer(NamedTuple):
    status: int
    body: bytes
    headers: dict[str, str]


def describe(exc: BaseException) -> Described:
    """Status, code, message, details and headers for any error (unknown ones: a 500, nothing leaked)."""
    if isinstance(exc, OtherHttpError):
        status, code = exc.status, exc.code
    else:
        status, code, _ = mapping_of(type(exc))
    return Described(status, code, *_message(exc))


def answer_for(exc: BaseException) -> Answer:
    """The error answer: its status, its envelope, encoded, and its headers."""
    d = describe(exc)
    return Answer(d.status, _ENCODER.encode(ErrorEnvelope(ErrorBody(d.code, d.message, d.details))), d.headers)


def _message(exc: BaseException) -> tuple[str, list[ErrorDetail], dict[str, str]]:
    if isinstance(exc, GatewayError):
        headers: dict[str, str] = {}
        if isinstance(exc, RateLimitExceeded):
            headers = rate_limit_headers(exc.decision)
        elif exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, MethodNotAllowed) and exc.allow:
            headers["Allow"] = ", ".join(exc.allow)
        return exc.message, exc.details, headers
    if isinstance(exc, GroupNotFound | NotAuthorized):
        return exc.reason, [], {}
    if isinstance(exc, RecipientError):  # the caller named a bad recipient: an input error
        return f"{exc.reason} at $", [ErrorDetail(message=exc.reason, path="$")], {}
    if isinstance(exc, NotConnected):
        return ERRORS[NotConnected].description, [], {}
    if isinstance(exc, TransportError):
        return exc.reason, [], {}
    return _INTERNAL.description, [], {}


def error_code_table() -> list[dict[str, Any]]:
    """Every error code with its status, for the OpenAPI document."""
    seen: dict[str, dict[str, Any]] = {}
    for m in ERRORS.values():
        seen.setdefault(m.code, {"code": m.code, "status": m.status, "description": m.description})
    return sorted(seen.values(), key=lambda e: (e["status"], e["code"]))
