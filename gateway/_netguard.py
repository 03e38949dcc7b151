"""SSRF guard for URLs the gateway fetches (media) or posts to (webhooks).

A URL is refused when its scheme is not http(s), or when its host is, or
resolves to, an address that is not globally routable: loopback, private,
link-local (which holds the cloud metadata address 169.254.169.254),
shared/CGNAT, multicast, reserved or unspecified. IPv4-mapped IPv6 addresses
are checked as the IPv4 address they carry. `GATEWAY_ALLOW_PRIVATE_URLS`
turns the address check off (the scheme check stays).

Callers that connect should connect to one of the addresses `resolve_checked`
returned, so a DNS answer that changes between check and use (rebinding)
cannot slip through.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Final
from urllib.parse import SplitResult, urlsplit

import trio

_SCHEMES: Final = frozenset({"http", "https"})
_MAX_URL_LENGTH: Final = 2048
_HOST_CHARS: Final = re.compile(r"[A-Za-z0-9._:%-]+")  # after IDNA encoding; `:` and `%` for IPv6 literals


class UnsafeURL(ValueError):
    """The URL may not be used: bad shape, bad scheme, or a non-public address."""


def parse_http_url(url: str) -> SplitResult:
    """Check a URL's shape and scheme only (no DNS)."""
    if len(url) > _MAX_URL_LENGTH:
        raise UnsafeURL(f"URL longer than {_MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"malformed URL: {exc}") from None
    if parts.scheme.lower() not in _SCHEMES:
        raise UnsafeURL("URL scheme must be http or https")
    if not parts.hostname:
        raise UnsafeURL("URL has no host")
    _check_host(parts.hostname)
    if parts.username or parts.password:
        raise UnsafeURL("URL must not carry credentials")
    if port == 0:
        raise UnsafeURL("URL port must not be 0")
    return parts


def _check_host(host: str) -> None:
    """A name DNS can be asked about, or an address: IDNA-encodable, labels of 1 to 63 characters."""
    try:
        encoded = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise UnsafeURL(f"URL host {host!r} is not a valid host name (empty or over-long label)") from None
    if not _HOST_CHARS.fullmatch(encoded):
        raise UnsafeURL(f"URL host {host!r} is not a valid host name")


def address_is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def resolve_checked(url: str, *, allow_private: bool) -> list[str]:
    """Resolve the URL's host and return its addresses, all checked.

    Raises UnsafeURL if any address is not public (unless allowed) or if the
    host does not resolve.
    """
    parts = parse_http_url(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeURL(f"host {host!r} does not resolve: {exc}") from None
    addresses = sorted({info[4][0] for info in infos})
    if not allow_private:
        for address in addresses:
            if not address_is_public(address):
                raise UnsafeURL(f"host {host!r} resolves to a non-public address ({address}); "
                                "GATEWAY_ALLOW_PRIVATE_URLS=true allows private addresses")
    return addresses


async def check_url_on_save(url: str, *, allow_private: bool) -> None:
    """The check made when a URL is stored (e.g. a webhook URL).

    A host that does not resolve right now is accepted, since DNS may be down
    or the name not yet published; delivery checks again before every connect.
    A host that resolves, or is written as an address, must be public.
    """
    parts = parse_http_url(url)
    if allow_private:
        return
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
        literal = True
    except ValueError:
        literal = False
    try:
        await resolve_checked(url, allow_private=False)
    except UnsafeURL as exc:
        if literal or "does not resolve" not in str(exc):
            raise
