"""Schemathesis hooks for tests/test_fuzz_api.py (loaded through SCHEMATHESIS_HOOKS).

The OpenAPI document states every rule a JSON Schema can carry; a few rules
cannot be carried by one, and the gateway answers 422 for them by design:
media bytes must be what their kind needs (a sticker is WebP, a group picture a
JPEG), a media URL must answer, `sendAt` must lie within the next 30 days, a
quoted message must exist, poll options must be distinct ignoring case, a
webhook host must resolve, a proxy URL needs a host and a port, a settings
change at least one setting. For
cases generated as *valid* data, these hooks swap in values that keep those
rules (so the fuzzer reaches the code past validation, and its
positive-data check stays strict). Cases generated as invalid data are sent
untouched. A generated `Idempotency-Key` is made unique, since the same key with
another body is refused by design.

One more edit, in every mode: the session whose key the run uses is never
deleted, disconnected, logged out or given a new key, the run's token is never revoked (those requests go to an unknown id
and answer 404), nor, in valid cases, a slow send limit, so the run keeps
reaching a connected session that can send.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import uuid
from typing import Any

import schemathesis

MEDIA_BASE = os.environ.get("FUZZ_MEDIA_BASE", "")
WEBHOOK_URL = os.environ.get("FUZZ_WEBHOOK_URL", "")
PROTECTED = os.environ.get("FUZZ_PROTECTED_SESSION", "")
PROTECTED_TOKEN = os.environ.get("FUZZ_PROTECTED_TOKEN", "")

# The smallest bytes each kind accepts (its container's magic number), by kind.
SAMPLES: dict[str, bytes] = {
    "image": b"\x89PNG\r\n\x1a\n" + bytes(64),
    "video": b"\x00\x00\x00\x18ftypmp42" + bytes(64),
    "audio": b"OggS" + bytes(64),
    "document": b"%PDF-1.4\n" + bytes(64),
    "sticker": b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(64),
    "picture": b"\xff\xd8\xff\xe0" + bytes(64),  # a group picture is a JPEG
}
MEDIA_PATHS = {"image": "/image.png", "video": "/video.mp4", "audio": "/audio.ogg",
               "document": "/document.pdf", "sticker": "/sticker.webp", "picture": "/picture.jpg"}
_PROTECTED_OPS = {("DELETE", "/api/v1/whatsapp-sessions/{session_id}"),
                  ("POST", "/api/v1/whatsapp-sessions/{session_id}/rotate-key"),
                  ("POST", "/api/v1/whatsapp-sessions/{session_id}/disconnect"),
                  ("POST", "/api/v1/whatsapp-sessions/{session_id}/logout")}


@schemathesis.hook
def before_call(ctx: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if (case.method.upper(), case.path) in _PROTECTED_OPS and (case.path_parameters or {}).get(
            "session_id") == PROTECTED:
        case.path_parameters["session_id"] = str(uuid.uuid4())
    if case.path == "/api/v1/tokens/{token_id}" and (case.path_parameters or {}).get("token_id") == PROTECTED_TOKEN:
        case.path_parameters["token_id"] = uuid.uuid4().hex[:16]
    meta = case.meta
    if meta is None or str(meta.generation.mode) != "positive" or not isinstance(case.body, dict):
        return
    if "Idempotency-Key" in (case.headers or {}):
        # A key names one request: the same key with another body is refused (422) by design.
        case.headers["Idempotency-Key"] = uuid.uuid4().hex
    body = case.body
    if case.path == "/api/v1/send-message":
        _fix_message(body)
    elif case.path == "/api/v1/send-messages":
        for item in body.get("messages") or []:
            if isinstance(item, dict):
                _fix_message(item)
    elif case.method.upper() == "PATCH" and case.path == "/api/v1/messages/{message_id}":
        _fix_message(body)  # a reschedule's sendAt keeps the same rule as a send's
    elif case.method.upper() == "PUT" and case.path == "/api/v1/groups/{jid}/picture":
        # exactly one source: a served JPEG by URL, or JPEG bytes
        if isinstance(body.get("url"), str):
            body.pop("base64", None)
            body["url"] = MEDIA_BASE + MEDIA_PATHS["picture"]
        else:
            body["base64"] = base64.b64encode(SAMPLES["picture"]).decode()
    elif case.method.upper() == "PUT" and case.path == "/api/v1/groups/{jid}/settings" and all(
            v is None for v in body.values()):
        body["announce"] = False  # at least one setting
    if case.method.upper() == "PUT" and case.path_parameters.get("session_id") == PROTECTED:
        body.pop("sendLimit", None)  # a slow limit on the session every send uses would starve the run
        body.pop("proxyUrl", None)  # a new proxy reconnects the session the run sends through
    if isinstance(body.get("proxyUrl"), str):
        body["proxyUrl"] = "socks5://fuzz:secret@10.0.0.2:1080"  # the shape a schema cannot fully state
    if isinstance(body.get("webhookUrl"), str):
        body["webhookUrl"] = WEBHOOK_URL


def _fix_message(message: dict[str, Any]) -> None:
    for kind, sample in SAMPLES.items():
        media = message.get(kind)
        if not isinstance(media, dict):
            continue
        if isinstance(media.get("url"), str):
            media["url"] = MEDIA_BASE + MEDIA_PATHS[kind]
        if isinstance(media.get("data"), str):
            media["data"] = base64.b64encode(sample).decode()
    if isinstance(message.get("sendAt"), str):
        message["sendAt"] = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    message.pop("replyTo", None)
    poll = message.get("poll")
    if isinstance(poll, dict) and isinstance(poll.get("options"), list):
        seen: set[str] = set()
        options = []
        for i, option in enumerate(poll["options"]):
            key = option.strip().casefold() if isinstance(option, str) else option
            options.append(option if key not in seen else f"option {i} {uuid.uuid4().hex[:8]}")
            seen.add(key)
        poll["options"] = options
        if isinstance(poll.get("selectableCount"), int):
            poll["selectableCount"] = min(poll["selectableCount"], len(options))
