"""Identifiers, secrets, and how they are hashed and checked.

API credentials have the shape `<prefix><id>_<secret>`:
- `wgp_` marks a Personal Access Token, `wgs_` a session API key, so a key
  pasted in the wrong place is recognised and a leaked one is easy to scan for;
- `id` is public and is how the record is found;
- only SHA-256(secret) is stored, and it is compared with `hmac.compare_digest`.
The secret has 256 bits of entropy, so a fast hash is the right tool for it.
Passwords are people's choices and get argon2 instead.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from enum import Enum
from typing import Final, NamedTuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

PAT_PREFIX: Final = "wgp_"
SESSION_KEY_PREFIX: Final = "wgs_"
_ID_BYTES: Final = 8
_SECRET_BYTES: Final = 32

_password_hasher = PasswordHasher()


class CredentialKind(Enum):
    PAT = PAT_PREFIX
    SESSION_KEY = SESSION_KEY_PREFIX


class NewCredential(NamedTuple):
    id: str
    plaintext: str
    secret_hash: bytes


class ParsedCredential(NamedTuple):
    kind: CredentialKind
    id: str
    secret: str


_id_lock = threading.Lock()
_id_last = (0, 0)  # (milliseconds, 12-bit counter) of the last id made
# Random bits for ids, read from the OS in blocks: `os.urandom` releases the GIL, and on a loop that shares
# the GIL with the store's thread, taking it back can cost more than the read itself.
_ID_POOL_SIZE: Final = 4096
_id_pool = b""
_id_pool_at = 0


def _drop_id_pool() -> None:
    """In a forked child: never reuse the parent's random bits (two processes' ids would then collide)."""
    global _id_pool, _id_pool_at, _id_lock
    _id_pool, _id_pool_at, _id_lock = b"", 0, threading.Lock()


os.register_at_fork(after_in_child=_drop_id_pool)


def new_id() -> str:
    """A UUIDv7 that is strictly increasing within this process.

    The queue sends in id order and pagination pages by id, so two ids made in
    the same millisecond must still sort in creation order: the 12 `rand_a`
    bits hold a counter (RFC 9562, method 1), and a full counter borrows the
    next millisecond.
    """
    global _id_last, _id_pool, _id_pool_at
    with _id_lock:
        if _id_pool_at + 10 > len(_id_pool):
            _id_pool, _id_pool_at = os.urandom(_ID_POOL_SIZE), 0
        at = _id_pool_at
        _id_pool_at = at + 10
        ms = int(time.time() * 1000) & ((1 << 48) - 1)
        last_ms, counter = _id_last
        if ms <= last_ms:
            ms, counter = last_ms, counter + 1
            if counter > 0xFFF:
                ms, counter = ms + 1, 0
        else:
            counter = int.from_bytes(_id_pool[at:at + 2], "big") & 0x3FF  # leave room to count up
        _id_last = (ms, counter)
    rand = int.from_bytes(_id_pool[at + 2:at + 10], "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand
    h = f"{value:032x}"  # what str(uuid.UUID(int=value)) gives, at less than half its cost
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_credential(kind: CredentialKind) -> NewCredential:
    cred_id = secrets.token_hex(_ID_BYTES)
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    return NewCredential(cred_id, f"{kind.value}{cred_id}_{secret}", hash_secret(secret))


def parse_credential(text: str) -> ParsedCredential | None:
    """Split a presented credential; None when it cannot be one of ours."""
    for kind in CredentialKind:
        if text.startswith(kind.value):
            cred_id, sep, secret = text[len(kind.value):].partition("_")
            if sep and len(cred_id) == 2 * _ID_BYTES and secret and len(secret) <= 128:
                return ParsedCredential(kind, cred_id, secret)
            return None
    return None


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def secret_matches(secret: str, stored_hash: bytes) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def hash_password(password: str) -> str:
    return _password_hasher.hash(password)


def verify_password(password: str, stored: str) -> bool:
    try:
        return _password_hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` + base64 of 32 random bytes."""
    import base64

    return "whsec_" + base64.b64encode(os.urandom(32)).decode()
