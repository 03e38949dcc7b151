"""Webhook delivery: Standard Webhooks signing, the retry policy, the HTTP client and the dispatcher."""

from ._client import ClientStatistics, H11Client, PostError, Response, WebhookClient
from ._dispatcher import Dispatcher, DispatcherStatistics, TrioWallClock, open_dispatcher
from ._policy import (
    DEFAULT_MAX_ATTEMPTS, DEFAULT_WAIT, NOMINAL_WAIT, AttemptResult, Decision, Failure, Outcome, RetryPolicy, Verdict,
    classify, parse_retry_after, wait_spread,
)
from ._resolver import CheckedResolver, Resolver
from ._signing import InvalidSecret, SignatureError, sign, signing_key, verify, webhook_headers
from ._store import (
    AttemptRecord, Delivery, DeliveryStatus, DeliveryStore, MemoryDeliveryStore, new_delivery, new_delivery_id,
)

__all__ = [
    "AttemptRecord", "AttemptResult", "CheckedResolver", "ClientStatistics", "DEFAULT_MAX_ATTEMPTS", "DEFAULT_WAIT",
    "Decision", "Delivery", "DeliveryStatus", "DeliveryStore", "Dispatcher", "DispatcherStatistics", "Failure",
    "H11Client", "InvalidSecret", "MemoryDeliveryStore", "NOMINAL_WAIT", "Outcome", "PostError", "Resolver",
    "Response", "RetryPolicy", "SignatureError", "TrioWallClock", "Verdict", "WebhookClient", "classify",
    "new_delivery", "new_delivery_id", "open_dispatcher", "parse_retry_after", "sign", "signing_key", "verify",
    "wait_spread", "webhook_headers",
]
