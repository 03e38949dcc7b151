"""The bare hypercorn-trio ceiling: a minimal ASGI app on the gateway's own server setup.

`python -m bench._baseline --bind 127.0.0.1:PORT` serves an app that reads
the request body and answers 202 with a body shaped like the gateway's
send-message answer (a fresh messageId each time), whatever the path. The
server is configured as `gateway serve` configures it: hypercorn, trio
worker, no access log. What the gateway does beyond this is what a
benchmark ratio to it measures.
"""

from __future__ import annotations

import argparse
import logging
import signal
import uuid
from functools import partial
from typing import Any

import trio

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
    body = (ANSWER_TEMPLATE % uuid.uuid4()).encode()
    await send({"type": "http.response.start", "status": 202,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    from hypercorn.config import Config as HyperConfig
    from hypercorn.trio import serve

    parser = argparse.ArgumentParser(prog="python -m bench._baseline")
    parser.add_argument("--bind", default="127.0.0.1:8090")
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

    trio.run(partial(serve, app, hyper, shutdown_trigger=shutdown_trigger))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
