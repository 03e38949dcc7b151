"""An optional cross-check with wrk (C, event loop): is bench's own client the bottleneck?

If `wrk` is on PATH, bench runs it briefly against the bare server with the
same request (a Lua script sets the method, JSON body and Authorization
header). A ceiling that wrk finds much higher than bench's client found
would mean the client, not the server, set the ceiling. Without wrk the
check is skipped and the report says so.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import trio

_SCRIPT = """\
wrk.method = "POST"
wrk.body = %s
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = %s
done = function(summary, latency, requests)
  io.write(string.format("BENCH_JSON {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"p50_us\\": %%d, " ..
    "\\"p99_us\\": %%d, \\"p999_us\\": %%d, \\"errors\\": %%d}\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status +
    summary.errors.timeout))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for ASCII text


async def run_wrk(url: str, *, body: str, authorization: str, connections: int, seconds: float,
                  workdir: Path) -> dict[str, Any] | None:
    """wrk's requests/s and latency percentiles (ms), or None when wrk is not installed."""
    if not available():
        return None
    script = workdir / "bench-wrk.lua"
    script.write_text(_SCRIPT % (_lua_string(body), _lua_string(authorization)))
    result = await trio.run_process(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", str(script), url],
        capture_stdout=True, capture_stderr=True, check=False)
    out = result.stdout.decode(errors="replace")
    m = re.search(r"BENCH_JSON (\{.*\})", out)
    if result.returncode != 0 or m is None:
        return {"error": (out + result.stderr.decode(errors="replace"))[-500:]}
    data = json.loads(m.group(1))
    seconds_run = data["duration_us"] / 1e6
    return {"requests_per_s": round(data["requests"] / seconds_run, 1), "p50_ms": data["p50_us"] / 1000,
            "p99_ms": data["p99_us"] / 1000, "p99.9_ms": data["p999_us"] / 1000, "errors": data["errors"],
            "connections": connections, "duration_s": round(seconds_run, 2)}
