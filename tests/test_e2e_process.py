"""Real `gateway serve` processes against a simulator process: crash safety and the seed's JS example."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

import httpx
import pytest
import trio

from bench.simulator import open_sim_control

from ._procs import base_env, free_port, gateway_cmd, run_cli, wait_http
from ._sim_proc import simulator

pytestmark = pytest.mark.slow

SEED_EXAMPLE = """\
const res = await fetch("https://yourdomain.com/api/v1/send-message", {
  method: "POST",
  headers: {
    "Content-Type": "application/json",
    "Authorization": "Bearer YOUR_SESSION_API_KEY",
  },
  body: JSON.stringify({
    to: "1234567890",
    text: "Hello from the API!",
  }),
});
const data = await res.json();
console.log(data.messageId);
"""


def start_gateway(env, port):
    proc = subprocess.Popen(gateway_cmd("serve", "--bind", f"127.0.0.1:{port}"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
    return proc


def wait_until(predicate, timeout=60.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError("condition not reached")


def setup_session(env, base, phone):
    assert run_cli(env, "users", "create", "--email", "ops@example.com", "--password", "pw-long-enough").returncode == 0
    token = run_cli(env, "tokens", "create", "--email", "ops@example.com", "--name", "t").stdout.strip()
    pat = {"X-API-Token": token}
    s = httpx.post(f"{base}/api/v1/whatsapp-sessions", json={"name": "crash", "phoneNumber": phone},
                   headers=pat).json()
    httpx.post(f"{base}/api/v1/whatsapp-sessions/{s['id']}/connect", headers=pat, timeout=10)
    wait_until(lambda: httpx.get(f"{base}/api/v1/whatsapp-sessions/{s['id']}", headers=pat).json()["status"]
               == "CONNECTED", timeout=30)
    return s, pat


def test_kill_9_loses_no_accepted_message(tmp_path):
    with simulator("--autopair", "0.05", "--receipt-delay", "0.05") as sim:
        env = base_env(tmp_path, GATEWAY_TRANSPORT="sim", GATEWAY_SIM_URL=sim.url, GATEWAY_SEND_MIN_GAP="0.01",
                       GATEWAY_SEND_JITTER="0", GATEWAY_LIMIT_SEND="off",
                       GATEWAY_LIMIT_API="off", GATEWAY_RECONNECT_MAX_DELAY="1")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_gateway(env, port)
        try:
            s, _ = setup_session(env, base, "+15550000011")
            trio.run(_register, sim.url, "+15550000012")
            key = {"Authorization": f"Bearer {s['apiKey']}"}
            accepted = []
            with httpx.Client(base_url=base, headers=key, timeout=10) as http:
                for i in range(300):
                    r = http.post("/api/v1/send-message", json={"to": "+15550000012", "text": f"crash-{i}"})
                    assert r.status_code == 202, r.text
                    accepted.append(r.json()["messageId"])
            proc.send_signal(signal.SIGKILL)  # mid-drain: some queued, maybe one mid-send
            proc.wait(timeout=10)
            sent_before = trio.run(_texts, sim.url)
            assert len(sent_before) < 300, "the queue drained before the kill; the test proves nothing"
            proc = start_gateway(env, port)
            with httpx.Client(base_url=base, headers=key, timeout=10) as http:
                wait_until(lambda: all(http.get(f"/api/v1/messages/{m}").json()["status"] in ("sent", "delivered",
                                                                                            "read")
                                       for m in accepted[-5:]), timeout=60)
                statuses = [http.get(f"/api/v1/messages/{m}").json()["status"] for m in accepted]
            assert all(st in ("sent", "delivered", "read") for st in statuses), statuses
            texts = trio.run(_texts, sim.url)
            assert {f"crash-{i}" for i in range(300)} <= set(texts)  # none lost
            duplicates = len(texts) - len(set(texts))
            assert duplicates <= 1  # only the one message that was mid-send at the kill may repeat
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)


async def _register(url, phone):
    async with open_sim_control(url) as ctl:
        await ctl.register(phone)


async def _sent_to(url, phone):
    async with open_sim_control(url) as ctl:
        return await ctl.messages(recipient=phone)


async def _texts(url):
    async with open_sim_control(url) as ctl:
        return [m.text for m in await ctl.messages() if m.text and m.text.startswith("crash-")]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_seed_javascript_example_prints_a_message_id_that_is_sent(tmp_path):
    with simulator("--autopair", "0.05") as sim:
        env = base_env(tmp_path, GATEWAY_TRANSPORT="sim", GATEWAY_SIM_URL=sim.url)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_gateway(env, port)
        try:
            s, _ = setup_session(env, base, "+15550000021")  # no register: a default simulator has every number
            script = tmp_path / "example.mjs"
            script.write_text(SEED_EXAMPLE.replace("https://yourdomain.com", base)
                              .replace("YOUR_SESSION_API_KEY", s["apiKey"]))
            out = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            message_id = out.stdout.strip()
            assert len(message_id) == 36 and message_id.count("-") == 4
            key = {"Authorization": f"Bearer {s['apiKey']}"}
            got = httpx.get(f"{base}/api/v1/messages/{message_id}", headers=key).json()
            assert got["messageId"] == message_id

            def status():
                return httpx.get(f"{base}/api/v1/messages/{message_id}", headers=key).json()["status"]

            wait_until(lambda: status() not in ("queued", "sending"), timeout=30)
            assert status() in ("sent", "delivered", "read")
            [entry] = trio.run(_sent_to, sim.url, "+1234567890")
            assert entry.text == "Hello from the API!"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)


def test_simulator_scan_and_unregister_commands_against_a_gateway_session(tmp_path):
    """No autopair: a session shows a QR until `gateway simulator scan` pairs it (URL from GATEWAY_SIM_URL)."""
    with simulator("--receipt-delay", "0.05") as sim:
        env = base_env(tmp_path, GATEWAY_TRANSPORT="sim", GATEWAY_SIM_URL=sim.url, GATEWAY_SEND_MIN_GAP="0",
                       GATEWAY_SEND_JITTER="0")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_gateway(env, port)
        try:
            assert run_cli(env, "users", "create", "--email", "ops@example.com",
                           "--password", "pw-long-enough").returncode == 0
            pat = {"X-API-Token": run_cli(env, "tokens", "create", "--email", "ops@example.com",
                                          "--name", "t").stdout.strip()}
            s = httpx.post(f"{base}/api/v1/whatsapp-sessions", json={"name": "scan"}, headers=pat).json()
            sid = s["id"]
            r = httpx.post(f"{base}/api/v1/whatsapp-sessions/{sid}/connect", headers=pat, timeout=10).json()
            assert r["status"] == "CONNECTING" and r["qr"].startswith("2@")

            scanned = run_cli(env, "simulator", "scan", sid, "--phone", "+1 555 000 0031")
            assert (scanned.returncode, scanned.stdout.strip()) == (0, "+15550000031"), scanned.stderr
            wait_until(lambda: httpx.get(f"{base}/api/v1/whatsapp-sessions/{sid}", headers=pat).json()["status"]
                       == "CONNECTED", timeout=30)
            again = run_cli(env, "simulator", "scan", sid)  # paired now: nothing shows a QR
            assert again.returncode == 1 and again.stdout == ""
            assert "not waiting to pair" in again.stderr
            elsewhere = run_cli(env, "simulator", "scan", sid, "--url", f"ws://127.0.0.1:{free_port()}")
            assert elsewhere.returncode == 1 and "cannot reach the simulator" in elsewhere.stderr

            gone = run_cli(env, "simulator", "unregister", "15550000032")
            assert (gone.returncode, gone.stdout.strip()) == (0, "+15550000032"), gone.stderr
            key = {"Authorization": f"Bearer {s['apiKey']}"}
            mids = {}
            for to in ("+15550000032", "+15550000033"):  # unregistered, and a number nobody has seen
                r = httpx.post(f"{base}/api/v1/send-message", json={"to": to, "text": "hi"}, headers=key)
                assert r.status_code == 202, r.text
                mids[to] = r.json()["messageId"]

            def message(mid):
                return httpx.get(f"{base}/api/v1/messages/{mid}", headers=key).json()

            wait_until(lambda: message(mids["+15550000032"])["status"] not in ("queued", "sending"), timeout=30)
            failed = message(mids["+15550000032"])
            assert failed["status"] == "failed" and "not on WhatsApp" in failed["statusReason"]
            wait_until(lambda: message(mids["+15550000033"])["status"] == "read", timeout=30)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
