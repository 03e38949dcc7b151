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

import uuid

import msgspec
from quart import Response, request
from quart_trio import QuartTrio

from gateway._requests import SendMessage

from ._baseline import ANSWER_TEMPLATE, serve_ceiling

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
    serve_ceiling(make_app(), "python -m bench._quart_ceiling", "127.0.0.1:8091")


if __name__ == "__main__":
    main()
