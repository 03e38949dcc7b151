from __future__ import annotations

import os
import uuid

from gateway._phone import InvalidPhoneNumber, normalize_phone
from gateway._security import (
    CredentialKind, hash_password, new_credential, new_id, new_webhook_secret, parse_credential, secret_matches,
    verify_password,
)

import pytest


def test_credentials_have_prefixes_and_parse_back():
    for kind, prefix in ((CredentialKind.PAT, "wgp_"), (CredentialKind.SESSION_KEY, "wgs_")):
        cred = new_credential(kind)
        assert cred.plaintext.startswith(prefix)
        parsed = parse_credential(cred.plaintext)
        assert parsed.kind is kind and parsed.id == cred.id
        assert secret_matches(parsed.secret, cred.secret_hash)
        assert not secret_matches(parsed.secret + "x", cred.secret_hash)
        assert parsed.secret.encode() not in cred.secret_hash


@pytest.mark.parametrize("text", ["", "wgp_", "wgp_short_secret", "xyz_0123456789abcdef_s",
                                  "wgs_0123456789abcdef_", "wgp_0123456789abcdef" + "_" + "s" * 200])
def test_malformed_credentials_are_rejected(text):
    assert parse_credential(text) is None


def test_ids_are_uuid7_and_time_ordered():
    ids = [new_id() for _ in range(10_000)]  # many share a millisecond
    assert all(uuid.UUID(i).version == 7 and str(uuid.UUID(i)) == i for i in ids)  # canonical text
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_ids_random_bits_differ_across_pool_refills():
    rand = [uuid.UUID(new_id()).int & ((1 << 62) - 1) for _ in range(2_000)]  # several pools of random bits
    assert len(set(rand)) == len(rand)


def test_a_forked_child_never_reuses_its_parents_random_bits():
    new_id()  # the parent has a pool with bits left in it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids' random bits, and leave without running pytest's teardown
        os.write(write, "\n".join(new_id() for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [new_id() for _ in range(50)]
    low = {uuid.UUID(i).int & ((1 << 62) - 1) for i in parent}
    assert len(child) == 50 and low.isdisjoint(uuid.UUID(i).int & ((1 << 62) - 1) for i in child)


def test_passwords_use_argon2():
    h = hash_password("correct horse")
    assert h.startswith("$argon2id$")
    assert verify_password("correct horse", h) and not verify_password("wrong", h)
    assert not verify_password("x", "not-a-hash")


def test_webhook_secret_shape():
    import base64

    s = new_webhook_secret()
    assert s.startswith("whsec_") and len(base64.b64decode(s[6:])) == 32


@pytest.mark.parametrize("raw,expected", [
    ("1234567890", "+1234567890"),
    ("+1234567890", "+1234567890"),
    ("+1 (234) 567-890", "+1234567890"),
    ("+44 (0)20 7946 0958".replace("(0)", ""), "+442079460958"),
    ("+49.30.1234567", "+49301234567"),
    ("999 1234567", "+9991234567"),  # not a real country code: kept as digits, not rejected
])
def test_phone_numbers_normalise(raw, expected):
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize("raw", ["123456", "+1234567890123456", "12a4567890", "", "++1234567890", "1234567890+"])
def test_phone_numbers_rejected(raw):
    with pytest.raises(InvalidPhoneNumber):
        normalize_phone(raw)
