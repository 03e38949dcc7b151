"""Standard Webhooks signatures: what a receiver checks to trust a delivery.

A delivery carries three headers:

- `webhook-id`: the delivery's id. It is the same on every retry, so a
  receiver that has seen it can drop the duplicate;
- `webhook-timestamp`: Unix seconds when this attempt was signed (each retry
  is signed afresh, so a receiver's replay window never rejects a late retry);
- `webhook-signature`: `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`,
  where the key is the base64-decoded part of the `whsec_...` secret. Several
  signatures may be given, separated by spaces (secret rotation).

`verify` is the receiver's side; the gateway uses it in tests and it is a
reference for people writing receivers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from typing import Final

SECRET_PREFIX: Final = "whsec_"
DEFAULT_TOLERANCE: Final = 5 * 60.0  # seconds, as the Standard Webhooks libraries use


class SignatureError(ValueError):
    """Raised by `verify` when the headers are missing, stale, or no signature matches."""


class InvalidSecret(ValueError):
    """Raised when a signing secret is not `whsec_` + base64 (or plain base64)."""


def signing_key(secret: str) -> bytes:
    """The HMAC key inside a `whsec_` secret."""
    raw = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    try:
        # Unpadded base64 is accepted, as the reference libraries accept it.
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSecret("webhook secret is not base64") from None
    if not key:
        raise InvalidSecret("webhook secret is empty")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature of `<id>.<timestamp>.<body>`."""
    mac = hmac.new(key, b"%s.%d.%s" % (msg_id.encode(), timestamp, body), hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def webhook_headers(msg_id: str, timestamp: int, body: bytes,
                    secrets: str | Sequence[str]) -> list[tuple[str, str]]:
    """The three Standard Webhooks headers for one attempt.

    `secrets` is one secret, or several while a secret is being rotated (the
    receiver accepts the delivery if any signature matches).
    """
    if isinstance(secrets, str):
        secrets = (secrets,)
    signature = " ".join(sign(signing_key(s), msg_id, timestamp, body) for s in secrets)
    return [("webhook-id", msg_id), ("webhook-timestamp", str(timestamp)), ("webhook-signature", signature)]


def verify(secret: str, headers: Mapping[str, str], body: bytes, *,
           now: float | None = None, tolerance: float = DEFAULT_TOLERANCE) -> str:
    """Check a delivery as a receiver would; return its `webhook-id`.

    `headers` may use any letter case. `now` (Unix seconds) defaults to the
    system clock; tests on trio's MockClock pass their own.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get("webhook-id")
    stamp = lower.get("webhook-timestamp")
    signatures = lower.get("webhook-signature")
    if not (msg_id and stamp and signatures):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise SignatureError("webhook-timestamp too old")
    if timestamp > current + tolerance:
        raise SignatureError("webhook-timestamp too new")
    expected = sign(signing_key(secret), msg_id, timestamp, body).encode()
    for candidate in signatures.split(" "):
        if hmac.compare_digest(candidate.encode(), expected):
            return msg_id
    raise SignatureError("no matching signature")
