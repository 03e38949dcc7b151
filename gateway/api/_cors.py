"""Cross-origin calls from web pages, for the origins `GATEWAY_CORS_ORIGINS` names (default: none).

A preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered 204
here, before routing; other answers to an allowed origin carry the CORS
headers (added by Quart's after-request hook, or by the lean lane from the same
`CorsPolicy`), and expose the headers a client reads: `Retry-After`, the rate-limit
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


class CorsPolicy:
    """Which origins may call, and the headers an answer to one carries."""

    def __init__(self, origins: frozenset[str]) -> None:
        self._origins = origins

    def allowed(self, origin: str | None) -> str | None:
        """The `Access-Control-Allow-Origin` value for `origin`, or None when it may not call."""
        if origin is None or not self._origins:
            return None
        if "*" in self._origins:
            return "*"
        return origin if origin.rstrip("/") in self._origins else None

    def answer_headers(self, origin: str | None, present: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """The CORS headers an (ASGI) answer to `origin` needs beside the headers it has (`present`)."""
        allowed = self.allowed(origin)
        if allowed is None or any(k == b"access-control-allow-origin" for k, _ in present):
            return []
        return [(b"access-control-allow-origin", allowed.encode("latin-1")),
                (b"access-control-expose-headers", EXPOSED_HEADERS.encode()), (b"vary", b"Origin")]


def install_cors(app: QuartTrio, policy: CorsPolicy) -> None:
    allowed = policy.allowed

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
