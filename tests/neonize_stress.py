"""Many neonize transports connecting and stopping at once, in one process.

Run in a subprocess by tests/test_neonize_transport.py: neonize's Go core aborts
the whole process on concurrent map access ("concurrent map writes"), and that
must show up as a failed test (non-zero exit or a signal), not kill pytest.
The script runs itself again as a child with HTTPS_PROXY (which whatsmeow
honours; Go reads the environment only at process start) pointing at a local
stand-in that hangs up on each dial, mostly at once and sometimes after
0-30 ms: every connect() fails fast and without DNS (offline lookups sometimes
stall 5 s), and some stops land while a connect is in flight. The rounds
hammer exactly the hazardous part: connect starts and stops of many clients
racing each other. Without the lock (`--no-lock`), 50 sessions × 8 rounds
aborted in 4 of 6 runs here; with it, none did.

    python tests/neonize_stress.py DATA_DIR [--sessions N] [--rounds R] [--no-lock]

`--no-lock` swaps the process-wide lock for one that does nothing, to show the
abort this test guards against. Prints one JSON line of counts and exits 0;
exits 128+N when the child dies of signal N (134 for Go's SIGABRT).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import socket
import subprocess
import sys
import threading
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors import ConnectFailed, NotConnected, SessionSpec  # noqa: E402
from actors.neonize import GO_LOCK, NeonizeTransport, NeonizeTransportFactory, RWLock  # noqa: E402


class NoLock(RWLock):
    """Takes nothing: every Go call runs unguarded."""

    def acquire_read(self, timeout: float | None = None) -> bool:
        return True

    def release_read(self) -> None:
        pass

    def acquire_write(self, timeout: float | None = None) -> bool:
        return True

    def release_write(self) -> None:
        pass


async def churn(t: NeonizeTransport, rounds: int, rng: random.Random, counts: dict[str, int]) -> None:
    send, _receive = trio.open_memory_channel(16)
    for _ in range(rounds):
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(t.run, send)
                if rng.random() < 0.5:  # stop racing the connect, sometimes after a moment
                    await trio.sleep(rng.random() * 0.01)
                    nursery.start_soon(t.disconnect)
        except* ConnectFailed:
            counts["connect_failed"] += 1
        else:
            counts["returned"] += 1
        try:  # guarded: must not reach Go while not connected
            await t.get_contacts()
        except NotConnected:
            counts["not_connected"] += 1


def start_hang_up_proxy() -> str:
    """A 'proxy' on localhost that hangs up on every dial: mostly at once, sometimes 0-30 ms later."""
    server = socket.create_server(("127.0.0.1", 0), backlog=512)
    rng = random.Random(99)

    def serve() -> None:
        while True:
            conn, _ = server.accept()
            if rng.random() < 0.7:
                conn.close()
            else:
                threading.Timer(rng.random() * 0.03, conn.close).start()
    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}"


async def main(data_dir: str, sessions: int, rounds: int, no_lock: bool) -> dict[str, int]:
    factory = NeonizeTransportFactory(data_dir=data_dir, lock=NoLock() if no_lock else GO_LOCK)
    transports = [factory.create(SessionSpec(session_id=f"stress-{i}")) for i in range(sessions)]
    counts = {"connect_failed": 0, "returned": 0, "not_connected": 0}
    rng = random.Random(1234)
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for t in transports:
                nursery.start_soon(churn, t, rounds, random.Random(rng.random()), counts)
        await factory.aclose()
    return counts


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir")
    parser.add_argument("--sessions", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-lock", action="store_true")
    args = parser.parse_args()
    if os.environ.get("NEONIZE_STRESS_CHILD") != "1":
        env = {**os.environ, "HTTPS_PROXY": start_hang_up_proxy(), "NEONIZE_STRESS_CHILD": "1"}
        env.pop("https_proxy", None)
        code = subprocess.run([sys.executable, __file__, *sys.argv[1:]], env=env, timeout=110).returncode
        sys.exit(code if code >= 0 else 128 - code)  # a signal (SIGABRT from Go) as the shell reports it
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(trio.run(main, args.data_dir, args.sessions, args.rounds, args.no_lock)), flush=True)
