"""What every HTML page the gateway serves carries: strict security headers.

A page's Content-Security-Policy allows nothing by default: no script runs
unless its hash is listed, styles only by the hash of the page's own `<style>`,
images only from the gateway itself (and `data:` URLs, for QR codes), no
framing, no `<base>`, forms posting only back to the gateway.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

from quart import Response


def csp_hash(source: str) -> str:
    """The CSP source expression (`'sha256-...'`) that allows exactly this inline style or script."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def page_headers(*, styles: Iterable[str] = (), scripts: Iterable[str] = ()) -> dict[str, str]:
    style_src = " ".join(["'self'", *map(csp_hash, styles)])
    script_src = " ".join(["'self'", *map(csp_hash, scripts)])
    return {
        "Content-Security-Policy": (f"default-src 'none'; style-src {style_src}; script-src {script_src}; "
                                    "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
                                    "frame-ancestors 'none'; base-uri 'none'"),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


def html_page(body: str, headers: dict[str, str]) -> Response:
    return Response(body, content_type="text/html; charset=utf-8", headers=headers)
