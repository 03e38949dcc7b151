"""Received media (session key): the files a session downloaded as their messages arrived.

A `message.received` of an image, video, audio, document or sticker names its
file in `media.url`. The answer is the bytes with the type the sender declared,
always as an attachment, with `nosniff` and a sandboxing CSP: a sender chooses
the type and the name, so the gateway's origin never renders what they sent.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import quote

from quart import Response

from ..errors import NotFound, Unauthorized
from ._routing import Api, Auth, Ctx

_MIMETYPE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
_PARAMS: Final = re.compile(r"(;\s*[A-Za-z0-9!#$&^_.+-]+=(\"[^\"\\\r\n]*\"|[A-Za-z0-9!#$&^_.+-]+))*")
_UNSAFE_ASCII: Final = re.compile(r"[^A-Za-z0-9 !#$&'()+,.;=@\[\]^_`{}~-]")
OCTET_STREAM: Final = "application/octet-stream"


def content_type(mimetype: str) -> str:
    """The sender's declared type if it is a well-formed one (`type/subtype[; params]`), else octet-stream."""
    base, _, params = mimetype.strip().partition(";")
    if not _MIMETYPE.fullmatch(base.strip()) or not _PARAMS.fullmatch(";" + params if params else ""):
        return OCTET_STREAM
    return mimetype.strip()


def content_disposition(filename: str | None) -> str:
    """`attachment`, with the file name when known: an ASCII fallback (unsafe characters as `_`) and the
    exact name in RFC 5987's `filename*`. Path parts are dropped."""
    if not filename:
        return "attachment"
    name = re.split(r"[/\\]", filename)[-1].strip() or "file"
    fallback = _UNSAFE_ASCII.sub("_", name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def register(api: Api) -> None:
    @api.route("GET", "/media/<media_id>", summary="Download received media", tag="Media", auth=Auth.SESSION,
               errors=[Unauthorized, NotFound], media_answers=(OCTET_STREAM,))
    async def get_media(ctx: Ctx, media_id: str) -> Response:
        """The bytes of a file this session received (`media.url` of its `message.received`), with the
        type the sender declared. Another session's media, an unknown id and a file past the retention
        (GATEWAY_MEDIA_RETENTION) are all 404."""
        stored = await ctx.gateway.media.store.get(ctx.session.session_id, media_id)
        if stored is None:
            raise NotFound("No media with this id for this session (it may have been purged)")
        record = stored.record
        return Response(stored.chunks, status=200, content_type=content_type(record.mimetype), headers={
            "Content-Length": str(record.size),
            "Content-Disposition": content_disposition(record.filename),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private",
            "ETag": f'"{record.sha256}"',
        })
