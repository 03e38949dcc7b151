"""The bare hypercorn-trio ceiling: a minimal ASGI app on the gateway's own server setup.

`python -m bench._baseline --bind 127.0.0.1:PORT` serves an app that reads
the request body and answers 202 with a body shaped like the gateway's
send-message answer (a fresh messageId each time), whatever the path. The
server is configured as `gateway serve` configures it: hypercorn, trio
worker, no access log. What the gateway does beyond this is what a
benchmark ratio to it measures.

It doubles as a plain ASGI webhook receiver for `bench webhooks`: a POST to
`/hook/...` or `/ceiling` is read, counted (per first path segment, with the
wall-clock times of the first and last) and answered 204; `GET /counts`
returns those counts as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import time
import uuid
from functools import partial
from typing import Any

import trio

COUNTS: dict[str, dict[str, float]] = {}  # webhook receiver mode: POSTs by first path segment
ANSWER_TEMPLATE = ('{"messageId":"%s","status":"queued","to":"15550009999@s.whatsapp.net","type":"text",'
                   '"modifiers":[]}')


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    path = scope["path"]
    if path.startswith(("/hook/", "/ceiling")):
        segment = path.split("/")[1]
        now = time.time()
        count = COUNTS.setdefault(segment, {"count": 0, "first": now, "last": now})
        count["count"] += 1
        count["last"] = now
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/counts":
        body = json.dumps(COUNTS).encode()
    else:
        body = (ANSWER_TEMPLATE % uuid.uuid4()).encode()
    await send({"type": "http.response.start", "status": 202,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def serve_ceiling(asgi_app: Any, prog: str, default_bind: str) -> None:
    """Serve `asgi_app` from the command line (`--bind`), as `gateway serve` configures hypercorn: the trio
    worker, no access log; until SIGINT or SIGTERM."""
    from hypercorn.config import Config as HyperConfig
    from hypercorn.trio import serve

    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--bind", default=default_bind)
    args = parser.parse_args()
    hyper = HyperConfig()
    hyper.bind = [args.bind]
    hyper.worker_class = "trio"
    hyper.accesslog = None
    hyper.errorlog = logging.getLogger("hypercorn.error")

    async def shutdown_trigger() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                return

    trio.run(partial(serve, asgi_app, hyper, shutdown_trigger=shutdown_trigger))  # type: ignore[arg-type]


def main() -> None:
    serve_ceiling(app, "python -m bench._baseline", "127.0.0.1:8090")


if __name__ == "__main__":
    main()
