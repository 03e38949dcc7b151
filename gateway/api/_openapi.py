"""The OpenAPI 3.1 document, built from the route declarations (the docs page is `_docs.py`)."""

from __future__ import annotations

from typing import Any

import msgspec

from .._media_store import MEDIA_ID
from .._lids import LID_PATTERN
from .._patterns import GROUP_JID_PATTERN, INVITE_CODE_PATTERN, PHONE_PATTERN, RECIPIENT_PATTERN
from .._requests import SCHEMA_RULES, WHOLE_MARK
from ..errors import RateLimitExceeded, Unauthorized
from ..events import EVENT_PAYLOADS
from ._errors import ErrorEnvelope, UnsupportedMediaType, error_code_table, mapping_of
from ._examples import openapi_examples
from ._routing import Auth, RouteSpec

_REF = "#/components/schemas/{name}"
# What the server accepts in each path parameter (the same rules the routes enforce).
PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "phone": {"type": "string", "pattern": PHONE_PATTERN, "maxLength": 32,
              "description": "7 to 15 digits with an optional leading +; spaces, dashes, dots and "
                             "parentheses are ignored."},
    "jid": {"type": "string", "pattern": GROUP_JID_PATTERN, "maxLength": 64, "description": "A group JID.",
            "examples": ["120363041234567890@g.us"]},
    "chat": {"type": "string", "pattern": RECIPIENT_PATTERN, "maxLength": 64,
             "description": "A phone number, a user JID or a group JID.", "examples": ["1234567890"]},
    "code": {"type": "string", "pattern": INVITE_CODE_PATTERN,
             "description": "An invite code (what follows https://chat.whatsapp.com/).",
             "examples": ["AbCdEfGhIjKlMnOpQrStUv"]},
    "lid": {"type": "string", "pattern": LID_PATTERN, "maxLength": 24, "description": "A LID: 1 to 20 digits then @lid.",
            "examples": ["123456789012345@lid"]},
    "media_id": {"type": "string", "pattern": "^" + MEDIA_ID.pattern + "$",
                 "description": "`media.id` of a `message.received`.", "examples": ["med_" + "0" * 32]},
}

_SECURITY = {
    Auth.PAT: [{"personalAccessToken": []}, {"bearerPersonalAccessToken": []}],
    Auth.SESSION: [{"sessionKey": []}],
    Auth.EITHER: [{"personalAccessToken": []}, {"sessionKey": []}],
    Auth.NONE: [],
}


def build_openapi(routes: list[RouteSpec], *, version: str, server_url: str) -> dict[str, Any]:
    types: list[Any] = [ErrorEnvelope, *EVENT_PAYLOADS.values()]
    for r in routes:
        types.extend(t for t in (r.doc_body, r.answer) if t is not None)
    schemas, components = msgspec.json.schema_components(list(dict.fromkeys(types)), ref_template=_REF)
    by_type = dict(zip(dict.fromkeys(types), schemas, strict=True))
    _integers(components)
    for typ, rules in SCHEMA_RULES.items():
        if typ.__name__ in components:
            components[typ.__name__].update(rules)
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        path = _openapi_path(r.path)
        op: dict[str, Any] = {
            "operationId": r.handler.__name__,
            "summary": r.summary,
            "description": r.description,
            "tags": [r.tag],
            "security": _SECURITY[r.auth],
            "parameters": [
                *({"name": n, "in": "path", "required": True,
                   "schema": PATH_SCHEMAS.get(n, {"type": "string"})} for n in _path_names(r.path)),
                *({"name": p.name, "in": "query", "required": p.required, "description": p.description,
                   "schema": p.schema} for p in r.query),
                *({"name": p.name, "in": "header", "required": p.required, "description": p.description,
                   "schema": p.schema} for p in r.headers),
            ],
            "responses": {},
        }
        if r.doc_body is not None:
            media: dict[str, Any] = {"schema": by_type[r.doc_body]}
            if examples := openapi_examples(r.doc_body):
                media["examples"] = examples
            op["requestBody"] = {"required": True, "content": {"application/json": media}}
        ok: dict[str, Any] = {"description": "Success"}
        if r.answer is not None:
            ok["content"] = {"application/json": {"schema": by_type[r.answer]}}
        for media_type in r.media_answers:
            ok.setdefault("content", {})[media_type] = {"schema": {"type": "string", "format": "binary"}}
        op["responses"][str(r.status)] = ok
        implied = [*([Unauthorized, RateLimitExceeded] if r.auth is not Auth.NONE else []),
                   *([UnsupportedMediaType] if r.doc_body is not None else [])]
        for err in [*r.errors, *implied]:
            status, code, description = mapping_of(err)
            op["responses"].setdefault(str(status), {
                "description": f"{code}: {description}",
                "content": {"application/json": {"schema": by_type[ErrorEnvelope]}}})
        paths.setdefault(path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Trio WhatsApp Gateway API",
            "version": version,
            "description": "Send WhatsApp messages, manage sessions, contacts and groups, and receive "
                           "webhooks. Every error answer is the envelope "
                           "`{\"success\": false, \"error\": {\"code\", \"message\", \"details\"}}`.",
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "webhooks": _webhooks(),
        "components": {
            "schemas": components,
            "securitySchemes": {
                "personalAccessToken": {"type": "apiKey", "in": "header", "name": "X-API-Token",
                                        "description": "A personal access token (wgp_...)."},
                "bearerPersonalAccessToken": {"type": "http", "scheme": "bearer",
                                              "description": "A personal access token as a bearer token."},
                "sessionKey": {"type": "http", "scheme": "bearer",
                               "description": "A session API key (wgs_...). It reaches only its own session."},
            },
        },
        "x-error-codes": error_code_table(),
    }


_WEBHOOK_HEADERS = (
    ("webhook-id", "The event's id: the same on every retry, for deduplication."),
    ("webhook-timestamp", "Seconds since the epoch when this attempt was signed."),
    ("webhook-signature", "`v1,<base64 HMAC-SHA256 of id.timestamp.body>` with the session's webhookSecret "
                          "(Standard Webhooks)."),
)


def _webhooks() -> dict[str, Any]:
    """One POST per event name: the envelope `{event, sessionId, timestamp, data}` with that event's payload."""
    out: dict[str, Any] = {}
    for name, typ in EVENT_PAYLOADS.items():
        envelope = {
            "type": "object",
            "required": ["event", "sessionId", "timestamp", "data"],
            "properties": {
                "event": {"const": name},
                "sessionId": {"type": "string"},
                "timestamp": {"type": "string", "format": "date-time",
                              "description": "When the change happened (UTC, milliseconds)."},
                "data": {"$ref": _REF.format(name=typ.__name__)},
            },
        }
        out[name] = {"post": {
            "operationId": "webhook_" + name.replace(".", "_"),
            "summary": name,
            "description": " ".join((typ.__doc__ or "").split()),
            "tags": ["Webhooks"],
            "parameters": [{"name": header, "in": "header", "required": True, "description": text,
                            "schema": {"type": "string"}} for header, text in _WEBHOOK_HEADERS],
            "requestBody": {"required": True, "content": {"application/json": {"schema": envelope}}},
            "responses": {"2XX": {"description": "Received. 408, 429 and 5xx answers are retried; other 4xx are "
                                                 "final."}},
        }}
    return out


def _path_names(path: str) -> list[str]:
    return [part[1:-1].split(":")[-1] for part in path.split("/") if part.startswith("<")]


def _openapi_path(path: str) -> str:
    return "/".join("{" + part[1:-1].split(":")[-1] + "}" if part.startswith("<") else part
                    for part in path.split("/"))


def _integers(schema: Any) -> None:
    """`whole_number` fields, decoded as floats, are integers to the document (in place)."""
    if isinstance(schema, dict):
        if schema.pop(WHOLE_MARK, False):
            schema["type"] = "integer"
        for value in schema.values():
            _integers(value)
    elif isinstance(schema, list):
        for value in schema:
            _integers(value)

