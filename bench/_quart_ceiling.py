"""The framework ceiling: a trivial quart-trio app on the gateway's own server setup.

`python -m bench._quart_ceiling --bind 127.0.0.1:PORT` serves one route,
`POST /api/v1/send-message`, which reads the body, decodes it with the
gateway's own `SendMessage` struct (msgspec, as the gateway does) and answers
202 with a body shaped like the gateway's answer. Nothing else: no auth, no
limits, no store. Served by hypercorn with the trio worker and no access log,
as `gateway serve` and the bare ceiling (`bench._baseline`) are.

So in one run, bare → Quart is what the framework costs and Quart → gateway
is what the gateway's own work costs.
"""

from __future__ import annotations

import argparse
import logging
import signal
import uuid
from functools import partial

import msgspec
import trio
from quart import Response, request
from quart_trio import QuartTrio

from gateway._requests import SendMessage

from ._baseline import ANSWER_TEMPLATE

_decode = msgspec.json.Decoder(SendMessage).decode


def make_app() -> QuartTrio:
    app = QuartTrio(__name__)

    @app.post("/api/v1/send-message")
    async def send_message() -> Response:
        try:
            _decode(await request.get_data())
        except msgspec.ValidationError as exc:
            return Response(msgspec.json.encode({"error": str(exc)}), status=422, content_type="application/json")
        return Response(ANSWER_TEMPLATE % uuid.uuid4(), status=202, content_type="application/json")

    return app


def main() -> None:
    from hypercorn.config import Config as HyperConfig
    from hypercorn.trio import serve

    parser = argparse.ArgumentParser(prog="python -m bench._quart_ceiling")
    parser.add_argument("--bind", default="127.0.0.1:8091")
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

    trio.run(partial(serve, make_app(), hyper, shutdown_trigger=shutdown_trigger))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
