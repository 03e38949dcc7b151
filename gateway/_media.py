"""Media for outbound messages: size caps, type checks, and safe downloads.

Caps follow WhatsApp's own limits, so a file WhatsApp would reject is refused
here with a clear reason instead of failing deep inside the transport.

Downloads use httpx with redirects followed by hand: every hop's host passes
the SSRF guard (`_netguard.resolve_checked`), so a public URL that redirects
to 127.0.0.1 or the metadata address is refused. The body is streamed and cut
off at the cap, and the whole download has one deadline.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final
from urllib.parse import urljoin

import httpx
import trio

from ._netguard import UnsafeURL, resolve_checked

MB: Final = 1024 * 1024
MAX_BYTES: Final[dict[str, int]] = {
    "image": 5 * MB,
    "video": 16 * MB,
    "audio": 16 * MB,
    "document": 100 * MB,
    "sticker": 500 * 1024,
}
ALLOWED_TYPES: Final[dict[str, frozenset[str]]] = {
    "image": frozenset({"image/jpeg", "image/png"}),
    "video": frozenset({"video/mp4", "video/3gpp"}),
    "audio": frozenset({"audio/aac", "audio/mp4", "audio/mpeg", "audio/amr", "audio/ogg", "audio/opus"}),
    "sticker": frozenset({"image/webp"}),  # WhatsApp stickers are WebP
}
_MAX_REDIRECTS: Final = 5


class MediaError(ValueError):
    """The media cannot be used; the message says why in words a user can act on."""


def human_size(n: int) -> str:
    return f"{n / MB:.1f} MB" if n >= MB else f"{n / 1024:.0f} KB"


def check_size(kind: str, size: int) -> None:
    cap = MAX_BYTES[kind]
    if size > cap:
        raise _too_big(kind, cap, size)


def _too_big(kind: str, cap: int, size: int | None = None) -> MediaError:
    """A download past `cap`: WhatsApp's limit for `kind`, or a caller's smaller one; `size` when declared."""
    if cap == MAX_BYTES[kind]:
        return MediaError(f"{kind} is {human_size(size)}; WhatsApp accepts at most {human_size(cap)}"
                          if size is not None else f"{kind} is larger than WhatsApp's {human_size(cap)} limit")
    return MediaError(f"the download is {human_size(size)}; at most {human_size(cap)} is accepted here"
                      if size is not None else f"the download is larger than {human_size(cap)}, the most accepted here")


def decode_base64(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise MediaError("data is not valid base64") from None


def sniff(data: bytes) -> str | None:
    """The MIME type the bytes themselves show, for the formats WhatsApp takes."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        return "video/3gpp" if head[8:11] == b"3gp" else ("audio/mp4" if head[8:11] == b"M4A" else "video/mp4")
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    if head.startswith(b"#!AMR"):
        return "audio/amr"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:  # an ADTS frame header
        return "audio/aac"
    if head.startswith(b"%PDF"):
        return "application/pdf"
    return None


def resolve_mimetype(kind: str, data: bytes, declared: str | None) -> str:
    """Pick and check the MIME type of typed kinds from the bytes (their magic numbers), never from a
    declared type alone: unrecognised bytes are refused whatever they claim to be."""
    declared = declared.split(";")[0].strip().lower() if declared else None
    if kind == "document":
        return declared or sniff(data) or "application/octet-stream"
    mimetype = sniff(data)
    if kind == "audio" and mimetype == "video/mp4":
        mimetype = "audio/mp4"
    allowed = ALLOWED_TYPES[kind]
    if mimetype not in allowed:
        seen = mimetype or "bytes that are none of these" + (f" (declared {declared})" if declared else "")
        raise MediaError(f"{kind} must be one of {', '.join(sorted(allowed))}; got {seen}")
    return mimetype


async def fetch(client: httpx.AsyncClient, url: str, kind: str, *, allow_private: bool,
                timeout: float, max_bytes: int | None = None) -> tuple[bytes, str | None]:
    """Download `url` for a `kind` message: (bytes, declared content type). Raises MediaError.

    `max_bytes`, below the kind's own cap, stops the download there (a group picture: 1 MiB)."""
    cap = MAX_BYTES[kind] if max_bytes is None else min(max_bytes, MAX_BYTES[kind])
    try:
        with trio.fail_after(timeout):
            for _ in range(_MAX_REDIRECTS + 1):
                try:
                    await resolve_checked(url, allow_private=allow_private)
                except UnsafeURL as exc:
                    raise MediaError(f"media URL refused: {exc}") from None
                async with client.stream("GET", url, follow_redirects=False) as response:
                    if response.is_redirect:
                        location = response.headers.get("location")
                        if not location:
                            raise MediaError(f"media URL answered {response.status_code} without a Location")
                        url = urljoin(url, location)
                        continue
                    if response.status_code != 200:
                        raise MediaError(f"media URL answered HTTP {response.status_code}")
                    length = response.headers.get("content-length")
                    if length is not None and length.isdigit() and int(length) > cap:
                        raise _too_big(kind, cap, int(length))
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > cap:
                            raise _too_big(kind, cap)
                    return bytes(body), response.headers.get("content-type")
            raise MediaError(f"media URL redirected more than {_MAX_REDIRECTS} times")
    except trio.TooSlowError:
        raise MediaError(f"media download took longer than {timeout:g}s") from None
    except httpx.HTTPError as exc:
        raise MediaError(f"media download failed: {type(exc).__name__}: {exc}") from None
