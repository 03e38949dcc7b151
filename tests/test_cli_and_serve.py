"""The CLI contract and a real `gateway serve` process driven over HTTP."""

from __future__ import annotations

import re

import httpx
import pytest

from ._procs import base_env, run_cli, serving

pytestmark = pytest.mark.slow


def test_users_and_tokens(tmp_path):
    env = base_env(tmp_path)
    r = run_cli(env, "users", "create", "--email", "Ann@Example.com", "--password", "long enough pw")
    assert r.returncode == 0, r.stderr
    dup = run_cli(env, "users", "create", "--email", "ann@example.com", "--password", "long enough pw")
    assert dup.returncode == 1 and "already exists" in dup.stderr
    short = run_cli(env, "users", "create", "--email", "b@example.com", "--password", "short")
    assert short.returncode == 1 and "password" in short.stderr
    t = run_cli(env, "tokens", "create", "--email", "ann@example.com", "--name", "ci")
    assert t.returncode == 0, t.stderr
    assert re.fullmatch(r"wgp_[0-9a-f]{16}_[A-Za-z0-9_-]{43}\n", t.stdout)  # the token alone on stdout
    missing = run_cli(env, "tokens", "create", "--email", "nobody@example.com", "--name", "ci")
    assert missing.returncode == 1 and missing.stdout == ""


def test_migrate_and_config_errors(tmp_path):
    env = base_env(tmp_path)
    r = run_cli(env, "migrate")
    assert r.returncode == 0 and "migrated to version" in r.stderr
    bad = run_cli(base_env(tmp_path, GATEWAY_MAX_BODY="huge"), "migrate")
    assert bad.returncode == 2 and "GATEWAY_MAX_BODY" in bad.stderr


def test_serve_end_to_end(tmp_path):
    env = base_env(tmp_path)
    with serving(env) as (base, proc):
        # a black-box client: the CLI for the user and token, then only HTTP
        assert run_cli(env, "users", "create", "--email", "ops@example.com", "--password", "pw-long-enough").returncode == 0
        token = run_cli(env, "tokens", "create", "--email", "ops@example.com", "--name", "bb").stdout.strip()
        with httpx.Client(base_url=base + "/api/v1", headers={"X-API-Token": token}, timeout=10) as http:
            spec = http.get("/openapi.json").json()
            assert spec["openapi"].startswith("3.1")
            created = http.post("/whatsapp-sessions", json={"name": "bb", "phoneNumber": "+1234567890"})
            assert created.status_code == 201
            sid, key = created.json()["id"], created.json()["apiKey"]
            assert [s["id"] for s in http.get("/whatsapp-sessions").json()["data"]] == [sid]
            got = http.get(f"/whatsapp-sessions/{sid}", headers={"X-API-Token": "", "Authorization": f"Bearer {key}"})
            assert got.status_code == 200 and got.json()["name"] == "bb"
            upd = http.put(f"/whatsapp-sessions/{sid}", json={"name": "renamed"})
            assert upd.json()["name"] == "renamed"
            assert http.delete(f"/whatsapp-sessions/{sid}").status_code == 200
            assert http.get(f"/whatsapp-sessions/{sid}").json()["error"]["code"] == "SESSION_NOT_FOUND"
            assert http.post("/whatsapp-sessions", content=b"{").json()["error"]["code"] == "VALIDATION_ERROR"
            big = http.post("/whatsapp-sessions", content=b"x" * (2 * 1024 * 1024))
            assert big.status_code == 413 and big.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
        assert httpx.get(base + "/readyz").json()["status"] == "ready"
        docs = httpx.get(base + "/docs")
        assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    assert proc.returncode == 0  # SIGTERM is a graceful stop
    err = proc.stderr.read()
    assert "gateway users create" in err  # first start with no users says how to make one
    assert all(line.startswith("{") for line in err.splitlines() if line.strip())  # JSON log lines only
