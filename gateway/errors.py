"""The API's error envelope and the exceptions that map onto it.

Every error answer has the shape
`{"success": false, "error": {"code": ..., "message": ..., "details": [...]}}`.
Domain code raises an `ApiError` subclass; the HTTP layer turns it into the
envelope through one table (`ApiError.status`). Nothing else produces errors.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    """One problem with the request, e.g. a field that failed validation."""

    message: str
    path: str | None = None


class ErrorBody(msgspec.Struct):
    code: str
    message: str
    details: list[ErrorDetail] = []


class ErrorEnvelope(msgspec.Struct):
    error: ErrorBody
    success: bool = False


class ApiError(Exception):
    """Base of every error the API answers deliberately."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"
    default_message: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: list[ErrorDetail] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details or []
        self.headers = headers or {}
        super().__init__(self.message)

    def envelope(self) -> ErrorEnvelope:
        return ErrorEnvelope(ErrorBody(self.code, self.message, self.details))


class Unauthorized(ApiError):
    """Credentials are missing, malformed, unknown or of the wrong kind."""

    status, code, default_message = 401, "UNAUTHORIZED", "Missing or invalid auth"


class Forbidden(ApiError):
    status, code, default_message = 403, "FORBIDDEN", "Not allowed"


class NotFound(ApiError):
    """No such route."""

    status, code, default_message = 404, "NOT_FOUND", "No such route"


class SessionNotFound(ApiError):
    """The session does not exist, or the caller may not know it exists."""

    status, code, default_message = 404, "SESSION_NOT_FOUND", "Session does not exist"


class ResourceNotFound(ApiError):
    status, code, default_message = 404, "NOT_FOUND", "Resource does not exist"


class MethodNotAllowed(ApiError):
    status, code, default_message = 405, "METHOD_NOT_ALLOWED", "Method not allowed on this route"


class SessionDisconnected(ApiError):
    status, code, default_message = 409, "SESSION_DISCONNECTED", "Session not connected"


class Conflict(ApiError):
    status, code, default_message = 409, "CONFLICT", "Conflicts with the current state"


class PayloadTooLarge(ApiError):
    status, code, default_message = 413, "PAYLOAD_TOO_LARGE", "Request body too large"


class UnsupportedMediaType(ApiError):
    status, code, default_message = 415, "UNSUPPORTED_MEDIA_TYPE", "Body must be application/json"


class ValidationError(ApiError):
    """The body, a parameter or a query value is invalid; details name the path."""

    status, code, default_message = 422, "VALIDATION_ERROR", "Invalid request body or params"

    @classmethod
    def at(cls, path: str, message: str) -> ValidationError:
        return cls(f"{message} at {path}", details=[ErrorDetail(message=message, path=path)])


class RateLimited(ApiError):
    status, code, default_message = 429, "RATE_LIMITED", "Too many requests"


class InternalError(ApiError):
    pass


class NotImplementedYet(ApiError):
    status, code, default_message = 501, "NOT_IMPLEMENTED", "Not implemented"


class ServiceUnavailable(ApiError):
    status, code, default_message = 503, "SERVICE_UNAVAILABLE", "Service unavailable"


_ENCODER = msgspec.json.Encoder()


def encode_error(exc: ApiError) -> bytes:
    return _ENCODER.encode(exc.envelope())


def validation_error_from_msgspec(exc: msgspec.ValidationError | msgspec.DecodeError,
                                  prefix: str = "$") -> ValidationError:
    """Turn msgspec's "<message> - at `$.a.b`" into a detail with that path."""
    text = str(exc)
    path = prefix
    msg = text
    head, sep, tail = text.rpartition(" - at `")
    if sep and tail.endswith("`"):
        msg = head
        inner = tail[:-1]
        path = prefix + inner[1:] if inner.startswith("$") else inner
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        msg = f"Malformed JSON: {msg}"
    return ValidationError(f"{msg} at {path}", details=[ErrorDetail(message=msg, path=path)])


def error_code_table() -> list[dict[str, Any]]:
    """Every error code with its status, for the OpenAPI document."""
    seen: dict[str, dict[str, Any]] = {}
    stack: list[type[ApiError]] = [ApiError]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        seen.setdefault(cls.code, {"code": cls.code, "status": cls.status,
                                   "description": cls.default_message})
    return sorted(seen.values(), key=lambda e: (e["status"], e["code"]))
