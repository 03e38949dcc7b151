"""Schemathesis against a live `gateway serve`: the whole API, both credentials, every check.

The gateway runs as a real process on the simulator transport, with a local
server for media URLs and webhooks. Schemathesis reads the live
`/api/v1/openapi.json` and runs its examples, coverage, fuzzing and stateful
phases with all of its checks (no 5xx, every status documented, every answer
in its schema and content type, valid data accepted, invalid data refused,
auth not ignored, ...), over keep-alive connections. Two passes: one with the
personal access token (and the session key where only it applies), one with
the session key alone. Hooks (tests/_fuzz_hooks.py) only make valid cases keep
the rules a JSON Schema cannot state. The run is bounded by example counts so
that it takes a few minutes.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ._fuzz_hooks import MEDIA_PATHS, SAMPLES
from ._procs import base_env, run_cli, serving
from ._sim_proc import simulator

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
MAX_EXAMPLES = 60
STATEFUL_STEPS = 20


class _Receiver(http.server.BaseHTTPRequestHandler):
    """Serves the media samples and takes webhook posts."""

    protocol_version = "HTTP/1.1"
    by_path = {path: SAMPLES[kind] for kind, path in MEDIA_PATHS.items()}

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        data = self.by_path.get(self.path.split("?")[0])
        self.send_response(200 if data is not None else 404)
        self.send_header("Content-Length", str(len(data or b"")))
        self.end_headers()
        self.wfile.write(data or b"")

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _connected_session(base: str, pat: dict[str, str], name: str) -> dict:
    created = httpx.post(f"{base}/api/v1/whatsapp-sessions", json={"name": name}, headers=pat).json()
    httpx.post(f"{base}/api/v1/whatsapp-sessions/{created['id']}/connect", headers=pat, timeout=15)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = httpx.get(f"{base}/api/v1/whatsapp-sessions/{created['id']}", headers=pat).json()
        if now["status"] == "CONNECTED":
            return {**now, "apiKey": created["apiKey"]}
        time.sleep(0.1)
    raise TimeoutError(f"session {name} did not connect")


def _config(tmp: Path, *, pat: str | None, key: str, session_id: str, peer_phone: str, receiver: str) -> Path:
    auth = {"sessionKey": {"bearer": key}}
    if pat is not None:
        auth["personalAccessToken"] = {"api_key": pat}
    lines = [f"[auth.openapi.{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in value.items())
             for name, value in auth.items()]
    lines += [
        f"[dictionaries.sessions]\nvalues = [{json.dumps(session_id)}]\n",
        f"[dictionaries.phones]\nvalues = [{json.dumps(peer_phone)}, \"15550001111\", \"+44 20 7946 0958\"]\n",
        f"[dictionaries.urls]\nvalues = [{json.dumps(receiver + '/hook')}]\n",
        "[parameters]\n"
        "\"path.session_id\" = { dictionary = \"sessions\", probability = 0.7 }\n"
        "\"body.to\" = { dictionary = \"phones\", probability = 0.7 }\n"
        "\"path.phone\" = { dictionary = \"phones\", probability = 0.5 }\n",
        f"[phases.stateful]\nmax-steps = {STATEFUL_STEPS}\n",
    ]
    path = tmp / ("schemathesis-pat.toml" if pat else "schemathesis-key.toml")
    path.write_text("\n".join(lines))
    return path


def _schemathesis(config: Path, url: str, env: dict[str, str], report: Path, out: Path) -> subprocess.Popen:
    """One schemathesis run in its own process, its output in `out`.

    One worker per process: Python 3.11's `ast.parse`, which Hypothesis uses to describe
    filters, is not safe across threads ("AST constructor recursion depth mismatch"), so
    the passes run side by side as processes instead."""
    st = Path(sys.executable).with_name("schemathesis")
    cmd = [str(st), "--config-file", str(config), "run", url, "--checks", "all",
           "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", str(MAX_EXAMPLES),
           "--request-timeout", "15", "--workers", "1", "--no-color",
           "--generation-deterministic", "--report", "junit", "--report-dir", str(report),
           # The send body's "exactly one content key" (oneOf) makes Hypothesis discard many drafts;
           # that health check is about generation speed, not the API.
           "--suppress-health-check", "filter_too_much"]
    return subprocess.Popen(cmd, env=env, stdout=out.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)


def _figures(output: str) -> dict[str, int]:
    found = {"operations": 0, "cases": 0, "failures": 0}
    if m := re.search(r"Tested:\s+(\d+)", output):
        found["operations"] = int(m[1])
    if m := re.search(r"(\d+) generated", output):
        found["cases"] = int(m[1])
    if m := re.search(r"(\d+) found (\d+) unique failures", output):
        found["failures"] = int(m[2])
    return found


@pytest.mark.timeout(1200)
def test_schemathesis_finds_nothing(tmp_path, receiver):
    with simulator("--autopair", "0.05") as sim:
        env = base_env(tmp_path, GATEWAY_TRANSPORT="sim", GATEWAY_SIM_URL=sim.url,
                       GATEWAY_LIMIT_SEND="off", GATEWAY_LIMIT_API="off", GATEWAY_SEND_MIN_GAP="0",
                       GATEWAY_SEND_JITTER="0", GATEWAY_ALLOW_PRIVATE_URLS="true", GATEWAY_QR_WAIT="1",
                       # The failed-auth limit answers the fuzzer's deliberate bad keys with 429, by design
                       # (tests/test_api_ratelimits.py); here every bad key must get its 401.
                       GATEWAY_LIMIT_AUTH="off",
                       GATEWAY_LOG_LEVEL="WARNING")
        log = (tmp_path / "gateway.log").open("w")
        with serving(env, stderr=log) as (base, proc):
            assert run_cli(env, "users", "create", "--email", "fuzz@example.com",
                           "--password", "a long password").returncode == 0
            pat = run_cli(env, "tokens", "create", "--email", "fuzz@example.com", "--name", "fuzz").stdout.strip()
            target = _connected_session(base, {"X-API-Token": pat}, "target")
            peer = _connected_session(base, {"X-API-Token": pat}, "peer")
            st_env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests._fuzz_hooks", "PYTHONPATH": str(ROOT),
                      "FUZZ_MEDIA_BASE": receiver, "FUZZ_WEBHOOK_URL": receiver + "/hook",
                      "FUZZ_PROTECTED_SESSION": target["id"], "FUZZ_PROTECTED_TOKEN": pat.split("_")[1]}
            runs = []
            for name, credential in (("pat", pat), ("key", None)):
                config = _config(tmp_path, pat=credential, key=target["apiKey"], session_id=target["id"],
                                 peer_phone=peer["phoneNumber"], receiver=receiver)
                out = tmp_path / f"schemathesis-{name}.txt"
                runs.append((out, _schemathesis(config, base + "/api/v1/openapi.json", st_env,
                                                tmp_path / f"reports-{name}", out)))
            totals = {"operations": 0, "cases": 0, "failures": 0}
            failed = []
            try:
                for out, run in runs:
                    returncode = run.wait(timeout=900)
                    text = out.read_text()
                    for k, v in _figures(text).items():
                        totals[k] += v
                    if returncode != 0:
                        failed.append(text[-20000:])
            finally:
                for _out, run in runs:
                    if run.poll() is None:
                        run.kill()
                        run.wait()
            assert not failed, "\n\n".join(failed)
            assert proc.poll() is None, "the gateway exited during the run"
        log.close()
    print(f"\nschemathesis: {totals}")
    gateway_log = (tmp_path / "gateway.log").read_text()
    assert "Traceback" not in gateway_log, gateway_log[-5000:]
    assert totals["cases"] > 1000 and totals["operations"] >= 2 * 29, totals
