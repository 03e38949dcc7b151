"""One `gateway serve` per SQLite store: a second one waits for the first to let go, or refuses.

An ordinary restart (SIGTERM, then a new `gateway serve` a few seconds later)
must never run the sessions in two processes: the old one stops its sessions
first, the new one starts only once the old one has let go of the store, and
the stored state afterwards is the truth.
"""

from __future__ import annotations

import signal
import subprocess
import time

import httpx
import pytest

from ._procs import base_env, free_port, gateway_cmd, wait_http
from ._sim_proc import simulator
from .test_e2e_process import setup_session, wait_until

pytestmark = pytest.mark.slow


def _serve(env, port) -> subprocess.Popen:
    return subprocess.Popen(gateway_cmd("serve", "--bind", f"127.0.0.1:{port}"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.timeout(90)
def test_a_second_server_on_the_same_store_refuses_clearly(tmp_path):
    env = base_env(tmp_path, GATEWAY_SHUTDOWN_TIMEOUT="1")  # a successor waits 2 x 1 + 5 s
    first_port, second_port = free_port(), free_port()
    first = _serve(env, first_port)
    try:
        wait_http(f"http://127.0.0.1:{first_port}/healthz", proc=first)
        started = time.monotonic()
        second = _serve(env, second_port)
        _, err = second.communicate(timeout=60)
        assert second.returncode == 3, err
        assert "another gateway process" in err and f"pid {first.pid}" in err
        assert time.monotonic() - started >= 6  # it waited for the first to let go
        assert first.poll() is None  # the first one is untouched
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)


@pytest.mark.timeout(120)
def test_a_restart_soon_after_sigterm_runs_sessions_once_and_the_state_is_true(tmp_path):
    with simulator("--autopair", "0.05") as sim:
        env = base_env(tmp_path, GATEWAY_TRANSPORT="sim", GATEWAY_SIM_URL=sim.url, GATEWAY_SHUTDOWN_TIMEOUT="5")
        old_port, new_port = free_port(), free_port()
        old = _serve(env, old_port)
        wait_http(f"http://127.0.0.1:{old_port}/healthz", proc=old)
        s, pat = setup_session(env, f"http://127.0.0.1:{old_port}", "+15550000031")
        old.send_signal(signal.SIGTERM)
        new = _serve(env, new_port)  # starts at once, as a supervisor restarting the service would
        try:
            assert old.wait(timeout=30) == 0
            new_base = f"http://127.0.0.1:{new_port}"
            wait_http(new_base + "/healthz", proc=new)
            session = f"{new_base}/api/v1/whatsapp-sessions/{s['id']}"
            wait_until(lambda: httpx.get(session, headers=pat).json()["status"] == "CONNECTED", timeout=30)
            time.sleep(2)  # nothing replaces the stream later: one process runs the session
            got = httpx.get(session, headers=pat).json()
            assert got["status"] == "CONNECTED", got
            assert "replaced" not in (got["statusReason"] or "")
            metrics = httpx.get(new_base + "/metrics").text
            assert 'gateway_sessions{state="CONNECTED"} 1.0' in metrics
        finally:
            new.send_signal(signal.SIGTERM)
            new.wait(timeout=30)
