"""A session's proxy URL: checked before Go sees it, and kept out of every log line and reason.

whatsmeow takes a proxy as a URL (`Client.SetProxyAddress`): http and https
through Go's HTTP proxy support, socks5 through x/net/proxy, and any other
scheme is an error ("unsupported proxy scheme"). The websocket and media
traffic both go through it.

neonize 0.5.2 can only apply a proxy while `connect()` creates the Go client:
`connect(ProxySettings(...))` sets it on the new client before the dial. Its
`set_proxy_address` looks the client up in Go's map, which holds it only while
a connect() call runs (Stop deletes it), so before a connect, and after the
stop that ends each attempt, it answers "client not found" (checked on the
installed library). The transport therefore passes the settings to every
connect() call.

A proxy URL may carry a password. Every text that can reach a log line or a
reason goes through `scrub`: the URL becomes `masked(url)` (credentials
replaced by `***`), and any piece of the credentials left becomes `***`.
No neonize import: this module is pure.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import unquote, urlsplit

from .._proxy_url import SCHEME, masked
from .._transport import ConnectFailed

PROXY_SCHEMES: Final = ("http", "https", "socks5")
# whatsmeow's own refusals, raised by connect() before any dial (Go's url.Parse, SetProxyAddress)
_REFUSED_BY_GO: Final = ("unsupported proxy scheme", "parse ")


def check(url: str) -> None:
    """Raise ConnectFailed (not retryable) unless `url` is an http, https or socks5 URL naming a host."""
    m = SCHEME.match(url)
    if m is None:
        raise ConnectFailed("proxy refused: its URL must start with http://, https:// or socks5://",
                            retryable=False)
    scheme = m.group(1).lower()
    if scheme not in PROXY_SCHEMES:
        raise ConnectFailed(f"proxy refused: scheme {scheme!r} is not one of {', '.join(PROXY_SCHEMES)}",
                            retryable=False)
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ConnectFailed(f"proxy {masked(url)} refused: its URL contains spaces or control characters",
                            retryable=False)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number in range
    except ValueError:
        raise ConnectFailed(f"proxy {masked(url)} refused: not a valid URL", retryable=False) from None
    if not host:
        raise ConnectFailed(f"proxy {masked(url)} refused: its URL names no host", retryable=False)


def refused_by_go(text: str) -> bool:
    """Whether a connect() error is whatsmeow refusing the proxy itself (retrying cannot help)."""
    return text.startswith(_REFUSED_BY_GO)


def scrub(text: str, url: str | None) -> str:
    """`text` without `url` or any part of its credentials (raw, percent-decoded or Go-quoted)."""
    if not url:
        return text
    m = SCHEME.match(url)
    rest = url[m.end():] if m else url
    creds = rest.rpartition("@")[0]
    secrets = {creds, unquote(creds)}
    for c in list(secrets):
        secrets.add(c.partition(":")[2])
    secrets.discard("")
    # Go quotes URLs in its errors (%q): `"` and `\` come escaped
    variants = [(s, s.replace("\\", "\\\\").replace('"', '\\"')) for s in (url, *secrets)]
    text = text.replace(url, masked(url)).replace(variants[0][1], masked(url))
    for raw, quoted in sorted(variants[1:], key=lambda v: len(v[0]), reverse=True):
        text = text.replace(quoted, "***").replace(raw, "***")
    return text
