"""Cross-origin calls from web pages, for the origins `GATEWAY_CORS_ORIGINS` names (default: none).

A preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered 204
here, before routing; other answers to an allowed origin carry the CORS
headers, and expose the headers a client reads: `Retry-After`, the rate-limit
headers and `Idempotent-Replayed`. Credentials are sent as headers, never
cookies, so `Access-Control-Allow-Credentials` is not needed.
"""

from __future__ import annotations

from typing import Final

from quart import Response, request
from quart_trio import QuartTrio

ALLOWED_METHODS: Final = "GET, POST, PUT, DELETE"
ALLOWED_HEADERS: Final = "Authorization, X-API-Token, Content-Type, Idempotency-Key"
EXPOSED_HEADERS: Final = ("Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, "
                          "Idempotent-Replayed")
PREFLIGHT_MAX_AGE: Final = 600  # seconds a browser may reuse a preflight answer


def install_cors(app: QuartTrio, origins: frozenset[str]) -> None:
    def allowed(origin: str | None) -> str | None:
        if origin is None or not origins:
            return None
        if "*" in origins:
            return "*"
        return origin if origin.rstrip("/") in origins else None

    @app.before_request
    async def preflight() -> Response | None:
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        response = Response(b"", status=204)
        response.headers["Vary"] = "Origin"
        origin = allowed(request.headers.get("Origin"))
        if origin is not None:
            response.headers.update({
                "Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Allow-Headers": ALLOWED_HEADERS, "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE)})
        return response

    @app.after_request
    async def cors_headers(response: Response) -> Response:
        origin = allowed(request.headers.get("Origin"))
        if origin is not None and "Access-Control-Allow-Origin" not in response.headers:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
            response.vary.add("Origin")
        return response
