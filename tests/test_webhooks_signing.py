"""Standard Webhooks signatures, checked by the third-party `standardwebhooks` verifier."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway._events import make_event
from gateway._security import new_webhook_secret
from gateway.webhooks import (
    InvalidSecret, SignatureError, new_delivery, sign, signing_key, verify, webhook_headers,
)

# The test vector published with the Standard Webhooks reference libraries.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_reference_vector():
    assert sign(signing_key(VECTOR_SECRET), VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIGNATURE


def test_gateway_secret_and_payload_verify_with_standardwebhooks():
    secret = new_webhook_secret()
    event = make_event("message.received", "sess-1", {"text": "héllo ✓", "from": "+15550001"})
    delivery = new_delivery(event, endpoint="https://hooks.example.com/in", secret=secret, now_ms=0)
    assert delivery.id.startswith("msg_")
    headers = dict(webhook_headers(delivery.id, int(time.time()), delivery.payload, secret))
    payload = Webhook(secret).verify(delivery.payload, headers)
    assert payload == {"event": "message.received", "sessionId": "sess-1", "timestamp": event.timestamp,
                       "data": {"text": "héllo ✓", "from": "+15550001"}}
    assert verify(secret, headers, delivery.payload) == delivery.id


def test_our_verify_accepts_standardwebhooks_signatures():
    secret = new_webhook_secret()
    now = dt.datetime.now(dt.timezone.utc)
    body = b'{"event":"session.status"}'
    signature = Webhook(secret).sign("msg_1", now, body.decode())
    headers = {"Webhook-Id": "msg_1", "Webhook-Timestamp": str(int(now.timestamp())), "Webhook-Signature": signature}
    assert verify(secret, headers, body) == "msg_1"


@pytest.mark.parametrize("tamper", ["body", "id", "timestamp", "secret"])
def test_tampering_is_rejected_by_both_verifiers(tamper):
    secret, other = new_webhook_secret(), new_webhook_secret()
    now = int(time.time())
    body = b'{"event":"message.sent"}'
    headers = dict(webhook_headers("msg_a", now, body, secret))
    if tamper == "body":
        body = b'{"event":"message.read"}'
    elif tamper == "id":
        headers["webhook-id"] = "msg_b"
    elif tamper == "timestamp":
        headers["webhook-timestamp"] = str(now - 1)
    else:
        secret = other
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)
    with pytest.raises(SignatureError):
        verify(secret, headers, body)


def test_rotation_signs_with_every_secret():
    old, new = new_webhook_secret(), new_webhook_secret()
    body = b"{}"
    headers = dict(webhook_headers("msg_r", int(time.time()), body, [old, new]))
    assert headers["webhook-signature"].count("v1,") == 2
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)


def test_replay_window():
    secret = new_webhook_secret()
    headers = dict(webhook_headers("msg_t", 1_000_000, b"{}", secret))
    assert verify(secret, headers, b"{}", now=1_000_000 + 299) == "msg_t"
    with pytest.raises(SignatureError, match="too old"):
        verify(secret, headers, b"{}", now=1_000_000 + 301)
    with pytest.raises(SignatureError, match="too new"):
        verify(secret, headers, b"{}", now=1_000_000 - 301)
    with pytest.raises(SignatureError, match="missing"):
        verify(secret, {"webhook-id": "x"}, b"{}")


def test_retries_keep_the_id_and_sign_a_fresh_timestamp():
    secret = new_webhook_secret()
    first = dict(webhook_headers("msg_same", 1000, b"{}", secret))
    retry = dict(webhook_headers("msg_same", 1300, b"{}", secret))
    assert first["webhook-id"] == retry["webhook-id"]
    assert first["webhook-signature"] != retry["webhook-signature"]


@pytest.mark.parametrize("secret", ["whsec_", "whsec_not base64!", ""])
def test_invalid_secrets(secret):
    with pytest.raises(InvalidSecret):
        signing_key(secret)


def test_unprefixed_and_unpadded_secrets_are_the_same_key():
    raw = VECTOR_SECRET.removeprefix("whsec_")
    assert signing_key(raw) == signing_key(VECTOR_SECRET)
    assert signing_key(raw.rstrip("=")) == signing_key(VECTOR_SECRET)
